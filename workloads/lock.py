"""Lock microbenchmark (DINT's lock server): each transaction locks 5-10
distinct keys drawn uniformly from `keys`, each one written with probability
0.2, and commits (a new value, version + 1, on the key's primary,
harness/placement.py). Two concurrency controls over the same parameters:

- 2pl: no-wait two-phase locking. LOCK_SHARED the read keys and LOCK_EXCL
  the written ones, all in one parallel batch; then COMMIT_PRIMARY every
  written key (the locked version + 1) and ABORT (release) every read key.
- occ: FaSST-style optimistic. READ the read set (value, version) and
  LOCK_EXCL the write set in parallel; VALIDATE the read set against the
  versions read; COMMIT_PRIMARY the write set (version + 1).

Any rejection aborts the transaction and releases what it holds (the
executor, harness/txn.py). DINT's scale is 24M locks; here it is --keys.
Deviation: nothing is logged or replicated (the microbenchmark measures the
lock path only), and a record's value is its version, so a store dump can be
checked for lost or doubled commits."""
from __future__ import annotations

import random

from harness.placement import Placement
from harness.protocol import Op
from harness.schema import Schema
from harness.snapshot import Record

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


def generate(n: int, keys: int, seed: int = 1) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """n transactions: (read keys, written keys), distinct keys."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        chosen = rng.sample(range(keys), rng.randint(*KEYS_PER_TXN))
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
    out = []
    for reads, writes in generate(load.requests, load.data.keys, load.seed):
        first = tuple([(first_read, TABLE, k, PLACEHOLDER, 0, place.primary(k)) for k in reads] +
                      [(Op.LOCK_EXCL, TABLE, k, PLACEHOLDER, 0, place.primary(k)) for k in writes])
        out.append((0, (reads, writes, first)))
    return out


TYPES_BY_CC = {"2pl": (TxnType("2pl", two_phase_locking, 100),), "occ": (TxnType("occ", occ, 100),)}

WORKLOAD = Workload(
    name="lock", schema=SCHEMA, initial=initial, rows=rows,
    transactions=Transactions(types=TYPES_BY_CC["2pl"], types_by_cc=TYPES_BY_CC, params=draw,
                              rounds=3,  # occ: read+lock, validate, commit
                              cc=CC_MODES),
    check=check, replicated=False,  # commits go to the primary only
    keyed=True, min_keys=KEYS_PER_TXN[1])
