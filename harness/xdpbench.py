"""The XDP program's cost per operation, every operation, over the number of
records its cache holds: nanoseconds per request as the kernel times one
run of the program through BPF_PROG_TEST_RUN, less the same time of a null
XDP program. Needs root.

    python -m harness xdpbench [--keys 1000,100000,1000000] [--rounds 7] [--calls 2000]
                               [--cpu N] [--ops read,echo,...] [--seed S] [--out DIR]

For each key count N (10M only when asked, and refused in one line if the
host's available memory cannot hold its cache):

- the program (bpf/dint_xdp.c, compiled by dintd.compile_program) is loaded
  with the cache a dint run with N records would get: DintSystem.buckets()'s
  rule, called, not copied (a kv run with --keys N: the default budget of
  harness.dintd.cache_buckets, one 4-slot bucket per record). Records
  0..N-1 of table 0 (8-byte values, version 1) go in
  through the dint_fill program, the slow path's own fill request (one
  BPF_PROG_TEST_RUN per record with the buffers set up once: about 3 us a
  record, timed as fill_s). A bucket that gets a fifth key evicts one (as
  the slow path would), whose bloom bits are then set: the evicted keys are
  left out of the keys drawn. The cache's memory is the map's own figure
  (memlock in its fdinfo), divided by N: bytes of cache per record.
- every request is a valid frame (IPv4 and UDP checksums) from a client to
  the address the program is told it serves, which BPF_PROG_TEST_RUN
  delivers on (the loopback device), and carries a request id (client 1,
  increasing seq, ack = seq) as the harness's clients send them, so writing
  operations go through the exactly-once completion records as in a run.
  One request per call (repeat=1: the program rewrites the buffer into its
  reply), and every call's verdict and reply status are checked against the
  path the operation is meant to take: a wrong path stops the benchmark
  with an error, it is never a figure.
- rounds (default 7, after one warm-up round that is thrown away): in each,
  every operation and the null program run one block of --calls timed
  requests, in an order shuffled per round, so that drift of the machine
  falls on all of them alike. A block's figure is the mean of its calls'
  times; an operation's figure is the median over rounds, with the min and
  max, of its block's mean less the null block's mean of the same round
  (the raw figures are kept too).

Keys. Each block draws its keys uniformly from the cached records (or, for
the operations on absent keys, from keys that exist nowhere: their bucket
has a free slot and bloom bits clear), from a fixed seed per (seed, N,
round, operation). Not the very same keys for every operation: the first
block of a round would bring those buckets into the CPU's caches for the
others, and the sweep is about what a bucket costs to reach as the cache
grows past the CPU's. Keys are distinct within chunks of up to 1024 (at
small N a block takes several chunks).

The operations and their paths (expected status, all answered with XDP_TX):

    echo                 ECHO of an 8-byte value: OK (no record: the floor of the protocol)
    read                 READ of a cached record: OK
    read_absent          READ of a key that exists nowhere (bloom bits clear): NOT_FOUND
    lock_shared          LOCK_SHARED by T: OK; then (untimed) ABORT by T
    lock_shared_refused  (untimed) LOCK_EXCL by O; LOCK_SHARED by T: LOCKED; (untimed) ABORT by O
    lock_excl            LOCK_EXCL by T: OK; then (untimed) ABORT by T
    lock_excl_refused    (untimed) LOCK_EXCL by O; LOCK_EXCL by T: LOCKED; (untimed) ABORT by O
    validate             VALIDATE by T at the record's current version: OK
    commit_backup        COMMIT_BACKUP by T of the next version: OK (installs it)
    commit_primary       (untimed) LOCK_EXCL by T; COMMIT_PRIMARY by T of the next version: OK
    abort                (untimed) LOCK_EXCL by T; ABORT by T: OK (releases it)
    log                  LOG of a cached key by a new transaction each time: OK (one append)
    insert               INSERT (version 0) by T of an absent key: OK, created in a free slot;
                         then (untimed) DELETE by T
    delete               (untimed) INSERT by T of an absent key; DELETE by T: OK

Operations with steps run them chunk by chunk: every key of the chunk takes
the first step, then every key the second, and so on, so a timed step
follows the earlier step on its key by a chunk of other requests (as in a
transaction, where the commit or abort comes a round trip after the lock).
Its bucket is then in the state that step left, and often still in the
CPU's caches: abort, commit_primary, delete and the refused locks measure
a bucket reached again soon, the others one reached afresh. Each block
leaves the records as it found them, but for versions (tracked, so validate
and the commits always send the right one) and the completion records:
locks are released; an insert's or delete's buckets are copied before the
chunk and written back after it (through the map's memory mapping,
untimed), so every round's insert creates a record in a free slot rather
than reviving a tombstone; the log ring is emptied after each chunk
(untimed), as dintd's drain would.

The floor is a null XDP program (returns XDP_PASS; compiled with bcc) run
the same way on a READ's frame: what BPF_PROG_TEST_RUN's own timing costs
around any program. Figures are of one sitting on one machine: compare
operations and key counts within one run, not across machines.

With --out DIR: xdpbench.json (every call's time, the per-round figures,
the machine, the command), xdpbench.csv (one row per key count and
operation) and the figure xdpbench.png/.pdf (plots/xdpbench.py).
report_section(DIR) renders them as a report section.
"""
from __future__ import annotations

