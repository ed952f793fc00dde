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

import random

from harness.placement import Placement
from harness.protocol import Op, Status
from harness.schema import Schema
from harness.snapshot import Record
from harness.txn import Batch

from . import keydist
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


def generate(n: int, keys: int, seed: int = 1,
             dist: str = keydist.DEFAULT) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """n transactions: (read keys, written keys), distinct keys drawn from
    the key distribution dist."""
    rng = random.Random(seed)
    kd = keydist.parse(dist)
    out = []
    for _ in range(n):
        chosen = kd.distinct(rng.randint(*KEYS_PER_TXN), keys, rng)
        written = [rng.random() < WRITE_PROBABILITY for _ in chosen]
        out.append((tuple(k for k, w in zip(chosen, written) if not w),
                    tuple(k for k, w in zip(chosen, written) if w)))
    return out


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
    control); the first batch of each transaction is built here, once."""
    first_read = Op.LOCK_SHARED if load.cc == "2pl" else Op.READ
    place = Placement(load.servers)
    in_key_order = load.lock_protocol == "sequential"
    out = []
    for reads, writes in generate(load.requests, load.data.keys, load.seed, load.key_dist):
        first = [(first_read, TABLE, k, PLACEHOLDER, 0, place.primary(k)) for k in reads] + \
                [(Op.LOCK_EXCL, TABLE, k, PLACEHOLDER, 0, place.primary(k)) for k in writes]
        if in_key_order:
            first.sort(key=lambda req: req[2])
        out.append((0, (reads, writes, tuple(first))))
    return out


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
