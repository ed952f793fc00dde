"""Python mirror of the wire format in engine/dint_proto.h (tests check the two
agree field by field): packing requests and reading replies."""
from __future__ import annotations

import enum
import struct
from typing import NamedTuple

MAGIC = 0xD17E
PROTO_VERSION = 2
DEFAULT_PORT = 7777
MAX_VALUE = 1024

# (field, struct code) in wire order; big-endian, packed.
FIELDS: tuple[tuple[str, str], ...] = (
    ("magic", "H"),
    ("proto", "B"),
    ("op", "B"),
    ("status", "B"),
    ("table", "B"),
    ("val_len", "H"),
    ("client_id", "I"),
    ("seq", "I"),
    ("txn", "Q"),
    ("key", "Q"),
    ("ver", "I"),
    ("ack", "I"),
)
HEADER = struct.Struct(">" + "".join(code for _, code in FIELDS))
HEADER_LEN = HEADER.size


class Op(enum.IntEnum):
    ECHO = 1
    READ = 2
    LOCK_SHARED = 3
    LOCK_EXCL = 4
    VALIDATE = 5
    LOG = 6
    COMMIT_BACKUP = 7
    COMMIT_PRIMARY = 8
    ABORT = 9
    INSERT = 10
    DELETE = 11
    # a control request, outside the engine's range (below OP_MAX): the
    # checkpoint barrier, answered by the servers' frontends and counted in
    # none of their counters (checkpoint_request, engine/dint_proto.h)
    CHECKPOINT = 64


OP_MAX = 12  # DINT_OP_MAX: the engine's operations are the ones below it
BARRIER_MAX = 1024  # DINT_BARRIER_MAX: participants a checkpoint barrier may have


class Status(enum.IntEnum):
    REQUEST = 0
    OK = 1
    UNKNOWN_OP = 2
    BAD_VERSION = 3
    BAD_LENGTH = 4
    NOT_FOUND = 5
    LOCKED = 6
    STALE = 7
    EXISTS = 8
    NOT_OWNER = 9
    UNKNOWN_TABLE = 10
    FULL = 11
    RETRY = 12  # the record's latch stayed busy, or the barrier is not complete: send it again
    BAD_REQUEST = 13  # a control request whose fields are out of range


class Message(NamedTuple):
    magic: int
    proto: int
    op: int
    status: int
    table: int
    val_len: int
    client_id: int
    seq: int
    txn: int
    key: int
    ver: int
    ack: int
    value: bytes


def offsets() -> dict[str, int]:
    """Byte offset of each header field."""
    out, pos = {}, 0
    for name, code in FIELDS:
        out[name] = pos
        pos += struct.calcsize(">" + code)
    return out


def pack(op: int, key: int = 0, value: bytes = b"", *, table: int = 0, ver: int = 0, txn: int = 0,
         client_id: int = 0, seq: int = 0, ack: int = 0, status: int = Status.REQUEST,
         proto: int = PROTO_VERSION, magic: int = MAGIC, oversize: bool = False) -> bytes:
    """A request (or, with status, a reply) as the wire has it. A value
    longer than MAX_VALUE is refused (ValueError): every server answers such
    a request BAD_LENGTH. oversize: pack it all the same (up to the 16-bit
    val_len), for tests and the fuzzer that send one on purpose."""
    if len(value) > (0xFFFF if oversize else MAX_VALUE):
        raise ValueError(f"a request carries at most {MAX_VALUE if not oversize else 0xFFFF:,} bytes of value "
                         f"({'DINT_MAX_VALUE' if not oversize else 'its 16-bit val_len'}), not {len(value):,}")
    return HEADER.pack(magic, proto, op, status, table, len(value), client_id, seq, txn, key, ver, ack) + value


def unpack(data: bytes) -> Message:
    if len(data) < HEADER_LEN:
        raise ValueError(f"datagram of {len(data)} bytes is shorter than the {HEADER_LEN}-byte header")
    return Message(*HEADER.unpack_from(data), data[HEADER_LEN:])


def checkpoint_request(epoch: int, n: int, index: int, client_id: int) -> bytes:
    """Participant index (of n) of the checkpoint barrier of epoch (>= 1),
    sent by client client_id once its point is drained, and sent again
    every few ms until answered OK (RETRY: not every participant has
    arrived, or the checkpoint is being taken). engine/dint_proto.h has
    the rest; a value out of range is refused here (ValueError), as a
    server answers BAD_REQUEST."""
    if not 1 <= epoch < 1 << 64 or not 1 <= n <= BARRIER_MAX or not 0 <= index < n:
        raise ValueError(f"a checkpoint barrier has an epoch of at least 1 and 1..{BARRIER_MAX} participants, "
                         f"indexed from 0: not epoch {epoch}, participant {index} of {n}")
    return pack(Op.CHECKPOINT, epoch, ver=n, txn=index, client_id=client_id)


def is_control(data: bytes) -> bool:
    """dint_is_control: whether a datagram is a control request, answered by
    a server's frontend before the engine, and counted nowhere."""
    return (len(data) >= HEADER_LEN and data[3] == Op.CHECKPOINT and data[4] == Status.REQUEST
            and data[2] == PROTO_VERSION and int.from_bytes(data[:2], "big") == MAGIC)
