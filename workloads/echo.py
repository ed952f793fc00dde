"""Echo: the simplest request there is. Calibrates the stacks and measures
the client's own ceiling. Keys are spread over the servers as every
workload places them (harness/placement.py)."""
from __future__ import annotations

import random

from harness.placement import Placement
from harness.protocol import Op, pack
from harness.schema import Schema

from .contract import DataSpec, LoadSpec, Stream, Workload
from .stream import RequestStream


def generate(n: int, servers: int, value_size: int = 24, seed: int = 1) -> RequestStream:
    rng = random.Random(seed)
    place = Placement(servers)
    reqs = []
    for _ in range(n):
        key = rng.getrandbits(63)
        value = rng.randbytes(value_size)
        reqs.append((place.primary(key), pack(Op.ECHO, key, value)))
    return RequestStream.pack(reqs)


def initial(data: DataSpec) -> list:
    return []  # echo touches no data


def rows(data: DataSpec) -> dict[int, int]:
    return {}


def stream(load: LoadSpec) -> RequestStream:
    return generate(load.requests, load.servers, load.value_size, load.seed)


WORKLOAD = Workload(name="echo", schema=Schema(), initial=initial, rows=rows, stream=Stream(stream))
