"""Packet fuzzing of the three systems: crafted datagrams and frames sent to
every server of a system from a client host of the testbed, each one's
outcome (no reply, or the exact bytes of the reply) predicted by a model of
the engine (harness/engine_model.py), then the checks: every server still
answers an ECHO, its counters count exactly what it was sent and did, and
its final store and log are the model's (so everything that had to be
dropped or refused left them unchanged).

Classes of input (all drawn from one seed, generated before anything is
sent, the same bytes for every system):

- request: valid-looking requests: every operation, the tables, keys loaded,
  absent, new and random, transactions holding locks and not, versions
  around the records' own and at the edges, request ids of several clients
  (some sharing a client slot), copies of earlier requests (exact, with a
  newer ack, or another request under a used id), acks that advance,
  regress, vanish or jump;
- header: malformed dint headers: wrong magic, protocol version, operation,
  table, lengths (val_len against the datagram and against the table),
  values over the protocol's maximum, truncation, a write without a
  transaction, flipped bits and fields at their extremes;
- reply: requests carrying a reply's status (never answered);
- random: random bytes, with and without a valid-looking start;
- frame: Ethernet/IPv4/UDP frames sent with a packet socket on the client's
  interface: corrupted checksums, IP total and UDP lengths, fragments, IP
  options, wrong addresses and types, each around a probe request (an
  INSERT of a key of its own). Expected: what the kernel's stack does with
  it (deliver it, or drop it); two cases the kernel delivers (valid IP
  options, a datagram in two fragments) a server may also drop.

Sending is lockstep: a request expected to be answered is waited for (an
unanswered one is sent once more before it counts as a finding); one
expected to be dropped is not, and a reply to it is recognised whenever it
comes (by its header, which a reply keeps but for status and version); an
ECHO fence follows every 64 such in a row to one server.

    python -m harness fuzz [--system dint|kernel|bypass|all] [--count N] [--seed S]
                           [--classes request,header,reply,random,frame] [--inventory FILE]
                           [--out DIR] [--cache-fraction F] [--save-inputs]
"""
from __future__ import annotations

import collections
import ctypes
import gzip
import json
import os
import random
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import RESULTS_DIR, HarnessError, snapshot
from .engine_model import DROP, MASK32, REPLY, STALE, Engine, Rec
from .protocol import (BARRIER_MAX, DEFAULT_PORT, HEADER_LEN, MAGIC, MAX_VALUE, OP_MAX, PROTO_VERSION, Op, Status,
                       is_control, offsets, pack)
from .schema import Schema

CLASSES = ("request", "header", "reply", "random", "frame")
# Shares of the classes in a run (those chosen, renormalised).
WEIGHTS = {"request": 50, "header": 20, "frame": 15, "random": 10, "reply": 5}
SYSTEMS = ("dint", "kernel", "bypass")
DEFAULT_COUNT = 100_000
EITHER = "either"  # a frame the kernel answers and a server may drop
MTU_PAYLOAD = 1500 - 20 - 8  # the largest datagram a frame of the testbed's links carries whole

# Lockstep timing: a reply is waited for WAIT_S, then the request is sent
# once more and waited for REASK_WAIT_S. After GIVE_UP unanswered requests
# of one case, further ones of it are waited for SHORT_WAIT_S, not re-asked.
WAIT_S, REASK_WAIT_S, SHORT_WAIT_S, GIVE_UP = 0.5, 2.0, 0.05, 10
DRAIN_S = 0.5          # after the last request: late replies (dint's slow path)
FENCE_EVERY = 64       # unanswered datagrams in a row to one server before an ECHO fence
MAX_RETRIES = 100      # RETRY answers to one request (dint's busy latch) before giving up
EXAMPLES = 20          # findings of one kind kept with their bytes in summary.json (all go to findings.jsonl)

_OFF = offsets()
ACK_AT, STATUS_AT, VER_AT = _OFF["ack"], _OFF["status"], _OFF["ver"]

# -- the initial data -----------------------------------------------------------
# Keys 1..LOADED[t] of each table are loaded live, plus a tombstone and a
# record whose lock is held (by a transaction of the generator's pool).
LOADED = {0: 48, 1: 24, 2: 12}
TXNS = tuple(range(1, 11))       # the transactions most requests come from
NEAR = 30                        # absent keys right above the loaded ones
FRESH_BASE = 1_000_000           # keys the request class creates, one each
PROBE_BASE = 0x5052_0000_0000_0000  # keys of the frame class's probes, one each
FENCE_BASE = 0xFE_0000_0000_0000    # keys of fences and ECHO checks

# Client ids of the request class, with weights: the harness numbers client
# slots in the low 16 bits; with 2 slots, several of these share one, so one
# takes the slot over from another.
CLIENT_IDS = ((0x00010002, 40), (0x00010001, 25), (0x00020001, 10), (0, 10), (0xFFFFFFFF, 10), (0x00030003, 5))
FRAG_ID_BASE = {"ip_frag_first": 0x0000, "ip_frag_later": 0x4000, "ip_frag_pair": 0x8000}
OP_WEIGHTS = ((Op.READ, 12), (Op.LOCK_SHARED, 10), (Op.LOCK_EXCL, 12), (Op.VALIDATE, 7), (Op.LOG, 8),
              (Op.COMMIT_BACKUP, 6), (Op.COMMIT_PRIMARY, 12), (Op.ABORT, 12), (Op.INSERT, 9), (Op.DELETE, 6),
              (Op.ECHO, 2))


def initial_records(seed: int, schema: Schema = Schema()) -> list[snapshot.Record]:
    """What every server loads: the same for every system of a run."""
    rng = random.Random(seed * 1_000_003 + 17)
    out = []
    for t, n in LOADED.items():
        size = schema.sizes[t]
        for k in range(1, n + 1):
            out.append(snapshot.Record(t, k, rng.randint(1, 5), rng.randbytes(size)))
        out.append(snapshot.Record(t, n + 1, 7, rng.randbytes(size), live=False))     # a tombstone
        out.append(snapshot.Record(t, n + 2, 2, rng.randbytes(size), owner=TXNS[t + 2]))  # locked
    return out


# -- what the fuzzer sends ---------------------------------------------------
@dataclass
class Item:
    n: int                        # its place in the run
    cls: str                      # input class (CLASSES), or "fence" / "echo"
    case: str                     # what was done to it
    server: int                   # index of the server it goes to
    data: bytes                   # the datagram as the server should see it (UDP payload)
    expect: str                   # REPLY, DROP, STALE or EITHER
    reply: bytes | None = None    # the reply the model predicts (for a frame: were it delivered)
    frames: tuple[bytes, ...] = ()  # frame class: what goes on the wire instead of data
    effect: dict = field(default_factory=dict)  # frame class: the records its probe makes if applied
    kernel: str = ""              # frame class: what the kernel's stack does with it

    def to_json(self) -> dict:
        d = {"n": self.n, "class": self.cls, "case": self.case, "server": self.server, "expect": self.expect,
             "data": self.data.hex()}
        if self.reply is not None:
            d["reply"] = self.reply.hex()
        if self.frames:
            d["frames"] = [f.hex() for f in self.frames]
            d["kernel"] = self.kernel
        return d


def ident(data: bytes) -> bytes:
    """What a reply keeps of its request: the header but for status and
    version (a reply also changes the value); a datagram shorter than a
    header, whole."""
    if len(data) < HEADER_LEN:
        return data
    return data[:STATUS_AT] + data[STATUS_AT + 1:VER_AT] + data[VER_AT + 4:HEADER_LEN]


@dataclass(frozen=True)
class Addressing:
    """How frames to one server are addressed: the client's end of their
    link and the server's, and the UDP port of the client's frame socket."""
    client_mac: str
    server_mac: str
    client_ip: str
    server_ip: str
    sport: int
    other_ip: str  # an address of the testbed that is not the server's
    port: int = DEFAULT_PORT


