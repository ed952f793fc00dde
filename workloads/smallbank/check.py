"""SmallBank's consistency check: money is conserved, exactly, in cents."""
from __future__ import annotations

import functools

from ..contract import CheckSpec
from .loader import balances
from .schema import CHECKING, DEPOSIT_CHECKING, OVERDRAFT_PENALTY, SAVINGS, TRANSACT_SAVINGS, WRITE_CHECK, cents


@functools.lru_cache(maxsize=2)
def initial_cents(accounts: int, seed: int) -> int:
    """All the money loaded: drawn once for every point checked against
    the same data (a series' points, a run's repetitions)."""
    sav, chk = balances(accounts, seed)
    return sum(sav) + sum(chk)


def check(state: dict, committed: dict, spec: CheckSpec) -> list[dict]:
    """state: {(table, key): Record} (the primaries' live rows); committed:
    {type: {"committed": n, "outcomes": {label: n}}} over the whole run.
    The total of all balances must equal the initial total plus what the
    committed DepositChecking, TransactSavings and WriteCheck added or took;
    Amalgamate and SendPayment only move money. Every account keeps both
    rows."""
    accounts = spec.data.scale
    initial = initial_cents(accounts, spec.data.seed)

    def n(kind, outcome=None):
        c = committed.get(kind, {})
        return c.get("outcomes", {}).get(outcome, 0) if outcome else c.get("committed", 0)
    expected = (initial + DEPOSIT_CHECKING * n("DepositChecking") + TRANSACT_SAVINGS * n("TransactSavings")
                - WRITE_CHECK * n("WriteCheck", "normal") - (WRITE_CHECK + OVERDRAFT_PENALTY) * n("WriteCheck", "overdraft"))
    total = sum(cents(r.value) for (t, _), r in state.items() if t in (SAVINGS, CHECKING))
    missing = [f"{'savings' if t == SAVINGS else 'checking'} {a}" for a in range(accounts) for t in (SAVINGS, CHECKING)
               if (t, a) not in state]
    return [
        {"name": "money_conserved", "ok": total == expected,
         "detail": {"total_cents": total, "expected_cents": expected, "initial_cents": initial,
                    "difference_cents": total - expected}},
        {"name": "accounts_present", "ok": not missing,
         "detail": {"missing": len(missing), "examples": missing[:5]}},
    ]
