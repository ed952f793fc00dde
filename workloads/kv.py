"""KV microbenchmark (DINT's key-value store server): TATP
CALL_FORWARDING-like records, 40-byte values, keyed over `keys` keys, all
loaded on every server (each holds every key, as primary or backup); a
request goes to its key's primary (key mod servers). Two mixes (--kv-mix):

- parallel: 100% reads, a flat request stream for the native request loop;
- contention: 80% reads, 20% writes. A write is a transaction of two round
  trips, LOCK_EXCL (which replies the version) then COMMIT_PRIMARY with
  version + 1 and a new value; a read is one READ, and a read that finds the
  key write-locked is a conflict abort. Driven by the transaction executor
  (harness/txn.py). Deviation from DINT: writes are not logged or replicated.
A record's value is derived from its key and version, so a dump can be
checked."""
from __future__ import annotations

import random

from harness.protocol import Op, pack
from harness.schema import Schema
from harness.snapshot import Record

from . import RequestStream

SCHEMA = Schema((40,))
STAMP_TXN = False
TABLE = 0
VALUE_SIZE = 40
PLACEHOLDER = bytes(VALUE_SIZE)
MIXES = ("parallel", "contention")
WRITE_FRACTION = 0.2  # contention
MAX_ROUNDS = 2


def value_of(key: int, ver: int = 1) -> bytes:
    """A record's initial value: derived from the key, so any copy can be checked."""
    return (key.to_bytes(8, "big") + ver.to_bytes(4, "big")) * 3 + bytes(4)


def initial(spec: dict) -> list[Record]:
    return [Record(TABLE, k, 1, value_of(k)) for k in range(spec["keys"])]


def generate(n: int, servers: int, keys: int, seed: int = 1) -> RequestStream:
    rng = random.Random(seed)
    placeholder = bytes(VALUE_SIZE)
    reqs = []
    for _ in range(n):
        key = rng.randrange(keys)
        reqs.append((key % servers, pack(Op.READ, key, placeholder, table=TABLE)))
    return RequestStream.pack(reqs)


def stream(spec: dict) -> RequestStream:
    return generate(spec["requests"], len(spec["dests"]), spec["keys"], spec["seed"])


def transactional(spec: dict) -> bool:
    return spec.get("kv_mix", "parallel") == "contention"


def read(batch):
    yield batch


def write(key, lock):
    replies = yield lock
    ver = replies[0][1] + 1
    yield [(Op.COMMIT_PRIMARY, TABLE, key, value_of(key, ver), ver)]


def transactions(spec: dict) -> tuple[list[str], list, list]:
    """The contention mix for the executor: (type names, functions,
    [(type, args)]), each transaction's first batch built here, once."""
    rng = random.Random(spec["seed"])
    params = []
    for _ in range(spec["requests"]):
        key = rng.randrange(spec["keys"])
        if rng.random() < WRITE_FRACTION:
            params.append((1, (key, ((Op.LOCK_EXCL, TABLE, key, PLACEHOLDER, 0),))))
        else:
            params.append((0, (((Op.READ, TABLE, key, PLACEHOLDER, 0),),)))
    return ["read", "write"], [read, write], params
