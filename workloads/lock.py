"""Lock microbenchmark (DINT's lock server): each transaction locks 5-10
distinct keys drawn uniformly from `keys`, each one written with probability
0.2, and commits (a new value, version + 1, on the key's primary, key mod
servers). Two concurrency controls over the same parameters:

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

from harness.protocol import Op
from harness.schema import Schema
from harness.snapshot import Record

SCHEMA = Schema((8,))
STAMP_TXN = False
TABLE = 0
PLACEHOLDER = bytes(8)
KEYS_PER_TXN = (5, 10)
WRITE_PROBABILITY = 0.2
MODES = ("2pl", "occ")
DEFAULT_CC = "2pl"
MAX_ROUNDS = 3  # occ: read+lock, validate, commit


def value_of(ver: int) -> bytes:
    """A record's value: its version, so any copy can be checked."""
    return ver.to_bytes(8, "big")


def transactional(spec: dict) -> bool:
    return True


def initial(spec: dict) -> list[Record]:
    return [Record(TABLE, k, 1, value_of(1)) for k in range(spec["keys"])]


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


def two_phase_locking(reads, writes, locks):
    replies = yield locks
    nr = len(reads)
    commits = []
    for key, rep in zip(writes, replies[nr:]):
        ver = rep[1] + 1
        commits.append((Op.COMMIT_PRIMARY, TABLE, key, value_of(ver), ver))
    yield commits + [(Op.ABORT, TABLE, key, PLACEHOLDER, 0) for key in reads]


def occ(reads, writes, first):
    replies = yield first
    nr = len(reads)
    if reads:
        yield [(Op.VALIDATE, TABLE, key, PLACEHOLDER, rep[1]) for key, rep in zip(reads, replies)]
    if writes:
        commits = []
        for key, rep in zip(writes, replies[nr:]):
            ver = rep[1] + 1
            commits.append((Op.COMMIT_PRIMARY, TABLE, key, value_of(ver), ver))
        yield commits


REPLICATED = False  # commits go to the primary only


def check(state: dict, committed: dict, spec: dict) -> list[dict]:
    """Every row's value is its version: no commit lost or applied twice."""
    bad = [{"key": k, "ver": r.ver, "value": int.from_bytes(r.value, "big")}
           for (_, k), r in state.items() if r.value != value_of(r.ver)]
    missing = spec["keys"] - len(state)
    return [{"name": "value_is_version", "ok": not bad, "detail": {"differing": len(bad), "examples": bad[:5]}},
            {"name": "rows_present", "ok": not missing, "detail": {"missing": missing}}]


def transactions(spec: dict) -> tuple[list[str], list, list]:
    """(type names, their functions, [(type, args)]) for the executor; the
    first batch of each transaction is built here, once."""
    mode = spec.get("cc") or DEFAULT_CC
    if mode not in MODES:
        raise ValueError(f"lock mode must be one of {', '.join(MODES)}, not {mode!r}")
    first_read = Op.LOCK_SHARED if mode == "2pl" else Op.READ
    params = []
    for reads, writes in generate(spec["requests"], spec["keys"], spec["seed"]):
        first = tuple([(first_read, TABLE, k, PLACEHOLDER, 0) for k in reads] +
                      [(Op.LOCK_EXCL, TABLE, k, PLACEHOLDER, 0) for k in writes])
        params.append((0, (reads, writes, first)))
    return [mode], [two_phase_locking if mode == "2pl" else occ], params
