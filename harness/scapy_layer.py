"""A scapy layer for dint datagrams, to craft and dissect packets in tests
and on the wire (bound to the dint UDP port)."""
from __future__ import annotations

from scapy.fields import (ByteEnumField, ByteField, FieldLenField, IntField, LongField,
                          StrLenField, XShortField)
from scapy.layers.inet import UDP
from scapy.packet import Packet, bind_layers

from .protocol import DEFAULT_PORT, MAGIC, PROTO_VERSION, Op, Status


class Dint(Packet):
    name = "dint"
    fields_desc = [
        XShortField("magic", MAGIC),
        ByteField("proto", PROTO_VERSION),
        ByteEnumField("op", Op.ECHO, {o.value: o.name for o in Op}),
        ByteEnumField("status", Status.REQUEST, {s.value: s.name for s in Status}),
        ByteField("table", 0),
        FieldLenField("val_len", None, length_of="value", fmt="!H"),
        IntField("client_id", 0),
        IntField("seq", 0),
        LongField("txn", 0),
        LongField("key", 0),
        IntField("ver", 0),
        IntField("ack", 0),
        StrLenField("value", b"", length_from=lambda p: p.val_len),
    ]


bind_layers(UDP, Dint, dport=DEFAULT_PORT)
bind_layers(UDP, Dint, sport=DEFAULT_PORT)
