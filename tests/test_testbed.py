"""The local testbed: up is idempotent and complete, a failed up rolls back,
down leaves nothing behind, NAPI placement does what it says."""
from __future__ import annotations

import os

import pytest
import yaml

from harness import HarnessError, inventory
from harness.sh import in_netns, ip, run
from harness.testbed import Testbed as LocalTestbed, xdp_prog_id, leftovers, napi_threads

from conftest import TEST_PREFIX


def test_up_builds_every_host_and_link(testbed, test_inventory):
    assert testbed.is_up()
    for row in testbed.status():
        assert row["exists"]
        if row["role"] == "client":  # pass-through XDP so XDP_TX replies arrive
            assert all(i["xdp_prog"] for i in row["interfaces"])
    c0 = test_inventory.clients[0]
    for s in test_inventory.servers:
        # static ARP, both ways
        neigh = ip("neigh", "show", s.address, netns=c0.netns).stdout
        assert "PERMANENT" in neigh and s.interfaces[0].mac in neigh
        route = ip("route", "get", s.address, netns=c0.netns).stdout
        assert c0.interface_to(s.name).name in route


def test_up_is_idempotent(testbed):
    assert testbed.up() is False
    assert testbed.is_up()


def test_napi_pinned_then_inline(testbed, test_inventory):
    placed = testbed.set_napi("pinned")
    for srv in test_inventory.servers:
        iface = srv.interfaces[0].name
        threads = napi_threads(iface)
        assert threads and placed[f"{srv.name}/{iface}"]["threaded"]
        assert all(os.sched_getaffinity(t) == set(srv.cpus) for t in threads)
        # a client end without TSO, so that veth hands its UDP frames to the
        # server's NAPI (not the client's backlog) also without XDP there
        cli = test_inventory.host(srv.interfaces[0].peer)
        features = run(in_netns(cli.netns, ["ethtool", "-k", cli.interface_to(srv.name).name])).stdout
        assert "tcp-segmentation-offload: off" in features and "tx-udp-segmentation: off" in features
    testbed.set_napi("inline")
    assert all(not napi_threads(s.interfaces[0].name) for s in test_inventory.servers)
    with pytest.raises(HarnessError, match="--napi must be one of"):
        testbed.set_napi("bogus")


def test_failed_up_rolls_back(root, tmp_path):
    data = inventory.local_inventory(servers=2, clients=1, prefix="ftb", subnet="10.79.0")
    data["all"]["children"]["servers"]["hosts"]["s1"]["interfaces"][0]["mac"] = "not-a-mac"
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(data))
    inv = inventory.load(path)
    with pytest.raises(HarnessError, match="failed"):
        LocalTestbed(inv).up()
    assert leftovers(inv)["namespaces"] == []


def test_down_removes_everything(root, tmp_path):
    data = inventory.local_inventory(servers=1, clients=1, prefix="xtb", subnet="10.79.1")
    path = tmp_path / "small.yml"
    path.write_text(yaml.safe_dump(data))
    inv = inventory.load(path)
    with LocalTestbed(inv) as tb:
        assert tb.is_up()
        assert xdp_prog_id(inv.clients[0].netns, inv.clients[0].interfaces[0].name)
    assert leftovers(inv) == {"namespaces": [], "processes": {}}


def test_cluster_inventory_is_not_a_testbed(test_inventory):
    data = dict(test_inventory.raw)
    data = yaml.safe_load(yaml.safe_dump(data))
    data["all"]["vars"]["deployment"] = "cluster"
    with pytest.raises(HarnessError, match="describes a cluster"):
        LocalTestbed(inventory.parse(data, "cluster.yml"))


def test_test_testbed_is_apart_from_the_users(test_inventory):
    """The suite can run while a user's testbed is up: no shared namespace,
    interface name (NAPI threads are named after it) or address."""
    user = inventory.load(inventory.DEFAULT_INVENTORY)
    for attr in (lambda h: h.netns, lambda h: h.address):
        assert not {attr(h) for h in user.hosts} & {attr(h) for h in test_inventory.hosts}
    names = lambda inv: {i.name for h in inv.hosts for i in h.interfaces}  # noqa: E731
    assert not names(user) & names(test_inventory)
    assert all(h.netns.startswith(f"{TEST_PREFIX}-") for h in test_inventory.hosts)
