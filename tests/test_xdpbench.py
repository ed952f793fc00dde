"""python -m harness xdpbench, small: 1000 keys, one round, a few calls.
Every operation's arrangement runs with its path checked (and a wrong
expected status is caught), the floor is subtracted, the output files
parse, and bad options are one line. The BPF tests need root, and fail in
CI rather than skip (conftest.need_root)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from harness import HarnessError, ROOT, xdpbench
from harness.__main__ import main
from harness.protocol import DEFAULT_PORT, Op, Status, pack
from harness.dintd import CACHE_SLOTS, DEFAULT_CACHE_FRACTION, MIN_BUCKETS

from conftest import need_root
import xdp_cache

KEYS = 1000


@pytest.fixture(scope="module")
def result():
    need_root()
    return xdpbench.measure([KEYS], list(xdpbench.OPS), rounds=1, calls=8, log=lambda *_: None)


def test_mirrors_agree_with_the_tests_checked_ones():
    """dint_hash and the bucket rule are the ones tests/xdp_cache.py uses
    (tests/test_constants.py checks them against the C); the fill layout
    is the one it has."""
    assert (xdp_cache.dint_hash, xdp_cache.bucket_of) == (xdpbench.dint_hash, xdpbench.bucket_of)
    assert (xdpbench.FILL_MAGIC, xdpbench.FILL_HEAD.format) == (xdp_cache.FILL_MAGIC, xdp_cache.FILL_HEAD.format)
    assert xdpbench.SLOT_ID_SIZE == xdp_cache.SLOT_ID.size


def test_the_cache_is_sized_as_a_run_with_that_many_records_would_be():
    assert xdpbench.buckets_for(1000) == DEFAULT_CACHE_FRACTION * 1000 / CACHE_SLOTS
    assert xdpbench.buckets_for(10) == MIN_BUCKETS  # the rule's floor


def test_frames_carry_the_checksums_scapy_computes():
    f = xdpbench.Frames(48)
    for msg in (pack(Op.READ, 42, b"benchval", seq=3, ack=3), pack(Op.LOG, 2**40 + 1, b"\xff" * 8, txn=9)):
        want = bytes(Ether(src=xdpbench.CLIENT_MAC, dst=xdpbench.SERVER_MAC) /
                     IP(src=xdpbench.CLIENT_IP, dst=xdpbench.SERVER_IP) / UDP(sport=40000, dport=DEFAULT_PORT) /
                     Raw(msg))
        assert f.frame(msg) == want


def test_every_operation_takes_its_path_and_the_floor_is_subtracted(result):
    (kc,) = result["key_counts"]
    assert kc["keys"] == KEYS and kc["buckets"] == xdpbench.buckets_for(KEYS)
    assert kc["cached"] + kc["evicted"] == KEYS
    assert kc["xdp_pass_counted"] == 0  # nothing went to the slow path
    assert set(kc["ops"]) == set(xdpbench.OPS)
    floor = kc["null"]["rounds_mean_ns"]
    assert len(floor) == 1 and floor[0] > 0
    for op, r in kc["ops"].items():
        assert len(r["calls_ns"]) == 1 and len(r["calls_ns"][0]) == 8, op
        assert r["rounds_net_ns"][0] == pytest.approx(r["rounds_mean_ns"][0] - floor[0], abs=0.02), op  # three figures, each rounded to 0.01
        assert r["net_ns"]["median"] == pytest.approx(r["raw_ns"]["median"] - kc["null"]["raw_ns"]["median"],
                                                      abs=0.2), op
    assert kc["ops"]["lock_excl_refused"]["path"][1] == "LOCK_EXCL:LOCKED"
    # a byte per record is the cache map's memory over the records
    assert kc["cache_bytes_per_record"] == pytest.approx(kc["map_memory_bytes"]["dint_cache"] / KEYS, abs=0.1)
    assert kc["cache_bytes_per_record"] >= kc["buckets"] * kc["bucket_bytes"] / KEYS


@pytest.mark.parametrize("op", ["read", "lock_shared_refused", "insert"])
def test_a_wrong_expected_status_is_caught(op):
    """A path other than the one expected stops the benchmark: here the
    plan expects another status of the timed step than the engine answers."""
    need_root()
    plan = xdpbench.PLANS[op]
    steps = tuple(s._replace(status=Status.NOT_OWNER) if s.timed else s for s in plan.steps)
    with pytest.raises(xdpbench.PathError, match=f"{op}: .* answered XDP_TX/.*, not XDP_TX/NOT_OWNER"):
        xdpbench.measure([KEYS], [op], rounds=1, calls=2, log=lambda *_: None,
                         plans={**xdpbench.PLANS, op: plan._replace(steps=steps)})


def test_operations_on_the_same_keys_round_after_round_keep_their_path():
    """Three rounds of the state-changing operations: locks released,
    versions followed, inserted keys' buckets restored (each round's insert
    creates again), the log ring drained (more calls than one chunk)."""
    need_root()
    ops = ["commit_backup", "validate", "commit_primary", "insert", "delete", "log", "abort"]
    res = xdpbench.measure([200], ops, rounds=3, calls=300, log=lambda *_: None)
    assert all(len(r["calls_ns"]) == 3 for r in res["key_counts"][0]["ops"].values())


def test_the_log_ring_is_drained():
    need_root()
    b = xdpbench.Bench(200, seed=1)
    try:
        head, tail = b.bpf[b"dint_log_head"], b.bpf[b"dint_log_tail"]
        plan = xdpbench.PLANS["log"]
        b.block("log", plan._replace(drain=False), [[1, 2, 3]])
        assert sum(head[head.Key(0)]) - sum(tail[tail.Key(0)]) == 3
        b.block("log", plan, [[4, 5]])
        assert list(head[head.Key(0)]) == list(tail[tail.Key(0)]) and sum(head[head.Key(0)]) == 5
    finally:
        b.close()


def test_the_command_writes_its_files(tmp_path, capsys):
    need_root()
    rc = main(["xdpbench", "--keys", "1k", "--rounds", "1", "--calls", "3", "--ops", "read,insert,echo",
               "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "read" in out and "B/record" in out and "1k keys store" in out  # both systems by default
    res = json.loads((tmp_path / "xdpbench.json").read_text())
    assert res["command"].startswith("python -m harness xdpbench --keys 1k")
    assert res["env"]["kernel"] and res["ops"] == ["read", "insert", "echo"]
    with open(tmp_path / "xdpbench.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["system"], r["op"]) for r in rows] == [(s, op) for s in ("xdp", "store") for op in ("read", "insert", "echo")]
    assert all(float(r["null_median_ns"]) > 0 for r in rows)
    assert (tmp_path / "xdpbench.png").stat().st_size > 0 and (tmp_path / "xdpbench.pdf").exists()
    section = xdpbench.report_section(tmp_path, link_from=tmp_path.parent)
    assert f"]({tmp_path.name}/xdpbench.png)" in section and "| read |" in section


@pytest.mark.parametrize("keys,says", [("abc", "not a key count"), ("0", "out of range"), ("1000,1k", "twice"),
                                       ("", "not a key count"), (str(1 << 30), "out of range")])
def test_bad_keys_are_one_line(keys, says, capsys):
    assert main(["xdpbench", "--keys", keys]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --keys") and says in err[0]


def test_bad_keys_exit_without_a_traceback():
    p = subprocess.run([sys.executable, "-m", "harness", "xdpbench", "--keys", "10x"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == ["error: --keys: '10x' is not a key count "
                                                                   "(e.g. 1000,100k,1M)"]


def test_unknown_ops_and_too_little_memory_are_one_line():
    with pytest.raises(HarnessError, match="--ops: unknown nope"):
        xdpbench.parse_ops("read,nope")
    with pytest.raises(HarnessError, match=r"--keys 10,000,000: its cache needs .* GiB and this host has 1.0 GiB"):
        xdpbench.check_memory([1000, 10_000_000], 576, available=1 << 30)
    xdpbench.check_memory([1000], 576, available=1 << 30)


# -- in make reproduce ------------------------------------------------------------
@pytest.mark.parametrize("value,expected", [
    ({"keys": []}, "keys must be a non-empty list"),
    ({"keys": [0]}, "keys must be a non-empty list"),
    ({"keys": [1000], "rounds": 0}, "rounds must be a whole number from 1"),
    ({"keys": [1000], "cals": 5}, "unknown key 'cals'"),
    ([1000], "must be a mapping"),
])
def test_a_bad_xdpbench_section_is_one_clear_line(value, expected):
    from harness import experiments
    raw = {"version": 1, "xdpbench": value,
           "experiments": [{"name": "e", "figure": "curve", "title": "t", "workload": "kv",
                            "sweep": {"concurrency": [1]}}]}
    with pytest.raises(HarnessError, match=f"exp.yml: xdpbench: {expected}"):
        experiments.parse(raw, "exp.yml")


def test_the_local_profile_measures_it_and_the_report_shows_it(root, tmp_path, monkeypatch):
    """experiments/local.yml asks for a small sweep; reproduce runs it once
    a run into <run>/xdpbench, and REPORT.md carries its table and figure
    (beside a run's points, fabricated: test_eval's)."""
    from harness import experiments, report, reproduce, results
    from harness import run as harness_run
    from test_eval import fake_execute, point_series
    from test_repeats import tiny
    assert experiments.load("local").xdpbench["keys"] == [1000, 100000]
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setattr(harness_run, "Series", point_series(fake_execute([])))
    reproduce.run_points(run, tiny(tmp_path).points(), progress=False, log=lambda m: None)
    logged = []
    reproduce.run_xdpbench(run, {"keys": [1000], "rounds": 1, "calls": 20}, log=logged.append)
    assert (run / "xdpbench" / "xdpbench.json").exists(), logged
    first = (run / "xdpbench" / "xdpbench.json").read_text()
    reproduce.run_xdpbench(run, {"keys": [1000], "rounds": 1, "calls": 20}, log=logged.append)
    assert (run / "xdpbench" / "xdpbench.json").read_text() == first  # once a run
    text = report.render(run, results.write_table(run))
    assert "## Where dint's time goes in XDP" in text and "](xdpbench/xdpbench.png)" in text


# -- the baselines' store, the same benchmark (userspace/storebench.c) -------

@pytest.fixture(scope="module")
def store_result():
    need_root()  # measure() probes the XDP program's bucket size
    return xdpbench.measure([KEYS], list(xdpbench.OPS), rounds=1, calls=8, log=lambda *_: None, systems=("store",))


def test_the_store_takes_every_operations_path(store_result):
    """Every reply checked as for XDP (a wrong path raises), the store's own
    floor subtracted, its bytes per record from its arrays."""
    (kc,) = store_result["key_counts"]
    assert kc["system"] == "store" and kc["keys"] == KEYS and kc["cached"] == KEYS and kc["evicted"] == 0
    assert set(kc["ops"]) == set(xdpbench.OPS)
    for op, r in kc["ops"].items():
        assert len(r["calls_ns"]) == 1 and len(r["calls_ns"][0]) == 8, op
        assert r["net_ns"]["median"] == pytest.approx(r["raw_ns"]["median"] - kc["null"]["raw_ns"]["median"], abs=0.2)
    assert kc["store_bytes"] == pytest.approx(kc["cache_bytes_per_record"] * KEYS, rel=0.01)
    # a wrong expected status is caught
    bad = {**xdpbench.PLANS, "read": xdpbench.Plan((xdpbench.Step(Op.READ, Status.LOCKED, True),))}
    with pytest.raises(xdpbench.PathError, match="answered XDP_TX/OK, not XDP_TX/LOCKED"):
        xdpbench.measure([KEYS], ["read"], rounds=1, calls=2, log=lambda *_: None, plans=bad, systems=("store",))


def test_both_systems_share_one_table_and_csv(result, store_result, tmp_path):
    both = {**result, "systems": ["xdp", "store"], "key_counts": result["key_counts"] + store_result["key_counts"]}
    text = xdpbench.table(both)
    assert "1k keys dint XDP" in text and "1k keys store" in text
    xdpbench.write(both, tmp_path)
    with open(tmp_path / "xdpbench.csv") as f:
        assert {r["system"] for r in csv.DictReader(f)} == {"xdp", "store"}


def test_an_unknown_system_is_one_line(capsys):
    assert main(["xdpbench", "--systems", "xdp,dpdk"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--systems: unknown dpdk" in err[0]
