"""SmallBank's transaction parameters, drawn from a seed apart from their
execution: [(type index, args)]."""
from __future__ import annotations

import random

from ..contract import LoadSpec, TxnType
from .schema import HOT_FRACTION, HOT_TXN_FRACTION

TWO_ACCOUNTS = ("Amalgamate", "SendPayment")


def generate(n: int, accounts: int, seed: int, types: tuple[TxnType, ...]) -> list[tuple[int, tuple[int, ...]]]:
    """n transactions of the mix `types` over accounts 0..accounts-1, as
    (index into types, args): 90% of them draw every
    account from the hot set (the first 4%, at least 2 accounts), the rest
    from all accounts; a two-account transaction uses distinct accounts."""
    if accounts < 2:
        raise ValueError("SmallBank needs at least 2 accounts")
    rng = random.Random(f"smallbank-params-{seed}")
    hot = max(2, int(accounts * HOT_FRACTION))
    kinds = rng.choices(range(len(types)), weights=[t.weight for t in types], k=n)
    out = []
    for kind in kinds:
        pool = hot if rng.random() < HOT_TXN_FRACTION else accounts
        if types[kind].name in TWO_ACCOUNTS:
            out.append((kind, tuple(rng.sample(range(pool), 2))))
        else:
            out.append((kind, (rng.randrange(pool),)))
    return out


def draw(load: LoadSpec, types: tuple[TxnType, ...]) -> list[tuple[int, tuple[int, ...]]]:
    return generate(load.requests, load.data.scale, load.seed, types)