class _Client:
    def __init__(self, cid: int, seq: int):
        self.id, self.next_seq, self.ack = cid, seq, 0
        self.sent: collections.deque = collections.deque(maxlen=64)  # (seq, bytes) of its recent requests


class Generator:
    """Draws the inputs of a run from its seed and predicts each one's
    outcome with one Engine per server (self.models: their stores and logs
    at the end are what the servers must dump). `model_records` (default:
    `records`) is what the models believe was loaded."""

    def __init__(self, seed: int, servers: int, clients: int, records, schema: Schema = Schema(),
                 addressing: list[Addressing] | None = None, model_records=None):
        self.rng = random.Random(seed)
        self.schema, self.sizes = schema, schema.sizes
        self.models = [Engine(schema.sizes, clients, model_records if model_records is not None else records)
                       for _ in range(servers)]
        self.addressing = addressing
        self.clients = [[_Client(cid, self._start_seq()) for cid, _ in CLIENT_IDS] for _ in range(servers)]
        self.client_weights = [w for _, w in CLIENT_IDS]
        self.ops, self.op_weights = [o for o, _ in OP_WEIGHTS], [w for _, w in OP_WEIGHTS]
        self.created: dict[int, list[int]] = {t: [] for t in range(len(self.sizes))}
        self.fresh = FRESH_BASE
        self.probe = PROBE_BASE
        self.frag_ids = dict.fromkeys(FRAG_ID_BASE, 0)
        self.replies: list[bytes] = []  # some predicted replies, sent back as requests by the reply class

    def _start_seq(self) -> int:
        r = self.rng.random()
        if r < 0.3:
            return MASK32 - self.rng.randrange(200)  # wraps around during the run
        return self.rng.randrange(1, 1 << 20)

    # -- one run's inputs ------------------------------------------------
    def items(self, count: int, classes=CLASSES) -> list[Item]:
        classes = [c for c in CLASSES if c in classes]
        if "frame" in classes and self.addressing is None:
            raise HarnessError("the frame class needs the testbed's addressing")
        weights = [WEIGHTS[c] for c in classes]
        make = {"request": self._request_item, "header": self._header_item, "reply": self._reply_item,
                "random": self._random_item, "frame": self._frame_item}
        out = []
        for n in range(count):
            cls = self.rng.choices(classes, weights)[0]
            server = self.rng.randrange(len(self.models))
            out.append(make[cls](n, server))
        return out

    def _predict(self, n: int, cls: str, case: str, server: int, data: bytes) -> Item:
        o = self.models[server].process(data)
        if o.verdict == REPLY and len(self.replies) < 4096 and self.rng.random() < 0.05:
            self.replies.append(o.reply)
        return Item(n, cls, case, server, data, o.verdict, o.reply)

    # -- request: valid-looking requests -------------------------------------
    def _table(self) -> int:
        return self.rng.choices(range(len(self.sizes)), ([5, 3, 2] + [1] * 5)[:len(self.sizes)])[0]

    def _key(self, table: int) -> int:
        r, top = self.rng.random(), LOADED.get(table, 0) + 2
        if r < 0.65:
            return self.rng.randint(1, top)
        if r < 0.80:
            return top + self.rng.randint(1, NEAR)
        if r < 0.86 or not self.created[table]:
            self.fresh += 1
            self.created[table].append(self.fresh)
            return self.fresh
        if r < 0.95:
            return self.rng.choice(self.created[table])
        return self.rng.getrandbits(64)

    def _txn(self, op: int, rec: Rec | None) -> int:
        r = self.rng.random()
        if r < 0.03:
            return 0
        if r < 0.05:
            return self.rng.getrandbits(64)
        if rec is not None and r < 0.5:
            holders = [rec.owner] if rec.owner else [t for t in rec.shared if t]
            if holders:
                return self.rng.choice(holders)
        if rec is not None and rec.last_txn and r < 0.6 and op in (Op.COMMIT_PRIMARY, Op.INSERT, Op.DELETE):
            return rec.last_txn  # a duplicate of the change that made the version
        return self.rng.choice(TXNS)

    def _ver(self, op: int, rec: Rec | None) -> int:
        cur, r = (rec.ver if rec is not None else 0), self.rng.random()
        if op in (Op.COMMIT_PRIMARY, Op.COMMIT_BACKUP, Op.DELETE, Op.INSERT):
            if op == Op.INSERT and r < 0.35:
                return 0
            if r < 0.55:
                return (cur + 1) & MASK32
            if r < 0.65:
                return cur
            if r < 0.72:
                return max(cur - 1, 0)
            if r < 0.82:
                return self.rng.randrange(20)
            if r < 0.90:
                return MASK32 - self.rng.randrange(3)
            return self.rng.getrandbits(32)
        if op == Op.VALIDATE:
            if r < 0.6:
                return cur
            return (cur + self.rng.choice((-1, 1, 2))) & MASK32 if r < 0.9 else self.rng.getrandbits(32)
        return self.rng.randrange(20) if r < 0.8 else self.rng.getrandbits(32)

    def _ack(self, c: _Client) -> int:
        r = self.rng.random()
        if r < 0.75:
            return c.ack
        if r < 0.90:  # advances to a request still recent
            c.ack = (c.next_seq - self.rng.randrange(0, 16)) & MASK32
            return c.ack
        if r < 0.94:
            return 0
        if r < 0.97:
            return (c.ack - self.rng.randrange(1, 100)) & MASK32  # older than the last: ignored
        return (c.ack + (1 << 31) + self.rng.randrange(-3, 4)) & MASK32  # half the sequence space away

    def _fresh_request(self, server: int, with_id: bool = True) -> tuple[str, bytes]:
        """A new request to a server (its case: the operation's name), with
        the next request id of one of its clients unless with_id is false
        (then, or one time in ten, none)."""
        rng = self.rng
        op = rng.choices(self.ops, self.op_weights)[0]
        table = self._table()
        key = self._key(table)
        rec = self.models[server].recs.get((table, key))
        txn, ver = self._txn(op, rec), self._ver(op, rec)
        value = rng.randbytes(self.sizes[table])
        c = None
        if with_id and rng.random() >= 0.1:
            c = rng.choices(self.clients[server], self.client_weights)[0]
            seq = c.next_seq
            c.next_seq = (c.next_seq + 1) & MASK32
            cid, ack = c.id, self._ack(c)
        else:
            cid, seq, ack = rng.choices([i for i, _ in CLIENT_IDS], self.client_weights)[0], 0, rng.getrandbits(32)
        data = pack(op, key, value, table=table, ver=ver, txn=txn, client_id=cid, seq=seq, ack=ack)
        if c is not None:
            c.sent.append((seq, data))
        return Op(op).name, data

    def _request_item(self, n: int, server: int) -> Item:
        rng, r = self.rng, self.rng.random()
        c = rng.choices(self.clients[server], self.client_weights)[0]
        if r < 0.15 and c.sent:
            seq, data = rng.choice(c.sent)
            if rng.random() < 0.6:
                return self._predict(n, "request", "copy", server, data)
            ack = struct.pack(">I", self._ack(c))
            return self._predict(n, "request", "copy_new_ack", server, data[:ACK_AT] + ack + data[ACK_AT + 4:])
        if r < 0.18 and c.sent:  # another request under an id already used
            seq, _ = rng.choice(c.sent)
            _, data = self._fresh_request(server, with_id=False)
            head = bytearray(data)
            struct.pack_into(">II", head, _OFF["client_id"], c.id, seq)
            struct.pack_into(">I", head, ACK_AT, self._ack(c))
            return self._predict(n, "request", "reused_id", server, bytes(head))
        case, data = self._fresh_request(server)
        return self._predict(n, "request", case, server, data)

    # -- header: malformed dint headers (built with scapy's Dint layer) --------
    HEADER_CASES = ("wrong_magic", "bad_proto", "bad_op", "bad_table", "val_len_mismatch", "wrong_value_size",
                    "oversized_value", "truncated_header", "truncated_value", "trailing_bytes", "no_txn",
                    "bit_flips", "field_extremes", "checkpoint_barrier")
    # A barrier request's participants (ver): out of range, or so many that
    # the few arrivals of a run never complete an epoch, so that every
    # answer is the model's whatever the time a server's checkpoint takes.
    BARRIER_NS = (0, BARRIER_MAX - 24, BARRIER_MAX, BARRIER_MAX + 1)

    def _header_item(self, n: int, server: int) -> Item:
        from .scapy_layer import Dint
        rng = self.rng
        case = rng.choice(self.HEADER_CASES)
        _, base = self._fresh_request(server, with_id=rng.random() < 0.5)
        d = Dint(base)
        fields = {f: d.getfieldval(f) for f in ("magic", "proto", "op", "status", "table", "client_id", "seq",
                                                "txn", "key", "ver", "ack")}
        value = bytes(d.value)
        val_len = None  # from the value
        cut = None
        if case == "wrong_magic":
            fields["magic"] = rng.choice([m for m in (0, 0xFFFF, 0x7ED1, MAGIC ^ 1, rng.getrandbits(16)) if m != MAGIC])
        elif case == "bad_proto":
            fields["proto"] = rng.choice([p for p in (0, 1, 3, 255, rng.getrandbits(8)) if p != PROTO_VERSION])
        elif case == "bad_op":
            fields["op"] = rng.choice((0, 12, 13, 255, rng.randrange(12, 256)))
        elif case == "bad_table":
            fields["table"] = rng.randrange(len(self.sizes), 256)
        elif case == "val_len_mismatch":
            val_len = rng.choice(((len(value) + rng.randint(1, 64)) & 0xFFFF, max(len(value) - rng.randint(1, 8), 0)
                                  if len(value) else 1, 0xFFFF, rng.getrandbits(16)))
            if val_len == len(value):
                val_len = (val_len + 1) & 0xFFFF
        elif case == "wrong_value_size":
            size = rng.choice([s for s in range(0, 49) if s != len(value)])
            value = rng.randbytes(size)
        elif case == "oversized_value":
            value = rng.randbytes(rng.randint(MAX_VALUE + 1, MTU_PAYLOAD - HEADER_LEN))
        elif case == "truncated_header":
            cut = rng.randrange(0, HEADER_LEN)
        elif case == "truncated_value":
            value = rng.randbytes(rng.randint(1, 40))
            cut = HEADER_LEN + rng.randrange(len(value))
        elif case == "trailing_bytes":
            val_len = len(value)
            value = value + rng.randbytes(rng.randint(1, 32))
        elif case == "no_txn":
            fields["op"] = rng.choice([o for o in Op if o < OP_MAX and o not in (Op.ECHO, Op.READ, Op.VALIDATE)])
            fields["txn"] = 0
        elif case == "checkpoint_barrier":  # a control request (engine/dint_proto.h), at and past its edges
            parts = rng.choice((*self.BARRIER_NS, BARRIER_MAX, rng.getrandbits(32)))
            fields.update(op=Op.CHECKPOINT, table=0, seq=0, ack=0, key=rng.choice((0, 1, 1, 2, rng.getrandbits(64))),
                          ver=parts, txn=rng.choice((0, max(parts - 1, 0), parts, rng.getrandbits(64))))
            value = b"" if rng.random() < 0.8 else rng.randbytes(rng.randint(1, 16))
        elif case == "field_extremes":
            name = rng.choice(list(fields))
            bits = {"magic": 16, "client_id": 32, "seq": 32, "txn": 64, "key": 64, "ver": 32, "ack": 32}.get(name, 8)
            fields[name] = rng.choice((0, (1 << bits) - 1, 1 << (bits - 1)))
        data = bytes(Dint(**fields, val_len=val_len, value=value))
        if case == "bit_flips":
            b = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(HEADER_LEN)
                b[i] ^= 1 << rng.randrange(8)
            data = bytes(b)
        if cut is not None:
            data = data[:cut]
        return self._predict(n, "header", case, server, data)

    # -- reply: what a server sends, sent to it -------------------------------
    def _reply_item(self, n: int, server: int) -> Item:
        rng = self.rng
        if self.replies and rng.random() < 0.3:
            return self._predict(n, "reply", "reflected_reply", server, rng.choice(self.replies))
        _, data = self._fresh_request(server, with_id=rng.random() < 0.3)
        status = rng.choice((rng.randrange(1, Status.RETRY + 1), rng.randrange(1, 256)))
        b = bytearray(data)
        b[STATUS_AT] = status
        return self._predict(n, "reply", "status_set", server, bytes(b))

    # -- random: bytes -----------------------------------------------------------
    def _random_item(self, n: int, server: int) -> Item:
        rng, r = self.rng, self.rng.random()
        if r < 0.6:
            size = rng.randint(0, 80) if rng.random() < 0.6 else rng.randint(0, MTU_PAYLOAD)
            return self._predict(n, "random", "random_bytes", server, rng.randbytes(size))
        if r < 0.9:  # a valid-looking start, random after it
            size = rng.randint(HEADER_LEN, HEADER_LEN + 64) if rng.random() < 0.8 else rng.randint(HEADER_LEN, MTU_PAYLOAD)
            b = bytearray(rng.randbytes(size))
            struct.pack_into(">HBBB", b, 0, MAGIC, PROTO_VERSION, rng.randrange(0, 14), 0)
            b[5] = rng.randrange(len(self.sizes) + 1)
            if rng.random() < 0.5:  # val_len that fits
                struct.pack_into(">H", b, 6, size - HEADER_LEN)
            return self._predict(n, "random", "random_after_magic", server, bytes(b))
        return self._predict(n, "random", "zeros", server, bytes(rng.randint(1, 100)))

    # -- frame: Ethernet/IPv4/UDP corruption around a probe request ---------------
    # case: what the kernel's stack does with it
    FRAME_CASES = {
        "ok": "answers",
        "udp_no_checksum": "answers",                 # checksum 0: none
        "ip_padding": "answers",                      # bytes after the IP packet: trimmed
        "udp_len_trim": "answers",                    # UDP length under the IP payload: trimmed to it
        "ip_ttl_zero": "answers",                     # TTL is not checked on local delivery
        "ip_df_tos": "answers",                       # don't-fragment, DSCP and ECN bits
        "ip_options": "answers; a server may drop",   # valid options (NOPs, router alert)
        "ip_frag_pair": "answers; a server may drop",  # a datagram in two fragments: reassembled
        "ip_bad_checksum": "drops",
        "udp_bad_checksum": "drops",
        "ip_len_over_frame": "drops",                 # total length past the frame's end
        "ip_len_short": "drops",                      # total length short of the UDP length
        "udp_len_over": "drops",                      # UDP length past the IP payload (into padding)
        "udp_len_under_header": "drops",              # UDP length under 8
        "ip_version": "drops",
        "ip_ihl_short": "drops",
        "ip_options_bad": "drops",                    # an option of a bad length
        "ip_frag_first": "drops",                     # a first fragment alone: held for reassembly
        "ip_frag_later": "drops",                     # a later fragment alone
        "ip_src_martian": "drops",                    # loopback, zero, multicast or broadcast source
        "ip_dst_other": "drops",                      # another host's, loopback or zero destination
        "eth_dst_other": "drops",                     # another host's MAC
        "ethertype_other": "drops",
        "ip_proto_other": "drops",
        "truncated_frame": "drops",
        "udp_port_other": "drops",                    # not the dint port: not a server's at all
    }

    def _probe(self) -> bytes:
        """An INSERT of a key no other input touches, without a request id:
        what a frame carries, so a frame applied shows in the store."""
        self.probe += 1
        return pack(Op.INSERT, self.probe, self.rng.randbytes(self.sizes[0]), table=0,
                    ver=self.rng.randint(1, 9), txn=self.rng.choice(TXNS))

    def _effect(self, data: bytes) -> dict:
        """The records a probe makes, applied on its own (its key is its own)."""
        scratch = Engine(self.sizes, 1)
        o = scratch.process(data)
        return scratch.dump() if o.verdict == REPLY and o.reply[STATUS_AT] == Status.OK else {}

    def _frame_item(self, n: int, server: int) -> Item:
        from scapy.layers.inet import IP, UDP, IPOption, IPOption_Router_Alert
        from scapy.layers.l2 import Ether
        from scapy.packet import Raw
        rng, a = self.rng, self.addressing[server]
        case = rng.choice(list(self.FRAME_CASES))
        kernel = self.FRAME_CASES[case]
        probe = self._probe()
        delivered = probe  # what the kernel's stack delivers, if it does
        ether = Ether(src=a.client_mac, dst=a.server_mac)
        ip = dict(src=a.client_ip, dst=a.server_ip, id=rng.getrandbits(16), ttl=64)
        udp = dict(sport=a.sport, dport=a.port)
        frames = None
        if case == "ip_ttl_zero":
            ip["ttl"] = 0
        elif case == "ip_df_tos":
            ip.update(flags="DF", tos=rng.getrandbits(8))
        elif case == "udp_no_checksum":
            udp["chksum"] = 0
        elif case == "udp_port_other":
            udp["dport"] = rng.choice([p for p in (a.port + 1, a.port - 1, 53, rng.randrange(1, 65536)) if p != a.port])
        elif case == "ip_options":
            ip["options"] = [rng.choice((IPOption(b"\x01\x01\x01\x00"), IPOption_Router_Alert()))]
        elif case in ("ip_options_bad", "ip_version", "ip_ihl_short"):
            ip["options"] = [IPOption(b"\x01\x01\x01\x00")]  # patched below
        elif case == "ip_src_martian":
            ip["src"] = rng.choice(("127.0.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255"))
        elif case == "ip_dst_other":
            ip["dst"] = rng.choice((a.other_ip, "127.0.0.1", "0.0.0.0"))
        elif case == "eth_dst_other":
            ether = Ether(src=a.client_mac, dst="02:%02x:%02x:%02x:%02x:%02x" % tuple(rng.randbytes(5)))
        elif case == "ethertype_other":
            ether = Ether(src=a.client_mac, dst=a.server_mac, type=rng.choice((0x86DD, 0x88B5, 0x0806)))
        elif case == "ip_proto_other":
            ip["proto"] = rng.choice((6, 253))
        if case in ("ip_frag_first", "ip_frag_later", "ip_frag_pair"):
            # ids of their own per case, so that no two of them make a datagram
            self.frag_ids[case] += 1
            fid = FRAG_ID_BASE[case] + self.frag_ids[case] % 0x4000
            whole = bytes(IP(src=a.client_ip, dst=a.server_ip) / UDP(**udp) / Raw(probe))[20:]
            if case == "ip_frag_first":
                frames = [ether / IP(**{**ip, "id": fid}, flags="MF", frag=0, proto=17) / Raw(whole)]
            elif case == "ip_frag_later":
                frames = [ether / IP(**{**ip, "id": fid}, frag=rng.randint(1, 100), proto=17) / Raw(whole)]
            else:
                frames = [ether / IP(**{**ip, "id": fid}, flags="MF", frag=0, proto=17) / Raw(whole[:24]),
                          ether / IP(**{**ip, "id": fid}, frag=3, proto=17) / Raw(whole[24:])]
            frames = [bytes(f) for f in frames]
        else:
            ip_layer, udp_layer = IP(**ip), UDP(**udp)
            if case == "ip_len_over_frame":
                ip_layer.len = 20 + 8 + len(probe) + rng.randint(1, 64)
            elif case == "ip_len_short":
                ip_layer.len = 20 + 8 + len(probe) - rng.randint(1, 8 + len(probe))
            elif case == "udp_len_over":
                udp_layer.len, udp_layer.chksum = 8 + len(probe) + rng.randint(1, 16), 0
            elif case == "udp_len_under_header":
                udp_layer.len, udp_layer.chksum = rng.randrange(8), 0
            elif case == "udp_len_trim":
                cut = rng.randrange(len(probe))
                udp_layer.len, udp_layer.chksum = 8 + cut, 0
                delivered = probe[:cut]
            frame = bytearray(bytes(ether / ip_layer / udp_layer / Raw(probe)))
            if case in ("ip_padding", "udp_len_over"):
                frame += rng.randbytes(rng.randint(16, 32))
            if case == "ip_bad_checksum":
                _xor16(frame, 24, rng)
            elif case == "udp_bad_checksum":
                _xor16(frame, 14 + 20 + 6, rng, keep_nonzero=True)
            elif case == "ip_options_bad":
                frame[34:38] = rng.choice((b"\x44\x02\x00\x00", b"\x07\x00\x00\x00", b"\x83\x09\x04\x00"))
                _ip_checksum(frame)
            elif case == "ip_version":
                frame[14] = rng.choice((0x0, 0x5, 0x6, 0xF)) << 4 | 6
                _ip_checksum(frame)
            elif case == "ip_ihl_short":
                frame[14] = 0x40 | rng.randrange(5)
                _ip_checksum(frame, ihl=6)
            elif case == "truncated_frame":
                frame = frame[:rng.randint(14, 14 + 20 + 8 + 8)]
            frames = [bytes(frame)]
        if kernel == "answers":  # delivered: the server's model answers it
            o = self.models[server].process(delivered)
            expect, reply = o.verdict, o.reply
        else:  # the reply it would get were it delivered (its key is its own)
            reply = Engine(self.sizes, 1).process(delivered).reply
            expect = EITHER if kernel.startswith("answers") else DROP
        return Item(n, "frame", case, server, delivered, expect, reply, tuple(frames), self._effect(delivered), kernel)


