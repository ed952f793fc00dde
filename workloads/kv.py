"""KV microbenchmark (DINT's key-value store server): TATP
CALL_FORWARDING-like records, 40-byte values (DINT's; another size with
--kv-value-size, DataSpec.value_size: its schema follows, one build per
size), keyed over `keys` keys, all
loaded on every server (each holds every key, as primary or backup); a
request goes to its key's primary (harness/placement.py). Two mixes
(--kv-mix):

- parallel: 100% reads, a flat request stream for the native request loop;
- contention: 80% reads, 20% writes. A write is a transaction of two round
  trips, LOCK_EXCL (which replies the version) then COMMIT_PRIMARY with
  version + 1 and a new value; a read is one READ, and a read that finds the
  key write-locked is a conflict abort. Driven by the transaction executor
  (harness/txn.py). Deviation from DINT: writes are not logged or replicated.
Keys are drawn from the run's key distribution (--key-dist,
workloads/keydist.py: uniform by default; DINT draws its KV keys with
NURand, `nurand:1048575`). A record's value is derived from its key and
version, so a dump can be checked."""
from __future__ import annotations

from harness.placement import Placement
from harness.protocol import Op, pack
from harness.schema import Schema
from harness.snapshot import Record

from . import keydist, seeds
from .contract import DataSpec, LoadSpec, Stream, Transactions, TxnType, Workload
from .stream import RequestStream

VALUE_SIZE = 40
SCHEMA = Schema((VALUE_SIZE,))
TABLE = 0
PLACEHOLDER = bytes(VALUE_SIZE)


def value_size(data: DataSpec) -> int:
    """The run's value bytes: DataSpec.value_size, else DINT's 40."""
    return data.value_size or VALUE_SIZE


def value_of(key: int, ver: int = 1, size: int = VALUE_SIZE) -> bytes:
    """A record's value: its key and version (12 bytes) repeated, zeros
    after the last whole copy (40 bytes: three copies and 4 zeros), or
    their first bytes in a value of fewer than 12; derived from the key, so
    any copy can be checked."""
    unit = key.to_bytes(8, "big") + ver.to_bytes(4, "big")
    copies = size // len(unit)
    return unit * copies + bytes(size % len(unit)) if copies else unit[:size]


def initial(data: DataSpec) -> list[Record]:
    size = value_size(data)
    return [Record(TABLE, k, 1, value_of(k, 1, size)) for k in range(data.keys)]


def rows(data: DataSpec) -> dict[int, int]:
    return {TABLE: data.keys}


def generate(n: int, servers: int, keys: int, seed: int = 1, dist: str = keydist.DEFAULT,
             size: int = VALUE_SIZE) -> RequestStream:
    keys_drawn = keydist.parse(dist).draw_many(n, keys, seeds.generator(seed, "kv")).tolist()
    place = Placement(servers)
    placeholder = bytes(size)
    reqs = [(place.primary(key), pack(Op.READ, key, placeholder, table=TABLE)) for key in keys_drawn]
    del keys_drawn  # not held while the stream is packed
    return RequestStream.pack(reqs)


def stream(load: LoadSpec) -> RequestStream:
    return generate(load.requests, load.servers, load.data.keys, load.seed, load.key_dist, value_size(load.data))


def read(batch):
    yield batch


def write(key, lock):
    replies = yield lock
    ver = replies[0][1] + 1
    # the lock's placeholder has the run's value size
    yield [(Op.COMMIT_PRIMARY, TABLE, key, value_of(key, ver, len(lock[0][3])), ver, lock[0][5])]


TXN_TYPES = (TxnType("read", read, 80), TxnType("write", write, 20))


def draw(load: LoadSpec, types) -> list:
    """The contention mix: [(type, args)], each transaction's first batch
    built here, once."""
    rng = seeds.generator(load.seed, "kv-contention")
    keys = keydist.parse(load.key_dist).draw_many(load.requests, load.data.keys, rng)
    names = [t.name for t in types]
    r, w = names.index("read"), names.index("write")
    writes = rng.random(load.requests) < types[w].weight / 100
    place = Placement(load.servers)
    placeholder = bytes(value_size(load.data))
    # ops as plain ints: the collector stops tracking a tuple of them (not of Op members)
    lock_op, read_op = int(Op.LOCK_EXCL), int(Op.READ)
    out = []
    for key, write in zip(keys.tolist(), writes.tolist()):
        dest = place.primary(key)
        if write:
            out.append((w, (key, ((lock_op, TABLE, key, placeholder, 0, dest),))))
        else:
            out.append((r, (((read_op, TABLE, key, placeholder, 0, dest),),)))
    return out


WORKLOAD = Workload(
    name="kv", schema=SCHEMA, initial=initial, rows=rows, stream=Stream(stream), keyed=True, key_dist=True,
    value_sized=True,
    transactions=Transactions(types=TXN_TYPES, params=draw, rounds=2, mixes=("contention",)))
