"""Log microbenchmark (DINT's log server): appends of 40-byte records keyed
over `keys` keys, each from a transaction of its own, so every request is
appended once. Requests go to the key's primary (harness/placement.py).
Transactions are stamped per request by the client loop (stamp_txn).
Keys are drawn from the run's key distribution (--key-dist,
workloads/keydist.py)."""
from __future__ import annotations

from harness.placement import Placement
from harness.protocol import Op, pack
from harness.schema import Schema

from . import keydist, seeds
from .contract import DataSpec, LoadSpec, Stream, Workload
from .stream import RequestStream

SCHEMA = Schema((40,))
TABLE = 0
RECORD_SIZE = 40


def initial(data: DataSpec) -> list:
    return []  # a log server starts empty


def rows(data: DataSpec) -> dict[int, int]:
    return {}


def generate(n: int, servers: int, keys: int, seed: int = 1, dist: str = keydist.DEFAULT) -> RequestStream:
    """Run with the client loop's stamp_txn: each request gets a transaction
    of its own (client id and sequence number), kept by a retransmission."""
    rng = seeds.generator(seed, "log")
    keys_drawn = keydist.parse(dist).draw_many(n, keys, rng).tolist()
    records = rng.bytes(RECORD_SIZE * n)
    place = Placement(servers)
    reqs = [(place.primary(key), pack(Op.LOG, key, records[i * RECORD_SIZE:(i + 1) * RECORD_SIZE], table=TABLE,
                                      txn=1, ver=1))
            for i, key in enumerate(keys_drawn)]
    del keys_drawn, records  # not held while the stream is packed
    return RequestStream.pack(reqs)


def stream(load: LoadSpec) -> RequestStream:
    return generate(load.requests, load.servers, load.data.keys, load.seed, load.key_dist)


WORKLOAD = Workload(name="log", schema=SCHEMA, initial=initial, rows=rows, stream=Stream(stream, stamp_txn=True),
                    keyed=True, key_dist=True)