def _xor16(frame: bytearray, at: int, rng: random.Random, keep_nonzero: bool = False) -> None:
    """Corrupts the 16-bit checksum at `at`: never into an equivalent one
    (0 and 0xFFFF are one value in ones' complement) nor, for UDP, into 0
    (no checksum)."""
    old = frame[at] << 8 | frame[at + 1]
    while True:
        new = old ^ rng.randrange(1, 1 << 16)
        if {old, new} != {0, 0xFFFF} and not (keep_nonzero and new == 0):
            break
    frame[at], frame[at + 1] = new >> 8, new & 0xFF


def _ip_checksum(frame: bytearray, ihl: int | None = None) -> None:
    """Recomputes the IPv4 header checksum of a frame (over ihl words, by
    default the header's own)."""
    words = ihl if ihl is not None else frame[14] & 0xF
    frame[24:26] = b"\0\0"
    s = sum(struct.unpack(f">{2 * words}H", bytes(frame[14:14 + 4 * words])))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    frame[24:26] = struct.pack(">H", ~s & 0xFFFF)


# -- the wire --------------------------------------------------------------------
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SKF_AD_PKTTYPE = -0x1000 + 4


def _reply_filter(sport: int, dport: int) -> bytes:
    """A classic BPF program: frames arriving (not leaving) with an IPv4
    UDP header from `sport` to `dport` (whatever their Ethernet type, so a
    reply to a frame of another type is seen too)."""
    ins = [
        (0x20, 0, 0, SKF_AD_PKTTYPE & 0xFFFFFFFF),  # ld pkttype
        (0x15, 8, 0, PACKET_OUTGOING),              # jeq outgoing -> drop
        (0x30, 0, 0, 23),                           # ldb [23]: the IP protocol
        (0x15, 0, 6, 17),                           # jne udp -> drop
        (0xB1, 0, 0, 14),                           # ldx 4*([14]&0xf)
        (0x48, 0, 0, 14),                           # ldh [x+14]: the source port
        (0x15, 0, 3, sport),
        (0x48, 0, 0, 16),                           # ldh [x+16]: the destination port
        (0x15, 0, 1, dport),
        (0x06, 0, 0, 0xFFFF),                       # accept
        (0x06, 0, 0, 0),                            # drop
    ]
    return b"".join(struct.pack("HBBI", *i) for i in ins)


