"""TPC-C's transaction parameters (clauses 2.4.1, 2.5.1, 2.6.1, 2.7.1,
2.8.1), drawn from a seed apart from their execution: [(type index, args)]."""
from __future__ import annotations

import random

from ..contract import LoadSpec, TxnType
from . import schema as s


def _customer(rng, card, k, by_name: bool):
    """(by_name, C_LAST number or C_ID): NURand(255) or NURand(1023) (clause 2.5.1.2)."""
    if by_name:
        return True, s.nurand(rng, 255, 0, card.last_names - 1, k.c_last_run)
    return False, s.nurand(rng, 1023, 1, card.customers, k.c_id)


def _other(rng, card, w):
    o = rng.randint(1, card.warehouses - 1)
    return o + 1 if o >= w else o


def generate(n: int, card: s.Card, seed: int, types: tuple[TxnType, ...]) -> list[tuple[int, tuple]]:
    """n database transactions of the mix `types`, as (index into types,
    args). A Delivery (clause 2.7) is ten of them, one per district, in a
    row (see the package docstring), so the stream may run up to 9 past n."""
    k = s.constants(seed)
    rng = random.Random(f"tpcc-params-{seed}")
    weights = [t.weight for t in types]
    out: list[tuple[int, tuple]] = []
    while len(out) < n:
        kind = rng.choices(range(len(types)), weights)[0]
        name = types[kind].name
        w = rng.randint(1, card.warehouses)
        d = rng.randint(1, s.DISTRICTS)
        if name == "NewOrder":
            c = s.nurand(rng, 1023, 1, card.customers, k.c_id)
            rollback = rng.random() < 0.01                # clause 2.4.1.4
            count = rng.randint(5, 15)
            ids: list[int] = []
            while len(ids) < count:                      # distinct items (see the package docstring)
                i = s.nurand(rng, 8191, 1, card.items, k.ol_i_id)
                if i not in ids:
                    ids.append(i)
            if rollback:
                ids[-1] = card.items + 1                 # an unused item: the last line rolls back
            lines = tuple((i, _other(rng, card, w) if card.warehouses > 1 and rng.random() < 0.01 else w,
                           rng.randint(1, 10)) for i in ids)
            out.append((kind, (w, d, c, lines, rollback)))
        elif name == "Payment":
            if card.warehouses == 1 or rng.random() < 0.85:  # clause 2.5.1.2
                cw, cd = w, d
            else:
                cw, cd = _other(rng, card, w), rng.randint(1, s.DISTRICTS)
            by_name, who = _customer(rng, card, k, rng.random() < 0.6)
            out.append((kind, (w, d, cw, cd, by_name, who, rng.randint(100, 500_000))))
        elif name == "OrderStatus":
            by_name, who = _customer(rng, card, k, rng.random() < 0.6)
            out.append((kind, (w, d, by_name, who)))
        elif name == "Delivery":
            carrier = rng.randint(1, 10)
            out.extend((kind, (w, dd, carrier)) for dd in range(1, s.DISTRICTS + 1))
        elif name == "StockLevel":
            out.append((kind, (w, d, rng.randint(10, 20))))
        else:
            raise ValueError(f"no parameters for a TPC-C transaction named {name!r}")
    return out


def draw(load: LoadSpec, types: tuple[TxnType, ...]) -> list[tuple[int, tuple]]:
    return generate(load.requests, s.Card.of(load.data), load.seed, types)
