"""TATP's initial state, drawn from the seed (spec 1.0, section 2.3, with
the population rules below), so every system loads the same data:

- SUBSCRIBER s_id = 1..N, random bits, hexes, byte2s and locations; its
  SUB_NBR index row.
- ACCESS_INFO: 1-4 distinct ai_type in 1..4 per subscriber.
- SPECIAL_FACILITY: 1-4 distinct sf_type in 1..4 per subscriber,
  is_active = 1 with probability 85%.
- CALL_FORWARDING: for each SPECIAL_FACILITY row, each start_time in
  {0, 8, 16} present with probability 1/2, end_time = start_time +
  uniform(1..8).

Text columns are filler: random upper-case letters (data3, data4, data_b)
and digits (numberx), each a random byte mapped mod 26 or mod 10 (slightly
non-uniform, which nothing reads)."""
from __future__ import annotations

import random
from fractions import Fraction

from harness.snapshot import Record

from ..contract import DataSpec
from .schema import (ACCESS_INFO, CALL_FORWARDING, END_SPAN, P_ACTIVE, P_CALL_FORWARDING, SPECIAL_FACILITY,
                     START_TIMES, SUB_NBR, SUBSCRIBER, TYPES, encode_index, pack_access_info, pack_call_forwarding,
                     pack_special_facility, pack_subscriber)

LETTERS = bytes(ord("A") + b % 26 for b in range(256))
DIGITS = bytes(ord("0") + b % 10 for b in range(256))
# the 24 orders of the 4 types: the first k of a random one are k distinct types
ORDERS = [(a, b, c, d) for a in range(1, 5) for b in range(1, 5) for c in range(1, 5) for d in range(1, 5)
          if len({a, b, c, d}) == 4]
assert END_SPAN == 8  # drawn as 3 random bits below


def initial(data: DataSpec) -> list[Record]:
    return population(data.scale, data.seed)


# Rows per subscriber that population() draws, in expectation: 1-4 types
# (uniform) of ACCESS_INFO and of SPECIAL_FACILITY, and per SPECIAL_FACILITY
# row each start time with probability P_CALL_FORWARDING.
TYPES_PER_SUBSCRIBER = Fraction(1 + len(TYPES), 2)
CALL_FORWARDING_PER_FACILITY = len(START_TIMES) * Fraction(P_CALL_FORWARDING)


def rows(data: DataSpec) -> dict[int, int]:
    """The rows population() makes: SUBSCRIBER and SUB_NBR exactly, the
    others their expected count (10.75 rows a subscriber in all)."""
    n = data.scale
    return {SUBSCRIBER: n, SUB_NBR: n, ACCESS_INFO: round(n * TYPES_PER_SUBSCRIBER),
            SPECIAL_FACILITY: round(n * TYPES_PER_SUBSCRIBER),
            CALL_FORWARDING: round(n * TYPES_PER_SUBSCRIBER * CALL_FORWARDING_PER_FACILITY)}


def population(n: int, seed: int) -> list[Record]:
    """Every row of n subscribers: per subscriber its SUBSCRIBER and index
    rows, then its ACCESS_INFO, SPECIAL_FACILITY and CALL_FORWARDING rows."""
    rng = random.Random(f"tatp-load-{seed}")
    bits, rand, randbytes, randrange = rng.getrandbits, rng.random, rng.randbytes, rng.randrange
    out: list[Record] = []
    add = out.append
    for s in range(1, n + 1):
        add(Record(SUBSCRIBER, s, 1, pack_subscriber(s, bits(10), randbytes(5), randbytes(10), bits(32), bits(32))))
        add(Record(SUB_NBR, s, 1, encode_index(s)))
        for ai_type in ORDERS[randrange(24)][:1 + bits(2)]:
            filler = randbytes(8).translate(LETTERS)
            add(Record(ACCESS_INFO, s * 4 + ai_type - 1, 1, pack_access_info(bits(8), bits(8), filler[:3], filler[3:])))
        for sf_type in ORDERS[randrange(24)][:1 + bits(2)]:
            sf = s * 4 + sf_type - 1
            add(Record(SPECIAL_FACILITY, sf, 1, pack_special_facility(rand() < P_ACTIVE, bits(8), bits(8),
                                                                      randbytes(5).translate(LETTERS))))
            for start in START_TIMES:
                if rand() < P_CALL_FORWARDING:
                    add(Record(CALL_FORWARDING, sf * 3 + start // 8, 1,
                               pack_call_forwarding(start + 1 + bits(3), randbytes(15).translate(DIGITS))))
    return out
