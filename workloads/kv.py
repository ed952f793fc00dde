"""KV microbenchmark (DINT's key-value store server): TATP
CALL_FORWARDING-like records, 40-byte values, keyed over `keys` keys, all
loaded on every server (each holds every key, as primary or backup); a
request goes to its key's primary (key mod servers). "parallel" is 100%
reads. The "contention" mix (80% reads, 20% writes) needs writes that are
locked and committed in two round trips, so it is driven through the
transaction coordinator, not this flat stream."""
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


def value_of(key: int, ver: int = 1) -> bytes:
    """A record's initial value: derived from the key, so any copy can be checked."""
    return (key.to_bytes(8, "big") + ver.to_bytes(4, "big")) * 3 + bytes(4)


def initial(keys: int) -> list[Record]:
    return [Record(TABLE, k, 1, value_of(k)) for k in range(keys)]


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
