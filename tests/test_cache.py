"""dint's cache end to end on the testbed: with every key fitting, nothing
reaches the slow path; with slots for a tenth of the records, every request
is still answered correctly (misses pass up, the slow path fills the cache,
evicts and writes back), and the dump at stop holds every change."""
from __future__ import annotations

import pytest

from harness import snapshot
from harness.config import RunConfig
from harness.protocol import Op, Status
from harness.schema import Schema
from harness.systems import make_system

from conftest import Served

N = 400


def value(k: int, gen: int) -> bytes:
    return f"{k}:{gen}".encode().ljust(40, b".")


DATA = [snapshot.Record(table=1, key=k, ver=1, value=value(k, 1)) for k in range(N)]


def start(tmp_path, inv_path, inv, **cache):
    snapshot.write_snapshot(tmp_path / "data.snap", Schema(), DATA)
    cfg = RunConfig(system="dint", inventory=str(inv_path), **cache)
    return make_system(inv, cfg, tmp_path / "logs", Schema(), tmp_path / "data.snap")


def read_all(s: Served, gen_of) -> None:
    for k in range(N):
        r = s.request(Op.READ, k, bytes(40), table=1)
        assert r.status == Status.OK and r.value == value(k, gen_of(k)), (k, r)


@pytest.mark.parametrize("cache", [{}, {"cache_bloom": False}], ids=["bloom", "no-bloom"])
def test_every_key_fits_nearly_nothing_passes_up(testbed, test_inventory_path, test_inventory, tmp_path, cache):
    """One 4-slot bucket per record: a bucket that hashing gives more than
    four keys keeps the rest in user space (about 0.4% of the keys)."""
    system = start(tmp_path, test_inventory_path, test_inventory, **cache)
    with system:
        s = Served(system, test_inventory)
        read_all(s, lambda k: 1)
        # an absent key: the bloom filter answers it in the kernel; without
        # it, the slow path does
        assert s.request(Op.READ, N + 5, bytes(40), table=1).status == Status.NOT_FOUND
    st = system.stats[test_inventory.servers[0].name]
    overflow = st["slow_loaded"] - st["slow_cached"]
    assert st["slow_loaded"] == N and overflow <= N // 50, st
    # each overflowed key passes up once, then stays cached (nothing else
    # is read, so the fills evict nothing that is read again)
    assert st["pass"] <= 2 * overflow + (0 if cache.get("cache_bloom", True) else 1), st


@pytest.mark.parametrize("cache", [{"cache_fraction": 0.1},
                                   {"cache_fraction": 0.1, "cache_write_through": True}],
                         ids=["write-back", "write-through"])
def test_a_tenth_fits_and_every_miss_is_answered(testbed, test_inventory_path, test_inventory, tmp_path, cache):
    system = start(tmp_path, test_inventory_path, test_inventory, **cache)
    host = test_inventory.servers[0]
    changed = set(range(0, N, 4))
    with system:
        s = Served(system, test_inventory)
        read_all(s, lambda k: 1)
        for k in sorted(changed):
            txn = 1000 + k
            lock = s.request(Op.LOCK_EXCL, k, bytes(40), table=1, txn=txn)
            assert lock.status == Status.OK and lock.ver == 1
            done = s.request(Op.COMMIT_PRIMARY, k, value(k, 2), table=1, txn=txn, ver=2)
            assert done.status == Status.OK, (k, done)
        read_all(s, lambda k: 2 if k in changed else 1)
        assert s.request(Op.READ, N + 5, bytes(40), table=1).status == Status.NOT_FOUND
        # a new key, created through whatever path its bucket allows
        assert s.request(Op.INSERT, N + 7, value(N + 7, 1), table=1, txn=5, ver=1).status == Status.OK
    st = system.stats[host.name]
    # most requests missed: they went up, were filled in, evicted others,
    # and the changed records evicted were written back
    assert st["pass"] > N and st["slow_fill"] > N and st["slow_evict"] > N // 2, st
    assert st["slow_writeback"] > 0 and st["slow_drop"] == 0 and st["slow_full"] == 0, st
    assert st["rx"] == st["tx"] + st["drop"], st
    if cache.get("cache_write_through"):
        # passed up by XDP, or produced by the slow path's own runs of missed writes
        assert st["write_through"] > 0 and st["slow_wt"] >= st["write_through"], st
    dump = {(r.table, r.key): r for r in system.dump(host)}
    for k in range(N):
        r = dump[(1, k)]
        want = 2 if k in changed else 1
        assert r.live and r.ver == want and r.value == value(k, want) and r.owner == 0, r
    assert dump[(1, N + 7)].live and (1, N + 5) not in {k for k, r in dump.items() if r.live}
