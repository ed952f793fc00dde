"""Log microbenchmark (DINT's log server): appends of 40-byte records keyed
over `keys` keys, each from a transaction of its own, so every request is
appended once. Requests go to the key's primary (key mod servers).
Transactions are stamped per request by the client loop (stamp_txn)."""
from __future__ import annotations

import random

from harness.protocol import Op, pack
from harness.schema import Schema
from harness.snapshot import Record

from . import RequestStream

SCHEMA = Schema((40,))
STAMP_TXN = True
TABLE = 0


def transactional(spec: dict) -> bool:
    return False  # a flat request stream, for the native request loop


def initial(spec: dict) -> list[Record]:
    return []  # a log server starts empty


def generate(n: int, servers: int, keys: int, seed: int = 1) -> RequestStream:
    """Run with the client loop's stamp_txn: each request gets a transaction
    of its own (client id and sequence number), kept by a retransmission."""
    rng = random.Random(seed)
    reqs = []
    for _ in range(n):
        key = rng.randrange(keys)
        reqs.append((key % servers, pack(Op.LOG, key, rng.randbytes(40), table=TABLE, txn=1, ver=1)))
    return RequestStream.pack(reqs)


def stream(spec: dict) -> RequestStream:
    return generate(spec["requests"], len(spec["dests"]), spec["keys"], spec["seed"])
