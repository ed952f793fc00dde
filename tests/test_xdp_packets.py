"""Packet tables for the XDP program, run through BPF_PROG_TEST_RUN with
scapy-built frames: input, expected verdict, expected output. No NIC and no
testbed: the program as dintd compiles it, on the kernel's test path (the
frames come in on the loopback device, which the program is told is its
interface, with SERVER_MAC and SERVER_IP). The cache is filled the way the
slow path fills it (the dint_fill program)."""
from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from harness import bpf_run
from harness.dintd import read_stats
from harness.protocol import DEFAULT_PORT, MAGIC, MAX_VALUE, Op, Status, pack
from harness.scapy_layer import Dint

from conftest import need_root
from xdp_cache import CLIENT_IP, CLIENT_MAC, SERVER_IP, SERVER_MAC, Cache


@pytest.fixture(scope="module")
def prog():
    need_root()
    c = Cache(buckets=64)
    assert c.fill(0, 42, ver=5, value=b"fortytwo", live=True) == "placed"
    yield c.bpf, c.xdp
    c.bpf.cleanup()


def packet(payload: bytes, dport: int = DEFAULT_PORT, **ip):
    return (Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(**{"src": CLIENT_IP, "dst": SERVER_IP, **ip}) /
            UDP(sport=40000, dport=dport) / Raw(payload))


def frame(payload: bytes, dport: int = DEFAULT_PORT, **ip) -> bytes:
    return bytes(packet(payload, dport, **ip))


def changed(payload: bytes, **fields) -> bytes:
    """A request frame with header fields set (layer__field=value); the
    checksums and lengths not set are computed over the changed frame."""
    p = packet(payload)
    for name, value in fields.items():
        layer, field = name.split("__")
        setattr(p[{"Ether": Ether, "IP": IP, "UDP": UDP}[layer]], field, value)
    return bytes(p)


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
    "wrong_magic": pack(Op.ECHO, magic=MAGIC ^ 1),
    "a_reply": pack(Op.ECHO, status=Status.OK),
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


ECHO = pack(Op.ECHO, 1, b"hello")
# Frames the program leaves to the kernel, untouched: not simple, not valid,
# or not addressed to this interface (the kernel then drops them, or hands
# them to the slow path's socket). Those that may be to the dint port are
# counted in `kernel`.
TO_THE_KERNEL = {
    "bad_ip_checksum": changed(ECHO, IP__chksum=0x1234),
    "bad_udp_checksum": changed(ECHO, UDP__chksum=0x1234),
    "ip_total_length_past_the_frame": changed(ECHO, IP__len=28 + len(ECHO) + 4),
    "ip_total_length_short": changed(ECHO, IP__len=28 + len(ECHO) - 4),
    "udp_length_past_the_ip_datagram": changed(ECHO, UDP__len=8 + len(ECHO) + 2, UDP__chksum=0),
    "udp_length_short_of_the_ip_datagram": changed(ECHO + b"xx", UDP__len=8 + len(ECHO), UDP__chksum=0),
    "another_hosts_mac": changed(ECHO, Ether__dst="02:00:00:00:00:09"),
    "broadcast_mac": changed(ECHO, Ether__dst="ff:ff:ff:ff:ff:ff"),
    "another_hosts_ip": changed(ECHO, IP__dst="10.0.0.9"),
    "limited_broadcast_ip": changed(ECHO, IP__dst="255.255.255.255"),
    "from_this_host": changed(ECHO, IP__src=SERVER_IP),
    "from_loopback": changed(ECHO, IP__src="127.0.0.1"),
    "from_zero": changed(ECHO, IP__src="0.0.0.0"),
    "from_multicast": changed(ECHO, IP__src="224.0.0.9"),
    "from_port_zero": changed(ECHO, UDP__sport=0),
    "first_fragment": changed(ECHO, IP__flags="MF"),
    "later_fragment": changed(ECHO, IP__frag=4),
    "ip_options": frame(ECHO, options=b"\x01\x01\x01\x00"),
    "longer_than_any_request": frame(pack(Op.ECHO, 1, bytes(MAX_VALUE + 1), oversize=True)),
    # shorter than a request header: malformed, dropped by the slow path
    "truncated_header": frame(pack(Op.ECHO)[:20]),
    "empty_datagram": frame(b""),
    "vlan_tagged": bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / Dot1Q(vlan=0) /
                         IP(src=CLIENT_IP, dst=SERVER_IP) / UDP(sport=40000, dport=DEFAULT_PORT) / Raw(ECHO)),
}
COUNTED = {"vlan_tagged": 0}  # the kernel counter: frames that are visibly to the dint port


@pytest.mark.parametrize("name", list(TO_THE_KERNEL))
def test_frames_the_kernel_must_judge_pass_untouched(prog, name):
    before = read_stats(prog[0])["kernel"]
    res = bpf_run.run(prog[1], TO_THE_KERNEL[name])
    assert res.verdict == "XDP_PASS" and res.packet == TO_THE_KERNEL[name]
    assert read_stats(prog[0])["kernel"] - before == COUNTED.get(name, 1)


@pytest.mark.parametrize("size", [*range(0, 72), 255, 256, 1021, 1022, 1023, MAX_VALUE])
def test_udp_checksums_of_every_length(prog, size):
    """Right checksums are answered and wrong ones left to the kernel, for
    every way a datagram's length ends (the sum runs in 32-, 8-, 4-, 2- and
    1-byte steps)."""
    good = frame(pack(Op.ECHO, 2, (bytes(range(1, 256)) * 5)[:size]))
    assert Ether(good)[UDP].chksum not in (0, None)
    assert bpf_run.run(prog[1], good).verdict == "XDP_TX"
    bad = bytearray(good)
    bad[-1] ^= 0x01  # one bit of the last byte (an odd one when the length is odd)
    assert bpf_run.run(prog[1], bytes(bad)).verdict == "XDP_PASS"


def test_no_udp_checksum_is_accepted(prog):
    req = changed(ECHO, UDP__chksum=0)
    assert bpf_run.run(prog[1], req).verdict == "XDP_TX"


def test_a_reply_leaves_without_padding_with_ttl_64(prog):
    """Linux trims a frame to its IPv4 length and answers with its own TTL."""
    req = changed(ECHO, IP__ttl=1)
    res = bpf_run.run(prog[1], req + bytes(20))
    assert res.verdict == "XDP_TX" and len(res.packet) == len(req)
    ip = Ether(res.packet)[IP]
    assert ip.ttl == 64 and ip.chksum == IP(bytes(IP(src=ip.src, dst=ip.dst, ttl=64, id=ip.id, flags=ip.flags,
                                                     proto=ip.proto) / bytes(ip.payload))).chksum


def test_the_cost_measure_runs_both_programs():
    """python -m harness.xdpcost, in brief: this tree against itself."""
    need_root()
    from harness import xdpcost
    res = xdpcost.measure("HEAD", rounds=2, calls=4)
    for kind in ("read_hit", "echo_max_value"):
        row = res["ns_per_request"][kind]
        assert row["HEAD"]["median"] > 0 and row["this tree"]["median"] > 0
