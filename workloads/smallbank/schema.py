"""SmallBank's tables and constants (DINT's variant, see the package
docstring). Money is integer cents, an 8-byte signed big-endian value."""
from __future__ import annotations

from harness.schema import Schema

SAVINGS, CHECKING = 0, 1
SCHEMA = Schema((8, 8))

# The mix, in percent (DINT, FaSST).
MIX = {
    "Amalgamate": 15,
    "Balance": 15,
    "DepositChecking": 15,
    "SendPayment": 25,
    "TransactSavings": 15,
    "WriteCheck": 15,
}
HOT_FRACTION = 0.04       # of the accounts (DINT: 4% of 24M)
HOT_TXN_FRACTION = 0.90   # transactions drawing all their accounts from the hot set

# Amounts in cents.
DEPOSIT_CHECKING = 130    # DepositChecking: +1.30
TRANSACT_SAVINGS = 2020   # TransactSavings: +20.20
SEND_PAYMENT = 500        # SendPayment: 5.00
WRITE_CHECK = 500         # WriteCheck: 5.00
OVERDRAFT_PENALTY = 100   # WriteCheck below 5.00 in total: 1.00 more (DINT, FaSST)
INITIAL_BALANCE = (10_000, 50_000)  # each account's savings and checking, uniform, cents


def cents(value: bytes) -> int:
    return int.from_bytes(value, "big", signed=True)


def encode(amount: int) -> bytes:
    return amount.to_bytes(8, "big", signed=True)
