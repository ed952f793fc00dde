"""The Python mirror and the scapy layer against the one C definition of the
wire format (engine/dint_proto.h), compiled and asked for its layout."""
from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from harness import ENGINE_DIR, protocol
from harness.protocol import HEADER_LEN, Op, Status
from harness.scapy_layer import Dint

from conftest import run_c


def layout_program() -> str:
    """A C program printing the header's layout and every constant as JSON."""
    fields = " ".join(f"F({name});" for name, _ in protocol.FIELDS)
    ops = ", ".join(f'\\"{o.name}\\": %d' for o in Op)
    op_args = ", ".join(f"DINT_OP_{o.name}" for o in Op)
    sts = ", ".join(f'\\"{s.name}\\": %d' for s in Status)
    st_args = ", ".join(f"DINT_ST_{s.name}" for s in Status)
    return rf"""
#include <stddef.h>
#include <stdio.h>
#include "dint_proto.h"
#define F(name) printf("\"%s\": [%zu, %zu],", #name, offsetof(struct dint_hdr, name), \
                       sizeof(((struct dint_hdr *)0)->name))
int main(void)
{{
	printf("{{\"fields\": {{");
	{fields}
	printf("\"_\": [0, 0]}}, \"size\": %zu, \"magic\": %d, \"proto_version\": %d, \"port\": %d, "
	       "\"max_value\": %d, \"op_max\": %d, \"status_max\": %d, \"barrier_max\": %d, ",
	       sizeof(struct dint_hdr), DINT_MAGIC, DINT_PROTO_VERSION, DINT_PORT, DINT_MAX_VALUE,
	       DINT_OP_MAX, DINT_ST_MAX, DINT_BARRIER_MAX);
	printf("\"ops\": {{{ops}}}, ", {op_args});
	printf("\"statuses\": {{{sts}}}}}\n", {st_args});
	return 0;
}}
"""


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory) -> dict:
    out = run_c(tmp_path_factory.mktemp("layout"), layout_program(), ENGINE_DIR)
    out["fields"].pop("_")
    return out


def test_header_size_matches_c(c_layout):
    assert protocol.HEADER_LEN == c_layout["size"] == 40


def test_field_offsets_and_sizes_match_c(c_layout):
    sizes = {name: struct.calcsize(">" + code) for name, code in protocol.FIELDS}
    py = {name: [off, sizes[name]] for name, off in protocol.offsets().items()}
    assert py == c_layout["fields"]
    assert list(py) == list(c_layout["fields"]), "field order differs"


def test_constants_match_c(c_layout):
    assert protocol.MAGIC == c_layout["magic"]
    assert protocol.PROTO_VERSION == c_layout["proto_version"]
    assert protocol.DEFAULT_PORT == c_layout["port"]
    assert protocol.MAX_VALUE == c_layout["max_value"]
    assert {o.name: o.value for o in Op} == c_layout["ops"]
    assert {s.name: s.value for s in Status} == c_layout["statuses"]
    # and the C enums have nothing the mirror lacks: the engine's operations
    # are those below DINT_OP_MAX, the control requests above it
    engine_ops = [o for o in Op if o < protocol.OP_MAX]
    assert c_layout["op_max"] == protocol.OP_MAX == max(engine_ops) + 1 == len(engine_ops) + 1
    assert [o for o in Op if o >= protocol.OP_MAX] == [Op.CHECKPOINT]
    assert c_layout["status_max"] == max(Status) + 1
    assert protocol.BARRIER_MAX == c_layout["barrier_max"]


