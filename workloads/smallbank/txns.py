"""SmallBank's transactions, one function each, named as the benchmark
names them; written once against the coordinator (harness/coord.py). Each
returns its outcome label (WriteCheck: "normal" or "overdraft") for the
consistency check."""
from __future__ import annotations

from harness.txn import Abort

from ..contract import mix_of
from .schema import (CHECKING, DEPOSIT_CHECKING, MIX, OVERDRAFT_PENALTY, SAVINGS, SEND_PAYMENT, TRANSACT_SAVINGS,
                     WRITE_CHECK, cents, encode)


def Amalgamate(tx, a, b):
    """Moves all of a's money into b's checking: chk[b] += sav[a] + chk[a]."""
    sav_a, chk_a, chk_b = map(cents, (yield from tx.read_for_update([(SAVINGS, a), (CHECKING, a), (CHECKING, b)])))
    tx.write(SAVINGS, a, encode(0))
    tx.write(CHECKING, a, encode(0))
    tx.write(CHECKING, b, encode(chk_b + sav_a + chk_a))
    yield from tx.commit()


def Balance(tx, a):
    """Reads a's savings and checking."""
    yield from tx.read([(SAVINGS, a), (CHECKING, a)])
    yield from tx.commit()


def DepositChecking(tx, a):
    (chk,) = yield from tx.read_for_update([(CHECKING, a)])
    tx.write(CHECKING, a, encode(cents(chk) + DEPOSIT_CHECKING))
    yield from tx.commit()


def SendPayment(tx, a, b):
    """Moves 5.00 from a's checking to b's; a user abort if a has less."""
    chk_a, chk_b = map(cents, (yield from tx.read_for_update([(CHECKING, a), (CHECKING, b)])))
    if chk_a < SEND_PAYMENT:
        raise Abort("user")
    tx.write(CHECKING, a, encode(chk_a - SEND_PAYMENT))
    tx.write(CHECKING, b, encode(chk_b + SEND_PAYMENT))
    yield from tx.commit()


def TransactSavings(tx, a):
    (sav,) = yield from tx.read_for_update([(SAVINGS, a)])
    tx.write(SAVINGS, a, encode(cents(sav) + TRANSACT_SAVINGS))
    yield from tx.commit()


def WriteCheck(tx, a):
    """Writes a 5.00 check on a's checking; 1.00 more when savings and
    checking together hold less than 5.00."""
    (sav,), (chk,) = yield from tx.access(read=[(SAVINGS, a)], update=[(CHECKING, a)])
    sav, chk = cents(sav), cents(chk)
    overdraft = sav + chk < WRITE_CHECK
    tx.write(CHECKING, a, encode(chk - WRITE_CHECK - (OVERDRAFT_PENALTY if overdraft else 0)))
    yield from tx.commit()
    return "overdraft" if overdraft else "normal"


TXN_TYPES = mix_of(MIX, Amalgamate, Balance, DepositChecking, SendPayment, TransactSavings, WriteCheck)
