"""TPC-C's tables as this project stores them (see the package docstring):
logical tables packed into five engine tables by value size, the key
layout, the value layouts, cardinalities and NURand (clause 2.1.6)."""
from __future__ import annotations

import random
import struct
from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from harness.schema import Schema

# -- logical tables: the high 4 bits of every key ---------------------------
(WAREHOUSE, DISTRICT, CUSTOMER, CUSTOMER_NAME, HISTORY, NEW_ORDER, ORDER, ORDER_LINE, ITEM, STOCK,
 NO_HEAD, LAST_ORDER, W_YTD, D_YTD) = range(1, 15)
NAMES = {WAREHOUSE: "WAREHOUSE", DISTRICT: "DISTRICT", CUSTOMER: "CUSTOMER", CUSTOMER_NAME: "CUSTOMER_NAME",
         HISTORY: "HISTORY", NEW_ORDER: "NEW_ORDER", ORDER: "ORDER", ORDER_LINE: "ORDER_LINE", ITEM: "ITEM",
         STOCK: "STOCK", NO_HEAD: "NO_HEAD", LAST_ORDER: "LAST_ORDER", W_YTD: "W_YTD", D_YTD: "D_YTD"}

# -- engine tables: one per value size class --------------------------------
SIZES = (8, 16, 24, 32, 64)
SCHEMA = Schema(SIZES)
SIZE_OF = {NEW_ORDER: 8, NO_HEAD: 8, LAST_ORDER: 8, W_YTD: 8, D_YTD: 8, WAREHOUSE: 16, ORDER: 16, DISTRICT: 24,
           HISTORY: 32, ORDER_LINE: 32, ITEM: 32, CUSTOMER: 64, CUSTOMER_NAME: 64, STOCK: 64}
ENGINE = {lt: SIZES.index(size) for lt, size in SIZE_OF.items()}

# -- keys: logical table (4 bits) | w (16) | d (4) | rest (40) ---------------
MAX_W = (1 << 16) - 1
O_BITS = 28  # order ids; ORDER_LINE: o_id << 4 | ol_number
HIST_BITS = 24  # HISTORY: c_id << 24 | the customer's payment count


def key(lt: int, w: int = 0, d: int = 0, rest: int = 0) -> int:
    return lt << 60 | w << 44 | d << 40 | rest


def unkey(k: int) -> tuple[int, int, int, int]:
    """(logical table, w, d, rest)."""
    return k >> 60, (k >> 44) & 0xFFFF, (k >> 40) & 0xF, k & ((1 << 40) - 1)


def _item(lt, w=0, d=0, rest=0):
    return (ENGINE[lt], key(lt, w, d, rest))


def wh(w): return _item(WAREHOUSE, w)
def dist(w, d): return _item(DISTRICT, w, d)
def cust(w, d, c): return _item(CUSTOMER, w, d, c)
def cname(w, d, last, seq): return _item(CUSTOMER_NAME, w, d, last << 8 | seq)
def hist(w, d, c, n): return _item(HISTORY, w, d, c << HIST_BITS | n)
def new_order(w, d, o): return _item(NEW_ORDER, w, d, o)
def order(w, d, o): return _item(ORDER, w, d, o)
def line(w, d, o, n): return _item(ORDER_LINE, w, d, o << 4 | n)
def item(i): return _item(ITEM, 0, 0, i)
def stock(w, i): return _item(STOCK, w, 0, i)
def no_head(w, d): return _item(NO_HEAD, w, d)
def last_order(w, d, c): return _item(LAST_ORDER, w, d, c)
def wh_ytd(w): return _item(W_YTD, w)
def dist_ytd(w, d): return _item(D_YTD, w, d)


# -- values: little-endian, padded to the engine table's size ----------------
class Row:
    def __init__(self, lt: int, fmt: str, fields: str):
        self.lt, self.st, self.size = lt, struct.Struct("<" + fmt), SIZE_OF[lt]
        self.tuple = namedtuple(NAMES[lt].title().replace("_", ""), fields)
        assert self.st.size <= self.size, (NAMES[lt], self.st.size)
        self.pad = bytes(self.size - self.st.size)

    def encode(self, *args, **kw) -> bytes:
        t = args[0] if len(args) == 1 and isinstance(args[0], tuple) else self.tuple(*args, **kw)
        return self.st.pack(*t) + self.pad

    def decode(self, value: bytes):
        return self.tuple._make(self.st.unpack_from(value))


