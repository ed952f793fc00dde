"""Files the servers read and write, in one format for all three systems:
snapshots of the store (initial data loaded at start-up, state dumped at
stop) and the log. Little-endian."""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from . import HarnessError
from .schema import Schema

# Mirrors of userspace/store.h (STORE_SNAP_MAGIC, STORE_LOG_MAGIC,
# STORE_SNAP_VERSION, a record's header: STORE_SNAP_REC_HDR and
# STORE_LOG_REC_HDR bytes), checked against it by tests/test_constants.py.
# A log record's header is also the start of struct dint_log_rec
# (engine/dint_engine.h), as dint's log ring holds it.
SNAP_MAGIC, LOG_MAGIC = b"DINTSNAP", b"DINTLOG1"
SNAP_VERSION = 1
REC = struct.Struct("<BBBBIQQ")   # table, live, nshared, pad, ver, key, owner
LOGREC = struct.Struct("<QQIB3x")  # txn, key, ver, table


class Record(NamedTuple):
    """A record of a snapshot. A named tuple, not a dataclass: a dump of a
    million records is read after every point, and a tuple is made several
    times faster."""
    table: int
    key: int
    ver: int
    value: bytes
    live: bool = True
    owner: int = 0
    nshared: int = 0


@dataclass(frozen=True)
class LogRecord:
    txn: int
    table: int
    key: int
    ver: int
    value: bytes


def _schema_header(schema: Schema) -> bytes:
    return struct.pack("<I", len(schema.sizes)) + struct.pack(f"<{len(schema.sizes)}H", *schema.sizes)


def _atomic_write(path: Path, chunks) -> None:
    tmp = Path(f"{path}.tmp")
    with open(tmp, "wb") as f:
        for c in chunks:
            f.write(c)
    os.replace(tmp, path)


def write_snapshot(path: str | Path, schema: Schema, records) -> int:
    n = 0

    def chunks():
        nonlocal n
        yield SNAP_MAGIC + struct.pack("<I", SNAP_VERSION) + _schema_header(schema)
        for r in records:
            if not 0 <= r.table < len(schema.sizes) or len(r.value) != schema.sizes[r.table]:
                raise HarnessError(f"record {r.table}/{r.key}: value of {len(r.value)} bytes does not fit "
                                   f"the schema {schema}")
            n += 1
            yield REC.pack(r.table, int(r.live), r.nshared, 0, r.ver, r.key, r.owner) + r.value
    _atomic_write(Path(path), chunks())
    return n


def _read_header(data: bytes, magic: bytes, path, versioned: bool) -> tuple[Schema, int]:
    if data[:8] != magic:
        raise HarnessError(f"{path} is not a dint {'snapshot' if magic == SNAP_MAGIC else 'log'} file")
    pos = 8
    if versioned:
        (ver,) = struct.unpack_from("<I", data, pos)
        if ver != SNAP_VERSION:
            raise HarnessError(f"{path}: snapshot format {ver}, expected {SNAP_VERSION}")
        pos += 4
    (nt,) = struct.unpack_from("<I", data, pos)
    pos += 4
    sizes = struct.unpack_from(f"<{nt}H", data, pos)
    return Schema(tuple(sizes)), pos + 2 * nt


def read_snapshot(path: str | Path) -> tuple[Schema, list[Record]]:
    data = Path(path).read_bytes()
    try:
        schema, pos = _read_header(data, SNAP_MAGIC, path, True)
        out = []
        make, unpack, hdr, sizes = Record._make, REC.unpack_from, REC.size, schema.sizes
        while pos < len(data):
            table, live, nshared, _, ver, key, owner = unpack(data, pos)
            pos += hdr
            size = sizes[table]
            if pos + size > len(data):
                raise struct.error("truncated value")
            out.append(make((table, key, ver, data[pos:pos + size], bool(live), owner, nshared)))
            pos += size
    except (struct.error, IndexError) as e:
        raise HarnessError(f"{path} is truncated or corrupt ({e})") from None
    return schema, out


def count_records(path: str | Path) -> int:
    """How many records a snapshot holds, without reading their values."""
    data = Path(path).read_bytes()
    try:
        schema, pos = _read_header(data, SNAP_MAGIC, path, True)
        n = 0
        while pos < len(data):
            pos += REC.size + schema.sizes[data[pos]]
            n += 1
    except (struct.error, IndexError) as e:
        raise HarnessError(f"{path} is truncated or corrupt ({e})") from None
    if pos != len(data):
        raise HarnessError(f"{path} is truncated or corrupt (its last record)")
    return n


def write_log(path: str | Path, schema: Schema, records: list[LogRecord]) -> None:
    def chunks():
        yield LOG_MAGIC + _schema_header(schema) + struct.pack("<Q", len(records))
        for r in records:
            yield LOGREC.pack(r.txn, r.key, r.ver, r.table) + r.value
    _atomic_write(Path(path), chunks())


def read_log(path: str | Path) -> tuple[Schema, list[LogRecord]]:
    data = Path(path).read_bytes()
    try:
        schema, pos = _read_header(data, LOG_MAGIC, path, False)
        (count,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        out = []
        for _ in range(count):
            txn, key, ver, table = LOGREC.unpack_from(data, pos)
            pos += LOGREC.size
            size = schema.sizes[table]
            if pos + size > len(data):
                raise struct.error("truncated value")
            out.append(LogRecord(txn, table, key, ver, data[pos:pos + size]))
            pos += size
    except (struct.error, IndexError) as e:
        raise HarnessError(f"{path} is truncated or corrupt ({e})") from None
    return schema, out