class Wire:
    """The client host's sockets, made in its namespace: one UDP socket for
    datagrams to every server, and for frames one packet socket per server
    on the client's interface to it, which also receives the replies to
    them, whatever their type and checksums (they go to the UDP port of a
    second socket, never read)."""

    def __init__(self, inv, frames: bool):
        from .netns import netns
        client = inv.clients[0]
        self.servers = inv.servers
        self.addr_index = {(s.address, inv.port): i for i, s in enumerate(inv.servers)}
        self.port = inv.port
        self.raw: list[socket.socket] = []
        self.ifnames = [client.interface_to(s.name).name for s in inv.servers]
        self.udp = self.frame_sock = None
        try:
            with netns(client.netns):
                self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                self.udp.bind((client.address, 0))
                self.udp.setblocking(False)
                self.addressing = None
                if frames:
                    self.frame_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    self.frame_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
                    self.frame_sock.bind((client.address, 0))
                    fport = self.frame_sock.getsockname()[1]
                    self.addressing = []
                    for i, s in enumerate(inv.servers):
                        cif, sif = client.interface_to(s.name), s.interface_to(client.name)
                        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                        code = _reply_filter(inv.port, fport)
                        prog = ctypes.create_string_buffer(code, len(code))
                        fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(prog))
                        raw.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
                        raw.bind((cif.name, ETH_P_ALL))
                        raw.setblocking(False)
                        self.raw.append(raw)
                        other = next((h.address for h in inv.hosts if h.address not in (s.address, client.address)),
                                     "192.0.2.1")
                        self.addressing.append(Addressing(cif.mac, sif.mac, client.address, s.address, fport, other,
                                                          inv.port))
        except OSError as e:
            self.close()
            raise HarnessError(f"cannot open the fuzzer's sockets on {client.name}: {e}") from None
        self.raw_index = {r.fileno(): i for i, r in enumerate(self.raw)}

    def close(self) -> None:
        for s in [self.udp, self.frame_sock, *self.raw]:
            if s is not None:
                s.close()
        self.raw = []
        self.udp = self.frame_sock = None

    def __enter__(self) -> "Wire":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send(self, item: Item) -> None:
        try:
            if item.frames:
                for f in item.frames:
                    self.raw[item.server].sendto(f, (self.ifnames[item.server], f[12] << 8 | f[13]))
            else:
                self.udp.sendto(item.data, (self.servers[item.server].address, self.port))
        except OSError as e:
            raise HarnessError(f"sending input {item.n} ({item.cls}/{item.case}) failed: {e}") from None

    def receive(self, timeout: float) -> list[tuple[int, bytes, bool]]:
        """What arrived within timeout: (server, UDP payload, came as a frame)."""
        socks = [self.udp, *self.raw]
        ready, _, _ = select.select(socks, [], [], max(timeout, 0))
        out = []
        for s in ready:
            while True:
                try:
                    data, addr = s.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:  # an ICMP error reported on the socket
                    continue
                if s is self.udp:
                    i = self.addr_index.get(addr[:2])
                    if i is not None:
                        out.append((i, data, False))
                    continue
                payload = _udp_payload(data)
                if payload is not None:
                    out.append((self.raw_index[s.fileno()], payload, True))
        return out