import argparse
import csv
import ctypes
import json
import mmap
import os
import re
import shlex
import statistics
import struct
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

from . import HarnessError, bpf_run
from .dintd import CACHE_SLOTS, Iface, compile_program
from .protocol import DEFAULT_PORT, HEADER, MAGIC, PROTO_VERSION, Op, Status

DEFAULT_KEYS = (1000, 100_000, 1_000_000)
DEFAULT_ROUNDS = 7
DEFAULT_CALLS = 2000
CHUNK = 1024  # distinct keys at most per chunk of a block
MAX_KEYS = 1 << 26  # dintd takes up to 1 << 26 buckets, one per record by default
TABLE = 0  # the default schema's table of 8-byte values
VALUE = b"benchval"
CLIENT = 1
TXN, OTHER = 0x7001, 0x7002  # the measured transaction and another that holds a lock
FRESH_TXN = 1 << 40  # log: a new transaction for every record (the first of them)
ABSENT_LOW, ABSENT_HIGH = 1 << 40, 1 << 48  # keys that exist nowhere are drawn here

SERVER_MAC, SERVER_IP = "02:00:00:00:00:01", "10.0.0.1"
CLIENT_MAC, CLIENT_IP = "02:00:00:00:00:02", "10.0.0.2"
L2L3L4 = 14 + 20 + 8  # Ethernet, IPv4 without options, UDP: where the message starts
STATUS_AT = L2L3L4 + 4  # the reply's status byte (harness/protocol.py FIELDS)
XDP_PASS, XDP_TX = 2, 3

# Mirrors of bpf/dint_cache.h, as tests/xdp_cache.py has them (checked
# there against the C by tests/test_constants.py; tests/test_xdpbench.py
# checks these against those).
FILL_MAGIC = 0xD17EF111
FILL_HEAD = struct.Struct("<IBB2xQ")  # struct dint_fill up to its record
SLOT_ID_SIZE = 16  # struct dint_slot_id
FILL_PLACED, FILL_EVICTED = 1, 2

NULL = "null"
NULL_SOURCE = b"""
int xdp_null(struct xdp_md *ctx)
{
	return XDP_PASS;
}
"""


def dint_hash(table: int, key: int) -> int:
    """dint_hash (engine/dint_engine.h)."""
    m = (1 << 64) - 1
    h = key ^ ((table * 0x9E3779B97F4A7C15) & m)
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & m
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & m
    h ^= h >> 33
    return h


def bucket_of(h: int, buckets: int) -> int:
    """dint_cache_bucket (bpf/dint_cache.h)."""
    return ((h >> 32) * buckets) >> 32


def bloom_bits(h: int) -> int:
    """dint_bloom_bits (bpf/dint_cache.h)."""
    return (1 << (h & 63)) | (1 << ((h >> 6) & 63))


class Step(NamedTuple):
    """One request of an operation's arrangement, on the block's key."""
    op: Op
    status: Status  # the reply's expected status (verdict XDP_TX)
    timed: bool
    txn: str = "T"  # T (TXN), O (OTHER), or new (a new transaction each time)
    ver: str = ""   # "": 0; cur: the record's version; next: one more, which it becomes


class Plan(NamedTuple):
    steps: tuple[Step, ...]
    absent: bool = False   # keys that exist nowhere (else cached records)
    restore: bool = False  # the chunk's buckets are written back as they were after it
    drain: bool = False    # the log ring is emptied after each chunk


S = Status
PLANS: dict[str, Plan] = {
    "echo": Plan((Step(Op.ECHO, S.OK, True),)),
    "read": Plan((Step(Op.READ, S.OK, True),)),
    "read_absent": Plan((Step(Op.READ, S.NOT_FOUND, True),), absent=True),
    "lock_shared": Plan((Step(Op.LOCK_SHARED, S.OK, True), Step(Op.ABORT, S.OK, False))),
    "lock_shared_refused": Plan((Step(Op.LOCK_EXCL, S.OK, False, "O"), Step(Op.LOCK_SHARED, S.LOCKED, True),
                                 Step(Op.ABORT, S.OK, False, "O"))),
    "lock_excl": Plan((Step(Op.LOCK_EXCL, S.OK, True), Step(Op.ABORT, S.OK, False))),
    "lock_excl_refused": Plan((Step(Op.LOCK_EXCL, S.OK, False, "O"), Step(Op.LOCK_EXCL, S.LOCKED, True),
                               Step(Op.ABORT, S.OK, False, "O"))),
    "validate": Plan((Step(Op.VALIDATE, S.OK, True, ver="cur"),)),
    "commit_backup": Plan((Step(Op.COMMIT_BACKUP, S.OK, True, ver="next"),)),
    "commit_primary": Plan((Step(Op.LOCK_EXCL, S.OK, False), Step(Op.COMMIT_PRIMARY, S.OK, True, ver="next"))),
    "abort": Plan((Step(Op.LOCK_EXCL, S.OK, False), Step(Op.ABORT, S.OK, True))),
    "log": Plan((Step(Op.LOG, S.OK, True, "new"),), drain=True),
    "insert": Plan((Step(Op.INSERT, S.OK, True), Step(Op.DELETE, S.OK, False)), absent=True, restore=True),
    "delete": Plan((Step(Op.INSERT, S.OK, False), Step(Op.DELETE, S.OK, True)), absent=True, restore=True),
}
OPS = tuple(PLANS)