def test_is_control_matches_c(tmp_path):
    """protocol.is_control against dint_is_control, which every server's
    frontend asks before its engine and its counters."""
    good = protocol.checkpoint_request(3, 2, 1, client_id=7)
    samples = {
        "barrier": good,
        "with_value": protocol.pack(Op.CHECKPOINT, 3, b"xy", ver=2, txn=1),
        "fields_out_of_range": protocol.pack(Op.CHECKPOINT, 0, ver=0, txn=5),
        "short": good[:HEADER_LEN - 1],
        "a_reply": protocol.pack(Op.CHECKPOINT, 3, ver=2, status=Status.OK),
        "wrong_magic": protocol.pack(Op.CHECKPOINT, 3, ver=2, magic=protocol.MAGIC ^ 1),
        "other_version": protocol.pack(Op.CHECKPOINT, 3, ver=2, proto=protocol.PROTO_VERSION + 1),
        "engine_op": protocol.pack(Op.ECHO, 3, ver=2),
        "op_63": protocol.pack(63, 3, ver=2),
    }
    arrays = "\n".join(f"static const unsigned char s{i}[] = {{{', '.join(map(str, d)) or '0'}}};"
                       for i, d in enumerate(samples.values()))
    calls = ", ".join(f"dint_is_control((const struct dint_hdr *)s{i}, {len(d)})" for i, d in enumerate(samples.values()))
    got = run_c(tmp_path, rf"""
#include <stdio.h>
#include "dint_proto.h"
{arrays}
int main(void)
{{
	int r[] = {{{calls}}};
	printf("[");
	for (unsigned i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		printf("%s%d", i ? ", " : "", r[i]);
	printf("]\n");
	return 0;
}}
""", ENGINE_DIR)
    assert dict(zip(samples, map(bool, got))) == {name: protocol.is_control(d) for name, d in samples.items()}
    assert [name for name, d in samples.items() if protocol.is_control(d)] == ["barrier", "with_value",
                                                                              "fields_out_of_range"]


def test_checkpoint_request():
    msg = protocol.unpack(protocol.checkpoint_request(2**40, 1024, 1023, client_id=0x10002))
    assert (msg.op, msg.status, msg.table, msg.val_len, msg.client_id, msg.seq, msg.ack, msg.key, msg.ver,
            msg.txn, msg.value) == (Op.CHECKPOINT, Status.REQUEST, 0, 0, 0x10002, 0, 0, 2**40, 1024, 1023, b"")
    for bad in ((0, 2, 0), (1, 0, 0), (1, protocol.BARRIER_MAX + 1, 0), (1, 2, 2), (1, 2, -1)):
        with pytest.raises(ValueError, match="checkpoint barrier"):
            protocol.checkpoint_request(*bad, client_id=1)


def test_pack_unpack_roundtrip():
    raw = protocol.pack(Op.ECHO, key=2**63 + 5, value=b"abc", table=7, ver=9, txn=11, client_id=3,
                        seq=2**32 - 1, ack=2**32 - 2)
    msg = protocol.unpack(raw)
    assert (msg.magic, msg.op, msg.key, msg.table, msg.ver, msg.txn, msg.client_id, msg.seq, msg.ack, msg.value,
            msg.val_len) == (protocol.MAGIC, Op.ECHO, 2**63 + 5, 7, 9, 11, 3, 2**32 - 1, 2**32 - 2, b"abc", 3)
    # big-endian on the wire
    assert raw[:2] == b"\xd1\x7e" and raw[24:32] == (2**63 + 5).to_bytes(8, "big")


def test_unpack_rejects_short_datagram():
    with pytest.raises(ValueError, match="shorter than the 40-byte header"):
        protocol.unpack(b"\x00" * 39)


def test_scapy_layer_builds_the_same_bytes():
    pkt = Dint(op=Op.ECHO, key=42, value=b"hello", client_id=1, seq=2)
    assert bytes(pkt) == protocol.pack(Op.ECHO, 42, b"hello", client_id=1, seq=2)


def test_scapy_layer_dissects_frames():
    frame = Ether() / IP(dst="10.0.0.1") / UDP(sport=40000, dport=protocol.DEFAULT_PORT) / \
        protocol.pack(Op.ECHO, 9, b"xy", status=Status.OK)
    parsed = Ether(bytes(frame))
    assert parsed.haslayer(Dint)
    d = parsed[Dint]
    assert (d.key, d.value, d.status, d.val_len) == (9, b"xy", Status.OK, 2)
