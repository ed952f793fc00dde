"""A reference model of one server's engine, in Python: what a datagram
sent to a server's dint port gets back (nothing, or the exact bytes of the
reply) and what it leaves in the store and the log. It mirrors
engine/dint_engine.h (dint_process and everything below it, the exactly-once
sessions and completion records included) over the store of
userspace/store.h (records created on insert and log, never removed;
client slots: the low 16 bits of the client id modulo the number of slots),
with latches that never fail: a frontend whose latch can stay busy (dint's
cache) may answer RETRY instead, with nothing applied.

The fuzzer (harness/fuzz.py) predicts every reply with it and compares the
servers' final dumps and logs with its store and log. Every branch below
names the line of C it mirrors, so the two can be read side by side.

A control request (protocol.is_control: the checkpoint barrier) never
reaches the engine: every frontend answers it first (userspace/barrier.h),
and so does Barrier here, before Engine.process looks at anything else."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import NamedTuple

from . import snapshot
from .protocol import (BARRIER_MAX, HEADER, HEADER_LEN, MAGIC, MAX_VALUE, OP_MAX, PROTO_VERSION, Op, Status,
                       is_control, offsets)

MASK32 = (1 << 32) - 1
WINDOW = 65536       # DINT_WINDOW (engine/dint_proto.h)
SHARED_MAX = 4       # DINT_SHARED_MAX (engine/dint_engine.h)
_OFF = offsets()
STATUS_AT, VER_AT = _OFF["status"], _OFF["ver"]

DROP, REPLY, STALE = "drop", "reply", "stale"  # enum dint_verdict (no PASS: the model reaches every record)


def changes(op: int) -> bool:
    """DINT_OP_CHANGES: whether a request of op may change state."""
    return op not in (Op.ECHO, Op.READ, Op.VALIDATE)


def seq_before(a: int, b: int) -> bool:
    """dint_seq_before: a comes before b in serial-number order (RFC 1982)."""
    d = (a - b) & MASK32
    return d >= 1 << 31


class Outcome(NamedTuple):
    verdict: str             # DROP, REPLY or STALE
    reply: bytes | None      # the reply's bytes (REPLY)

    @property
    def status(self) -> int | None:
        return self.reply[STATUS_AT] if self.reply is not None else None


@dataclass
class Rec:
    """struct dint_rec, without gen (which the dumps do not show)."""
    value: bytes
    live: int = 0
    ver: int = 0
    owner: int = 0
    shared: list[int] = field(default_factory=lambda: [0] * SHARED_MAX)
    last_txn: int = 0
    last_log_txn: int = 0

    @property
    def nshared(self) -> int:
        return sum(1 for t in self.shared if t)


class _Msg:
    """The datagram being answered in place: its fields, and the parts a
    reply changes (status, ver, value)."""
    __slots__ = ("buf", "op", "table", "txn", "key", "ver", "vsize")

    def __init__(self, data: bytes, op: int, table: int, txn: int, key: int, ver: int, vsize: int):
        self.buf = bytearray(data)
        self.op, self.table, self.txn, self.key, self.ver, self.vsize = op, table, txn, key, ver, vsize

    def set_ver(self, ver: int) -> None:
        self.buf[VER_AT:VER_AT + 4] = (ver & MASK32).to_bytes(4, "big")

    @property
    def value(self) -> bytes:
        return bytes(self.buf[HEADER_LEN:HEADER_LEN + self.vsize])

    def set_value(self, value: bytes) -> None:
        self.buf[HEADER_LEN:HEADER_LEN + self.vsize] = value

    def reply(self, status: int) -> Outcome:
        self.buf[STATUS_AT] = status
        return Outcome(REPLY, bytes(self.buf))


def _reply(data: bytes, status: int) -> Outcome:
    b = bytearray(data)
    b[STATUS_AT] = status
    return Outcome(REPLY, bytes(b))


class Barrier:
    """barrier_answer (userspace/barrier.h): a server's checkpoint barrier.
    The checkpoint of a complete epoch is taken as soon as it completes
    here (its arrival answered RETRY): a server takes it a little later and
    answers RETRY until then, which a client sends again."""

    def __init__(self):
        self.done, self.n, self.arrived = 0, 0, set()

    def answer(self, data: bytes) -> Outcome:
        _, _, _, _, _, val_len, _, _, idx, e, n, _ = HEADER.unpack_from(data)
        if len(data) != HEADER_LEN or val_len:
            return _reply(data, Status.BAD_LENGTH)
        if not e or not n or n > BARRIER_MAX or idx >= n:
            return _reply(data, Status.BAD_REQUEST)
        if e <= self.done:
            return _reply(data, Status.OK)
        if e > self.done + 1:
            return _reply(data, Status.RETRY)  # an epoch ahead: nothing recorded
        if self.n and n != self.n:
            return _reply(data, Status.BAD_REQUEST)
        self.n = n
        self.arrived.add(idx)
        if len(self.arrived) == n:  # complete: its checkpoint taken (barrier_done)
            self.done, self.n, self.arrived = e, 0, set()
        return _reply(data, Status.RETRY)


class Engine:
    """One server: its store, log, sessions and completion records.
    sizes: the schema's value size per table; clients: the servers' client
    slots (--clients); records: the initial snapshot (snapshot.Record).
    capacity: records the store holds (None: more than a run makes)."""

    def __init__(self, sizes, clients: int, records=(), capacity: int | None = None):
        if clients < 1:
            raise ValueError("a server has at least one client slot")
        self.sizes = tuple(sizes)
        self.clients = clients
        self.capacity = capacity
        self.recs: dict[tuple[int, int], Rec] = {}
        self.log: list[snapshot.LogRecord] = []
        self.sessions = [[0, 0] for _ in range(clients)]  # [client, ack]
        self.done: dict[int, tuple[int, int, int, int]] = {}  # slot index -> (client, seq, ver, status)
        self.barrier = Barrier()  # the frontend's, in front of the engine
        for r in records:  # store_load_one: a repeated key ends up as its last record
            rec = self.recs.get((r.table, r.key))
            if rec is None:
                rec = self.recs[(r.table, r.key)] = Rec(bytes(self.sizes[r.table]))
            rec.live, rec.ver, rec.owner, rec.value = int(r.live), r.ver, r.owner, bytes(r.value)

    def copy(self) -> "Engine":
        return copy.deepcopy(self)

    # -- what the servers dump -------------------------------------------
    def dump(self) -> dict[tuple[int, int], snapshot.Record]:
        """The store as a server's dump shows it (store_dump), by (table, key)."""
        return {k: snapshot.Record(k[0], k[1], r.ver, r.value, bool(r.live), r.owner, r.nshared)
                for k, r in self.recs.items()}

    # -- the storage hooks of userspace/store.h ------------------------------
    def _ref(self, table: int, key: int, create: bool) -> Rec | None:
        """dint_ref + dint_rec: the key's record, created absent if asked
        and there is room (store_insert_excl)."""
        rec = self.recs.get((table, key))
        if rec is None and create and (self.capacity is None or len(self.recs) < self.capacity):
            rec = self.recs[(table, key)] = Rec(bytes(self.sizes[table]))
        return rec

    # -- dint_process ---------------------------------------------------------
    def process(self, data: bytes) -> Outcome:
        """What the server does with datagram `data` (the UDP payload)."""
        if is_control(data):  # the frontend's (dint_is_control), never the engine's
            return self.barrier.answer(data)
        n = len(data)
        if n < HEADER_LEN:
            return Outcome(DROP, None)
        magic, proto, op, status, table, val_len, client, seq, txn, key, ver, ack = HEADER.unpack_from(data)
        if magic != MAGIC or status != Status.REQUEST:
            return Outcome(DROP, None)
        if proto != PROTO_VERSION:
            return _reply(data, Status.BAD_VERSION)
        if val_len != n - HEADER_LEN or val_len > MAX_VALUE:
            return _reply(data, Status.BAD_LENGTH)
        if op == Op.ECHO:
            return _reply(data, Status.OK)
        if op == 0 or op >= OP_MAX:
            return _reply(data, Status.UNKNOWN_OP)
        if table >= len(self.sizes):
            return _reply(data, Status.UNKNOWN_TABLE)
        if val_len != self.sizes[table]:
            return _reply(data, Status.BAD_LENGTH)
        if changes(op) and not txn:
            return _reply(data, Status.NOT_OWNER)
        m = _Msg(data, op, table, txn, key, ver, self.sizes[table])
        if not changes(op) or not seq:
            return self._execute(m)
        # dint_once_begin
        slot = (client & 0xFFFF) % self.clients
        s = self.sessions[slot]
        if s[0] != client:  # a new client takes the slot over
            s[0], s[1] = client, ack
        elif ack and (not s[1] or seq_before(s[1], ack)):
            s[1] = ack
        if s[1] and seq_before(seq, s[1]):
            return Outcome(STALE, None)
        idx = slot * WINDOW + (seq & (WINDOW - 1))
        d = self.done.get(idx)
        if d is not None and d[3] and d[0] == client and d[1] == seq:  # a copy
            kept_ver, kept_status = d[2], d[3]
            if kept_status == Status.OK and op in (Op.LOCK_SHARED, Op.LOCK_EXCL):
                rec = self._ref(table, key, False)  # dint_reread
                if rec is not None:
                    m.set_value(rec.value)
            m.set_ver(kept_ver)
            return m.reply(kept_status)
        out = self._execute(m)
        # dint_once_end (never RETRY here)
        self.done[idx] = (client, seq, int.from_bytes(out.reply[VER_AT:VER_AT + 4], "big"), out.reply[STATUS_AT])
        return out

    # -- dint_execute ---------------------------------------------------------
    def _execute(self, m: _Msg) -> Outcome:
        if m.op == Op.LOG:
            return m.reply(self._log(m))
        rec = self._ref(m.table, m.key, m.op == Op.INSERT)
        if rec is None:  # dint_absent_status
            return m.reply(Status.FULL if m.op == Op.INSERT else Status.OK if m.op == Op.ABORT else Status.NOT_FOUND)
        return m.reply(self._apply(rec, m))

    def _log(self, m: _Msg) -> int:
        """dint_log: appended once per (transaction, key)."""
        rec = self._ref(m.table, m.key, True)
        if rec is None:
            return Status.FULL
        if rec.last_log_txn == m.txn:
            return Status.OK
        rec.last_log_txn = m.txn
        self.log.append(snapshot.LogRecord(m.txn, m.table, m.key, m.ver, m.value))
        return Status.OK

    @staticmethod
    def _release(r: Rec, txn: int) -> None:
        if r.owner == txn:
            r.owner = 0
        for i in range(SHARED_MAX):
            if r.shared[i] == txn:
                r.shared[i] = 0

    @staticmethod
    def _install(r: Rec, m: _Msg, ver: int) -> None:
        r.value, r.ver, r.last_txn = m.value, ver & MASK32, m.txn

    def _apply(self, r: Rec, m: _Msg) -> int:
        """dint_apply: the operation on one record; fills the reply's
        version (and value) as the C does."""
        txn, ver, op = m.txn, m.ver, m.op
        if op == Op.READ:
            if not r.live:
                return Status.NOT_FOUND
            if r.owner and r.owner != txn:
                return Status.LOCKED
            m.set_value(r.value)
            m.set_ver(r.ver)
            return Status.OK
        if op == Op.LOCK_SHARED:
            if not r.live:
                return Status.NOT_FOUND
            m.set_ver(r.ver)
            if r.owner and r.owner != txn:
                return Status.LOCKED
            if not r.owner and txn not in r.shared:
                if 0 not in r.shared:
                    return Status.FULL
                r.shared[r.shared.index(0)] = txn
            m.set_value(r.value)
            return Status.OK
        if op == Op.LOCK_EXCL:
            if not r.live:
                return Status.NOT_FOUND
            m.set_ver(r.ver)
            if r.owner and r.owner != txn:
                return Status.LOCKED
            if not r.owner:
                n = r.nshared
                if n > 1 or (n == 1 and txn not in r.shared):
                    return Status.LOCKED
                self._release(r, txn)
                r.owner = txn
            m.set_value(r.value)
            return Status.OK
        if op == Op.VALIDATE:
            if not r.live:
                return Status.NOT_FOUND
            if r.owner and r.owner != txn:
                return Status.LOCKED
            st = Status.OK if r.ver == ver else Status.STALE
            m.set_ver(r.ver)
            return st
        if op == Op.COMMIT_BACKUP:
            if not r.live:
                return Status.NOT_FOUND
            if ver > r.ver:
                self._install(r, m, ver)
            return Status.OK
        if op == Op.COMMIT_PRIMARY:
            if r.last_txn == txn and r.ver == ver and r.owner != txn:
                return Status.OK
            if not r.live:
                return Status.NOT_FOUND
            if r.owner != txn:
                return Status.NOT_OWNER
            if ver <= r.ver:
                m.set_ver(r.ver)
                return Status.STALE
            self._install(r, m, ver)
            self._release(r, txn)
            return Status.OK
        if op == Op.ABORT:
            self._release(r, txn)
            return Status.OK
        if op == Op.INSERT:
            if r.live:
                if r.owner != txn and not (r.last_txn == txn and r.ver == ver):
                    return Status.EXISTS
                m.set_ver(r.ver)
                return Status.OK
            chosen = not ver
            if not ver or ver <= r.ver:
                ver = (r.ver + 1) & MASK32
            self._install(r, m, ver)
            r.live = 1
            if chosen:
                r.owner = txn
            m.set_ver(ver)
            return Status.OK
        if op == Op.DELETE:
            if not r.live:
                return Status.OK if r.last_txn == txn else Status.NOT_FOUND
            if r.owner and r.owner != txn:
                return Status.LOCKED
            r.live = 0
            r.ver = ver if ver > r.ver else (r.ver + 1) & MASK32
            r.last_txn = txn
            r.owner = 0
            r.shared = [0] * SHARED_MAX
            return Status.OK
        return Status.UNKNOWN_OP