def _udp_payload(frame: bytes) -> bytes | None:
    """The UDP payload of an IPv4 frame, by its UDP length."""
    if len(frame) < 14 + 20:
        return None
    ihl = (frame[14] & 0xF) * 4
    u = 14 + ihl
    if len(frame) < u + 8:
        return None
    ulen = frame[u + 4] << 8 | frame[u + 5]
    if ulen < 8:
        return None
    return frame[u + 8:u + ulen]


# -- one system's run ----------------------------------------------------------
class Exchange:
    """Sends a run's items to one system in order, waits for the replies it
    expects, recognises the others, and keeps what came back: answers[n] is
    every reply to item n, in order of arrival."""

    def __init__(self, wire: Wire, nservers: int, system=None, progress=None):
        self.wire, self.system, self.progress = wire, system, progress
        self.answers: dict[int, list[bytes]] = collections.defaultdict(list)
        self.sends: collections.Counter = collections.Counter()   # item n -> times sent
        self.reasked: set[int] = set()
        self.retries: collections.Counter = collections.Counter()
        self.unexplained: list[tuple[int, bytes]] = []
        self.extra: list[int] = []       # items answered once more after a re-ask
        self.pending = [collections.defaultdict(collections.deque) for _ in range(nservers)]
        self.answered = [dict() for _ in range(nservers)]  # ident -> the last awaited item answered
        self.nowait = [0] * nservers
        self.extra_items: list[Item] = []  # fences and ECHO checks
        self.given_up: collections.Counter = collections.Counter()  # (class, case) -> unanswered so far
        self.died: str | None = None
        self.awaiting: Item | None = None
        self.next_n = 1 << 40

    # -- receiving ---------------------------------------------------------
    def _take(self, server: int, payload: bytes) -> None:
        key = ident(payload)
        a = self.awaiting
        if a is not None and a.server == server and ident(a.data) == key:
            self.answers[a.n].append(payload)
            return
        q = self.pending[server].get(key)
        if q:  # the oldest unanswered datagram that was not waited for
            self.answers[q.popleft().n].append(payload)
            return
        prev = self.answered[server].get(key)
        if prev is not None and (prev.n in self.reasked or not self.answers.get(prev.n)):
            if self.answers.get(prev.n):  # both copies answered
                self.extra.append(prev.n)
            self.answers[prev.n].append(payload)  # or late
            return
        self.unexplained.append((server, payload))

    def poll(self, timeout: float) -> None:
        for server, payload, _ in self.wire.receive(timeout):
            self._take(server, payload)

    # -- sending -------------------------------------------------------------
    def _send(self, item: Item) -> None:
        self.sends[item.n] += 1
        self.wire.send(item)

    def _await(self, item: Item) -> None:
        self.awaiting = item
        slow = self.given_up[(item.cls, item.case)] >= GIVE_UP
        deadline = time.monotonic() + (SHORT_WAIT_S if slow else WAIT_S)
        seen = 0
        try:
            while True:
                self.poll(deadline - time.monotonic())
                got = self.answers.get(item.n, [])
                if len(got) > seen:
                    seen = len(got)
                    if got[-1][STATUS_AT] == Status.RETRY and item.reply[STATUS_AT] != Status.RETRY \
                            and self.retries[item.n] < MAX_RETRIES:
                        self.retries[item.n] += 1
                        if is_control(item.data):  # a barrier's checkpoint being taken: as a client polls
                            time.sleep(0.002)
                        self._send(item)
                        deadline = time.monotonic() + WAIT_S
                        continue
                    break
                if time.monotonic() >= deadline:
                    if slow or item.n in self.reasked:
                        self.given_up[(item.cls, item.case)] += 1
                        self._check_alive()
                        break
                    self.reasked.add(item.n)
                    self._send(item)
                    deadline = time.monotonic() + REASK_WAIT_S
        finally:
            self.awaiting = None
        self.answered[item.server][ident(item.data)] = item
        self.nowait[item.server] = 0

    def _check_alive(self) -> None:
        if self.system is None:
            return
        try:
            self.system.check_alive()
        except HarnessError as e:
            self.died = str(e)

    def _extra(self, cls: str, server: int) -> Item:
        """An ECHO of a key of its own: a fence, or a check that a server answers."""
        self.next_n += 1
        data = pack(Op.ECHO, FENCE_BASE + self.next_n, b"fuzz")
        b = bytearray(data)
        b[STATUS_AT] = Status.OK
        item = Item(self.next_n, cls, cls, server, data, REPLY, bytes(b))
        self.extra_items.append(item)
        return item

    def echo(self, server: int, cls: str = "echo") -> Item:
        """An ECHO to a server, waited for (cls "echo_after" after the run)."""
        item = self._extra(cls, server)
        self._send(item)
        self._await(item)
        return item

    def run(self, items: list[Item]) -> None:
        for i, item in enumerate(items):
            if self.died:
                break
            self._send(item)
            if item.expect == REPLY:
                self._await(item)
            else:
                self.pending[item.server][ident(item.data)].append(item)
                self.nowait[item.server] += 1
                self.poll(0)
                if self.nowait[item.server] >= FENCE_EVERY:
                    fence = self._extra("fence", item.server)
                    self._send(fence)
                    self._await(fence)
            if self.progress and i % 1000 == 0:
                self.progress(i)

    def drain(self) -> None:
        end = time.monotonic() + DRAIN_S
        while time.monotonic() < end:
            self.poll(end - time.monotonic())


