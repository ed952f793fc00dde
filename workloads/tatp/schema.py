"""TATP's tables, key packing and value encoding (see the package
docstring). Every table is one engine table of 40-byte values, keyed by an
unsigned 64-bit integer:

  SUBSCRIBER        s_id
  ACCESS_INFO       s_id * 4 + (ai_type - 1)                     ai_type 1..4
  SPECIAL_FACILITY  s_id * 4 + (sf_type - 1)                     sf_type 1..4
  CALL_FORWARDING   (s_id * 4 + (sf_type - 1)) * 3 + start_time / 8
                                                  start_time 0, 8 or 16
  SUB_NBR           int(sub_nbr): the secondary index sub_nbr -> s_id

so a CALL_FORWARDING key // 3 is its SPECIAL_FACILITY key, and an
ACCESS_INFO or SPECIAL_FACILITY key // 4 its subscriber. sub_nbr is s_id
rendered as a 15-digit string (spec), so the index key equals s_id; it is
still a table of its own, read in a round trip of its own, as the spec's
transactions that take a sub_nbr do.

Values are little-endian structs padded with zeros to 40 bytes:

  SUBSCRIBER        s_id u64, bit_1..bit_10 u16 (bit_1 = bit 0),
                    hex_1..hex_10 5 bytes (two nibbles each, hex_1 low),
                    byte2_1..byte2_10 10 bytes, msc_location u32,
                    vlr_location u32                            (33 bytes)
  ACCESS_INFO       data1 u8, data2 u8, data3 3 chars, data4 5 chars
  SPECIAL_FACILITY  is_active u8, error_cntrl u8, data_a u8, data_b 5 chars
  CALL_FORWARDING   end_time u8, numberx 15 chars
  SUB_NBR           s_id u64
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from harness.schema import Schema

SUBSCRIBER, ACCESS_INFO, SPECIAL_FACILITY, CALL_FORWARDING, SUB_NBR = range(5)
TABLE_NAMES = ("SUBSCRIBER", "ACCESS_INFO", "SPECIAL_FACILITY", "CALL_FORWARDING", "SUB_NBR")
VALUE_SIZE = 40
SCHEMA = Schema((VALUE_SIZE,) * 5)

# The mix, in percent (TATP spec 1.0, section 3; DINT and FaSST use it too).
MIX = {
    "GetSubscriberData": 35,
    "GetNewDestination": 10,
    "GetAccessData": 35,
    "UpdateSubscriberData": 2,
    "UpdateLocation": 14,
    "InsertCallForwarding": 2,
    "DeleteCallForwarding": 2,
}
SUCCESS, FAIL = "success", "fail"

TYPES = (1, 2, 3, 4)           # ai_type and sf_type
START_TIMES = (0, 8, 16)       # CALL_FORWARDING.start_time
END_SPAN = 8                   # end_time = start_time + uniform(1..END_SPAN)
QUERY_END_TIMES = 24           # GetNewDestination's end_time: uniform(1..24)
P_ACTIVE = 0.85                # SPECIAL_FACILITY.is_active = 1
P_CALL_FORWARDING = 0.5        # each start_time of a SPECIAL_FACILITY row present


def nonuniform_a(n: int) -> int:
    """The constant A of the subscriber choice for n subscribers (spec 4.1)."""
    return 65535 if n <= 1_000_000 else 1048575 if n <= 10_000_000 else 2097151


# -- keys ------------------------------------------------------------------
def ai_key(s_id: int, ai_type: int) -> int:
    return s_id * 4 + ai_type - 1


def sf_key(s_id: int, sf_type: int) -> int:
    return s_id * 4 + sf_type - 1


def cf_key(s_id: int, sf_type: int, start_time: int) -> int:
    return (s_id * 4 + sf_type - 1) * 3 + start_time // 8


def split4(key: int) -> tuple[int, int]:
    """(s_id, type) of an ACCESS_INFO or SPECIAL_FACILITY key."""
    return key // 4, key % 4 + 1


def split_cf(key: int) -> tuple[int, int, int]:
    """(s_id, sf_type, start_time) of a CALL_FORWARDING key."""
    s_id, sf_type = split4(key // 3)
    return s_id, sf_type, key % 3 * 8


def sub_nbr(s_id: int) -> str:
    return f"{s_id:015d}"


def nbr_key(number: str) -> int:
    return int(number)


# -- values ----------------------------------------------------------------
def _struct(fmt: str) -> struct.Struct:
    s = struct.Struct("<" + fmt)
    return struct.Struct(f"<{fmt}{VALUE_SIZE - s.size}x")


_SUB = _struct("QH5s10sII")
_AI = _struct("BB3s5s")
_SF = _struct("BBB5s")
_CF = _struct("B15s")
_NBR = _struct("Q")


class Subscriber(NamedTuple):
    s_id: int
    bits: int          # bit_1 .. bit_10, bit_1 the lowest
    hexes: bytes       # hex_1 .. hex_10, two per byte
    byte2: bytes       # byte2_1 .. byte2_10
    msc_location: int
    vlr_location: int

    def encode(self) -> bytes:
        return _SUB.pack(*self)

    @property
    def bit_1(self) -> int:
        return self.bits & 1


class AccessInfo(NamedTuple):
    data1: int
    data2: int
    data3: bytes
    data4: bytes

    def encode(self) -> bytes:
        return _AI.pack(*self)


class SpecialFacility(NamedTuple):
    is_active: int
    error_cntrl: int
    data_a: int
    data_b: bytes

    def encode(self) -> bytes:
        return _SF.pack(*self)


class CallForwarding(NamedTuple):
    end_time: int
    numberx: bytes

    def encode(self) -> bytes:
        return _CF.pack(*self)


def subscriber(value: bytes) -> Subscriber:
    return Subscriber(*_SUB.unpack(value))


def access_info(value: bytes) -> AccessInfo:
    return AccessInfo(*_AI.unpack(value))


def special_facility(value: bytes) -> SpecialFacility:
    return SpecialFacility(*_SF.unpack(value))


def call_forwarding(value: bytes) -> CallForwarding:
    return CallForwarding(*_CF.unpack(value))


def encode_index(s_id: int) -> bytes:
    return _NBR.pack(s_id)


def index(value: bytes) -> int:
    """The s_id a SUB_NBR row points at."""
    return _NBR.unpack(value)[0]


# Packers for the loader (the same layouts, without the tuples).
pack_subscriber, pack_access_info, pack_special_facility = _SUB.pack, _AI.pack, _SF.pack
pack_call_forwarding = _CF.pack
