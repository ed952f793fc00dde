"""TPC-C's initial state (clause 4.3.3.1), from the seed: every system
loads the same rows."""
from __future__ import annotations

import functools
import random
import string
from collections import Counter

from harness.snapshot import Record

from ..contract import DataSpec
from . import schema as s

LOAD_DATE = 1_700_000_000  # O_ENTRY_D, OL_DELIVERY_D, H_DATE, C_SINCE of the loaded rows
LINES = (5, 15)  # O_OL_CNT of a loaded order, uniform
NAME_A = 255     # NURand's A for C_LAST (clause 2.1.6)
_ALPHA = string.ascii_letters


def _astr(rng: random.Random, n: int) -> bytes:
    return "".join(rng.choices(_ALPHA, k=n)).encode()


def _data(rng: random.Random, n: int) -> bytes:
    """I_DATA / S_DATA: 10% hold "ORIGINAL" (clause 4.3.3.1)."""
    return b"ORIGINAL" + _astr(rng, n - 8) if rng.random() < 0.1 else _astr(rng, n)


def initial(data: DataSpec) -> list[Record]:
    card = s.Card.of(data)
    k = s.constants(data.seed)
    rng = random.Random(f"tpcc-load-{data.seed}")
    rows = []
    add = rows.append

    def put(it, value):
        add(Record(it[0], it[1], 1, value))

    for i in range(1, card.items + 1):
        put(s.item(i), s.I.encode(rng.randint(100, 10_000), rng.randint(1, 10_000), _astr(rng, 12),
                                  _data(rng, 12)))
    for w in range(1, card.warehouses + 1):
        put(s.wh(w), s.W.encode(rng.randint(0, 2000), _astr(rng, 6)))
        put(s.wh_ytd(w), s.WY.encode(30_000_000 * s.DISTRICTS // 10))
        for i in range(1, card.items + 1):
            put(s.stock(w, i), s.S.encode(0, rng.randint(10, 100), 0, 0, _astr(rng, 4 * s.DISTRICTS),
                                          _data(rng, 12)))
        for d in range(1, s.DISTRICTS + 1):
            put(s.dist(w, d), s.D.encode(card.orders + 1, rng.randint(0, 2000), _astr(rng, 6)))
            put(s.dist_ytd(w, d), s.DY.encode(3_000_000))
            names: dict[int, list[tuple[bytes, int]]] = {}
            for c in range(1, card.customers + 1):
                last = c - 1 if c <= card.last_names else s.nurand(rng, NAME_A, 0, card.last_names - 1,
                                                                    k.c_last_load)
                first = _astr(rng, 8)
                names.setdefault(last, []).append((first, c))
                put(s.cust(w, d, c), s.C.encode(-1000, 1000, 1, 0, rng.randint(0, 5000), last,
                                                b"BC" if rng.random() < 0.1 else b"GC", first, LOAD_DATE,
                                                _astr(rng, 22)))
                put(s.hist(w, d, c, 1), s.H.encode(1000, LOAD_DATE, w, d, _astr(rng, 17)))
            for last, cs in names.items():
                ids = [c for _, c in sorted(cs)]
                for seq in range(0, len(ids), s.NAME_SLOTS):
                    put(s.cname(w, d, last, seq // s.NAME_SLOTS), s.encode_name(len(ids), ids[seq:seq + s.NAME_SLOTS]))
            perm = list(range(1, card.customers + 1))
            rng.shuffle(perm)
            delivered = card.orders - card.new_orders
            for o in range(1, card.orders + 1):
                c, n = perm[o - 1], rng.randint(*LINES)
                done = o <= delivered
                put(s.order(w, d, o), s.O.encode(c, LOAD_DATE, rng.randint(1, 10) if done else 0, n, 1))
                put(s.last_order(w, d, c), s.LAST.encode(o, n))
                for ol in range(1, n + 1):
                    put(s.line(w, d, o, ol), s.OL.encode(0 if done else rng.randint(1, 999_999),
                                                         rng.randint(1, card.items), LOAD_DATE if done else 0,
                                                         w, 5, _astr(rng, s.DIST_INFO)))
                if not done:
                    put(s.new_order(w, d, o), s.NO.encode(o))
            put(s.no_head(w, d), s.HEAD.encode(delivered + 1))
    return rows


def logical_rows(data: DataSpec) -> dict[int, float]:
    """The rows initial() makes in each logical table: exact, but for
    ORDER_LINE (5-15 lines an order, 10 expected) and CUSTOMER_NAME (a row
    per NAME_SLOTS customers of a last name: the expected count)."""
    card = s.Card.of(data)
    w, districts = card.warehouses, card.warehouses * s.DISTRICTS
    return {s.ITEM: card.items, s.WAREHOUSE: w, s.W_YTD: w, s.STOCK: w * card.items,
            s.DISTRICT: districts, s.D_YTD: districts, s.NO_HEAD: districts,
            s.CUSTOMER: districts * card.customers, s.HISTORY: districts * card.customers,
            s.CUSTOMER_NAME: districts * name_rows(card.customers, card.last_names),
            s.ORDER: districts * card.orders, s.LAST_ORDER: districts * card.orders,
            s.ORDER_LINE: districts * card.orders * sum(LINES) / 2, s.NEW_ORDER: districts * card.new_orders}


def rows(data: DataSpec) -> dict[int, int]:
    """The rows initial() makes in each engine table (logical_rows, by the
    table their value size puts them in)."""
    out: dict[int, float] = {}
    for lt, n in logical_rows(data).items():
        out[s.ENGINE[lt]] = out.get(s.ENGINE[lt], 0) + n
    return {t: round(n) for t, n in out.items()}


@functools.cache
def name_rows(customers: int, names: int) -> float:
    """CUSTOMER_NAME rows a district expects: customers 1..names take the
    last names in order, the others draw one by NURand (its constant C only
    shifts the distribution, so it does not change the expectation), and a
    name with k customers has ceil(k / NAME_SLOTS) rows."""
    ways = Counter((a | b) % names for a in range(NAME_A + 1) for b in range(names))
    drawn, total = customers - names, (NAME_A + 1) * names
    expected = 0.0
    for count, values in Counter(ways.values()).items():
        # E[ceil((1 + X) / NAME_SLOTS)] for X ~ Binomial(drawn, p)
        p = count / total
        pmf, e = (1 - p) ** drawn, 0.0
        for k in range(drawn + 1):
            e += pmf * ((k + s.NAME_SLOTS) // s.NAME_SLOTS)
            pmf *= (drawn - k) / (k + 1) * p / (1 - p)
        expected += values * e
    return expected