class PathError(HarnessError):
    """A request took another path than its operation is meant to."""


# -- options -----------------------------------------------------------------

def parse_keys(text: str) -> list[int]:
    """--keys: comma-separated counts, plain or with k/M (1000,100k,1M)."""
    out = []
    for part in (p.strip() for p in str(text).split(",")):
        m = re.fullmatch(r"(\d+)([kKmM]?)", part)
        if not m:
            raise HarnessError(f"--keys: {part!r} is not a key count (e.g. 1000,100k,1M)")
        n = int(m.group(1)) * {"": 1, "k": 1000, "m": 1_000_000}[m.group(2).lower()]
        if not 1 <= n <= MAX_KEYS:
            raise HarnessError(f"--keys: {part} is out of range (1 to {MAX_KEYS:,})")
        if n in out:
            raise HarnessError(f"--keys: {part} is given twice")
        out.append(n)
    return sorted(out)


def parse_ops(text: str | None) -> list[str]:
    if not text:
        return list(OPS)
    ops = [o.strip() for o in text.split(",") if o.strip()]
    bad = [o for o in ops if o not in PLANS]
    if bad or not ops:
        raise HarnessError(f"--ops: unknown {', '.join(bad) or '(none given)'} (known: {', '.join(OPS)})")
    return list(dict.fromkeys(ops))


def buckets_for(records: int) -> int:
    """The cache buckets a dint run with this many records gets: the rule of
    harness/systems.py (DintSystem.buckets), called on a kv run's figures
    (the default budget, nothing inserted)."""
    from .systems import DintSystem
    run = SimpleNamespace(records=records, growth=lambda: 0,
                          cfg=SimpleNamespace(workload="kv", keys=records, cache_fraction=0.0))
    return DintSystem.buckets(run)


