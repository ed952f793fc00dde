"""Echo: the simplest request there is. Calibrates the stacks and measures
the client's own ceiling. Keys are spread over the servers as DINT spreads
primaries (server = key mod number of servers)."""
from __future__ import annotations

import random

from harness.protocol import Op, pack
from harness.schema import Schema

from . import RequestStream

SCHEMA = Schema()
STAMP_TXN = False


def transactional(spec: dict) -> bool:
    return False  # a flat request stream, for the native request loop


def initial(spec: dict) -> list:
    return []  # echo touches no data


def generate(n: int, servers: int, value_size: int = 28, seed: int = 1) -> RequestStream:
    rng = random.Random(seed)
    reqs = []
    for _ in range(n):
        key = rng.getrandbits(63)
        value = rng.randbytes(value_size)
        reqs.append((key % servers, pack(Op.ECHO, key, value)))
    return RequestStream.pack(reqs)


def stream(spec: dict) -> RequestStream:
    return generate(spec["requests"], len(spec["dests"]), spec["value_size"], spec["seed"])
