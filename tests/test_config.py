"""Configuration and inventory: defaults, validation, clear errors."""
from __future__ import annotations

import pytest
import yaml

from harness import HarnessError, inventory
from harness.config import RunConfig


def test_defaults_validate():
    cfg = RunConfig(system="dint").validate()
    assert cfg.napi == "pinned" and cfg.workload == "echo"


@pytest.mark.parametrize("field,value,message", [
    ("system", "xdp", "--system must be one of"),
    ("napi", "threaded", "--napi must be one of"),
    ("concurrency", 0, "--concurrency must be between"),
    ("duration_s", 0, "--duration must be positive"),
    ("value_size", 4096, "--value-size must be between"),
    ("client_gso", "yes", "--client-gso must be one of"),
])
def test_bad_values_are_named(field, value, message):
    with pytest.raises(HarnessError, match=message):
        RunConfig(**{"system": "dint", field: value}).validate()


def test_client_gso_auto_means_several_servers():
    from harness.loadgen import use_gso
    assert not use_gso("auto", 1) and use_gso("auto", 3)
    assert use_gso("on", 1) and not use_gso("off", 3)


def test_roundtrip_and_unknown_keys():
    cfg = RunConfig(system="kernel", concurrency=8)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(HarnessError, match="unknown configuration keys: bogus"):
        RunConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_checked_in_local_inventory_is_the_generated_default():
    """inventory/local.yml cannot drift from what `testbed inventory` makes."""
    on_disk = yaml.safe_load(inventory.DEFAULT_INVENTORY.read_text())
    assert on_disk == inventory.local_inventory()


def test_default_inventory_shape():
    inv = inventory.load()
    assert [h.name for h in inv.servers] == ["s0", "s1", "s2"] and [h.name for h in inv.clients] == ["c0"]
    assert all(h.cpus == (1,) for h in inv.servers) and inv.clients[0].cpus == (0,)
    c0 = inv.clients[0]
    assert [c0.interface_to(s.name).name for s in inv.servers] == ["dc0s0", "dc0s1", "dc0s2"]
    assert inv.local and inv.port == 7777


def test_cpu_split_on_bigger_machines():
    assert inventory.default_cpus(8) == ((0, 1, 2, 3), (4, 5, 6, 7))
    with pytest.raises(HarnessError, match="at least 2 CPUs"):
        inventory.default_cpus(1)


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["all"]["children"].pop("clients"), "group 'clients' has no hosts"),
    (lambda d: d["all"]["children"]["servers"]["hosts"]["s0"].pop("cpus"), "host s0 lacks 'cpus'"),
    (lambda d: d["all"]["children"]["servers"]["hosts"]["s0"].update(cpus="1"), "'cpus' must be a non-empty list"),
    (lambda d: d["all"]["children"]["servers"]["hosts"]["s0"].pop("netns"), "local host s0 lacks 'netns'"),
    (lambda d: d["all"]["children"]["servers"]["hosts"]["s0"]["interfaces"][0].update(name="x" * 16),
     "longer than 15 characters"),
    (lambda d: d["all"]["children"]["servers"]["hosts"]["s0"]["interfaces"][0].update(peer="c9"),
     "peer 'c9' is not a host"),
])
def test_bad_inventories_are_named(tmp_path, mutate, message):
    data = inventory.local_inventory()
    mutate(data)
    path = tmp_path / "inv.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(HarnessError, match=message):
        inventory.load(path)


def test_unreadable_inventories(tmp_path):
    with pytest.raises(HarnessError, match="not found"):
        inventory.load(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("all: [unclosed")
    with pytest.raises(HarnessError, match="not valid YAML"):
        inventory.load(bad)
    bad.write_text("- just a list")
    with pytest.raises(HarnessError, match="not an inventory"):
        inventory.load(bad)


@pytest.mark.parametrize("fields,message", [
    ({"workload": "lock", "cc": "3pl"}, r"--cc must be one of 2pl, occ, not '3pl'"),
    ({"workload": "kv", "kv_mix": "hot"}, r"--kv-mix must be one of parallel, contention, not 'hot'"),
    ({"workload": "kv", "cc": "occ"}, "--cc applies to the transactional workloads"),
    ({"workload": "lock", "kv_mix": "contention"}, "--kv-mix applies to --workload kv only"),
    ({"workload": "lock", "keys": 9}, "--keys must be at least 10 for --workload lock"),
])
def test_bad_transactional_settings_are_named(fields, message):
    with pytest.raises(HarnessError, match=message):
        RunConfig(system="dint", **fields).validate()


def test_transactional_defaults():
    cfg = RunConfig(system="dint", workload="lock").validate()
    assert (cfg.cc, cfg.kv_mix) == ("2pl", "parallel")  # the workload's default, resolved
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
