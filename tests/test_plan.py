"""A profile's plan before it runs (harness/plan.py, `reproduce --plan`):
the memory hosts state in the inventory, every place's largest need
against it with the point that has it, the expected duration, the JSON,
and the one-line refusal naming the point, the host and the figures.
Arithmetic only: no servers, no root."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import HarnessError, experiments, inventory, limits, plan, reproduce
from harness.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = inventory.INVENTORY_DIR / "cluster.example.yml"
HARNESS = [sys.executable, "-m", "harness"]

# A small profile: dint kv over a million keys (its caches about a GiB a
# server), TATP at its local scale, and echo.
SMALL = {
    "version": 1, "profile": "small", "defaults": {"duration_s": 1.0, "warmup_s": 0.5},
    "systems": ["dint", "kernel"], "repeat": 2,
    "experiments": [
        {"name": "calibration", "figure": "calibration", "workload": "echo", "config": {"concurrency": 4}},
        {"name": "kv", "figure": "curve", "workload": "kv", "config": {"keys": 1_000_000},
         "sweep": {"concurrency": [1, 8]}},
        {"name": "tatp", "figure": "curve", "workload": "tatp", "sweep": {"concurrency": [1, 8]}},
    ]}


def cluster(memory: dict | None = None, **hosts) -> dict:
    """The example cluster's inventory, its memory variables replaced:
    memory, if given, as all's variables; hosts: a host's own."""
    data = yaml.safe_load(CLUSTER.read_text())
    groups = data["all"]["children"]
    for g in groups.values():
        for spec in g["hosts"].values():
            spec.pop("memory_gb", None)
    if memory:
        data["all"]["vars"].update(memory)
    for name, mem in hosts.items():
        group = "servers" if name.startswith("s") else "clients"
        groups[group]["hosts"][name].update(mem)
    return data


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.yml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


@pytest.fixture
def plenty(monkeypatch):
    """This machine's memory as a whole: what other processes hold while
    the tests run is not the profile's."""
    total = limits._meminfo()["MemTotal"]
    monkeypatch.setattr(limits, "available_memory", lambda: total)
    return total


