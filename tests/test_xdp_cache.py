"""dint's in-kernel cache at the packet level, through BPF_PROG_TEST_RUN:
hits, misses the bloom filter answers in the kernel, misses passed up to the
slow path, fills and evictions with the victim handed back for write-back,
and the two ablations (no bloom filter, write-through)."""
from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from harness import bpf_run
from harness.protocol import DEFAULT_PORT, HEADER_LEN, Op, Status, pack, unpack

from conftest import need_root
from xdp_cache import WT_MAGIC, Cache

V = b"v" * 40  # table 1 holds 40-byte values


def frame(payload: bytes, src: str = "02:00:00:00:00:02") -> bytes:
    return bytes(Ether(src=src, dst="02:00:00:00:00:01") / IP(src="10.0.0.2", dst="10.0.0.1") /
                 UDP(sport=40000, dport=DEFAULT_PORT) / Raw(payload))


def run(cache: Cache, payload: bytes, **kw):
    res = bpf_run.run(cache.xdp, frame(payload, **kw))
    reply = unpack(bytes(Ether(res.packet)[UDP].payload)) if res.verdict == "XDP_TX" else None
    return res, reply


@pytest.fixture
def one_bucket():
    """A cache of one bucket: four slots, so the fifth key evicts."""
    need_root()
    c = Cache(buckets=1)
    yield c
    c.bpf.cleanup()


def test_hit_is_answered_in_the_kernel(one_bucket):
    c = one_bucket
    assert c.fill(1, 7, ver=3, value=V, live=True) == "placed"
    res, reply = run(c, pack(Op.READ, 7, bytes(40), table=1))
    assert res.verdict == "XDP_TX" and reply.status == Status.OK and reply.value == V and reply.ver == 3
    assert c.fill(1, 7, ver=9, value=bytes(40), live=True) == "present"  # a fill never overwrites
    assert run(c, pack(Op.READ, 7, bytes(40), table=1))[1].ver == 3


def test_absent_key_with_clear_bloom_bits_is_answered_in_the_kernel(one_bucket):
    c = one_bucket
    res, reply = run(c, pack(Op.READ, 99, bytes(40), table=1))
    assert res.verdict == "XDP_TX" and reply.status == Status.NOT_FOUND
    # ... and a new key is created in the kernel while the bucket has room
    res, reply = run(c, pack(Op.INSERT, 99, V, table=1, txn=4, ver=1))
    assert res.verdict == "XDP_TX" and reply.status == Status.OK
    rec = Cache.find(c.bpf, 1, 99)
    assert rec.live and rec.ver == 1 and rec.gen == 1
    assert c.stats()["pass"] == 0


def test_eviction_hands_the_victim_back_and_remembers_it_in_the_bloom_filter(one_bucket):
    c = one_bucket
    for k in range(4):
        assert c.fill(1, k, ver=1, value=V, live=True) == "placed"
    # change key 0 in the kernel: its cached copy is now newer (gen 1)
    res, reply = run(c, pack(Op.LOCK_EXCL, 0, bytes(40), table=1, txn=11))
    assert reply.status == Status.OK
    assert c.fill(1, 4, ver=1, value=V, live=True) == "evicted"
    vtable, vkey, vrec = c.victim
    assert (vtable, vkey) == (1, 0)  # the clock starts at slot 0
    assert vrec.owner == 11 and vrec.gen == 1 and bytes(vrec.value) == V  # lock state travels too
    assert Cache.find(c.bpf, 1, 0) is None and Cache.find(c.bpf, 1, 4) is not None
    # the victim now lives in user space: a request for it passes up, untouched
    req = pack(Op.READ, 0, bytes(40), table=1)
    res, _ = run(c, req)
    assert res.verdict == "XDP_PASS" and res.packet == frame(req)
    # ... and so does a create, which must not make a second copy
    res, _ = run(c, pack(Op.INSERT, 0, V, table=1, txn=12, ver=2))
    assert res.verdict == "XDP_PASS"
    assert c.stats()["pass"] == 2 and c.stats()["evict"] == 1
    # the next eviction takes the next slot
    assert c.fill(1, 0, **{"ver": 1, "value": V, "live": True}) == "evicted"
    assert c.victim[1] == 1