# -- the checks ------------------------------------------------------------------
FINDINGS = {
    "wrong_reply": "replies that differ from the model's",
    "no_reply": "requests left unanswered, sent twice (once, after ten of their case went unanswered)",
    "answered_dropped": "datagrams that must be dropped, answered",
    "answered_kernel_drops": "frames the kernel's stack drops, answered",
    "unexplained_reply": "replies to nothing sent",
    "retry": "RETRY answers from a server whose latches never fail",
    "echo_after": "servers not answering an ECHO after the run",
    "server_died": "servers that died during the run",
    "unclean_stop": "servers that did not stop cleanly",
    "counters": "counters that do not match what was sent and answered",
    "store": "records whose dump differs from the model's store",
    "log": "log records that differ from the model's log",
}


@dataclass
class Finding:
    kind: str
    system: str
    server: str
    detail: dict

    def to_json(self) -> dict:
        return {"kind": self.kind, "system": self.system, "server": self.server, **self.detail}


def _rec_json(r: snapshot.Record | None) -> dict | None:
    if r is None:
        return None
    return {"table": r.table, "key": r.key, "live": r.live, "ver": r.ver, "owner": r.owner, "nshared": r.nshared,
            "value": r.value.hex()}


def expected_store(model: Engine, items: list[Item], answers: dict) -> dict:
    """The model's store, corrected for the frames whose fate the kernel
    leaves open or which a server got wrong: a probe the server answered OK
    is in (its key is its own), one it did not answer is not."""
    store = model.dump()
    for item in items:
        if not item.frames or not item.effect:
            continue
        got = [r for r in answers.get(item.n, []) if r[STATUS_AT] != Status.RETRY]
        applied = bool(got) and got[0][STATUS_AT] == Status.OK
        if applied:
            store.update(item.effect)
        else:
            for k in item.effect:
                store.pop(k, None)
    return store


def compare_store(expected: dict, dumped: list) -> list[dict]:
    """Differences between the model's store and a dump, record by record."""
    got = {(r.table, r.key): r for r in dumped}
    diffs = []
    for k in sorted(set(expected) | set(got)):
        e, g = expected.get(k), got.get(k)
        if e != g:
            diffs.append({"table": k[0], "key": k[1], "expected": _rec_json(e), "dumped": _rec_json(g)})
    return diffs


def compare_log(expected: list, got: list, ordered: bool) -> list[dict]:
    def j(r):
        return {"txn": r.txn, "table": r.table, "key": r.key, "ver": r.ver, "value": r.value.hex()}
    if ordered:
        if expected == got:
            return []
        i = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
        return [{"at": i, "expected": j(expected[i]) if i < len(expected) else None,
                 "logged": j(got[i]) if i < len(got) else None, "expected_len": len(expected), "logged_len": len(got)}]
    e, g = collections.Counter(expected), collections.Counter(got)
    return ([{"missing": j(r), "times": c} for r, c in (e - g).items()] +
            [{"extra": j(r), "times": c} for r, c in (g - e).items()])


def seen(system: str, st: dict) -> int:
    """Datagrams a server took in. dint's rx counts each once already
    (harness/dintd.py, combine_stats): its XDP program's, less those it
    passed up, plus its slow path's (which also gets what the kernel
    delivers without XDP's parsing it)."""
    return st["rx"]


def expected_counters(items: list[Item], ex: Exchange, nservers: int) -> list[dict]:
    """Per server, what its counters must say from what was sent and what
    came back: every datagram sent counts rx, every reply tx (and err if
    not OK), every datagram unanswered drop (and stale if the model says it
    is a stale copy). A frame the kernel's stack would not deliver as it is
    may never reach a server's counters: unanswered, it gives a range
    (rx_max, drop_max). slack: requests sent twice (the first copy, or its
    reply, may have been lost on the way)."""
    out = [dict(rx=0, tx=0, drop=0, err=0, stale=0, rx_max=0, drop_max=0, slack=0) for _ in range(nservers)]
    for item in items + ex.extra_items:
        sent = ex.sends.get(item.n, 0)
        if not sent or (not item.frames and is_control(item.data)):  # a barrier request: counted nowhere
            continue
        c = out[item.server]
        replies = ex.answers.get(item.n, [])
        unanswered = max(sent - len(replies), 0)
        c["tx"] += len(replies)
        c["err"] += sum(1 for r in replies if r[STATUS_AT] != Status.OK)
        if item.n in ex.reasked:
            c["slack"] += 1
        if item.frames and item.kernel != "answers":
            c["rx"] += len(replies)
            c["rx_max"] += unanswered
            c["drop_max"] += unanswered
            continue
        c["rx"] += sent
        c["drop"] += unanswered
        if item.expect == STALE:
            c["stale"] += unanswered
    for c in out:
        c["rx_max"] += c["rx"]
        c["drop_max"] += c["drop"]
    return out


def check_counters(system: str, exp: dict, got: dict | None) -> list[str]:
    """What does not match, as short phrases ([] if all does)."""
    if got is None:
        return ["no counters (the server printed none)"]
    bad = []
    rx, slack = seen(system, got), exp["slack"]
    if not exp["rx"] - slack <= rx <= exp["rx_max"] + slack:
        want = exp["rx"] if exp["rx"] == exp["rx_max"] else f"{exp['rx']}..{exp['rx_max']}"
        bad.append(f"rx {rx}, expected {want}")
    # the frames a server counted but did not answer are its extra drops
    drop_want = exp["drop"] + (rx - exp["rx"])
    if abs(got["drop"] - drop_want) > slack:
        bad.append(f"drop {got['drop']}, expected {drop_want}")
    for k in ("tx", "err", "stale"):
        if abs(got[k] - exp[k]) > slack:
            bad.append(f"{k} {got[k]}, expected {exp[k]}")
    if rx - got["drop"] != got["tx"]:
        bad.append(f"rx - drop = {rx - got['drop']} but tx {got['tx']}")
    return bad


def _outcome(system: str, item: Item, ex: Exchange, add) -> str:
    """What became of one item (answered, dropped, ...), its findings added."""
    replies = ex.answers.get(item.n, [])
    if item.reply is not None and item.reply[STATUS_AT] == Status.RETRY:  # a barrier's: RETRY is the answer
        final = replies
    else:
        final = [r for r in replies if r[STATUS_AT] != Status.RETRY]
    if not ex.sends.get(item.n):
        return "not_sent"
    where = {"n": item.n, "class": item.cls, "case": item.case, "sent": item.data.hex()}
    if item.frames:
        where["frames"] = [f.hex() for f in item.frames]
        where["kernel"] = item.kernel
    if item.n in ex.reasked:
        where["re_asked"] = True
    if ex.retries.get(item.n):
        where["retry_answers"] = ex.retries[item.n]
        if system != "dint" and not is_control(item.data):  # a barrier's may be in its checkpoint
            add("retry", item.server, **where)
    if item.expect == REPLY:
        if not final:
            add("no_reply", item.server, **where, expected=item.reply.hex())
            return "unanswered"
        if final[0] != item.reply:
            add("wrong_reply", item.server, **where, expected=item.reply.hex(), got=final[0].hex())
            return "wrong"
        return "answered"
    if item.expect == EITHER:
        if not final:
            return "dropped_tolerated"
        if final[0] != item.reply:
            add("wrong_reply", item.server, **where, expected=item.reply.hex(), got=final[0].hex())
            return "wrong"
        return "answered_tolerated"
    if replies:
        kind = "answered_kernel_drops" if item.frames and item.kernel != "answers" else "answered_dropped"
        add(kind, item.server, **where, expected="no reply" + (" (stale copy)" if item.expect == STALE else ""),
            got=replies[0].hex())
        return "answered_must_drop"
    return "dropped"


