"""Files the servers read and write, in one format for all three systems:
snapshots of the store (initial data loaded at start-up, state dumped at
stop) and the log. Little-endian."""
from __future__ import annotations

import gc
import os
import struct
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

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


# A record's header as numpy reads it, field for field REC's
HDR = np.dtype([("table", "u1"), ("live", "u1"), ("nshared", "u1"), ("pad", "u1"),
                ("ver", "<u4"), ("key", "<u8"), ("owner", "<u8")])
assert HDR.itemsize == REC.size
# Records a run must reach, walked in Python, before numpy looks for its end:
# inserts come interleaved, in runs of a few records each
WALK = 16


@dataclass(frozen=True, eq=False)
class Columns:
    """A snapshot's records as numpy arrays, one entry per record in file
    order (read_columns, columns_of): the consistency check reads a dump of
    hundreds of thousands of records after every point, and a Python object
    per record costs seconds. values[t] holds table t's values, a row per
    record of t in file order: record i's is values[table[i]][row[i]]."""
    table: np.ndarray    # uint8
    live: np.ndarray     # bool
    nshared: np.ndarray  # uint8
    ver: np.ndarray      # uint32
    key: np.ndarray      # uint64
    owner: np.ndarray    # uint64
    row: np.ndarray      # intp
    values: tuple[np.ndarray, ...]  # per table: uint8, (its records, its value size)

    def value(self, i: int) -> bytes:
        return self.values[self.table[i]][self.row[i]].tobytes()

    def records(self, idx: np.ndarray) -> list[Record]:
        """The Records at indices idx, in that order; each table's values are
        cut from one bytes object (slicing is cheaper than numpy per row)."""
        with no_collection():
            return self._records(idx)

    def _records(self, idx: np.ndarray) -> list[Record]:
        idx = np.asarray(idx, np.intp)
        table = self.table[idx]
        values = [b""] * len(idx)
        for t in np.unique(table).tolist():
            at = np.flatnonzero(table == t)
            size = self.values[t].shape[1]
            block = self.values[t][self.row[idx[at]]].tobytes()
            cut = [block[o:o + size] for o in range(0, len(block), size)] if size else [b""] * len(at)
            if len(at) == len(idx):
                values = cut
            else:
                for i, v in zip(at.tolist(), cut):
                    values[i] = v
        return list(map(_make_record, zip(table.tolist(), self.key[idx].tolist(), self.ver[idx].tolist(), values,
                                          self.live[idx].tolist(), self.owner[idx].tolist(),
                                          self.nshared[idx].tolist())))


# Record._make without its Python frame
_make_record = partial(tuple.__new__, Record)


@contextmanager
def no_collection():
    """The garbage collector paused: its passes while hundreds of thousands
    of tuples are made cost more than making them, and tuples of ints and
    bytes hold no cycle for it to find."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _rows(table: np.ndarray, tables: int) -> np.ndarray:
    """Each record's index among its table's records."""
    row = np.zeros(len(table), np.intp)
    for t in range(tables):
        at = np.flatnonzero(table == t)
        row[at] = np.arange(len(at))
    return row


def columns_of(records) -> Columns:
    """Columns of a list of Records (the tests' fabricated dumps). A table's
    values must all have one size, as in a snapshot."""
    cols = list(zip(*records)) or [()] * len(Record._fields)
    tables, keys, vers, vals, lives, owners, nshared = cols
    table = np.array(tables, np.uint8)
    values = []
    for t in range(max(tables, default=-1) + 1):
        of_t = [v for tt, v in zip(tables, vals) if tt == t]
        size = len(of_t[0]) if of_t else 0
        if any(len(v) != size for v in of_t):
            raise HarnessError(f"table {t}: values of different sizes")
        values.append(np.frombuffer(b"".join(of_t), np.uint8).reshape(len(of_t), size))
    return Columns(table, np.array(lives, bool), np.array(nshared, np.uint8), np.array(vers, np.uint32),
                   np.array(keys, np.uint64), np.array(owners, np.uint64), _rows(table, len(values)),
                   tuple(values))


def _record_offsets(data: bytes, pos: int, sizes: tuple[int, ...]) -> np.ndarray:
    """The byte offset of every record from pos on. Records come in runs of
    one value size (the loaded data table by table, then inserts
    interleaved), a stride apart: a run's end is where its records' table
    bytes stop naming a table of its size, found by numpy over ever longer
    stretches (O(runs) numpy calls); runs shorter than WALK are walked in
    Python. Raises struct.error at a truncated record or an unknown table."""
    end = len(data)
    buf = np.frombuffer(data, np.uint8)
    size_of = list(sizes) + [-1] * (256 - len(sizes))
    lut = np.array(size_of, np.int32)
    starts, strides, counts = [], [], []
    while pos < end:
        size = size_of[data[pos]]
        if size < 0:
            raise struct.error(f"no table {data[pos]}, in the record at byte {pos}")
        stride = REC.size + size
        last = end - stride        # the last offset a whole record of this size fits at
        if pos > last:
            raise struct.error(f"the record at byte {pos} is cut short")
        n, p = 1, pos + stride
        while n < WALK and p <= last and size_of[data[p]] == size:
            n, p = n + 1, p + stride
        if n == WALK:
            whole = (last - pos) // stride + 1
            col = buf[pos:pos + (whole - 1) * stride + 1:stride]
            while n < whole:
                upto = min(whole, 2 * n)
                stop = lut[col[n:upto]] != size
                if stop.any():
                    n += int(stop.argmax())
                    break
                n = upto
        starts.append(pos)
        strides.append(stride)
        counts.append(n)
        pos += n * stride
    counts = np.array(counts, np.intp)
    run = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    return (np.array(starts, np.intp)[run]
            + (np.arange(len(run)) - first[run]) * np.array(strides, np.intp)[run])


def _at(data: bytes, offsets: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The items of dtype at the given byte offsets of data: a view of data
    with an item starting at every byte, indexed by the offsets."""
    return np.ndarray((max(0, len(data) - dtype.itemsize + 1),), dtype, data, 0, (1,))[offsets]


def read_columns(path: str | Path) -> tuple[Schema, Columns]:
    """A snapshot as Columns: what read_snapshot reads, with numpy work per
    run of records rather than Python work per record."""
    data = Path(path).read_bytes()
    try:
        schema, pos = _read_header(data, SNAP_MAGIC, path, True)
        offsets = _record_offsets(data, pos, schema.sizes)
    except struct.error as e:
        raise HarnessError(f"{path} is truncated or corrupt ({e})") from None
    hdr = _at(data, offsets, HDR)
    table = hdr["table"].copy()
    row = _rows(table, len(schema.sizes))
    values = tuple(_at(data, offsets[table == t] + REC.size, np.dtype((np.uint8, (size,))))
                   for t, size in enumerate(schema.sizes))
    return schema, Columns(table, hdr["live"] != 0, hdr["nshared"].copy(), hdr["ver"].copy(), hdr["key"].copy(),
                           hdr["owner"].copy(), row, values)


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
