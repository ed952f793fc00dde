"""The XDP program with its cache, driven from a test the way the slow path
drives it: dint_fill run through BPF_PROG_TEST_RUN to take records in (and
hand victims out), the cache map read to see what is where."""
from __future__ import annotations

import ctypes
import struct

from harness import bpf_run
from harness.dintd import Iface, compile_program
from harness.protocol import DEFAULT_PORT
from harness.schema import Schema
from harness.xdpbench import bucket_of, dint_hash  # the one Python mirror, checked against the C

# Mirrors of bpf/dint_cache.h, checked against it by tests/test_constants.py
FILL_MAGIC = 0xD17EF111
WT_MAGIC = 0xD17E3771
FILL_HEAD = struct.Struct("<IBB2xQ")  # magic, table, result, key: struct dint_fill up to rec
SLOT_ID = struct.Struct("<QBB6x")     # key, table, used: struct dint_slot_id
RESULTS = {1: "placed", 2: "evicted", 3: "present"}  # enum dint_fill_result, DINT_FILL_<RESULT>


# The interface the tests' frames come in on: BPF_PROG_TEST_RUN runs a
# frame as if the loopback device (index 1) received it, so the program is
# told that is an interface it serves, with these addresses.
SERVER_MAC, SERVER_IP = "02:00:00:00:00:01", "10.0.0.1"
CLIENT_MAC, CLIENT_IP = "02:00:00:00:00:02", "10.0.0.2"
TEST_IFACE = Iface(1, SERVER_MAC, (SERVER_IP,))


class Cache:
    def __init__(self, buckets: int, bloom: bool = True, write_through: bool = False,
                 schema: Schema = Schema(), source=None):
        from bcc import BPF
        self.buckets, self.schema = buckets, schema
        self.bpf = compile_program(DEFAULT_PORT, schema, buckets=buckets, bloom=bloom, write_through=write_through,
                                   ifaces=[TEST_IFACE], local=[SERVER_IP],
                                   **({"source": source} if source else {}))
        self.xdp = self.bpf.load_func(b"dint_xdp", BPF.XDP).fd
        self.fill_fd = self.bpf.load_func(b"dint_fill", BPF.XDP).fd
        leaf = self.bpf[b"dint_cache"].Leaf
        self.Rec = dict(dict(leaf._fields_)["slot"]._type_._fields_)["rec"]

    def rec(self, ver=0, value=b"", live=False, gen=0):
        r = self.Rec()
        r.live, r.ver, r.gen = int(live), ver, gen
        ctypes.memmove(r.value, value, len(value))
        return r

    def fill(self, table: int, key: int, **rec) -> str:
        """Takes a record into the cache; returns what happened ("placed",
        "evicted", "present"); self.victim is (table, key, rec) if evicted."""
        body = bytes(self.rec(**rec))
        msg = FILL_HEAD.pack(FILL_MAGIC, table, 0, key) + body + bytes(SLOT_ID.size) + bytes(len(body))
        res = bpf_run.run(self.fill_fd, msg)
        assert res.verdict == "XDP_TX", res.verdict
        out = res.packet
        _, _, result, _ = FILL_HEAD.unpack_from(out)
        self.victim = None
        if result == 2:
            vkey, vtable, used = SLOT_ID.unpack_from(out, FILL_HEAD.size + len(body))
            vrec = self.Rec.from_buffer_copy(out[FILL_HEAD.size + len(body) + SLOT_ID.size:])
            self.victim = (vtable, vkey, vrec)
        return RESULTS[result]

    def bucket_of(self, table: int, key: int):
        cache = self.bpf[b"dint_cache"]
        return cache[cache.Key(bucket_of(dint_hash(table, key), self.buckets))]

    @staticmethod
    def find(bpf, table: int, key: int):
        """The cached record of (table, key), or None (any bucket count)."""
        cache = bpf[b"dint_cache"]
        b = cache[cache.Key(bucket_of(dint_hash(table, key), cache.max_entries))]
        for i in range(len(b.key)):
            if b.used[i] and b.key[i] == key and b.table[i] == table:
                return b.slot[i].rec
        return None

    def stats(self) -> dict:
        from harness.dintd import read_stats
        return read_stats(self.bpf)