def _write(tmp_path, data, name="inv.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


# -- the inventory's memory ----------------------------------------------------
def test_hosts_state_memory_as_theirs_their_groups_or_alls():
    data = cluster({"memory": "96G"}, s0={"memory_gb": 192}, c1={"memory": "1.5 TiB"})
    data["all"]["children"]["clients"]["vars"] = {"memory_gb": 32}
    inv = inventory.parse(data, "mem")
    got = {h.name: (h.memory, h.memory_var) for h in inv.hosts}
    assert got == {"s0": (192 << 30, "memory_gb"), "s1": (96 << 30, "memory"), "s2": (96 << 30, "memory"),
                   "c0": (32 << 30, "memory_gb"), "c1": (int(1.5 * (1 << 40)), "memory")}
    assert all(h.memory is None for h in inventory.parse(cluster(), "none").hosts)


@pytest.mark.parametrize("spec,expected", [
    ({"memory_gb": -1}, "'memory_gb' must be a positive number of GiB, not -1"),
    ({"memory_gb": "lots"}, "'memory_gb' must be a positive number of GiB"),
    ({"memory": "12 parsecs"}, "'memory' must be bytes or a number with K, M, G or T"),
    ({"memory": "0G"}, "'memory' must be bytes"),
    ({"memory_gb": 8, "memory": "8G"}, "give one of 'memory_gb' and 'memory', not both"),
])
def test_a_bad_memory_variable_is_one_line(spec, expected):
    with pytest.raises(HarnessError) as e:
        inventory.parse(cluster(s1=spec), "bad.yml")
    msg = str(e.value)
    assert msg.startswith("bad.yml: host s1: ") and expected in msg and "\n" not in msg


def test_the_example_cluster_states_every_host_s_memory():
    assert all(h.memory for h in inventory.load(CLUSTER).hosts)


# -- the check before a run (harness run, reproduce) ---------------------------
def test_a_host_too_small_refuses_a_run_in_one_line(tmp_path):
    inv = inventory.parse(cluster(s1={"memory": "512M"}), "small.yml")
    cfg = RunConfig(system="dint", workload="kv", keys=1_000_000, inventory=str(CLUSTER)).validate()
    with pytest.raises(HarnessError) as e:
        limits.check_memory(cfg, inv, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert re.fullmatch(r"--keys 1,000,000: kv over 1,000,000 keys needs about [\d.]+ [MG]iB of memory on host s1 "
                        r"\(BPF maps [\d.]+ [MG]iB, .*\); the inventory gives s1 512\.0 MiB \(memory\), and the "
                        r"check keeps 10% of the need spare", msg), msg
    # a host that states nothing is not checked; one with enough passes
    limits.check_memory(cfg, inventory.parse(cluster(), "unstated"), tmp_path)
    limits.check_memory(cfg, inventory.parse(cluster({"memory_gb": 64}), "enough"), tmp_path)


def test_a_client_host_too_small_is_named_with_its_processes(tmp_path):
    inv = inventory.parse(cluster(c0={"memory": "256M"}), "small.yml")
    cfg = RunConfig(system="kernel", workload="echo", clients_per_host=8, inventory=str(CLUSTER)).validate()
    with pytest.raises(HarnessError, match=r"^--clients-per-host 8: 8 echo client processes a host needs about "
                                           r"[\d.]+ MiB of memory on host c0 \(client processes 512\.0 MiB, "
                                           r"client parameters [\d.]+ MiB\); the inventory gives c0 256\.0 MiB"):
        limits.check_memory(cfg, inv, tmp_path)


# -- the plan --------------------------------------------------------------------
def test_the_paper_plan_gives_every_host_its_largest_need_and_the_time(plenty, tmp_path):
    ef = experiments.load("paper")
    inv = inventory.load(CLUSTER)
    p = plan.make(ef, ef.points(), inv, str(CLUSTER), tmp_path / "run")
    assert [h["place"] for h in p["hosts"]] == ["controller", "s0", "s1", "s2", "c0", "c1"]
    assert p["fits"] and all(h["fits"] for h in p["hosts"])
    names = {q.name for q in ef.points()}
    for h in p["hosts"]:
        assert h["point"] in names
        assert h["need_bytes"] == max(q["memory"][h["place"]] for q in p["per_point"])
        assert h["margin_bytes"] == int(h["memory_bytes"] - h["need_bytes"] * (1 + limits.MARGIN))
        assert sum(h["parts"].values()) == h["need_bytes"]
    server = p["hosts"][1]
    assert server["memory_bytes"] == 192 << 30 and server["memory_source"] == "memory_gb"
    assert server["need_bytes"] > 20 << 30  # DINT's scale: tens of GiB a server
    assert p["hosts"][0]["memory_source"] == "MemAvailable" and p["hosts"][0]["memory_bytes"] == plenty
    # the time: reproduce's own estimate of every run of the profile
    reps = reproduce.schedule([reproduce.Rep(q, k, f"{q.name}/r{k}") for q in ef.points()
                               for k in range(1, q.repeat + 1)])
    assert p["expected_s"] == pytest.approx(reproduce.estimate_s(reproduce.series(reps, str(CLUSTER))), abs=0.1)
    assert p["points"] == len(ef.points()) and p["runs"] == 5 * len(ef.points())
    text = plan.render(p)
    for h in p["hosts"]:
        row = re.search(rf"^  {h['place']}\s+{h['role']}\s+{re.escape(limits.human(h['need_bytes']))}\s+"
                        rf"{re.escape(h['point'])}\s+{re.escape(limits.human(h['memory_bytes']))} \(", text, re.M)
        assert row, (h["place"], text)
    assert re.search(r"^expected duration: about [\d.]+ h ", text, re.M)
    assert plan.refusal(p, ef.points(), inv, str(CLUSTER)) is None


def test_the_local_testbed_sums_every_host_against_this_machine(plenty, small_file, tmp_path):
    ef = experiments.load(str(small_file))
    inv = inventory.parse(inventory.local_inventory(), "local")
    p = plan.make(ef, ef.points(), inv, None, tmp_path)
    machine = p["hosts"][0]
    assert machine["place"] == plan.MACHINE and machine["memory_bytes"] == plenty
    assert machine["need_bytes"] == max(sum(v for k, v in q["memory"].items() if k != plan.MACHINE)
                                        for q in p["per_point"])
    others = p["hosts"][1:]
    assert {h["place"] for h in others} == {"controller", "s0", "s1", "s2", "c0"}
    assert all(h["memory_bytes"] is None and h["fits"] is None for h in others)
    # a series is sized for all its levels, as reproduce checks it
    kv = [q for q in p["per_point"] if q["point"].startswith("kv__dint")]
    assert kv and all(q["series_span_s"] == 2 * (1.0 + 0.5 + 5) for q in kv)


def test_the_plan_as_json(plenty, small_file, tmp_path):
    ef = experiments.load(str(small_file))
    inv = inventory.load(CLUSTER)
    path = plan.write(plan.make(ef, ef.points(), inv, str(CLUSTER), tmp_path), tmp_path / "plan.json")
    p = json.loads(path.read_text())
    assert {"profile", "inventory", "testbed", "points", "runs", "series", "expected_s", "fits", "hosts",
            "per_point"} <= set(p)
    assert p["profile"] == "small" and p["testbed"] == "cluster" and p["runs"] == 2 * p["points"]
    assert {q["point"] for q in p["per_point"]} == {q.name for q in ef.points()}
    assert all(set(q["memory"]) == {"controller", "s0", "s1", "s2", "c0", "c1"} for q in p["per_point"])


def test_too_small_a_host_refuses_naming_the_point_host_and_figures(plenty, small_file, tmp_path):
    ef = experiments.load(str(small_file))
    inv = inventory.parse(cluster({"memory": "512M"}), "tiny.yml")
    p = plan.make(ef, ef.points(), inv, str(CLUSTER), tmp_path)
    assert not p["fits"]
    s0 = next(h for h in p["hosts"] if h["place"] == "s0")
    assert s0["fits"] is False and s0["point"].startswith("kv__dint") and s0["margin_bytes"] < 0
    assert "TOO SMALL for" in plan.render(p)
    line = plan.refusal(p, ef.points(), inv, str(CLUSTER))
    assert "\n" not in line
    assert re.fullmatch(rf"point {s0['point']}: --keys 1,000,000: kv over 1,000,000 keys needs about "
                        rf"{re.escape(limits.human(s0['need_bytes']))} of memory on host s0 \(.*\); the inventory "
                        r"gives s0 512\.0 MiB \(memory\), and the check keeps 10% of the need spare "
                        rf"\[{len(s0['points_over'])} of {p['points']} points too big for s0; too small too: s1, "
                        r"s2\]", line), line
    with pytest.raises(HarnessError, match="^point kv__dint"):
        plan.check(p, ef.points(), inv, str(CLUSTER))


# -- the command -----------------------------------------------------------------
def test_plan_command_prints_and_exits_0_when_everything_fits(small_file, tmp_path):
    inv = _write(tmp_path, cluster({"memory_gb": 64}))
    out = subprocess.run([*HARNESS, "reproduce", "--plan", "--profile", str(small_file), "--inventory", str(inv),
                          "--run-id", "plan-only"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for host in ("controller", "s0", "s1", "s2", "c0", "c1"):
        assert re.search(rf"^  {host}\s", out.stdout, re.M), out.stdout
    assert "64.0 GiB (memory_gb)" in out.stdout and "expected duration: about" in out.stdout
    assert not (ROOT / "results" / "plan-only").exists()


def test_plan_command_refuses_in_one_line(small_file, tmp_path):
    inv = _write(tmp_path, cluster(s2={"memory": "256M"}))
    out = subprocess.run([*HARNESS, "reproduce", "--plan", "--profile", str(small_file), "--inventory", str(inv)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in out.stderr, out.stderr
    assert re.match(r"error: point kv__dint__c\d+(/r\d)?: --keys 1,000,000: .* of memory on host s2 .*the inventory "
                    r"gives s2 256\.0 MiB", err[0]), err[0]


def test_a_run_writes_its_plan_into_its_directory(small_file, tmp_path, monkeypatch):
    """reproduce (not --plan): the plan before anything runs, as
    <run>/plan.json (the points' running stubbed out)."""
    inv = _write(tmp_path, cluster({"memory_gb": 64}))
    monkeypatch.setattr(reproduce, "run_points", lambda *a, **kw: {})
    monkeypatch.setattr(reproduce, "run_verifier", lambda *a, **kw: None)
    monkeypatch.setattr(reproduce, "finish", lambda *a, **kw: None)
    monkeypatch.setattr(limits, "available_memory", lambda: 64 << 30)
    run = reproduce.reproduce("r1", str(inv), str(small_file), results_dir=tmp_path / "results")
    p = json.loads((run / plan.PLAN_FILE).read_text())
    assert p["fits"] and p["profile"] == "small" and p["inventory"] == str(inv)
    assert [h["place"] for h in p["hosts"]] == ["controller", "s0", "s1", "s2", "c0", "c1"]
