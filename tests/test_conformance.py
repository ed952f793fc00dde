"""One conformance suite for every system: the same datagrams, sent from a
client host of the testbed, must get the same answers (or none) from dint,
kernel and bypass, and each server's counters must match what was sent.

Frames too: crafted whole (Ethernet, IPv4, UDP) and sent as they are from
the client's interface, each must be answered, or not, as the kernel server
answers it, which is the reference (what Linux's stack lets through to a
UDP socket). A frame the kernel drops reaches no server: none counts it in
rx/tx/drop/err. dint leaves every frame that is not simple to the kernel
(its XDP program's `kernel` counter); bypass applies the kernel's rules
itself and counts what they drop in `net_drop`, checked here too."""
from __future__ import annotations

import struct
import time
from typing import Callable, NamedTuple

import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from harness.protocol import DEFAULT_PORT, HEADER_LEN, MAGIC, MAX_VALUE, PROTO_VERSION, Op, Status, pack, unpack
from harness.scapy_layer import Dint
from harness.testbed import netns_pids, xdp_prog_id

from conftest import Link


# name -> (datagram, expected status or None for "no reply")
CASES = {
    "echo_empty": (pack(Op.ECHO, 1), Status.OK),
    "echo_64_byte_payload": (pack(Op.ECHO, 2, b"v" * 24), Status.OK),
    "echo_largest_value": (pack(Op.ECHO, 3, bytes(range(256)) * (MAX_VALUE // 256)), Status.OK),
    "echo_scapy_built": (bytes(Dint(op=Op.ECHO, key=4, value=b"scapy", seq=9)), Status.OK),
    "unknown_op": (pack(99, 5), Status.UNKNOWN_OP),
    "op_zero": (pack(0, 6), Status.UNKNOWN_OP),
    "future_protocol_version": (pack(Op.ECHO, 7, proto=PROTO_VERSION + 1), Status.BAD_VERSION),
    "value_too_large": (pack(Op.ECHO, 8, b"x" * (MAX_VALUE + 1), oversize=True), Status.BAD_LENGTH),
    "val_len_longer_than_datagram": (pack(Op.ECHO, 9, b"abcdefgh")[:-3], Status.BAD_LENGTH),
    "val_len_shorter_than_datagram": (pack(Op.ECHO, 10, b"abc") + b"tail", Status.BAD_LENGTH),
    "truncated_header": (pack(Op.ECHO, 11)[:HEADER_LEN - 1], None),
    "empty_datagram": (b"", None),
    "wrong_magic": (pack(Op.ECHO, 12, magic=MAGIC ^ 0xFFFF), None),
    "a_reply_is_not_answered": (pack(Op.ECHO, 13, status=Status.OK), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_packet_table(served, case):
    data, expected = CASES[case]
    for server in served.inv.servers:
        reply = served.exchange(server, data)
        if expected is None:
            assert reply is None, f"{served.system.name}/{server.name} answered a malformed datagram"
            served.sent[(server.name, "drop")] += 1
            continue
        assert reply is not None, f"{served.system.name}/{server.name} did not answer"
        msg = unpack(reply)
        assert msg.status == expected
        # the reply is the request turned around: only the status differs
        assert reply[:4] + reply[5:] == data[:4] + data[5:]
        served.sent[(server.name, "tx")] += 1
        if expected != Status.OK:
            served.sent[(server.name, "err")] += 1


# ---- frames -----------------------------------------------------------

def base(link: Link, msg: bytes, sport: int, **ip):
    """The frame a client's stack would send: msg to the server's dint port."""
    return (Ether(src=link.client_mac, dst=link.server_mac) / IP(src=link.client_ip, dst=link.server_ip, **ip) /
            UDP(sport=sport, dport=DEFAULT_PORT) / Raw(msg))


def changed(pkt, **fields) -> bytes:
    """The frame with header fields set (layer__field=value, e.g.
    IP__dst="10.0.0.9"); checksums and lengths not set are computed over
    the frame as changed, so only what is set is wrong."""
    for name, value in fields.items():
        layer, field = name.split("__")
        setattr(pkt[{"Ether": Ether, "IP": IP, "UDP": UDP}[layer]], field, value)
    return bytes(pkt)


def with_options(frame: bytes, options: bytes) -> bytes:
    """The frame's IPv4 header with these option bytes (a multiple of 4),
    its length fields and checksum recomputed."""
    ip, rest = bytearray(frame[14:34]), frame[34:]
    ip[0] = 0x40 | (20 + len(options)) // 4
    struct.pack_into("!HH", ip, 2, 20 + len(options) + len(rest), struct.unpack_from("!H", ip, 4)[0])
    struct.pack_into("!H", ip, 10, 0)
    hdr = bytes(ip) + options
    s = sum(struct.unpack(f"!{len(hdr) // 2}H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return frame[:14] + hdr[:10] + struct.pack("!H", ~s & 0xFFFF) + hdr[12:] + rest


class Sent(NamedTuple):
    frames: list[bytes]
    msg: bytes  # the datagram the server gets (after any trimming)


class Answered(NamedTuple):
    status: int
    fragmented: bool = False  # the reply exceeds the MTU: it must come in fragments


class Refused(NamedTuple):
    """It reaches the server, which counts it and drops it unanswered."""


# name -> (make(link, sport, msg, ip_id) -> Sent, value of the request, what
# happens: Answered, Refused, or None for "the kernel drops it"; frames of it
# bypass counts in net_drop). The same on every system and variant.
FrameCase = tuple[Callable[[Link, int, bytes, int], Sent], bytes, object, int]


def _plain(**fields):
    return lambda link, sport, msg, ip_id: Sent([changed(base(link, msg, sport), **fields)], msg)


def _ip(**ip):
    return lambda link, sport, msg, ip_id: Sent([bytes(base(link, msg, sport, **ip))], msg)


def _options(opts: bytes):
    return lambda link, sport, msg, ip_id: Sent([with_options(bytes(base(link, msg, sport)), opts)], msg)


def _fragments(size: int, reverse: bool = False, opts: bytes = b""):
    def make(link, sport, msg, ip_id):
        pkt = base(link, msg, sport, id=ip_id)
        frames = [bytes(f) for f in fragment(pkt, fragsize=size)]
        if opts:
            frames = [with_options(f, opts) for f in frames]
        return Sent(frames[::-1] if reverse else frames, msg)
    return make


def _udp_shorter(link, sport, msg, ip_id):
    """A UDP length that ends before the IPv4 datagram does: Linux trims
    the datagram to it (its checksum left out, as a sender's would be over
    the shorter datagram)."""
    pkt = base(link, msg + b"tail", sport)
    pkt[UDP].len, pkt[UDP].chksum = 8 + len(msg), 0
    return Sent([bytes(pkt)], msg)


def _udp_longer(link, sport, msg, ip_id):
    pkt = base(link, msg, sport)
    pkt[UDP].len, pkt[UDP].chksum = 8 + len(msg) + 4, 0
    return Sent([bytes(pkt)], msg)


def _non_first_fragment(link, sport, msg, ip_id):
    """A fragment at offset 80 whose data begin like a UDP header to the
    dint port: nothing before it ever comes, so it is never whole."""
    return Sent([bytes(base(link, msg, sport, id=ip_id, frag=10))], msg)


def _vlan(vid: int):
    def make(link, sport, msg, ip_id):
        return Sent([bytes(Ether(src=link.client_mac, dst=link.server_mac) / Dot1Q(vlan=vid) /
                           IP(src=link.client_ip, dst=link.server_ip) / UDP(sport=sport, dport=DEFAULT_PORT) /
                           Raw(msg))], msg)
    return make


def _padded(link, sport, msg, ip_id):
    return Sent([bytes(base(link, msg, sport)) + b"\xa5" * 24], msg)


def _ip_len(delta: int):
    def make(link, sport, msg, ip_id):
        return Sent([changed(base(link, msg, sport), IP__len=28 + len(msg) + delta)], msg)
    return make


ECHO, MID, BIG, HUGE = b"frame", b"m" * 100, b"w" * 1500, b"z" * 2100
DROP = None
FRAME_CASES: dict[str, FrameCase] = {
    "checksums_right": (_plain(), ECHO, Answered(Status.OK), 0),
    "bad_ip_checksum": (_plain(IP__chksum=0x1234), ECHO, DROP, 1),
    "bad_udp_checksum": (_plain(UDP__chksum=0x1234), ECHO, DROP, 1),
    "udp_checksum_zero": (_plain(UDP__chksum=0), ECHO, Answered(Status.OK), 0),
    "ip_total_length_too_long": (_ip_len(+10), ECHO, DROP, 1),
    "ip_total_length_too_short": (_ip_len(-4), ECHO, DROP, 1),
    "udp_length_longer_than_ip_payload": (_udp_longer, ECHO, DROP, 1),
    "udp_length_shorter_than_ip_payload": (_udp_shorter, ECHO, Answered(Status.OK), 0),
    "wrong_destination_ip": (_plain(IP__dst="10.255.255.254"), ECHO, DROP, 1),
    "wrong_destination_mac": (_plain(Ether__dst="02:d1:ee:ee:ee:ee"), ECHO, DROP, 1),
    "broadcast_destination_mac": (_plain(Ether__dst="ff:ff:ff:ff:ff:ff"), ECHO, Answered(Status.OK), 0),
    "multicast_destination_mac": (_plain(Ether__dst="01:00:5e:00:00:01"), ECHO, Answered(Status.OK), 0),
    "limited_broadcast_ip": (_plain(IP__dst="255.255.255.255"), ECHO, Answered(Status.OK), 0),
    "all_hosts_group_ip": (_plain(Ether__dst="01:00:5e:00:00:01", IP__dst="224.0.0.1"), ECHO,
                           Answered(Status.OK), 0),
    "source_loopback": (_plain(IP__src="127.0.0.1"), ECHO, DROP, 1),
    "source_multicast": (_plain(IP__src="224.0.0.5"), ECHO, DROP, 1),
    "source_zero": (_plain(IP__src="0.0.0.0"), ECHO, DROP, 1),
    "source_port_zero": (lambda link, sport, msg, ip_id: Sent([bytes(base(link, msg, 0))], msg), ECHO,
                         Refused(), 0),
    "ttl_zero": (_ip(ttl=0), ECHO, Answered(Status.OK), 0),
    "dont_fragment_and_reserved_flags": (_ip(flags="DF+evil"), ECHO, Answered(Status.OK), 0),
    "ip_options_nops": (_options(b"\x01\x01\x01\x00"), ECHO, Answered(Status.OK), 0),
    "ip_options_record_route": (_options(b"\x07\x07\x04" + bytes(5)), ECHO, Answered(Status.OK), 0),
    "ip_options_timestamp": (_options(b"\x44\x0c\x05\x00" + bytes(8)), ECHO, Answered(Status.OK), 0),
    "ip_options_router_alert": (_options(b"\x94\x04\x00\x00"), MID, Answered(Status.OK), 0),
    "ip_options_unknown": (_options(b"\x1e\x04\x00\x00"), ECHO, Answered(Status.OK), 0),
    "ip_options_loose_source_route": (_options(b"\x83\x07\x04" + bytes(5)), ECHO, DROP, 1),
    "ip_options_bad_length": (_options(b"\x1e\x09\x00\x00"), ECHO, DROP, 1),
    "ip_options_timestamp_overflowed": (_options(b"\x44\x04\x05\xf0"), ECHO, DROP, 1),
    "ihl_below_5": (_plain(IP__ihl=4), ECHO, DROP, 1),
    "ip_version_6": (_plain(IP__version=6), ECHO, DROP, 1),
    "padded_after_the_ip_datagram": (_padded, ECHO, Answered(Status.OK), 0),
    "vlan_priority_tag": (_vlan(0), ECHO, Answered(Status.OK), 0),
    "vlan_tag": (_vlan(5), ECHO, DROP, 1),
    "non_first_fragment_with_fake_udp_header": (_non_first_fragment, ECHO, DROP, 0),
    "two_fragments": (_fragments(80), MID, Answered(Status.OK), 0),
    "two_fragments_reversed": (_fragments(80, reverse=True), MID, Answered(Status.OK), 0),
    "fragments_with_ip_options": (_fragments(64, opts=b"\x01\x01\x01\x00"), MID, Answered(Status.OK), 0),
    "oversized_value_fragmented": (_fragments(1400), BIG, Answered(Status.BAD_LENGTH, fragmented=True), 0),
    "datagram_longer_than_a_server_takes": (_fragments(1400), HUGE, Refused(), 0),
}
_ip_ids = iter(range(3000, 60000))


def _probe(served, server) -> None:
    """An echo behind a frame that goes unanswered: once its reply is back,
    the frame has been dealt with (every server takes a link's frames in
    order). A reply to the frame itself would come before it, or just after
    from dint's slow path: a moment more is given."""
    served.seq += 1
    served.sock.sendto(pack(Op.ECHO, 0, b"probe", seq=served.seq), (server.address, served.inv.port))
    served.sent[(server.name, "rx")] += 1
    got = []
    while not any(unpack(r).seq == served.seq for r in got if len(r) >= HEADER_LEN):
        more = served.replies(0.5, want=1)
        assert more, f"{served.system.name}/{server.name}: the probe behind the frame was not answered"
        got += more
    got += served.replies(0.02)
    served.sent[(server.name, "tx")] += 1
    others = [unpack(r) for r in got if len(r) < HEADER_LEN or unpack(r).seq != served.seq]
    assert not others, f"{served.system.name}/{server.name} answered a frame the kernel drops: {others}"


@pytest.mark.parametrize("case", list(FRAME_CASES))
def test_frame_table(served, case):
    make, value, expected, net_drops = FRAME_CASES[case]
    for server in served.inv.servers:
        served.seq += 1
        msg = pack(Op.ECHO, 900 + served.seq, value, seq=served.seq, oversize=True)
        sent = make(served.link(server), served.sport, msg, next(_ip_ids))
        assert not served.replies(0), "a reply left over"
        sniff = served.sniffer(server) if isinstance(expected, Answered) and expected.fragmented else None
        try:
            served.send_frames(server, sent.frames)
            if not isinstance(expected, Answered):
                if isinstance(expected, Refused):
                    served.sent[(server.name, "rx")] += 1
                    served.sent[(server.name, "drop")] += 1
                if served.system.name == "bypass":
                    served.sent[(server.name, "net_drop")] += net_drops
                _probe(served, server)
                continue
            got = served.replies(1.0, want=1)
            assert got, f"{served.system.name}/{server.name} did not answer"
            reply = got[0]
            assert unpack(reply).seq == served.seq, unpack(reply)
            assert unpack(reply).status == expected.status
            # the reply is the request turned around: only the status differs
            assert reply[:4] + reply[5:] == sent.msg[:4] + sent.msg[5:]
            served.sent[(server.name, "rx")] += 1
            served.sent[(server.name, "tx")] += 1
            if expected.status != Status.OK:
                served.sent[(server.name, "err")] += 1
            if sniff:
                sniff.settimeout(0.3)
                frames = []
                try:
                    while len(frames) < 2:
                        f = sniff.recv(65536)
                        if f[6:12] == bytes.fromhex(served.link(server).server_mac.replace(":", "")):
                            frames.append(Ether(f))
                except TimeoutError:
                    pass
                assert len(frames) == 2 and all(len(f) <= 1514 for f in frames), frames
                assert frames[0][IP].flags.MF and frames[1][IP].frag > 0
        finally:
            if sniff:
                sniff.close()


# Requests the engine refuses (or answers without any record), for keys
# that are in no cache, sent with IP options or in fragments: the frames
# dint's XDP program leaves to the kernel, which hands them to its slow path.
REFUSED = [
    (pack(Op.READ, 7001, bytes(5)), Status.BAD_LENGTH),
    (pack(Op.READ, 7002, bytes(8), table=9), Status.UNKNOWN_TABLE),
    (pack(Op.LOCK_EXCL, 7003, bytes(8)), Status.NOT_OWNER),
    (pack(99, 7004, bytes(8)), Status.UNKNOWN_OP),
    (pack(Op.READ, 7005, bytes(8), proto=PROTO_VERSION + 1), Status.BAD_VERSION),
    (pack(Op.ECHO, 7006, bytes(8)), Status.OK),
]


def test_refused_requests_take_nothing_into_dints_cache(served, request):
    """dint's slow path checks a request before it runs dint_fill for it:
    the refused ones move no fill counter (the XDP program's, which counts
    every run of dint_fill, nor the slow path's, which counts the records
    it takes into the cache from its store). The one valid request, an
    insert of a key no store holds, runs dint_fill once to leave room for
    the record the engine then creates, and takes nothing in from the
    store. Counted here on the variant with a small cache (a tenth of the
    records), and over the whole module on every dint variant
    (test_live_stats_while_running). Every system gives the same answers."""
    server = served.inv.servers[0]
    dint = request.node.callspec.params["served"] == "dint-tenth"

    def fills() -> tuple[int, int]:
        got = served.system.live_stats()[server.name]
        return got["fill"], got["slow_fill"]

    def ask(msg: bytes, fragmented: bool = False) -> int:
        link = served.link(server)
        if fragmented:
            frames = _fragments(1400)(link, served.sport, msg, next(_ip_ids)).frames
        else:
            frames = [with_options(bytes(base(link, msg, served.sport)), b"\x01\x01\x01\x00")]
        assert not served.replies(0), "a reply left over"
        served.send_frames(server, frames)
        got = served.replies(1.0, want=1)
        assert got and unpack(got[0]).seq == unpack(msg).seq, f"{served.system.name}: no reply"
        status = unpack(got[0]).status
        served.sent[(server.name, "rx")] += 1
        served.sent[(server.name, "tx")] += 1
        served.sent[(server.name, "err")] += status != Status.OK
        return status

    before = fills() if dint else None
    for i in range(8):
        for msg, status in REFUSED:
            served.seq += 1
            msg = msg[:12] + struct.pack("!I", served.seq) + msg[16:]
            assert ask(msg) == status
        served.seq += 1
        assert ask(pack(Op.READ, 7100 + i, bytes(MAX_VALUE + 400), seq=served.seq, oversize=True), True) == Status.BAD_LENGTH
    served.seq += 1
    assert ask(pack(Op.INSERT, 7999, bytes(8), txn=7999, ver=1, seq=served.seq)) == Status.OK  # valid: dint makes room
    served.sent[(server.name, "fill")] += 1
    if dint:
        after = fills()
        assert (after[0] - before[0], after[1] - before[1]) == (1, 0), (before, after)


def test_still_answers_after_bad_input(served):
    for server in served.inv.servers:
        for seq in range(20):
            reply = served.exchange(server, pack(Op.ECHO, seq, b"after", seq=seq))
            assert reply is not None and unpack(reply).status == Status.OK and unpack(reply).seq == seq
            served.sent[(server.name, "tx")] += 1


def test_live_stats_while_running(served):
    """stats() of the control plane: every server's counters so far, taken
    while it runs (dint's: its XDP program's and its slow path's)."""
    live = served.system.live_stats()
    again = served.system.live_stats()  # a second request is answered too
    for server in served.inv.servers:
        for got in (live[server.name], again[server.name]):
            assert got["rx"] == served.sent[(server.name, "rx")], (server.name, got)
            assert got["drop"] == served.sent[(server.name, "drop")], (server.name, got)
            assert got["tx"] == served.sent[(server.name, "tx")], (server.name, got)
            assert got["err"] == served.sent[(server.name, "err")], (server.name, got)
            if served.system.name == "dint":
                # dint_fill run only for the one valid request that reached
                # the slow path (and none of the many refused ones, echoes
                # and frames it got from the kernel), an insert of a new key:
                # room made, no record taken in from the store
                want = served.sent[(server.name, "fill")]
                assert (got["fill"], got["slow_fill"]) == (want, 0), (server.name, got)
    assert served.system.check_alive() is None


def test_counters_match_what_was_sent_and_nothing_is_left(served):
    """Validates the instrument: server counters equal the client's own
    count. Stops the system, so it runs last for each system."""
    stats = served.system.stop()
    for server in served.inv.servers:
        got = stats[server.name]
        assert got is not None, f"{server.name} printed no stats"
        for key in ("rx", "tx", "drop", "err"):
            assert got[key] == served.sent[(server.name, key)], (server.name, key, got)
        if served.system.name == "bypass":  # frames the kernel would have dropped
            assert got["net_drop"] == served.sent[(server.name, "net_drop")], (server.name, got)
        # stopped cleanly: no process, no XDP program on its interfaces
        deadline = time.monotonic() + 5
        while netns_pids(server.netns) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert netns_pids(server.netns) == []
        for iface in server.interfaces:
            assert xdp_prog_id(server.netns, iface.name) is None
