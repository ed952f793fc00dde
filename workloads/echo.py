"""Echo: the simplest request there is. Calibrates the stacks and measures
the client's own ceiling. Keys are spread over the servers as every
workload places them (harness/placement.py)."""
from __future__ import annotations

from harness.placement import Placement
from harness.protocol import Op, pack
from harness.schema import Schema

from . import seeds
from .contract import DataSpec, LoadSpec, Stream, Workload
from .stream import RequestStream


def generate(n: int, servers: int, value_size: int = 24, seed: int = 1) -> RequestStream:
    rng = seeds.generator(seed, "echo")
    keys = rng.integers(0, 2**63, n).tolist()
    values = rng.bytes(value_size * n)
    place = Placement(servers)
    reqs = [(place.primary(key), pack(Op.ECHO, key, values[i * value_size:(i + 1) * value_size]))
            for i, key in enumerate(keys)]
    del keys, values  # not held while the stream is packed
    return RequestStream.pack(reqs)


def initial(data: DataSpec) -> list:
    return []  # echo touches no data


def rows(data: DataSpec) -> dict[int, int]:
    return {}


def stream(load: LoadSpec) -> RequestStream:
    return generate(load.requests, load.servers, load.value_size, load.seed)


WORKLOAD = Workload(name="echo", schema=Schema(), initial=initial, rows=rows, stream=Stream(stream))