def mem_available() -> int:
    """Bytes the kernel says can be allocated without swapping."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise HarnessError("cannot read MemAvailable from /proc/meminfo")


FIXED_MEMORY = 256 << 20  # the program's other maps, Python's arrays, headroom


def check_memory(keys: list[int], bucket_size: int, available: int | None = None) -> None:
    """Refuses, in one line, a key count whose cache the host cannot hold."""
    available = mem_available() if available is None else available
    for n in keys:
        need = buckets_for(n) * bucket_size + 24 * n + FIXED_MEMORY
        if need > available:
            raise HarnessError(f"--keys {n:,}: its cache needs {need / 2**30:.1f} GiB and this host has "
                               f"{available / 2**30:.1f} GiB available")


# -- frames --------------------------------------------------------------------

def _ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    return sum(struct.unpack(f">{len(data) // 2}H", data))


class Frames:
    """Request frames of one size (a table-0 message), built fast: the
    Ethernet/IPv4/UDP headers once (scapy), the UDP checksum per message."""

    def __init__(self, msg_len: int):
        from scapy.layers.inet import IP, UDP
        from scapy.layers.l2 import Ether
        from scapy.packet import Raw
        self.template = bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src=CLIENT_IP, dst=SERVER_IP) /
                              UDP(sport=40000, dport=DEFAULT_PORT, chksum=0) / Raw(bytes(msg_len)))
        self.length = len(self.template)
        udp_len = 8 + msg_len
        # the pseudo-header and the UDP header (checksum 0)
        self.base = _ones_sum(self.template[26:34]) + 17 + udp_len + _ones_sum(self.template[34:42])

    def checksum(self, msg: bytes) -> int:
        s = self.base + _ones_sum(msg)
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        s = ~s & 0xFFFF
        return s or 0xFFFF

    def frame(self, msg: bytes) -> bytes:
        return self.template[:40] + struct.pack(">H", self.checksum(msg)) + msg


# -- one loaded program ------------------------------------------------------

class Bench:
    """The program loaded for N records, filled, with its runners."""

    def __init__(self, keys: int, seed: int, log=print):
        from bcc import BPF
        self.n, self.seed, self.log = keys, seed, log
        self.buckets = buckets_for(keys)
        self.bpf = compile_program(DEFAULT_PORT, _schema(), buckets=self.buckets,
                                   ifaces=[Iface(1, SERVER_MAC, (SERVER_IP,))], local=[SERVER_IP])
        try:
            self.xdp_fd = self.bpf.load_func(b"dint_xdp", BPF.XDP).fd
            self.fill_fd = self.bpf.load_func(b"dint_fill", BPF.XDP).fd
            self.cache = self.bpf[b"dint_cache"]
            self.Bucket = self.cache.Leaf
            self.Rec = dict(dict(self.Bucket._fields_)["slot"]._type_._fields_)["rec"]
            self.stride = (ctypes.sizeof(self.Bucket) + 7) & ~7
            self.mem = mmap.mmap(self.cache.get_fd(), self.buckets * self.stride, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
            self.value_len = len(VALUE)
            self.frames = Frames(HEADER.size + self.value_len)
            self.runner = bpf_run.Runner(self.xdp_fd, self.frames.length)
            ctypes.memmove(self.runner.data_in, self.frames.template, self.frames.length)
            self.seq = 0
            self.new_txn = FRESH_TXN
            self.fill()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if getattr(self, "mem", None) is not None:
            self.mem.close()
            self.mem = None
        self.bpf.cleanup()

    # memory
    def map_memory(self) -> dict[str, int]:
        """Each of the program's maps' memory (memlock of its fdinfo)."""
        out = {}
        for name in ("dint_cache", "dint_log_ring", "dint_done_recs", "dint_sessions", "dint_stats",
                     "dint_log_head", "dint_log_tail", "dint_slow_absent"):
            with open(f"/proc/self/fdinfo/{self.bpf[name.encode()].get_fd()}") as f:
                for line in f:
                    if line.startswith("memlock:"):
                        out[name] = int(line.split()[1])
        return out

    # the fill
    def fill(self) -> None:
        """Records 0..N-1 into the cache through dint_fill, as the slow path
        takes a record in; the keys evicted on the way are remembered."""
        import numpy as np
        rec = self.Rec()
        rec.live, rec.ver = 1, 1
        ctypes.memmove(rec.value, VALUE, len(VALUE))
        body = bytes(rec)
        msg = FILL_HEAD.pack(FILL_MAGIC, TABLE, 0, 0) + body + bytes(SLOT_ID_SIZE) + bytes(len(body))
        run = bpf_run.Runner(self.fill_fd, len(msg))
        ctypes.memmove(run.data_in, msg, len(msg))
        key_at, vkey_at, length = struct.calcsize("<IBB2x"), FILL_HEAD.size + len(body), len(msg)
        pack_key, buf, out, go = struct.Struct("<Q").pack_into, run.data_in, run.data_out, run.run
        evicted = []
        t0 = time.perf_counter()
        for k in range(self.n):
            pack_key(buf, key_at, k)
            if go(length) != XDP_TX:
                raise HarnessError(f"the fill of key {k} was refused")
            res = out[5][0]
            if res == FILL_EVICTED:
                evicted.append(struct.unpack_from("<Q", out, vkey_at)[0])
            elif res != FILL_PLACED:
                raise HarnessError(f"the fill of key {k} answered {res}, not placed or evicted")
        self.fill_s = time.perf_counter() - t0
        self.evicted = sorted(set(evicted))
        pool = np.ones(self.n, dtype=bool)
        pool[self.evicted] = False
        self.pool = np.flatnonzero(pool).astype(np.uint64)
        self.versions = np.ones(self.n, dtype=np.uint32)

    # buckets through the memory mapping
    def bucket(self, index: int):
        at = index * self.stride
        return self.Bucket.from_buffer_copy(self.mem[at:at + ctypes.sizeof(self.Bucket)])

    def absent_usable(self, key: int, taken: set[int]) -> int | None:
        """key's bucket if key exists nowhere and the engine would answer it
        (and create it) in the kernel: bloom bits clear, a free slot, and no
        other key of the chunk in that bucket; else None."""
        h = dint_hash(TABLE, key)
        b = bucket_of(h, self.buckets)
        if b in taken:
            return None
        bk = self.bucket(b)
        bits = bloom_bits(h)
        if bk.bloom & bits == bits or all(bk.used[i] for i in range(CACHE_SLOTS)):
            return None
        if any(bk.used[i] and bk.key[i] == key and bk.table[i] == TABLE for i in range(CACHE_SLOTS)):
            return None
        return b

    def absent_chunk(self) -> int:
        """Absent keys a chunk takes at most (each in a bucket of its own)."""
        return max(1, self.buckets // 4)

    def chunks(self, plan: Plan, calls: int, rng) -> list[list[int]]:
        """A block's keys: calls keys in chunks of distinct ones."""
        out, left = [], calls
        limit = min(CHUNK, len(self.pool)) if not plan.absent else min(CHUNK, self.absent_chunk())
        while left:
            size = min(left, limit)
            if plan.absent:
                keys, taken = [], set()
                while len(keys) < size:
                    for k in rng.integers(ABSENT_LOW, ABSENT_HIGH, size=2 * size).tolist():
                        b = self.absent_usable(k, taken)
                        if b is not None and len(keys) < size:
                            keys.append(k)
                            taken.add(b)
            else:
                keys = self.pool[rng.choice(len(self.pool), size=size, replace=False)].tolist()
            out.append(keys)
            left -= size
        return out

    def save(self, chunk: list[int]) -> dict:
        """The buckets of the chunk's keys, as they are."""
        saved = {}
        for k in chunk:
            b = bucket_of(dint_hash(TABLE, k), self.buckets)
            saved[b] = self.mem[b * self.stride:(b + 1) * self.stride]
        return saved

    def restore(self, saved: dict) -> None:
        for b, image in saved.items():
            self.mem[b * self.stride:(b + 1) * self.stride] = image

    def describe(self) -> dict:
        """What a key count's results say of this system's memory."""
        memory = self.map_memory()
        stats = self.bpf[b"dint_stats"]
        return {"buckets": self.buckets, "bucket_bytes": ctypes.sizeof(self.Bucket),
                "map_memory_bytes": memory, "cache_bytes_per_record": round(memory["dint_cache"] / self.n, 1),
                "buckets_bytes_per_record": round(self.buckets * ctypes.sizeof(self.Bucket) / self.n, 1),
                "xdp_pass_counted": int(sum(stats[stats.Key(5)]))}

    def drain_log(self) -> None:
        """Empties every CPU's log ring (tail = head), as dintd's drain does."""
        head, tail = self.bpf[b"dint_log_head"], self.bpf[b"dint_log_tail"]
        heads = head[head.Key(0)]
        new = tail.Leaf()
        for cpu in range(len(new)):
            new[cpu] = heads[cpu]
        tail[tail.Key(0)] = new

    # the requests
    def block(self, op: str, plan: Plan, chunks: list[list[int]]) -> list[int]:
        """Runs an operation's arrangement on the chunks; returns the timed
        calls' durations (ns). Every reply is checked."""
        r, frames = self.runner, self.frames
        buf, out, length, addr = r.data_in, r.data_out, frames.length, ctypes.addressof(r.data_in)
        pack_hdr, checksum, go, versions = HEADER.pack, frames.checksum, r.run, self.versions
        value = VALUE
        times: list[int] = []
        for chunk in chunks:
            saved = self.save(chunk) if plan.restore else {}
            for step in plan.steps:
                want = int(step.status)
                for k in chunk:
                    self.seq += 1
                    if step.txn == "T":
                        txn = TXN
                    elif step.txn == "O":
                        txn = OTHER
                    else:
                        self.new_txn += 1
                        txn = self.new_txn
                    ver = 0
                    if step.ver == "cur":
                        ver = int(versions[k])
                    elif step.ver == "next":
                        ver = int(versions[k]) + 1
                    msg = pack_hdr(MAGIC, PROTO_VERSION, step.op, 0, TABLE, len(value), CLIENT, self.seq, txn, k,
                                   ver, self.seq) + value
                    ctypes.memmove(addr + L2L3L4, msg, len(msg))
                    struct.pack_into(">H", buf, L2L3L4 - 2, checksum(msg))
                    verdict = go(length)
                    status = out[STATUS_AT][0]
                    if verdict != XDP_TX or status != want:
                        got = bpf_run.XDP_VERDICTS.get(verdict, str(verdict))
                        got += f"/{Status(status).name if status < len(Status) else status}" if verdict == XDP_TX else ""
                        raise PathError(f"{self.n:,} keys, {op}: {step.op.name} of key {k} (txn {txn:#x}, ver {ver}) "
                                        f"answered {got}, not XDP_TX/{step.status.name}")
                    if step.ver == "next":
                        versions[k] = ver
                    if step.timed:
                        times.append(r.duration_ns)
            self.restore(saved)
            if plan.drain:
                self.drain_log()
        return times


