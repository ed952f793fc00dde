"""Lock microbenchmark (DINT's lock server): each transaction locks 5-10
distinct keys drawn from `keys` by the run's key distribution (--key-dist,
workloads/keydist.py; uniform by default, as DINT draws them), each one
written with probability 0.2, and commits (a new value, version + 1, on the
key's primary, harness/placement.py). Two concurrency controls over the
same parameters:

- 2pl: no-wait two-phase locking. LOCK_SHARED the read keys and LOCK_EXCL
  the written ones, all in one parallel batch; then COMMIT_PRIMARY every
  written key (the locked version + 1) and ABORT (release) every read key.
  Any rejection aborts the transaction and releases what it holds (the
  executor, harness/txn.py); the next transaction has other parameters.
- occ: FaSST-style optimistic. READ the read set (value, version) and
  LOCK_EXCL the write set in parallel; VALIDATE the read set against the
  versions read; COMMIT_PRIMARY the write set (version + 1). A rejection
  aborts as under 2pl.

`--lock-protocol sequential` (2pl only) takes the locks as DINT's lock
client does: one per round trip, in ascending key order; on a rejection it
releases what it holds, one per round trip in the order taken, and retries
the same transaction at once (DINT's client has no backoff) until it
commits; then it commits the written keys and releases the read ones one
per round trip in descending key order (DINT's client releases in reverse
order). A transaction is counted once, committed, its latency covering
its retries; the outcome `retried` counts those that met a rejection,
and the conflict statuses in the summary count the rejections. DINT's
scale is 24M locks; here it is --keys.
Deviation: nothing is logged or replicated (the microbenchmark measures the
lock path only), and a record's value is its version, so a store dump can be
checked for lost or doubled commits."""
from __future__ import annotations

from itertools import repeat

import numpy as np

from harness.placement import Placement
from harness.protocol import Op, Status
from harness.schema import Schema
from harness.snapshot import Record
from harness.txn import Batch

from . import keydist, seeds
from .contract import CC_MODES, DataSpec, LoadSpec, Transactions, TxnType, Workload

SCHEMA = Schema((8,))
TABLE = 0
PLACEHOLDER = bytes(8)
KEYS_PER_TXN = (5, 10)
WRITE_PROBABILITY = 0.2


def value_of(ver: int) -> bytes:
    """A record's value: its version, so any copy can be checked."""
    return ver.to_bytes(8, "big")


def initial(data: DataSpec) -> list[Record]:
    return [Record(TABLE, k, 1, value_of(1)) for k in range(data.keys)]


def rows(data: DataSpec) -> dict[int, int]:
    return {TABLE: data.keys}


