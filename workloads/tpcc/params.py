"""TPC-C's transaction parameters (clauses 2.4.1, 2.5.1, 2.6.1, 2.7.1,
2.8.1), drawn from a seed apart from their execution: [(type index, args)]."""
from __future__ import annotations

import numpy as np

from .. import seeds
from ..contract import LoadSpec, TxnType
from ..keydist import distinct_rows
from . import schema as s

LINES = (5, 15)               # a NewOrder's lines (clause 2.4.1.3)
P_ROLLBACK = 0.01             # a NewOrder that rolls back (clause 2.4.1.4)
P_REMOTE_LINE = 0.01          # a line supplied by another warehouse (clause 2.4.1.5)
P_HOME_PAYMENT = 0.85         # a Payment by a customer of the home district (clause 2.5.1.2)
P_BY_NAME = 0.6               # a Payment or OrderStatus customer chosen by last name (clauses 2.5.1.2, 2.6.1.2)


def _other(rng: np.random.Generator, card: s.Card, w: np.ndarray) -> np.ndarray:
    """For each home warehouse in w, another one, uniformly (2 warehouses at least)."""
    o = rng.integers(1, card.warehouses - 1, w.shape, endpoint=True)
    return o + (o >= w)


def _customers(rng: np.random.Generator, card: s.Card, k: s.Constants, m: int) -> tuple[list, list]:
    """(by_name, C_LAST number or C_ID) of m customers: by C_LAST
    NURand(255) 60% of the time, else by C_ID NURand(1023) (clause 2.5.1.2)."""
    by_name = rng.random(m) < P_BY_NAME
    who = np.where(by_name, s.nurand_many(rng, 255, 0, card.last_names - 1, k.c_last_run, m),
                   s.nurand_many(rng, 1023, 1, card.customers, k.c_id, m))
    return by_name.tolist(), who.tolist()


def _new_orders(rng, card, k, w, d) -> list[tuple]:
    """(w, d, c, lines, rollback): lines (item, supplying warehouse,
    quantity), 5-15 of them with distinct items (see the package
    docstring); a rollback's last item an unused one."""
    m = len(w)
    c = s.nurand_many(rng, 1023, 1, card.customers, k.c_id, m)
    rollback = rng.random(m) < P_ROLLBACK
    count = rng.integers(LINES[0], LINES[1], m, endpoint=True)
    items = distinct_rows(lambda size: s.nurand_many(rng, 8191, 1, card.items, k.ol_i_id, size), m, LINES[1])
    items[rollback, count[rollback] - 1] = card.items + 1
    supply = np.repeat(w[:, None], LINES[1], axis=1)
    if card.warehouses > 1:
        remote = rng.random(supply.shape) < P_REMOTE_LINE
        supply[remote] = _other(rng, card, supply[remote])
    quantity = rng.integers(1, 10, supply.shape, endpoint=True)
    used = np.arange(LINES[1]) < count[:, None]
    flat = list(zip(items[used].tolist(), supply[used].tolist(), quantity[used].tolist()))
    ends = np.cumsum(count).tolist()
    lines = [tuple(flat[end - n:end]) for n, end in zip(count.tolist(), ends)]
    return list(zip(w.tolist(), d.tolist(), c.tolist(), lines, rollback.tolist()))


def _payments(rng, card, k, w, d) -> list[tuple]:
    """(w, d, c_w, c_d, by_name, who, amount): the customer's warehouse
    and district the home ones 85% of the time (always with one
    warehouse), else another warehouse's."""
    m = len(w)
    cw, cd = w.copy(), d.copy()
    if card.warehouses > 1:
        away = rng.random(m) >= P_HOME_PAYMENT
        cw[away] = _other(rng, card, w[away])
        cd[away] = rng.integers(1, s.DISTRICTS, int(away.sum()), endpoint=True)
    by_name, who = _customers(rng, card, k, m)
    amount = rng.integers(100, 500_000, m, endpoint=True)
    return list(zip(w.tolist(), d.tolist(), cw.tolist(), cd.tolist(), by_name, who, amount.tolist()))


def _order_statuses(rng, card, k, w, d) -> list[tuple]:
    """(w, d, by_name, who)."""
    return list(zip(w.tolist(), d.tolist(), *_customers(rng, card, k, len(w))))


def _deliveries(rng, card, k, w, d) -> list[tuple]:
    """(w, carrier): generate makes each ten transactions, one per district."""
    return list(zip(w.tolist(), rng.integers(1, 10, len(w), endpoint=True).tolist()))


def _stock_levels(rng, card, k, w, d) -> list[tuple]:
    """(w, d, threshold)."""
    return list(zip(w.tolist(), d.tolist(), rng.integers(10, 20, len(w), endpoint=True).tolist()))


ARGUMENTS = {"NewOrder": _new_orders, "Payment": _payments, "OrderStatus": _order_statuses,
             "Delivery": _deliveries, "StockLevel": _stock_levels}


def generate(n: int, card: s.Card, seed: int, types: tuple[TxnType, ...]) -> list[tuple[int, tuple]]:
    """n database transactions of the mix `types`, as (index into types,
    args). A Delivery (clause 2.7) is ten of them, one per district, in a
    row (see the package docstring), so the stream may run up to 9 past n.
    Each transaction's home warehouse and district are uniform; drawn type
    by type: the transactions' types, their homes, then each type's other
    arguments."""
    for t in types:
        if t.name not in ARGUMENTS:
            raise ValueError(f"no parameters for a TPC-C transaction named {t.name!r}")
    k = s.constants(seed)
    rng = seeds.generator(seed, "tpcc-params")
    weights = np.array([t.weight for t in types], dtype=np.float64)
    kinds = rng.choice(len(types), size=n, p=weights / weights.sum())
    is_delivery = np.array([t.name == "Delivery" for t in types])[kinds]
    # as many as make n database transactions
    ends = np.cumsum(np.where(is_delivery, s.DISTRICTS, 1))
    kept = int(np.searchsorted(ends, n)) + 1 if n else 0
    kinds, is_delivery, ends = kinds[:kept], is_delivery[:kept], ends[:kept].tolist()
    w = rng.integers(1, card.warehouses, kept, endpoint=True)
    d = rng.integers(1, s.DISTRICTS, kept, endpoint=True)
    out: list = [None] * (ends[-1] if kept else 0)
    for kind, t in enumerate(types):
        at = np.flatnonzero(kinds == kind)
        args = ARGUMENTS[t.name](rng, card, k, w[at], d[at])
        if t.name == "Delivery":
            for end, (wd, carrier) in zip([ends[i] for i in at.tolist()], args):
                out[end - s.DISTRICTS:end] = [(kind, (wd, dd, carrier)) for dd in range(1, s.DISTRICTS + 1)]
        else:
            for i, a in zip(at.tolist(), args):
                out[ends[i] - 1] = (kind, a)
    return out


def draw(load: LoadSpec, types: tuple[TxnType, ...]) -> list[tuple[int, tuple]]:
    return generate(load.requests, s.Card.of(load.data), load.seed, types)
