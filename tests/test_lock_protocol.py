"""DINT's lock protocol (`--lock-protocol sequential`, workloads/lock.py)
against real servers: two clients contending on the same keys, each
transaction retried until it commits, nothing left locked and every commit
applied once; and the option's refusals. (Whole runs: test_option_runs.py.)"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from harness import ROOT, HarnessError
from harness.config import RunConfig
from harness.placement import Placement
from harness.protocol import Op, Status
from harness.txn import Executor
from workloads import lock

from conftest import client_sockets_of

KEYS = range(100, 110)  # conftest's initial data: table 0, version 1, on every server


def params_over_keys(seed: int, n: int, servers: int) -> list:
    """Sequential-protocol parameters over conftest's keys 100..109."""
    place = Placement(servers)
    out = []
    for reads, writes in lock.generate(n, len(KEYS), seed):
        reads, writes = tuple(k + KEYS[0] for k in reads), tuple(k + KEYS[0] for k in writes)
        locks = sorted([(Op.LOCK_SHARED, 0, k, bytes(8), 0, place.primary(k)) for k in reads] +
                       [(Op.LOCK_EXCL, 0, k, bytes(8), 0, place.primary(k)) for k in writes], key=lambda r: r[2])
        out.append((0, (reads, writes, tuple(locks))))
    return out


@pytest.mark.parametrize("served", ["kernel", "dint"], indirect=True)
def test_contending_clients_retry_each_transaction_until_it_commits(served):
    """Two clients, three transactions in flight each, every transaction
    over 5-10 of the same 10 keys: rejections happen, each is met by
    releasing and retrying the same transaction, none aborts; afterwards
    no lock is held and each key's version grew by exactly the commits
    made to it (its value the version, lock.value_of)."""
    inv = served.inv
    place = Placement(len(inv.servers))
    clients = []
    for cid in (31, 32):
        socks = client_sockets_of(inv)
        ex = Executor([s.fileno() for s in socks], cid, ["2pl-sequential"], [lock.sequential],
                      params_over_keys(cid, 200, len(inv.servers)), 3, 50_000_000, 5, max_value=40)
        clients.append((socks, ex))
    t0 = time.monotonic_ns()
    end = t0 + 500_000_000
    for _, ex in clients:
        ex.set_window(t0, end)
    while time.monotonic_ns() < end:  # the two take turns, a millisecond at a time
        for _, ex in clients:
            ex.run(min(end, time.monotonic_ns() + 1_000_000), True)
    # then, still in turns (one waiting holds its locks), until both are done
    deadline = time.monotonic_ns() + 10_000_000_000
    while any(ex.stats()["txn_active"] for _, ex in clients) and time.monotonic_ns() < deadline:
        for _, ex in clients:
            ex.run(time.monotonic_ns() + 1_000_000, False)
    retried = commits = 0
    for socks, ex in clients:
        out = ex.transactions()
        t = out["types"]["2pl-sequential"]
        assert out["active"] == 0 and out["release_failures"] == 0 and out["error_statuses"] == {}
        assert t["total"]["started"] == t["total"]["committed"] > 0 and sum(t["total"]["aborts"].values()) == 0
        retried += t["total"]["outcomes"].get("retried", 0)
        st = ex.stats()
        commits += st["ok_by_op"].get(int(Op.COMMIT_PRIMARY), 0)
        assert st["statuses"].get(int(Status.LOCKED), 0) + st["statuses"].get(int(Status.FULL), 0) > 0
        for s in socks:
            s.close()
    assert retried > 0, "the two clients contended"
    prober = 0xABCE
    bumps = 0
    for k in KEYS:
        server = inv.servers[place.primary(k)]
        m = served.request(Op.LOCK_EXCL, k, bytes(8), server=server, txn=prober)
        assert m.status == Status.OK, f"{served.system.name}: key {k} left locked ({Status(m.status).name})"
        assert served.request(Op.ABORT, k, bytes(8), server=server, txn=prober).status == Status.OK
        r = served.request(Op.READ, k, bytes(8), server=server)
        if r.ver > 1:
            assert r.value == lock.value_of(r.ver), k
        bumps += r.ver - 1
    assert bumps == commits > 0


@pytest.mark.parametrize("args,message", [
    (["--workload", "lock", "--cc", "occ", "--lock-protocol", "sequential"],
     "error: --lock-protocol sequential applies to --cc 2pl only, not occ"),
    (["--workload", "tatp", "--lock-protocol", "sequential"],
     "error: --lock-protocol sequential applies to --workload lock only"),
    (["--workload", "lock", "--lock-protocol", "serial"],
     "error: --lock-protocol must be one of parallel, sequential, not 'serial'"),
])
def test_bad_lock_protocol_is_one_clear_line(tmp_path, args, message):
    p = subprocess.run([sys.executable, "-m", "harness", "run", "--system", "kernel", *args, "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 1 and p.stderr.strip() == message
    assert not (tmp_path / "x").exists()


def test_the_protocol_is_recorded_and_defaults_to_parallel():
    assert RunConfig(system="dint", workload="lock").validate().lock_protocol == "parallel"
    with pytest.raises(HarnessError, match="applies to --workload lock only"):
        RunConfig(system="dint", workload="kv", lock_protocol="sequential").validate()
