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

Scale: accounts. Profiles: `local` 100,000 accounts (this machine: 200,000
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

from . import check as _check
from .loader import initial  # noqa: F401  (the workload interface)
from .params import KINDS, generate
from .schema import SCHEMA  # noqa: F401
from .txns import FUNCS

DEFAULT_CC = "2pl"
DEFAULT_SCALE = 100_000
PROFILES = {"local": 100_000, "paper": 24_000_000}
STAMP_TXN = False
MAX_ROUNDS = 1 + coord.COMMIT_ROUNDS


def check_scale(scale: int) -> str | None:
    return None if scale >= 2 else "SmallBank needs at least 2 accounts"


def transactions(spec: dict) -> tuple[list[str], list, list]:
    """(type names, their functions bound to the coordinator, [(type, args)])."""
    funcs = [coord.bind(f, spec["cc"] or DEFAULT_CC, len(spec["dests"]), SCHEMA.sizes) for f in FUNCS]
    return list(KINDS), funcs, generate(spec["requests"], spec["scale"], spec["seed"])


def check(state: dict, committed: dict, spec: dict) -> list[dict]:
    return _check.check(state, committed, spec)
