"""Consecutive points served by one start of the servers (harness/run.py,
Series), on the test testbed: each point gets its own server counters,
checkpoint dumps and consistency verdict; the servers start and stop once;
a server that dies in the middle of a series costs its point only."""
from __future__ import annotations

import json
import os
import signal

import pytest

from harness import snapshot
from harness.config import RunConfig
from harness.processes import SERIES_SEED_STRIDE
from harness.run import counters_since, execute_series, series_key

SYSTEMS = ["dint", "kernel", "bypass"]


def configs(inv_path, system: str, levels, **kw) -> list[RunConfig]:
    base = {"workload": "smallbank", "cc": "2pl", "duration_s": 0.6, "warmup_s": 0.2, **kw}
    return [RunConfig(system=system, concurrency=c, inventory=str(inv_path), **base).validate() for c in levels]


def plays(d) -> list[str]:
    return sorted(p.name for p in (d / "ansible" / "artifacts").iterdir())


@pytest.mark.parametrize("system", SYSTEMS)
def test_a_series_serves_every_point_from_one_start(testbed, test_inventory_path, tmp_path, system):
    points = [(c, tmp_path / f"c{c.concurrency}") for c in configs(test_inventory_path, system, (2, 8))]
    sdir = tmp_path / "servers"
    outcomes = execute_series(points, sdir, show_progress=False, testbed=testbed)
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    # one start, one stop; each point's clients and the checkpoint after them
    # in one playbook run
    assert [p.split("-", 1)[1] for p in plays(sdir)] == ["servers-start", "servers-stop"]
    for i, ((_, out), s) in enumerate(zip(points, outcomes)):
        assert plays(out) == ["01-clients-run"]
        assert s["series"]["index"] == i + 1 and s["series"]["points"] == 2
        assert json.loads((out / "series.json").read_text()) == s["series"]
        c = s["consistency"]
        assert c["checked"] and c["violations"] == 0, c
        # the counters over this point only: every request the clients sent
        # reached a server, which answered it (the instrument check)
        assert s["instrument_check"]["match"], s["instrument_check"]
        assert s["server_cpu_us_per_op"] > 0, s["server_cost"]
        for h in ("s0", "s1", "s2"):
            assert (out / "logs" / f"store-{h}.snap").exists() and (out / "logs" / f"server-{h}.log").exists()
        timings = json.loads((out / "ansible" / "timings.json").read_text())
        assert set(timings) == {"01-clients-run"}
    # each point's counters are its own: together they make the servers' totals
    # up to the second checkpoint
    for h in ("s0", "s1", "s2"):
        lines = [json.loads(ln.split(" ", 1)[1]) for ln in (sdir / "logs" / f"server-{h}.log").read_text().splitlines()
                 if ln.startswith(("stats ", "checkpoint "))]
        kinds = [ln.get("ok") is not None and "write_ms" in ln for ln in lines]
        at_second = lines[[i for i, k in enumerate(kinds) if k][1] - 1]
        assert outcomes[0]["servers"][h]["rx"] + outcomes[1]["servers"][h]["rx"] == at_second["rx"]
        assert outcomes[1]["servers"][h]["rx"] < at_second["rx"]
    # the second point drew other parameters, and its dump is the state both left
    seeds = [json.loads((out / "clients" / "client-1.spec.json").read_text())["load"]["seed"] for _, out in points]
    assert seeds[1] == seeds[0] + SERIES_SEED_STRIDE
    first, second = (snapshot.read_snapshot(out / "logs" / "store-s0.snap")[1] for _, out in points)
    assert sum(r.ver for r in second) > sum(r.ver for r in first)


def test_a_server_that_dies_in_a_series_costs_its_point_only(testbed, test_inventory_path, tmp_path):
    points = [(c, tmp_path / f"c{c.concurrency}") for c in configs(test_inventory_path, "kernel", (2, 4, 8),
                                                                  duration_s=1.0)]
    sdir = tmp_path / "servers"

    def on_point(i, outcome):
        if i == 0:
            pid = int((sdir / "ansible" / "pids" / "s1-server.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
    outcomes = execute_series(points, sdir, show_progress=False, testbed=testbed, on_point=on_point)
    assert isinstance(outcomes[0], dict) and isinstance(outcomes[2], dict), outcomes
    assert "died" in str(outcomes[1]), outcomes[1]
    failed = json.loads((points[1][1] / "summary.json").read_text())
    assert failed["status"] == "failed" and failed["phase"] == "a server died"
    # the third point on servers of its own, from the initial data, as a run
    assert "series" not in outcomes[2]
    assert [p.split("-", 1)[1] for p in plays(points[2][1])] == ["servers-start", "clients-run", "servers-stop"]
    assert outcomes[2]["consistency"]["violations"] == 0 and outcomes[2]["instrument_check"]["match"]


def test_a_series_key_ignores_the_load_only():
    a, b = (RunConfig(system="kernel", workload="kv", concurrency=c) for c in (1, 64))
    assert series_key(a) == series_key(b) == series_key(RunConfig(system="kernel", workload="kv", rate=5e4))
    for other in ({"system": "dint"}, {"keys": 10}, {"faults": "reply-loss=1%"}, {"neighbour": True},
                  {"duration_s": 3.0}, {"napi": "inline"}):
        assert series_key(RunConfig(**{"system": "kernel", "workload": "kv", **other})) != series_key(a)
    with pytest.raises(Exception, match="differ in concurrency, rate only"):
        execute_series([(a, "x"), (RunConfig(system="dint", workload="kv"), "y")], "s")


def test_counters_over_a_span():
    base = {"rx": 10, "tx": 9, "t_ns": 100, "mono_ns": 5, "clean": True, "cpu_ns": 50}
    end = {"rx": 25, "tx": 24, "t_ns": 900, "mono_ns": 80, "clean": True, "cpu_ns": 70}
    assert counters_since(end, base) == {"rx": 15, "tx": 15, "t_ns": 900, "mono_ns": 80, "clean": True, "cpu_ns": 20}
    assert counters_since(end, None) == end and counters_since(None, base) is None
