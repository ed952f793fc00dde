"""Packet tables for the XDP program, run through BPF_PROG_TEST_RUN with
scapy-built frames: input, expected verdict, expected output. No NIC and no
testbed: the program as dintd compiles it, on the kernel's test path. The
cache is filled the way the slow path fills it (the dint_fill program)."""
from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from harness import bpf_run
from harness.protocol import DEFAULT_PORT, MAGIC, Op, Status, pack
from harness.scapy_layer import Dint

from conftest import need_root
from xdp_cache import Cache

CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:02", "02:00:00:00:00:01"


@pytest.fixture(scope="module")
def prog():
    need_root()
    c = Cache(buckets=64)
    assert c.fill(0, 42, ver=5, value=b"fortytwo", live=True) == "placed"
    yield c.bpf, c.xdp
    c.bpf.cleanup()


def frame(payload: bytes, dport: int = DEFAULT_PORT, **ip) -> bytes:
    return bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src="10.0.0.2", dst="10.0.0.1", **ip) /
                 UDP(sport=40000, dport=dport) / Raw(payload))


def answered(out: bytes, req: bytes) -> Dint:
    """Checks the reply is the request turned around; returns its dint layer."""
    e, r = Ether(out), Ether(req)
    assert (e.src, e.dst) == (r.dst, r.src)
    assert (e[IP].src, e[IP].dst) == (r[IP].dst, r[IP].src)
    assert (e[UDP].sport, e[UDP].dport) == (r[UDP].dport, r[UDP].sport)
    assert e[UDP].chksum == 0 and len(out) == len(req)
    assert IP(bytes(e[IP])).chksum == r[IP].chksum  # still valid: the sum is unchanged
    return Dint(bytes(e[UDP].payload))


NOT_OURS = {
    "arp": bytes(Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.1")),
    "udp_other_port": frame(pack(Op.ECHO), dport=53),
    "ip_options": frame(pack(Op.ECHO), options=b"\x01\x01\x01\x00"),
    "tcp": bytes(Ether() / IP(proto=6) / Raw(b"x" * 40)),
    "runt_frame": bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC, type=0x0800))[:20],
}


@pytest.mark.parametrize("name", list(NOT_OURS))
def test_other_traffic_passes_untouched(prog, name):
    res = bpf_run.run(prog[1], NOT_OURS[name])
    assert res.verdict == "XDP_PASS" and res.packet == NOT_OURS[name]


MALFORMED = {
    "truncated_header": pack(Op.ECHO)[:20],
    "wrong_magic": pack(Op.ECHO, magic=MAGIC ^ 1),
    "a_reply": pack(Op.ECHO, status=Status.OK),
    "empty": b"",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_requests_are_dropped(prog, name):
    assert bpf_run.run(prog[1], frame(MALFORMED[name])).verdict == "XDP_DROP"


ANSWERS = [
    ("echo", pack(Op.ECHO, 1, b"hello"), Status.OK, b"hello"),
    ("unknown_op", pack(77, 1), Status.UNKNOWN_OP, b""),
    ("bad_version", pack(Op.ECHO, proto=9), Status.BAD_VERSION, b""),
    ("bad_length", pack(Op.READ, 42, bytes(5)), Status.BAD_LENGTH, bytes(5)),
    ("unknown_table", pack(Op.READ, 42, b"", table=7), Status.UNKNOWN_TABLE, b""),
    ("read_hit", pack(Op.READ, 42, bytes(8)), Status.OK, b"fortytwo"),
    ("read_miss", pack(Op.READ, 43, bytes(8)), Status.NOT_FOUND, bytes(8)),
    ("lock_without_txn", pack(Op.LOCK_EXCL, 42, bytes(8)), Status.NOT_OWNER, bytes(8)),
    ("lock_granted", pack(Op.LOCK_EXCL, 42, bytes(8), txn=5), Status.OK, b"fortytwo"),
]


@pytest.mark.parametrize("name,req,status,value", ANSWERS, ids=[a[0] for a in ANSWERS])
def test_requests_are_answered_with_xdp_tx(prog, name, req, status, value):
    res = bpf_run.run(prog[1], frame(req))
    assert res.verdict == "XDP_TX"
    d = answered(res.packet, frame(req))
    assert d.status == status and d.value == value
    if name == "read_hit":
        assert d.ver == 5


def test_a_padded_frame_is_read_by_its_udp_length(prog):
    """Short frames arrive padded on real NICs: the UDP length counts."""
    req = frame(pack(Op.ECHO, 9, b"ab"))
    res = bpf_run.run(prog[1], req + bytes(18))
    assert res.verdict == "XDP_TX" and Dint(bytes(Ether(res.packet)[UDP].payload)).status == Status.OK


def test_state_changes_reach_the_maps(prog):
    bpf, fd = prog
    req = frame(pack(Op.INSERT, 77, b"seventy7", txn=5, ver=1))
    assert answered(bpf_run.run(fd, req).packet, req).status == Status.OK
    rec = Cache.find(bpf, 0, 77)
    assert rec.live == 1 and rec.ver == 1 and bytes(rec.value)[:8] == b"seventy7" and rec.gen == 1