def check(system: str, inv, items: list[Item], ex: Exchange, models: list[Engine], stats: dict,
          dumps: dict, logs: dict) -> tuple[list[Finding], dict]:
    """Every finding of one system's run, and its figures."""
    findings: list[Finding] = []
    names = [s.name for s in inv.servers]

    def add(kind, server, **detail):
        findings.append(Finding(kind, system, names[server] if isinstance(server, int) else server, detail))

    outcomes: dict = collections.defaultdict(collections.Counter)  # class -> outcome -> n
    by_case: dict = collections.defaultdict(collections.Counter)   # class/case -> outcome -> n
    for item in items:
        outcome = _outcome(system, item, ex, add)
        outcomes[item.cls][outcome] += 1
        by_case[f"{item.cls}/{item.case}"][outcome] += 1
    for server, payload in ex.unexplained:
        add("unexplained_reply", server, got=payload.hex())
    if ex.died:
        add("server_died", "-", error=ex.died)
    for item in ex.extra_items:  # the ECHOs: fences, and the checks before and after
        got = ex.answers.get(item.n, [])
        if not got or got[0] != item.reply:
            add("echo_after" if item.cls == "echo_after" else "no_reply", item.server, n=item.n, **{"class": item.cls},
                sent=item.data.hex(), expected=item.reply.hex(), got=got[0].hex() if got else None)
    exp = expected_counters(items, ex, len(names))
    counters = {}
    for i, name in enumerate(names):
        st = stats.get(name)
        bad = check_counters(system, exp[i], st)
        counters[name] = {"expected": exp[i], "got": st, "mismatch": bad}
        if bad:
            add("counters", i, mismatch=bad, expected=exp[i], got=st)
        if st is None or st.get("clean") is False:
            add("unclean_stop", i, stats=st)
    stores = {}
    for i, name in enumerate(names):
        if name not in dumps:
            continue
        want = expected_store(models[i], [it for it in items if it.server == i], ex.answers)
        diffs = compare_store(want, dumps[name])
        stores[name] = {"records": len(dumps[name]), "expected": len(want), "differ": len(diffs)}
        for d in diffs:
            add("store", i, **d)
        for d in compare_log(models[i].log, logs.get(name, []), ordered=system != "dint"):
            add("log", i, **d)
    figures = {
        "outcomes": {k: dict(v) for k, v in outcomes.items()},
        "outcomes_by_case": {k: dict(v) for k, v in sorted(by_case.items())},
        "re_asked": len(ex.reasked), "answered_after_re_ask": len(ex.extra),
        "retry_answers": sum(ex.retries.values()),
        "fences": sum(1 for it in ex.extra_items if it.cls == "fence"),
        "counters": counters, "stores": stores,
        "log_records": {n: len(logs.get(n, [])) for n in names},
    }
    return findings, figures


# -- a whole run -----------------------------------------------------------------
@dataclass
class Options:
    systems: tuple[str, ...] = SYSTEMS
    count: int = DEFAULT_COUNT
    seed: int = 1
    classes: tuple[str, ...] = CLASSES
    inventory: str | None = None
    out: str | None = None
    cache_fraction: float = 0.0
    save_inputs: bool = False


class UsageError(HarnessError):
    """A bad argument: one line, exit status 2."""


def parse_options(args) -> Options:
    """The fuzz subcommand's arguments, checked (UsageError: one line)."""
    def integer(name, text, lo, hi):
        try:
            v = int(str(text).replace("_", ""))
        except ValueError:
            raise UsageError(f"--{name} must be a whole number, not {text!r}") from None
        if not lo <= v <= hi:
            raise UsageError(f"--{name} must be between {lo:,} and {hi:,}, not {v:,}")
        return v
    names = [s.strip() for s in str(args.system).split(",") if s.strip()]
    systems = SYSTEMS if names == ["all"] else tuple(names)
    bad = [s for s in systems if s not in SYSTEMS]
    if not systems or bad:
        raise UsageError(f"--system must be dint, kernel, bypass, all or a comma-separated list of them, "
                         f"not {args.system!r}")
    names = [c.strip() for c in str(args.classes).split(",") if c.strip()]
    classes = CLASSES if names == ["all"] else tuple(c for c in CLASSES if c in names)
    bad = [c for c in names if c not in CLASSES and c != "all"]
    if not classes or bad:
        raise UsageError(f"--classes must be a comma-separated list of {', '.join(CLASSES)} (or all), "
                         f"not {args.classes!r}")
    try:
        fraction = float(args.cache_fraction)
    except ValueError:
        raise UsageError(f"--cache-fraction must be a number, not {args.cache_fraction!r}") from None
    if not 0 <= fraction <= 4:
        raise UsageError(f"--cache-fraction must be between 0 (the default budget) and 4, not {fraction}")
    return Options(tuple(dict.fromkeys(systems)), integer("count", args.count, 1, 10_000_000),
                   integer("seed", args.seed, 0, 2**63 - 1), classes, args.inventory, args.out, fraction,
                   bool(args.save_inputs))


def store_capacity(count: int) -> int:
    """Records each server's store holds: more than a run can make."""
    return 65536 + count


@dataclass
class SystemRun:
    """What one system's run left: the exchange, the servers' final
    counters, dumps and logs, and what the checks made of them."""
    name: str
    ex: Exchange
    stats: dict
    dumps: dict
    logs: dict
    findings: list[Finding]
    figures: dict


def run_system(name: str, inv, inv_path: str, items: list[Item], models: list[Engine], data: Path, out: Path,
               wire: Wire, opts: Options, progress=None, counters_before: bool = True) -> SystemRun:
    """One system: started with the initial data, fuzzed, stopped, checked.
    counters_before: also read the servers' counters before the run (a
    playbook run, a few seconds)."""
    from .config import RunConfig
    from .systems import make_system
    cfg = RunConfig(system=name, inventory=inv_path, store_capacity=store_capacity(len(items)),
                    cache_fraction=opts.cache_fraction if name == "dint" else 0.0).validate()
    system = make_system(inv, cfg, out / name / "logs", Schema(), data)
    ex = Exchange(wire, len(inv.servers), system, progress)
    t0 = time.monotonic()
    with system:
        ts = time.monotonic()
        for i in range(len(inv.servers)):
            ex.echo(i)
        before = system.live_stats() if counters_before else None
        t1 = time.monotonic()
        ex.run(items)
        t2 = time.monotonic()
        if not ex.died:
            for i in range(len(inv.servers)):
                ex.echo(i, "echo_after")
        ex.drain()
        t3 = time.monotonic()
    t4 = time.monotonic()
    dumps, logs, missing = {}, {}, []
    for h in inv.servers:
        try:
            dumps[h.name], logs[h.name] = system.dump(h), system.log(h)
        except (OSError, HarnessError) as e:
            missing.append(Finding("store", name, h.name, {"error": f"no dump or log to read: {e}"}))
    stats = dict(system.stats)
    findings, figures = check(name, inv, items, ex, models, stats, dumps, logs)
    findings += missing
    figures.update(
        seconds={"start": round(ts - t0, 2), "counters_before": round(t1 - ts, 2), "fuzz": round(t2 - t1, 2),
                 "after": round(t3 - t2, 2), "stop": round(t4 - t3, 2), "check": round(time.monotonic() - t4, 2)},
        sent=sum(1 for it in items if ex.sends.get(it.n)),
        counters_before=before, counters_after=stats,
        config={"store_capacity": cfg.store_capacity, "cache_fraction": cfg.cache_fraction,
                "client_slots": system.clients})
    figures["rate_per_s"] = round(figures["sent"] / max(t2 - t1, 1e-9))
    return SystemRun(name, ex, stats, dumps, logs, findings, figures)


