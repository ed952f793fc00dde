"""One conformance suite for every system: the same datagrams, sent from a
client host of the testbed, must get the same answers (or none) from dint,
kernel and bypass, and each server's counters must match what was sent."""
from __future__ import annotations

import time

import pytest

from harness.protocol import HEADER_LEN, MAGIC, MAX_VALUE, PROTO_VERSION, Op, Status, pack, unpack
from harness.scapy_layer import Dint
from harness.testbed import netns_pids, xdp_prog_id


# name -> (datagram, expected status or None for "no reply")
CASES = {
    "echo_empty": (pack(Op.ECHO, 1), Status.OK),
    "echo_64_byte_payload": (pack(Op.ECHO, 2, b"v" * 24), Status.OK),
    "echo_largest_value": (pack(Op.ECHO, 3, bytes(range(256)) * (MAX_VALUE // 256)), Status.OK),
    "echo_scapy_built": (bytes(Dint(op=Op.ECHO, key=4, value=b"scapy", seq=9)), Status.OK),
    "unknown_op": (pack(99, 5), Status.UNKNOWN_OP),
    "op_zero": (pack(0, 6), Status.UNKNOWN_OP),
    "future_protocol_version": (pack(Op.ECHO, 7, proto=PROTO_VERSION + 1), Status.BAD_VERSION),
    "value_too_large": (pack(Op.ECHO, 8, b"x" * (MAX_VALUE + 1)), Status.BAD_LENGTH),
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


def test_still_answers_after_bad_input(served):
    for server in served.inv.servers:
        for seq in range(20):
            reply = served.exchange(server, pack(Op.ECHO, seq, b"after", seq=seq))
            assert reply is not None and unpack(reply).status == Status.OK and unpack(reply).seq == seq
            served.sent[(server.name, "tx")] += 1


def test_live_stats_while_running(served):
    """stats() of the control plane: every server's counters so far, taken
    while it runs (dint's are the XDP program's: what the slow path
    answered is counted at stop)."""
    live = served.system.live_stats()
    again = served.system.live_stats()  # a second request is answered too
    for server in served.inv.servers:
        for got in (live[server.name], again[server.name]):
            assert got["rx"] == served.sent[(server.name, "rx")], (server.name, got)
            assert got["drop"] == served.sent[(server.name, "drop")], (server.name, got)
            if served.system.name == "dint":
                assert got["tx"] <= served.sent[(server.name, "tx")]
            else:
                assert got["tx"] == served.sent[(server.name, "tx")], (server.name, got)
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
        # stopped cleanly: no process, no XDP program on its interfaces
        deadline = time.monotonic() + 5
        while netns_pids(server.netns) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert netns_pids(server.netns) == []
        for iface in server.interfaces:
            assert xdp_prog_id(server.netns, iface.name) is None
