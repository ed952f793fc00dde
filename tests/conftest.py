"""Shared fixtures. Tests that need root, BPF or the testbed skip without
them on a developer's machine, and fail instead when CI is set: in CI they
must run."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from harness import inventory
from harness.testbed import Testbed as LocalTestbed, leftovers

# The tests' own testbed, apart from a user's (other names and subnet).
TEST_PREFIX = "tst"
TEST_SUBNET = "10.78.0"


def need_root() -> None:
    if os.geteuid() == 0:
        return
    msg = "needs root (network namespaces, BPF, XDP)"
    if os.environ.get("CI"):
        pytest.fail(f"{msg}, and CI is set: these tests may not skip in CI")
    pytest.skip(msg)


@pytest.fixture
def root() -> None:
    need_root()


@pytest.fixture(scope="session")
def test_inventory_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inventory") / "test.yml"
    data = inventory.local_inventory(servers=3, clients=1, ncpu=2, prefix=TEST_PREFIX, subnet=TEST_SUBNET)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def test_inventory(test_inventory_path) -> inventory.Inventory:
    return inventory.load(test_inventory_path)


@pytest.fixture(scope="session")
def testbed(test_inventory):
    """A testbed for the whole session; removed at its end."""
    need_root()
    tb = LocalTestbed(test_inventory)
    tb.up()
    yield tb
    tb.down()
    left = leftovers(test_inventory)
    assert not left["namespaces"], f"testbed left behind: {left}"
