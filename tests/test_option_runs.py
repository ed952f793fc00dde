"""Whole runs (`python -m harness run`, on the kernel system) with the
key distributions (--key-dist) and both lock protocols (--lock-protocol):
each ends with a clean consistency verdict where the workload has a check,
an instrument check that matches, and lock operations per second reported
for the lock runs. (Kept apart from the suites that hold a system up for a
module: these start their own.)"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import ROOT
from harness.protocol import Op


def harness(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("protocol", ["sequential", "parallel"])
def test_a_lock_run_reports_lock_operations_and_passes_its_check(testbed, test_inventory_path, tmp_path, protocol):
    out = tmp_path / "run"
    p = harness("run", "--system", "kernel", "--workload", "lock", "--lock-protocol", protocol, "--keys", "40",
                "--concurrency", "8", "--duration", "0.8", "--warmup", "0.2",
                "--inventory", str(test_inventory_path), "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "lock ops" in p.stdout and ("sequential" in p.stdout) == (protocol == "sequential")
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["lock_protocol"] == protocol
    c = s["consistency"]
    assert c["checked"] and c["violations"] == 0, c
    t = s["transactions"]
    total = t["total"]
    assert t["unfinished"] == 0 and t["release_failures"] == 0 and t["error_statuses"] == {}
    assert s["errors"] == 0 and s["instrument_check"]["match"], s["instrument_check"]
    # lock operations: the LOCK requests answered in the window, per second
    locks = sum(json.loads(f.read_text())["stats"]["answered_by_op"].get(str(int(op)), 0)
                for f in (out / "clients").glob("client-*.json") if not f.name.endswith(".spec.json")
                for op in (Op.LOCK_SHARED, Op.LOCK_EXCL))
    assert t["lock_ops"] == locks > 0
    assert t["lock_ops_per_s"] == pytest.approx(locks / s["duration_s"], rel=1e-3)
    if protocol == "sequential":
        assert "2pl-sequential" in t and total["aborted"] == 0 and total["committed"] > 50
        assert total["outcomes"].get("retried", 0) > 0, "40 keys: transactions meet rejections"
        # one lock a round trip: at least 5 lock operations a transaction
        assert t["lock_ops"] >= 5 * total["committed"]
    else:
        assert total["aborted"] > 0 and total["aborts"]["lock"] == total["aborted"]


# one tiny run per distribution: the lock check (value is version, rows
# present, no lock held) and the kv contention mix's commits must still hold
KEY_DIST_RUNS = {
    "lock-nurand": ["--workload", "lock", "--keys", "200", "--key-dist", "nurand:255"],
    "lock-zipf-sequential": ["--workload", "lock", "--keys", "200", "--key-dist", "zipf:0.9",
                             "--lock-protocol", "sequential"],
    "kv-contention-zipf": ["--workload", "kv", "--kv-mix", "contention", "--keys", "200", "--key-dist", "zipf:0.99"],
    "kv-nurand": ["--workload", "kv", "--keys", "5000", "--key-dist", "nurand:1048575"],
}


@pytest.mark.parametrize("run", list(KEY_DIST_RUNS))
def test_a_run_with_a_key_distribution_passes_its_checks(testbed, test_inventory_path, tmp_path, run):
    args = KEY_DIST_RUNS[run]
    spec = args[args.index("--key-dist") + 1]
    out = tmp_path / "run"
    p = harness("run", "--system", "kernel", *args, "--concurrency", "8", "--duration", "0.8", "--warmup", "0.2",
                "--inventory", str(test_inventory_path), "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert f"keys={spec}" in p.stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["key_dist"] == spec
    assert s["errors"] == 0 and s["instrument_check"]["match"], s["instrument_check"]
    if "transactions" in s:
        t = s["transactions"]
        assert t["unfinished"] == 0 and t["release_failures"] == 0 and t["error_statuses"] == {}
        assert t["total"]["committed"] > 0
    c = s.get("consistency")
    if run.startswith("lock"):
        assert c["checked"] and c["violations"] == 0, c
