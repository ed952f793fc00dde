"""SmallBank's initial state: every account's savings and checking balance,
drawn from the seed, so every system loads the same data."""
from __future__ import annotations

import random

from harness.snapshot import Record

from ..contract import DataSpec
from .schema import CHECKING, INITIAL_BALANCE, SAVINGS, encode


def balances(accounts: int, seed: int) -> tuple[list[int], list[int]]:
    rng = random.Random(f"smallbank-load-{seed}")
    lo, hi = INITIAL_BALANCE
    return ([rng.randint(lo, hi) for _ in range(accounts)], [rng.randint(lo, hi) for _ in range(accounts)])


def rows(data: DataSpec) -> dict[int, int]:
    """Exact: one SAVINGS and one CHECKING row per account."""
    return {SAVINGS: data.scale, CHECKING: data.scale}


def initial(data: DataSpec) -> list[Record]:
    sav, chk = balances(data.scale, data.seed)
    return ([Record(SAVINGS, a, 1, encode(b)) for a, b in enumerate(sav)] +
            [Record(CHECKING, a, 1, encode(b)) for a, b in enumerate(chk)])