class Null:
    """The floor: a program that returns XDP_PASS, run as the others."""

    def __init__(self):
        from bcc import BPF
        self.bpf = BPF(text=NULL_SOURCE)
        self.fd = self.bpf.load_func(b"xdp_null", BPF.XDP).fd

    def block(self, frame: bytes, calls: int) -> list[int]:
        r = bpf_run.Runner(self.fd, len(frame))
        ctypes.memmove(r.data_in, frame, len(frame))
        times = []
        for _ in range(calls):
            if r.run(len(frame)) != XDP_PASS:
                raise PathError("the null program did not return XDP_PASS")
            times.append(r.duration_ns)
        return times

    def close(self) -> None:
        self.bpf.cleanup()


def _schema():
    from .schema import Schema
    return Schema()


# -- the baselines' store ------------------------------------------------------

STORE_LIB = "storebench.so"  # userspace/storebench.c, built by the Makefile
XDP_DROP = 1


def store_lib():
    """build/storebench.so (made here if it is not current), with its
    functions' types."""
    from . import BUILD_DIR, ROOT
    from .sh import run
    path = BUILD_DIR / STORE_LIB
    run(["make", "-s", "-C", str(ROOT), str(path.relative_to(ROOT))])
    lib = ctypes.CDLL(str(path))
    u8p, u64p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64)
    for fn, res, args in (("sb_init", ctypes.c_int, [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint32]),
                          ("sb_fill", ctypes.c_int, [ctypes.c_uint8, ctypes.c_uint64, ctypes.c_char_p]),
                          ("sb_exists", ctypes.c_int, [ctypes.c_uint8, ctypes.c_uint64]),
                          ("sb_run", ctypes.c_uint32, [u8p, ctypes.c_uint32, u64p]),
                          ("sb_null", ctypes.c_uint32, [u8p, ctypes.c_uint32, u64p]),
                          ("sb_log_reset", None, []), ("sb_bytes", ctypes.c_uint64, []), ("sb_free", None, [])):
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    return lib


class StoreRunner:
    """bpf_run.Runner's interface over the store: the request's message sits
    where a frame's would (at L2L3L4 of data_in) and is answered in place
    (data_out is data_in); run() returns XDP_TX for a reply, XDP_DROP for
    none."""

    def __init__(self, fn, size: int):
        self.fn = fn
        self.data_in = self.data_out = ctypes.create_string_buffer(size)
        self.msg = ctypes.addressof(self.data_in) + L2L3L4
        self.ns = ctypes.c_uint64()
        self.ref = ctypes.byref(self.ns)

    def run(self, length: int) -> int:
        return XDP_TX if self.fn(self.msg, length - L2L3L4, self.ref) else XDP_DROP

    @property
    def duration_ns(self) -> int:
        return self.ns.value