def _drawn(n: int, keys: int, seed: int, dist: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n transactions, a row each: (keys, written, used). Transaction i's
    keys are keys[i][used[i]], 5-10 distinct ones drawn from the key
    distribution dist, each written with probability 0.2 (written[i]):
    its read keys first, then its written ones, each in the order drawn
    (the rest of the row unused, none of it written)."""
    lo, hi = KEYS_PER_TXN
    rng = seeds.generator(seed, "lock")
    sizes = rng.integers(lo, hi, n, endpoint=True)
    chosen = keydist.parse(dist).distinct_many(n, hi, keys, rng)
    used = np.arange(hi) < sizes[:, None]
    written = (rng.random((n, hi)) < WRITE_PROBABILITY) & used
    # each row read, written, unused: a stable sort keeps the order drawn
    order = np.argsort(np.where(used, written, 2), axis=1, kind="stable")
    return np.take_along_axis(chosen, order, axis=1), np.take_along_axis(written, order, axis=1), used


def _bounds(written: np.ndarray, used: np.ndarray) -> tuple[list[int], list[int], list[int]]:
    """Where each transaction of _drawn's starts, where its written keys
    start and where it ends among all transactions' used keys."""
    ends = np.cumsum(used.sum(axis=1))
    return (ends - used.sum(axis=1)).tolist(), (ends - written.sum(axis=1)).tolist(), ends.tolist()


def generate(n: int, keys: int, seed: int = 1,
             dist: str = keydist.DEFAULT) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """n transactions: (read keys, written keys), 5-10 distinct keys drawn
    from the key distribution dist, each written with probability 0.2."""
    chosen, written, used = _drawn(n, keys, seed, dist)
    flat = tuple(chosen[used].tolist())  # a tuple's slices are tuples
    return [(flat[a:m], flat[m:e]) for a, m, e in zip(*_bounds(written, used))]


def _commits(first, replies, nr):
    """COMMIT_PRIMARY of each written key at the version it was locked at + 1."""
    commits = []
    for req, rep in zip(first[nr:], replies[nr:]):
        ver = rep[1] + 1
        commits.append((Op.COMMIT_PRIMARY, TABLE, req[2], value_of(ver), ver, req[5]))
    return commits


def two_phase_locking(reads, writes, first):
    replies = yield first
    nr = len(reads)
    yield _commits(first, replies, nr) + [(Op.ABORT, TABLE, req[2], PLACEHOLDER, 0, req[5])
                                                  for req in first[:nr]]


# A lock's answer that is a rejection, handed to the sequential protocol
# (LOCKED; FULL: no room for another shared holder) instead of aborting it.
Rejectable = Batch.kind(tolerate=(Status.LOCKED, Status.FULL))


def sequential(reads, writes, locks):
    """DINT's lock client (module docstring): locks is the transaction's
    lock requests in ascending key order."""
    rejected = False
    while True:
        held = []
        for req in locks:
            (reply,) = yield Rejectable((req,))
            if reply[0] != Status.OK:
                break
            held.append((req, reply))
        else:
            break
        rejected = True
        for req, _ in held:
            yield [(Op.ABORT, TABLE, req[2], PLACEHOLDER, 0, req[5])]
    for req, reply in reversed(held):
        if req[0] == Op.LOCK_EXCL:
            ver = reply[1] + 1
            yield [(Op.COMMIT_PRIMARY, TABLE, req[2], value_of(ver), ver, req[5])]
        else:
            yield [(Op.ABORT, TABLE, req[2], PLACEHOLDER, 0, req[5])]
    return "retried" if rejected else None


def occ(reads, writes, first):
    replies = yield first
    nr = len(reads)
    if reads:
        yield [(Op.VALIDATE, TABLE, req[2], PLACEHOLDER, rep[1], req[5]) for req, rep in zip(first, replies)]
    if writes:
        yield _commits(first, replies, nr)


def check(state: dict, committed: dict, spec) -> list[dict]:
    """Every row's value is its version: no commit lost or applied twice."""
    bad = [{"key": k, "ver": r.ver, "value": int.from_bytes(r.value, "big")}
           for (_, k), r in state.items() if r.value != value_of(r.ver)]
    missing = spec.data.keys - len(state)
    return [{"name": "value_is_version", "ok": not bad, "detail": {"differing": len(bad), "examples": bad[:5]}},
            {"name": "rows_present", "ok": not missing, "detail": {"missing": missing}}]


def draw(load: LoadSpec, types) -> list:
    """[(type, args)] for the executor (one type: the run's concurrency
    control); the first batch of each transaction is built here, once:
    its reads then its writes, or (the sequential protocol) its locks in
    ascending key order."""
    chosen, written, used = _drawn(load.requests, load.data.keys, load.seed, load.key_dist)
    flat = tuple(chosen[used].tolist())  # a tuple's slices are tuples
    locked, exclusive = flat, written[used]
    if load.lock_protocol == "sequential":
        # the unused places sort last: the used ones stay the first of each row
        order = np.argsort(np.where(used, chosen, np.iinfo(np.int64).max), axis=1)
        locked = np.take_along_axis(chosen, order, axis=1)[used].tolist()
        exclusive = np.take_along_axis(written, order, axis=1)[used]
    # ops as plain ints: the collector stops tracking a tuple of them (not of Op members)
    ops = np.where(exclusive, Op.LOCK_EXCL, Op.LOCK_SHARED if load.cc == "2pl" else Op.READ).tolist()
    dests = map(Placement(load.servers).primary, locked)
    reqs = tuple(zip(ops, repeat(TABLE), locked, repeat(PLACEHOLDER), repeat(0), dests))
    bounds = _bounds(written, used)
    del chosen, written, used, locked, exclusive, ops  # not held while the parameters are built
    return [(0, (flat[a:m], flat[m:e], reqs[a:e])) for a, m, e in zip(*bounds)]


TYPES_BY_CC = {"2pl": (TxnType("2pl", two_phase_locking, 100),), "occ": (TxnType("occ", occ, 100),)}
# DINT's lock client: 2PL only (its FaSST client is the occ control)
PROTOCOLS = {"sequential": {"2pl": (TxnType("2pl-sequential", sequential, 100),)}}

WORKLOAD = Workload(
    name="lock", schema=SCHEMA, initial=initial, rows=rows,
    transactions=Transactions(types=TYPES_BY_CC["2pl"], types_by_cc=TYPES_BY_CC, protocols=PROTOCOLS, params=draw,
                              # sequential: a round trip per lock, then one per commit or
                              # release, and as many again per retry (occ: three)
                              rounds=2 * KEYS_PER_TXN[1],
                              cc=CC_MODES),
    check=check, replicated=False,  # commits go to the primary only
    keyed=True, min_keys=KEYS_PER_TXN[1], key_dist=True)
