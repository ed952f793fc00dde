"""SmallBank, as DINT runs it: 3 replicated servers, no-wait 2PL by default.

Tables SAVINGS and CHECKING, key = account id, value = balance in integer
cents. Mix: Amalgamate 15, Balance 15, DepositChecking 15, SendPayment 25,
TransactSavings 15, WriteCheck 15 (percent). 90% of transactions draw all
their accounts from a hot set of 4% of the accounts; two-account
transactions use distinct accounts.

The package has the shape every replicated workload has: schema.py
(constants and tables), loader.py (the initial state from a seed),
params.py (the parameters, drawn from a seed apart from execution), txns.py
(one function per transaction, named as the benchmark names them) and
check.py (the consistency check after every run).

Scale: accounts. Profiles (WORKLOAD.scaling): `local` 100,000 accounts (this machine: 200,000
rows on each server); `paper` 24,000,000 (DINT).

Deviations, deliberate:
- Money is integer cents, not DINT's float32 (which silently loses the 1.30
  deposits on balances near 1e9), so conservation is checked exactly.
- WriteCheck subtracts 6.00 (the amount plus a 1.00 penalty) when savings
  and checking together hold less than 5.00, as DINT and FaSST do (H-Store
  subtracts amount - 1).
- SendPayment with less than 5.00 in checking is a user abort (cause
  "user"), as in DINT.
- Initial balances are uniform in 100.00..500.00 per row (DINT does not
  say).
"""
from __future__ import annotations

from harness import coord

from ..contract import CC_MODES, Scaling, Size, Transactions, Workload
from . import check, loader, params
from .schema import SCHEMA
from .txns import TXN_TYPES

WORKLOAD = Workload(
    name="smallbank", schema=SCHEMA, initial=loader.initial, rows=loader.rows,
    transactions=Transactions(types=TXN_TYPES, params=params.draw, rounds=1 + coord.COMMIT_ROUNDS, coordinated=True,
                              cc=CC_MODES),  # 2pl first: the default, as DINT runs it
    scaling=Scaling(title="SmallBank", unit="account", minimum=2,
                    profiles={"local": Size(100_000), "paper": Size(24_000_000)}),
    check=check.check, replicated=True,
    key_rule="by its hotspot rule (90% of transactions on the hottest 4% of the accounts, as DINT runs it)")