class StoreBench(Bench):
    """The baselines' store (userspace/store.h) with N records, as a kernel
    or bypass server of a kv run with --keys N holds them (capacity: twice
    the records, at least 4096, as RunConfig's default; plus room for the
    blocks' inserts), driven through build/storebench.so: every request
    goes through dint_process as a server's received datagram does."""

    def __init__(self, keys: int, seed: int, log=print, rounds: int = DEFAULT_ROUNDS, calls: int = DEFAULT_CALLS):
        import numpy as np
        self.n, self.seed, self.log = keys, seed, log
        self.lib = store_lib()
        # each round's insert and delete blocks create a record per call (a
        # delete leaves a tombstone: the store never takes a key out)
        self.capacity = max(2 * keys, 4096) + 2 * (rounds + 1) * calls
        if self.lib.sb_init(self.capacity, 1 << 16, 16) < 0:
            raise HarnessError(f"storebench: no memory for a store of {self.capacity:,} records")
        self.frames = Frames(HEADER.size + len(VALUE))
        self.runner = StoreRunner(self.lib.sb_run, self.frames.length)
        ctypes.memmove(self.runner.data_in, self.frames.template, self.frames.length)
        self.seq, self.new_txn = 0, FRESH_TXN
        t0 = time.perf_counter()
        if self.lib.sb_fill(TABLE, keys, VALUE) < 0:
            raise HarnessError(f"storebench: the fill of {keys:,} records failed")
        self.fill_s = time.perf_counter() - t0
        self.evicted = []
        self.pool = np.arange(keys, dtype=np.uint64)
        self.versions = np.ones(keys, dtype=np.uint32)

    def close(self) -> None:
        self.lib.sb_free()

    def absent_usable(self, key: int, taken: set[int]) -> int | None:
        """key, if no record has it (live or a tombstone) and the chunk has
        it once."""
        return None if key in taken or self.lib.sb_exists(TABLE, key) else key

    def absent_chunk(self) -> int:
        return CHUNK

    def save(self, chunk: list[int]) -> dict:
        return {}  # a block's insert always takes a fresh record: nothing to put back

    def restore(self, saved: dict) -> None:
        pass

    def drain_log(self) -> None:
        self.lib.sb_log_reset()

    def describe(self) -> dict:
        return {"capacity": self.capacity, "store_bytes": self.lib.sb_bytes(),
                "cache_bytes_per_record": round(self.lib.sb_bytes() / self.n, 1)}


class StoreNull:
    """The store's floor: storebench's timing around a call that does
    nothing, run as the others."""

    def __init__(self):
        self.lib = store_lib()

    def block(self, frame: bytes, calls: int) -> list[int]:
        r = StoreRunner(self.lib.sb_null, len(frame))
        ctypes.memmove(r.data_in, frame, len(frame))
        times = []
        for _ in range(calls):
            r.run(len(frame))
            times.append(r.duration_ns)
        return times

    def close(self) -> None:
        pass


SYSTEMS = ("xdp", "store")
SYSTEM_NAMES = {"xdp": "dint XDP", "store": "store"}


# -- measuring -----------------------------------------------------------------

def _summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
            "max": round(max(values), 1)}


