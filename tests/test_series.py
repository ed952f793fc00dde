"""Consecutive points served by one start of the servers (harness/run.py,
Series), on the test testbed: each point gets its own server counters,
checkpoint dumps and consistency verdict; the servers start and stop once;
a server that dies in the middle of a series costs its point only."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

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
    # one start and one stop of the servers and of the clients; between
    # the two points no playbook run (the clients take the checkpoint in
    # band); the last point's files are the servers' at stop
    assert [p.split("-", 1)[1] for p in plays(sdir)] == ["servers-start", "clients-run", "servers-stop"]
    for h in ("s0", "s1", "s2"):
        assert (sdir / "logs" / f"store-{h}.snap.1").exists() and not (sdir / "logs" / f"store-{h}.snap.2").exists()
        epochs = [json.loads(ln.split(" ", 1)[1])["epoch"]
                  for ln in (sdir / "logs" / f"server-{h}.log").read_text().splitlines() if ln.startswith("checkpoint ")]
        assert epochs == [1]
    for i, ((_, out), s) in enumerate(zip(points, outcomes)):
        assert not (out / "ansible" / "artifacts").exists()
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
        assert [k.split("-", 1)[1] for k in timings] == ([] if i == 0 else ["servers-stop"])
        # the clients' log, one process through both points
        assert (out / "logs" / "client-1.log").read_text().count('"phase": "done"') == 2
    # each point's counters are its own: together they make the servers'
    # totals at stop
    for h in ("s0", "s1", "s2"):
        lines = [json.loads(ln.split(" ", 1)[1]) for ln in (sdir / "logs" / f"server-{h}.log").read_text().splitlines()
                 if ln.startswith("stats ")]
        assert outcomes[0]["servers"][h]["rx"] + outcomes[1]["servers"][h]["rx"] == lines[-1]["rx"]
        assert 0 < outcomes[1]["servers"][h]["rx"] < lines[-1]["rx"]
    # the second point drew other parameters, and its dump is the state both left
    seeds = [json.loads((out / "clients" / "client-1.spec.json").read_text())["load"]["seed"] for _, out in points]
    assert seeds[1] == seeds[0] + SERIES_SEED_STRIDE
    first, second = (snapshot.read_snapshot(out / "logs" / "store-s0.snap")[1] for _, out in points)
    assert sum(r.ver for r in second) > sum(r.ver for r in first)


def test_a_series_may_change_the_kv_mix_and_the_skew(testbed, test_inventory_path, tmp_path):
    """Reads only, then reads and writes on skewed keys, on one start of
    dint's servers: each point with its own counters, the second on the
    state the first left."""
    base = {"system": "dint", "workload": "kv", "keys": 1000, "concurrency": 8, "duration_s": 0.6,
            "warmup_s": 0.2, "inventory": str(test_inventory_path)}
    cfgs = [RunConfig(**base).validate(), RunConfig(**base, kv_mix="contention", key_dist="zipf:0.99").validate()]
    points = [(c, tmp_path / f"p{i}") for i, c in enumerate(cfgs)]
    outcomes = execute_series(points, tmp_path / "servers", show_progress=False, testbed=testbed)
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert [p.split("-", 1)[1] for p in plays(tmp_path / "servers")] == ["servers-start", "clients-run",
                                                                          "servers-stop"]
    assert [s["config"]["kv_mix"] for s in outcomes] == ["parallel", "contention"]
    for s in outcomes:
        assert s["instrument_check"]["match"], s["instrument_check"]
    # the dump after the reads is the state the writes started from
    first, second = (snapshot.read_snapshot(out / "logs" / "store-s0.snap")[1] for _, out in points)
    assert sum(r.ver for r in second) > sum(r.ver for r in first)


def test_a_server_that_dies_in_a_series_costs_its_point_only(testbed, test_inventory_path, tmp_path):
    points = [(c, tmp_path / f"c{c.concurrency}") for c in configs(test_inventory_path, "kernel", (2, 4, 8),
                                                                  duration_s=1.0)]
    sdir = tmp_path / "servers"
    log = sdir / "logs" / "client-1.log"

    def kill_in_second_point():
        # once the clients are into the second point, s1 dies
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if log.exists() and '"point": 1' in log.read_text():
                pid = int((sdir / "ansible" / "pids" / "s1-server.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.02)
    killer = threading.Thread(target=kill_in_second_point)
    killer.start()
    try:
        outcomes = execute_series(points, sdir, show_progress=False, testbed=testbed)
    finally:
        killer.join()
    assert isinstance(outcomes[0], dict) and isinstance(outcomes[2], dict), outcomes
    assert "died" in str(outcomes[1]), outcomes[1]
    failed = json.loads((points[1][1] / "summary.json").read_text())
    assert failed["status"] == "failed" and failed["phase"] == "a server died"
    # the third point on servers of its own, from the initial data, as a run
    assert "series" not in outcomes[2]
    assert [p.split("-", 1)[1] for p in plays(points[2][1])] == ["servers-start", "clients-run", "servers-stop"]
    assert outcomes[2]["consistency"]["violations"] == 0 and outcomes[2]["instrument_check"]["match"]


def test_a_violation_in_a_series_costs_the_points_after_it_their_servers(testbed, test_inventory_path, tmp_path,
                                                                         monkeypatch):
    """The checks of a series' points run two at a time in processes of
    their own; the points are still concluded in order: the first point
    whose check fails ends the series, and the next is measured on servers
    of its own (where it fails too, with a check that always fails)."""
    import dataclasses
    import importlib
    mod = importlib.import_module("workloads.smallbank")
    monkeypatch.setattr(mod, "WORKLOAD", dataclasses.replace(mod.WORKLOAD, check=lambda state, committed, spec: [
        {"name": "made_up_rule", "ok": False, "detail": {"rows": len(state), "pid": os.getpid()}}]))
    points = [(c, tmp_path / f"c{c.concurrency}") for c in configs(test_inventory_path, "kernel", (2, 4),
                                                                   scale=100, duration_s=0.3, warmup_s=0.1)]
    outcomes = execute_series(points, tmp_path / "servers", show_progress=False, testbed=testbed)
    assert all("consistency check failed: made_up_rule" in str(o) for o in outcomes), outcomes
    first, second = (json.loads((out / "summary.json").read_text()) for _, out in points)
    assert first["series"]["index"] == 1 and "series" not in second  # the second: a run of its own
    # the first point's check ran in a process of its own; the second's, served alone, in this one
    assert first["consistency"]["details"]["made_up_rule"]["pid"] != os.getpid()
    assert second["consistency"]["details"]["made_up_rule"]["pid"] == os.getpid()
    assert [p.split("-", 1)[1] for p in plays(points[1][1])] == ["servers-start", "clients-run", "servers-stop"]


def test_a_series_key_ignores_the_load_only():
    a, b = (RunConfig(system="kernel", workload="kv", concurrency=c) for c in (1, 64))
    assert series_key(a) == series_key(b) == series_key(RunConfig(system="kernel", workload="kv", rate=5e4))
    # the skew of the keys the clients draw is the load's too (the same data is loaded)
    assert series_key(RunConfig(system="kernel", workload="kv", key_dist="zipf:0.99")) == series_key(a)
    # ... and so is the KV store's mix of reads and writes
    assert series_key(RunConfig(system="kernel", workload="kv", kv_mix="contention")) == series_key(a)
    # nothing runs on the hosts between two points: the NAPI placement too
    # is set once per start of the servers
    for other in ({"system": "dint"}, {"keys": 10}, {"faults": "reply-loss=1%"}, {"neighbour": True},
                  {"duration_s": 3.0}, {"napi": "inline"}):
        assert series_key(RunConfig(**{"system": "kernel", "workload": "kv", **other})) != series_key(a)
    # a point with faults or a neighbour is served alone
    for alone in ({"faults": "reply-loss=1%"}, {"neighbour": True}):
        one, other = (RunConfig(system="kernel", workload="kv", concurrency=c, **alone) for c in (1, 64))
        assert series_key(one) != series_key(other)
    with pytest.raises(Exception, match="differ in concurrency, rate, key_dist, kv_mix only"):
        execute_series([(a, "x"), (RunConfig(system="dint", workload="kv"), "y")], "s")


def test_the_servers_stop_meanwhile_and_its_error_is_raised_once():
    from harness.run import Stopping
    order = []
    gate = threading.Event()

    def stop():
        gate.wait(5)
        order.append("stopped")
        raise RuntimeError("the stop failed")
    stopping = Stopping(stop, meanwhile=True)
    order.append("summaries")  # drawn while it stops
    gate.set()
    with pytest.raises(RuntimeError, match="the stop failed"):
        stopping.wait()
    stopping.wait()  # raised once
    assert order == ["summaries", "stopped"]
    # not meanwhile (a cluster, a point served alone): at once, its error with it
    with pytest.raises(RuntimeError, match="the stop failed"):
        Stopping(stop, meanwhile=False)


def test_counters_over_a_span():
    base = {"rx": 10, "tx": 9, "t_ns": 100, "mono_ns": 5, "clean": True, "cpu_ns": 50}
    end = {"rx": 25, "tx": 24, "t_ns": 900, "mono_ns": 80, "clean": True, "cpu_ns": 70}
    assert counters_since(end, base) == {"rx": 15, "tx": 15, "t_ns": 900, "mono_ns": 80, "clean": True, "cpu_ns": 20}
    assert counters_since(end, None) == end and counters_since(None, base) is None


def test_a_fault_of_the_harness_fails_the_rest_instead_of_starting_again(monkeypatch, test_inventory_path):
    """A series whose run raises before it concluded any point (a bug, not
    a measurement): its points fail with that error, and no new servers
    are started for them, again and again."""
    from harness import run
    starts = []

    def broken(self, concluded):
        starts.append(self.sdir)
        raise KeyError(0)
    monkeypatch.setattr(run.Series, "run", broken)
    monkeypatch.setattr(run.Series, "close", lambda self: None)
    points = [(c, f"p{c.concurrency}") for c in configs(test_inventory_path, "kernel", (2, 8))]
    outcomes = execute_series(points, "servers", show_progress=False)
    assert [type(o) for o in outcomes] == [KeyError, KeyError] and len(starts) == 1


def test_a_start_right_after_a_clean_stop_of_the_same_reproduce_does_not_check_the_hosts_again(
        testbed, test_inventory_path, test_inventory, tmp_path):
    """Within a reproduce (deploy.own_stops_trusted), the stop before a
    start was the check of the hosts, when it left nothing and every server
    stopped on SIGTERM; after a failed series every host is checked again."""
    from harness.deploy import ResidueError, distrust_own_stops, own_stops_trusted
    cfg = configs(test_inventory_path, "kernel", (2,))[0]
    ns = test_inventory.servers[1].netns
    with own_stops_trusted(test_inventory):
        for name, checked in (("a", True), ("b", False)):
            out = tmp_path / name
            assert isinstance(execute_series([(cfg, out)], out, show_progress=False, testbed=testbed)[0], dict)
            described = json.loads((out / "system.json").read_text())
            assert described["hosts_checked_at_start"] is checked, described
            assert ("hosts_not_checked_because" in described) is not checked
        # a series failed: the next start checks, and refuses beside a
        # process it did not start
        distrust_own_stops(test_inventory)
        stranger = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "60"])
        try:
            time.sleep(0.2)
            with pytest.raises(ResidueError, match=f"pid {stranger.pid}"):
                execute_series([(cfg, tmp_path / "c")], tmp_path / "c", show_progress=False, testbed=testbed)
        finally:
            stranger.kill()
            stranger.wait()