def finding_line(system: str, kind: str, found: list[Finding]) -> str:
    """One line for the findings of one kind on one system."""
    cases = collections.Counter(f"{f.detail['class']}/{f.detail['case']}" for f in found if "case" in f.detail)
    where = f" ({', '.join(f'{c} {n:,}' for c, n in cases.most_common(6))}{', ...' if len(cases) > 6 else ''})" \
        if cases else ""
    first = found[0]
    d = first.detail
    if "sent" in d or "frames" in d:
        what = f"#{d.get('n')} to {first.server}: {'frame ' + d['frames'][0] if d.get('frames') else 'sent ' + d['sent']}"
        what += f", expected {d.get('expected')}, got {d.get('got')}"
    elif kind == "store":
        what = f"{first.server} table {d.get('table')} key {d.get('key')}: expected {d.get('expected')}, " \
               f"dumped {d.get('dumped')}" if "key" in d else f"{first.server}: {d.get('error')}"
    elif kind == "counters":
        what = f"{first.server}: {'; '.join(d['mismatch'])}"
    else:
        what = f"{first.server}: {json.dumps(d, default=str)}"
    if len(what) > 400:
        what = what[:400] + "..."
    return f"FINDING {system} {kind}: {len(found):,} {FINDINGS.get(kind, kind)}{where}; first: {what}"


def table(summary: dict) -> str:
    rows = [("system", "inputs", "fuzz s", "per s", "answered", "dropped", "tolerated", "re-asked", "findings")]
    for name, s in summary["systems"].items():
        o = collections.Counter()
        for v in s["outcomes"].values():
            o.update(v)
        rows.append((name, f"{s['sent']:,}", f"{s['seconds']['fuzz']:.1f}", f"{s['rate_per_s']:,}",
                     f"{o['answered']:,}", f"{o['dropped']:,}",
                     f"{o['answered_tolerated']:,}+{o['dropped_tolerated']:,}", f"{s['re_asked']:,}",
                     f"{sum(s['findings'].values()):,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


def fuzz(opts: Options, log=print) -> tuple[int, dict]:
    """A whole run: the testbed (brought up if it is not, and taken down
    again then), every system of opts in turn; writes the results
    directory. Returns (exit status, summary)."""
    import contextlib

    from . import inventory
    from .systems import make_system
    from .config import RunConfig
    from .testbed import Testbed
    inv_path = opts.inventory or str(inventory.DEFAULT_INVENTORY)
    inv = inventory.load(inv_path)
    if not inv.local:
        raise UsageError(f"inventory {inv_path} is a cluster's: the fuzzer sends from a client host's namespace "
                         f"of a local testbed")
    out = Path(opts.out) if opts.out else RESULTS_DIR / "fuzz" / time.strftime("%Y%m%d-%H%M%S")
    if (out / "summary.json").exists():
        raise UsageError(f"{out} already holds a fuzz run (summary.json); choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    records = initial_records(opts.seed)
    data = out / "initial.snap"
    snapshot.write_snapshot(data, Schema(), records)
    # the servers' client slots, as the systems give them (harness/systems.py)
    slots = make_system(inv, RunConfig(system=opts.systems[0], inventory=inv_path), out / opts.systems[0] / "logs").clients
    summary = {"seed": opts.seed, "count": opts.count, "classes": list(opts.classes), "systems_asked": list(opts.systems),
               "inventory": inv_path, "initial_records": len(records), "client_slots": slots, "systems": {}}
    all_findings: dict[str, list[Finding]] = {}
    progress = _progress if os.isatty(2) else None
    with contextlib.ExitStack() as stack:
        stack.enter_context(Testbed(inv))
        wire = stack.enter_context(Wire(inv, "frame" in opts.classes))
        t = time.monotonic()
        gen = Generator(opts.seed, len(inv.servers), slots, records, addressing=wire.addressing)
        items = gen.items(opts.count, opts.classes)
        summary["generated_s"] = round(time.monotonic() - t, 2)
        summary["frame_port"] = wire.addressing[0].sport if wire.addressing else None
        summary["inputs"] = _input_figures(items)
        if opts.save_inputs:
            with gzip.open(out / "inputs.jsonl.gz", "wt") as f:
                for it in items:
                    f.write(json.dumps(it.to_json()) + "\n")
        log(f"fuzz: seed {opts.seed}, {opts.count:,} inputs per system "
            f"({', '.join(f'{c} {n:,}' for c, n in summary['inputs']['per_class'].items())}), "
            f"generated in {summary['generated_s']} s; results in {out}")
        for name in opts.systems:
            r = run_system(name, inv, inv_path, items, gen.models, data, out, wire, opts,
                           progress and (lambda i, name=name: progress(name, i, len(items))))
            found, figures = r.findings, r.figures
            all_findings[name] = found
            kinds = collections.Counter(f.kind for f in found)
            figures["findings"] = dict(kinds)
            figures["examples"] = {k: [f.to_json() for f in found if f.kind == k][:EXAMPLES] for k in kinds}
            summary["systems"][name] = figures
            if progress:
                print(file=sys.stderr)
            log(f"  {name}: {figures['sent']:,} inputs in {figures['seconds']['fuzz']} s "
                f"({figures['rate_per_s']:,}/s), {len(found):,} findings")
    summary["passed"] = not any(all_findings.values())
    with open(out / "findings.jsonl", "w") as f:
        for found in all_findings.values():
            for x in found:
                f.write(json.dumps(x.to_json()) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    log(table(summary))
    for name, found in all_findings.items():
        by_kind = collections.defaultdict(list)
        for x in found:
            by_kind[x.kind].append(x)
        for kind in (k for k in FINDINGS if k in by_kind):
            log(finding_line(name, kind, by_kind[kind]))
    log(f"fuzz: {'no findings' if summary['passed'] else 'FINDINGS'}; {out / 'summary.json'}")
    return (0 if summary["passed"] else 1), summary


def _input_figures(items: list[Item]) -> dict:
    per_class = collections.Counter(it.cls for it in items)
    per_case: dict = collections.defaultdict(collections.Counter)
    expect: dict = collections.defaultdict(collections.Counter)
    for it in items:
        per_case[it.cls][it.case] += 1
        expect[it.cls][it.expect] += 1
    return {"per_class": {c: per_class[c] for c in CLASSES if c in per_class},
            "per_case": {c: dict(v) for c, v in per_case.items()},
            "expected": {c: dict(v) for c, v in expect.items()}}


def _progress(name: str, i: int, total: int) -> None:
    sys.stderr.write(f"\r  {name}: {i:,}/{total:,}")
    sys.stderr.flush()


def cmd_fuzz(args) -> int:
    try:
        status, _ = fuzz(parse_options(args))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return status


def add_parser(sub) -> None:
    """The `fuzz` subcommand of python -m harness."""
    p = sub.add_parser("fuzz", help="packet fuzzing: crafted datagrams and frames to every system, each reply and "
                                    "the final store checked against a model of the engine")
    p.add_argument("--system", default="all", help="dint, kernel, bypass, or all (default), or a comma-separated list")
    p.add_argument("--count", default=str(DEFAULT_COUNT), help=f"inputs per system (default {DEFAULT_COUNT:,})")
    p.add_argument("--seed", default="1", help="draws every input (default 1)")
    p.add_argument("--classes", default="all",
                   help=f"comma-separated input classes: {', '.join(CLASSES)} (default all)")
    p.add_argument("--inventory", help="a local testbed's inventory (default inventory/local.yml)")
    p.add_argument("--out", help="results directory (default results/fuzz/<time>)")
    p.add_argument("--cache-fraction", default="0",
                   help="dint: cache slots for this fraction of the records (default 0: the default budget, one 4-slot bucket per record)")
    p.add_argument("--save-inputs", action="store_true", help="also write every input to inputs.jsonl.gz")
    p.set_defaults(func=cmd_fuzz)