def measure_keys(n: int, ops: list[str], rounds: int, calls: int, seed: int, null, log=print,
                 plans: dict[str, Plan] | None = None, system: str = "xdp") -> dict:
    """One key count of one system (xdp: the XDP program, its null program
    as null; store: the baselines' store, StoreNull): load, fill, warm up,
    rounds. The figures of it."""
    import numpy as np
    plans = plans or PLANS
    t0 = time.perf_counter()
    bench = Bench(n, seed, log) if system == "xdp" else StoreBench(n, seed, log, rounds, calls)
    try:
        load_s = time.perf_counter() - t0 - bench.fill_s
        described = bench.describe()
        log(f"xdpbench: {SYSTEM_NAMES[system]}, {n:,} keys: filled in {bench.fill_s:.2f} s "
            f"({len(bench.evicted)} evicted), {described['cache_bytes_per_record']:.0f} B per record")
        # the null program's frame: a READ of a cached record, as the read block sends
        k = int(bench.pool[0])
        null_frame = bench.frames.frame(HEADER.pack(MAGIC, PROTO_VERSION, Op.READ, 0, TABLE, len(VALUE), CLIENT, 1, 0,
                                                    k, 0, 1) + VALUE)
        names = [NULL, *ops]
        raw: dict[str, list[list[int]]] = {name: [] for name in names}
        orders = []
        for rnd in range(-1, rounds):  # round -1: the warm-up, thrown away
            order = list(np.random.default_rng([seed, n, rnd + 1, 99]).permutation(names))
            if rnd >= 0:
                orders.append(order)
            for name in order:
                c = calls if rnd >= 0 else max(1, calls // 4)
                if name == NULL:
                    times = null.block(null_frame, c)
                else:
                    rng = np.random.default_rng([seed, n, rnd + 1, OPS.index(name)])
                    times = bench.block(name, plans[name], bench.chunks(plans[name], c, rng))
                if rnd >= 0:
                    raw[name].append(times)
        means = {name: [statistics.fmean(t) for t in raw[name]] for name in names}
        out_ops = {}
        for name in ops:
            net = [m - f for m, f in zip(means[name], means[NULL])]
            out_ops[name] = {"path": [f"{s.op.name}:{s.status.name}{'' if s.timed else ' (untimed)'}"
                                      for s in plans[name].steps],
                             "net_ns": _summary(net), "raw_ns": _summary(means[name]),
                             "rounds_net_ns": [round(v, 2) for v in net],
                             "rounds_mean_ns": [round(v, 2) for v in means[name]],
                             "rounds_median_ns": [statistics.median(t) for t in raw[name]],
                             "calls_ns": raw[name]}
        return {"system": system, "keys": n, **described,
                "cached": int(len(bench.pool)), "evicted": len(bench.evicted),
                "fill_s": round(bench.fill_s, 3), "load_s": round(load_s, 3),
                "fill_us_per_record": round(bench.fill_s / n * 1e6, 3),
                "round_orders": orders,
                "null": {"raw_ns": _summary(means[NULL]), "rounds_mean_ns": [round(v, 2) for v in means[NULL]],
                         "calls_ns": raw[NULL]},
                "ops": out_ops}
    finally:
        bench.close()


def measure(keys: list[int], ops: list[str], rounds: int, calls: int, seed: int = 1, log=print,
            plans: dict[str, Plan] | None = None, systems: tuple[str, ...] = ("xdp",)) -> dict:
    """Every key count of every system (SYSTEMS), each system's key counts
    in turn; refuses up front the key counts the host's memory cannot hold
    (the XDP cache's, the larger)."""
    probe = compile_program(DEFAULT_PORT, _schema(), buckets=64, ifaces=[Iface(1, SERVER_MAC, (SERVER_IP,))],
                            local=[SERVER_IP])
    try:
        bucket_size = (ctypes.sizeof(probe[b"dint_cache"].Leaf) + 7) & ~7
    finally:
        probe.cleanup()
    check_memory(keys, bucket_size)
    results = []
    for system in systems:
        null = Null() if system == "xdp" else StoreNull()
        try:
            results += [measure_keys(n, ops, rounds, calls, seed, null, log, plans, system) for n in keys]
        finally:
            null.close()
    return {"rounds": rounds, "calls": calls, "seed": seed, "ops": ops, "systems": list(systems),
            "table": TABLE, "value_bytes": len(VALUE),
            "frame_bytes": L2L3L4 + HEADER.size + len(VALUE), "key_counts": results}


# -- output --------------------------------------------------------------------

CSV_FIELDS = ("system", "keys", "op", "net_median_ns", "net_min_ns", "net_max_ns", "raw_median_ns", "raw_min_ns", "raw_max_ns",
              "null_median_ns", "rounds", "calls", "buckets", "cache_bytes_per_record", "fill_s", "path")


def rows(res: dict) -> list[dict]:
    out = []
    for kc in res["key_counts"]:
        for op, r in kc["ops"].items():
            out.append({"system": kc.get("system", "xdp"), "keys": kc["keys"], "op": op, "net_median_ns": r["net_ns"]["median"],
                        "net_min_ns": r["net_ns"]["min"], "net_max_ns": r["net_ns"]["max"],
                        "raw_median_ns": r["raw_ns"]["median"], "raw_min_ns": r["raw_ns"]["min"],
                        "raw_max_ns": r["raw_ns"]["max"], "null_median_ns": kc["null"]["raw_ns"]["median"],
                        "rounds": res["rounds"], "calls": res["calls"], "buckets": kc.get("buckets", ""),
                        "cache_bytes_per_record": kc["cache_bytes_per_record"], "fill_s": kc["fill_s"],
                        "path": "; ".join(r["path"])})
    return out


def _kfmt(n: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1000, "k")):
        if n >= div and n % div == 0:
            return f"{n // div}{suffix}"
    return f"{n:,}"


def table(res: dict, markdown: bool = False) -> str:
    """Net ns per operation (median over rounds, [min, max]) per key count
    and system (dint's XDP program; the baselines' store), then the floor,
    the bytes per record (XDP: its cache's map memory; store: its records
    and index) and the fill time."""
    kcs = sorted(res["key_counts"], key=lambda kc: (kc["keys"], SYSTEMS.index(kc.get("system", "xdp"))))
    both = len({kc.get("system", "xdp") for kc in kcs}) > 1
    head = ["op", *(f"{_kfmt(kc['keys'])} keys" + (f" {SYSTEM_NAMES[kc.get('system', 'xdp')]}" if both else "")
                    for kc in kcs)]
    body = []
    for op in res["ops"]:
        cells = []
        for kc in kcs:
            s = kc["ops"][op]["net_ns"]
            cells.append(f"{s['median']:.0f} [{s['min']:.0f}, {s['max']:.0f}]")
        body.append([op, *cells])
    body.append(["(null floor, raw)", *(f"{kc['null']['raw_ns']['median']:.0f} [{kc['null']['raw_ns']['min']:.0f}, "
                                        f"{kc['null']['raw_ns']['max']:.0f}]" for kc in kcs)])
    body.append(["B/record", *(f"{kc['cache_bytes_per_record']:.0f}" for kc in kcs)])
    body.append(["fill s", *(f"{kc['fill_s']:.2f}" for kc in kcs)])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(kcs)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([fmt(head), *(fmt(r) for r in body)])