# Money in integer cents, rates in 1/10000, dates in seconds (0: unset).
# W_YTD and D_YTD live in rows of their own (only Payment writes them), so
# that Payment and NewOrder, which reads W_TAX and increments D_NEXT_O_ID,
# do not conflict on a shared row.
W = Row(WAREHOUSE, "H6s", "tax name")
D = Row(DISTRICT, "IH6s", "next_o_id tax name")
WY = Row(W_YTD, "q", "ytd")
DY = Row(D_YTD, "q", "ytd")
C = Row(CUSTOMER, "qqIIHH2s8sI22s",
        "balance ytd_payment payment_cnt delivery_cnt discount last credit first since data")
H = Row(HISTORY, "qIHB17s", "amount date w_id d_id data")
NO = Row(NEW_ORDER, "I", "o_id")
O = Row(ORDER, "HIBBB", "c_id entry_d carrier_id ol_cnt all_local")
OL = Row(ORDER_LINE, "qIIHB8s", "amount i_id delivery_d supply_w_id quantity dist_info")
I = Row(ITEM, "II12s12s", "price im_id name data")
S = Row(STOCK, "IhHH40s12s", "ytd quantity order_cnt remote_cnt dist data")
HEAD = Row(NO_HEAD, "I", "o_id")
LAST = Row(LAST_ORDER, "IB", "o_id ol_cnt")

NAME_SLOTS = 31  # customer ids per CUSTOMER_NAME row (u16 total + 31 u16)
_NAME = struct.Struct("<H31H")
DIST_INFO = 4    # S_DIST_01..10 (24 characters each in the spec) shortened to 4


def encode_name(total: int, ids: list[int]) -> bytes:
    return _NAME.pack(total, *ids, *[0] * (NAME_SLOTS - len(ids)))


def decode_name(value: bytes) -> tuple[int, list[int]]:
    total, *ids = _NAME.unpack(value)
    return total, ids


def s_dist(s, d: int) -> bytes:
    return s.dist[(d - 1) * DIST_INFO:d * DIST_INFO]


SYLLABLES = ("BAR", "OUGHT", "ABLE", "PRI", "PRES", "ESE", "ANTI", "CALLY", "ATION", "EING")


def last_name(n: int) -> str:
    """C_LAST from its number 0..999 (clause 4.3.2.3)."""
    return SYLLABLES[n // 100] + SYLLABLES[n // 10 % 10] + SYLLABLES[n % 10]


# -- the mix (clause 5.2.3: minimum shares, here exact) ----------------------
MIX = {"NewOrder": 45, "Payment": 43, "OrderStatus": 4, "Delivery": 4, "StockLevel": 4}

# -- cardinalities and the scale ---------------------------------------------
DISTRICTS = 10
DIVISORS = (1, 10, 100)


@dataclass(frozen=True)
class Card:
    """Cardinalities: the spec's (divisor 1) or divided by 10 or 100, for a
    number of warehouses (the workload's scale)."""
    warehouses: int
    divisor: int = 1

    @classmethod
    def of(cls, data) -> "Card":
        """From a DataSpec: scale warehouses, its divisor."""
        return cls(data.scale, data.divisor)

    @property
    def items(self): return 100_000 // self.divisor
    @property
    def customers(self): return 3000 // self.divisor   # per district
    @property
    def orders(self): return 3000 // self.divisor      # initial orders per district
    @property
    def new_orders(self): return 900 // self.divisor   # the last ones, undelivered
    @property
    def last_names(self): return 1000 // self.divisor  # C_LAST numbers 0..last_names-1


# -- NURand (clause 2.1.6) ---------------------------------------------------
@dataclass(frozen=True)
class Constants:
    c_last_load: int
    c_last_run: int
    c_id: int
    ol_i_id: int


def constants(seed: int) -> Constants:
    """The C values: C_LAST's run-time value differs from the load-time one
    by 65..119, but not 96 or 112 (clause 2.1.6.1)."""
    rng = random.Random(f"tpcc-constants-{seed}")
    load = rng.randint(0, 255)
    while True:
        run = rng.randint(0, 255)
        delta = abs(run - load)
        if 65 <= delta <= 119 and delta not in (96, 112):
            break
    return Constants(load, run, rng.randint(0, 1023), rng.randint(0, 8191))


def _nurand(r_a, r_xy, x: int, y: int, c: int):
    """NURand(A, x, y) with its C from the draws random(0, A) and
    random(x, y): numbers, or arrays of them."""
    return ((r_a | r_xy) + c) % (y - x + 1) + x


def nurand(rng: random.Random, a: int, x: int, y: int, c: int) -> int:
    return _nurand(rng.randint(0, a), rng.randint(x, y), x, y, c)


def nurand_many(rng: np.random.Generator, a: int, x: int, y: int, c: int, size) -> np.ndarray:
    """size (an array shape) NURand draws."""
    return _nurand(rng.integers(0, a, size, endpoint=True), rng.integers(x, y, size, endpoint=True), x, y, c)