def test_a_full_bucket_passes_a_new_key_up_for_the_slow_path_to_make_room(one_bucket):
    c = one_bucket
    for k in range(4):
        c.fill(1, k, ver=1, value=V, live=True)
    res, _ = run(c, pack(Op.INSERT, 50, V, table=1, txn=3, ver=1))
    assert res.verdict == "XDP_PASS"


def test_frames_from_the_slow_path_are_not_counted(one_bucket):
    c = one_bucket
    run(c, pack(Op.ECHO, 1), src="02:00:64:69:6e:74")
    assert c.stats()["rx"] == 0 and c.stats()["tx"] == 0
    run(c, pack(Op.ECHO, 1))
    assert c.stats()["rx"] == 1 and c.stats()["tx"] == 1


def test_the_filters_answers_are_counted(one_bucket):
    """bloom_out: a miss the filter rules out (answered here); bloom_fp: a
    key the filter may hold that the slow path's store does not (it runs
    the request again, marked absent): the filter's false positive."""
    c = one_bucket
    assert run(c, pack(Op.READ, 99, bytes(40), table=1))[1].status == Status.NOT_FOUND
    assert (c.stats()["bloom_out"], c.stats()["bloom_fp"], c.stats()["pass"]) == (1, 0, 0)
    cache = c.bpf[b"dint_cache"]
    b = cache[cache.Key(0)]
    b.bloom = 2**64 - 1  # the filter now may hold any key
    cache[cache.Key(0)] = b
    req = pack(Op.READ, 99, bytes(40), table=1)
    assert run(c, req)[0].verdict == "XDP_PASS"
    slow = bytes(Ether(src="02:00:64:69:6e:74", dst="02:00:00:00:00:01") / IP(src="10.0.0.2", dst="10.0.0.1") /
                 UDP(sport=2, dport=DEFAULT_PORT) / Raw(req))  # DINT_SLOW_ABSENT
    res = bpf_run.run(c.xdp, slow)
    assert res.verdict == "XDP_TX" and unpack(bytes(Ether(res.packet)[UDP].payload)).status == Status.NOT_FOUND
    assert (c.stats()["bloom_out"], c.stats()["bloom_fp"], c.stats()["pass"]) == (1, 1, 1)


def test_without_bloom_filter_every_miss_passes_up():
    need_root()
    c = Cache(buckets=1, bloom=False)
    try:
        res, _ = run(c, pack(Op.READ, 99, bytes(40), table=1))
        assert res.verdict == "XDP_PASS"
        c.fill(1, 99, ver=2, value=V, live=True)
        assert run(c, pack(Op.READ, 99, bytes(40), table=1))[1].ver == 2
    finally:
        c.bpf.cleanup()


def test_write_through_passes_writes_up_with_their_record():
    need_root()
    c = Cache(buckets=4, write_through=True)
    try:
        c.fill(1, 5, ver=1, value=V, live=True)
        # a read is still answered in the kernel
        assert run(c, pack(Op.READ, 5, bytes(40), table=1))[0].verdict == "XDP_TX"
        req = pack(Op.LOCK_EXCL, 5, bytes(40), table=1, txn=8, seq=3)
        res = bpf_run.run(c.xdp, frame(req))
        assert res.verdict == "XDP_PASS"
        ip = Ether(res.packet)[IP]
        assert IP(bytes(ip)).chksum == ip.chksum  # recomputed for the new length
        payload = bytes(ip[UDP].payload)
        n = HEADER_LEN + 40  # the reply, then the record
        reply = unpack(payload[:n])
        assert reply.status == Status.OK and reply.seq == 3 and reply.ver == 1
        magic, table, found, key = struct.unpack_from("<IBB2xQ", payload, n)
        assert (magic, table, found, key) == (WT_MAGIC, 1, 1, 5)
        rec = c.Rec.from_buffer_copy(payload[n + 16:])
        assert rec.owner == 8 and rec.gen == 1
        assert len(payload) == n + 16 + len(bytes(rec))
        assert c.stats()["write_through"] == 1 and c.stats()["tx"] == 1
    finally:
        c.bpf.cleanup()