def write(res: dict, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "xdpbench.json").write_text(json.dumps(res, indent=None, separators=(",", ":")) + "\n")
    with open(out_dir / "xdpbench.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows(res))
    from plots.xdpbench import plot
    return [out_dir / "xdpbench.json", out_dir / "xdpbench.csv", *plot(res, out_dir)]


def report_section(out_dir, link_from=None) -> str:
    """The benchmark of out_dir (its xdpbench.json) as a markdown section:
    the table and the figure. link_from: the directory of the document it
    goes into (the figure's link is relative to it; default out_dir)."""
    out_dir = Path(out_dir)
    path = out_dir / "xdpbench.json"
    if not path.exists():
        return f"### XDP cost per operation\n\nNo results in {out_dir} (python -m harness xdpbench --out DIR).\n"
    res = json.loads(path.read_text())
    fig = Path(os.path.relpath(out_dir / "xdpbench.png", Path(link_from) if link_from else out_dir))
    return "\n".join([
        "### XDP cost per operation",
        "",
        f"ns per request of the XDP program through BPF_PROG_TEST_RUN, one request per call, less a null XDP "
        f"program's time (the floor, given raw)"
        + (", and of the baselines' store (userspace/store.h: the kernel and bypass servers' dint_process on the "
           "request, without the network), less the same timing around an empty call"
           if "store" in res.get("systems", ["xdp"]) else "")
        + f"; median over {res['rounds']} rounds of {res['calls']} calls per "
        f"operation, [min, max] over rounds. One sitting, on this machine: `{res.get('command', 'harness xdpbench')}`.",
        "",
        table(res, markdown=True),
        "",
        f"![XDP ns per operation against the records cached]({fig.as_posix()})",
        "",
    ])


# -- the command ---------------------------------------------------------------

def command(args) -> str:
    """The command line of these options, every one spelt out."""
    return shlex.join(["python", "-m", "harness", "xdpbench", "--keys", args.keys, "--rounds", str(args.rounds),
                       "--calls", str(args.calls), "--seed", str(args.seed),
                       *(["--cpu", str(args.cpu)] if args.cpu is not None else []),
                       *(["--ops", args.ops] if args.ops else []), "--systems", args.systems,
                       *(["--out", args.out] if args.out else [])])


def parse_systems(text: str) -> tuple[str, ...]:
    systems = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in systems if x not in SYSTEMS]
    if bad or not systems:
        raise HarnessError(f"--systems: unknown {', '.join(bad) or '(none given)'} (known: {', '.join(SYSTEMS)})")
    return tuple(x for x in SYSTEMS if x in systems)


def cmd_xdpbench(args) -> int:
    keys = parse_keys(args.keys)
    ops = parse_ops(args.ops)
    systems = parse_systems(args.systems)
    if args.rounds < 1 or args.calls < 1:
        raise HarnessError("--rounds and --calls must be at least 1")
    if os.geteuid() != 0:
        raise HarnessError("xdpbench needs root (BPF)")
    if args.cpu is not None:
        try:
            os.sched_setaffinity(0, {args.cpu})
        except OSError as e:
            raise HarnessError(f"--cpu {args.cpu}: {e.strerror}") from None
    res = measure(keys, ops, args.rounds, args.calls, args.seed, systems=systems)
    from . import envinfo
    res["command"] = command(args)
    res["cpu"] = args.cpu
    res["env"] = envinfo.collect()
    print(f"ns per request less the floor's (median [min, max] over {res['rounds']} rounds of "
          f"{res['calls']} calls)")
    print(table(res))
    if args.out:
        paths = write(res, Path(args.out))
        print(f"results: {', '.join(str(p) for p in paths)}")
    return 0


def add_parser(sub) -> None:
    """The `xdpbench` subcommand of python -m harness."""
    p = sub.add_parser("xdpbench", help="the XDP program's ns per operation (BPF_PROG_TEST_RUN) over a key-count "
                                        "sweep, less a null program's")
    p.add_argument("--keys", default=",".join(map(str, DEFAULT_KEYS)),
                   help="comma-separated key counts, e.g. 1000,100k,1M (10M only if asked; refused if the host's "
                        "memory cannot hold its cache)")
    p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds interleaving every operation")
    p.add_argument("--calls", type=int, default=DEFAULT_CALLS, help="timed requests per operation per round")
    p.add_argument("--cpu", type=int, help="pin to this CPU")
    p.add_argument("--ops", help=f"a subset of: {', '.join(OPS)} (default all)")
    p.add_argument("--seed", type=int, default=1, help="draws the keys")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help="xdp (dint's XDP program), store (the baselines' store, userspace/store.h, in user space), "
                        "or both (the default)")
    p.add_argument("--out", help="write xdpbench.json, xdpbench.csv and the figure here")
    p.set_defaults(func=cmd_xdpbench)
