"""TPC-C (not in DINT: this project's extension), replicated on 3 servers
like SmallBank, OCC by default.

Mix (database transactions drawn by business transaction): NewOrder 45,
Payment 43, OrderStatus 4, Delivery 4, StockLevel 4 (percent).

Key-value mapping. Fourteen logical tables in five engine tables, one per
value size (8, 16, 24, 32, 64 bytes; values are little-endian structs
padded to their size, schema.py). A key is the logical table (4 bits) |
W_ID (16) | D_ID (4) | the rest (40):
  WAREHOUSE w, DISTRICT (w, d), CUSTOMER (w, d, c), HISTORY (w, d, c,
  the customer's C_PAYMENT_CNT after the payment: unique, as the
  customer is locked), NEW_ORDER / ORDER (w, d, o), ORDER_LINE
  (w, d, o << 4 | ol), ITEM i, STOCK (w, i); and three of this mapping's
  own: CUSTOMER_NAME (w, d, C_LAST << 8 | seq) -> the count and the C_IDs
  with that last name ordered by C_FIRST, 31 per row (more in rows
  seq 1, 2, ...; loaded once, customers are never added); NO_HEAD (w, d)
  -> the oldest undelivered O_ID (the NEW_ORDER queue's head, D_NEXT_O_ID
  being its tail); LAST_ORDER (w, d, c) -> the customer's latest O_ID and
  its O_OL_CNT, written by NewOrder, read by OrderStatus; W_YTD (w) and
  D_YTD (w, d): those columns in rows of their own, written by Payment
  only, so that Payment and NewOrder (which reads W_TAX and increments
  D_NEXT_O_ID) do not conflict on a shared row (a column-group split, as
  a row store with row locks would not have).
Money is integer cents, tax and discount in 1/10000, dates in seconds with
0 for unset (O_CARRIER_ID 0 is unset too).

Scale: warehouses (--scale), with the spec's cardinalities (100,000 items
and stock rows per warehouse, 3,000 customers and orders per district);
--scale-divisor 10 or 100 divides the items, customers, initial orders
(and the 900 undelivered ones) and C_LAST values by itself. Profiles
(WORKLOAD.scaling): `local` 2 warehouses, divisor 10 (117,708 rows on each
server); `paper` 10 warehouses, spec cardinalities (about 6.4 million rows;
1 warehouse alone is 638,966 rows). DINT does not run TPC-C: the paper
profile's size is this project's choice.

Deviations, deliberate:
- Local profile: cardinalities divided by 10 (above); the paper profile
  uses the spec's.
- Text columns shortened: W_NAME, D_NAME 6 characters, C_FIRST 8, C_DATA
  22, H_DATA 17, I_NAME, I_DATA, S_DATA 12, S_DIST_01..10 4 each (OL_DIST_INFO
  4); addresses, phones, C_MIDDLE, C_CREDIT_LIM, W_ZIP and the like are
  dropped (no transaction or check reads them). C_LAST is stored as its
  number 0..999 (the string is last_name(n), clause 4.3.2.3).
- Delivery is one database transaction per district, as clause 2.7.4.2
  allows: a Delivery draw becomes ten "Delivery" transactions in a row
  (districts 1..10, one carrier), so the per-type counts count district
  deliveries. (One transaction for all ten districts would log up to 540
  requests in one round and hold ten districts' rows locked through it.)
- Payment reads W_NAME and D_NAME (for H_DATA), which nothing writes,
  with plain READs (no validation).
- StockLevel reads at read committed, as clause 3.4.0.1 allows: plain
  READs (no locks, no validation), at most 64 per round trip; a row locked
  by a writer aborts it ("lock").
- NewOrder's items are distinct within an order (two lines locking one
  stock row would conflict with themselves).
- Home warehouse and district are drawn uniformly per transaction (no
  terminals bound to a warehouse); no keying or think times.
- A NewOrder that rolls back (1%, a user abort) does not use up its O_ID.
"""
from __future__ import annotations

from harness import coord

from ..contract import CC_MODES, Scaling, Size, Transactions, Workload
from . import check, loader, params
from .schema import DIVISORS, MAX_W, SCHEMA
from .txns import STOCK_LEVEL_ROUNDS, TXN_TYPES

WORKLOAD = Workload(
    name="tpcc", schema=SCHEMA, initial=loader.initial, rows=loader.rows,
    transactions=Transactions(
        types=TXN_TYPES, params=params.draw, coordinated=True, cc=tuple(reversed(CC_MODES)),  # occ first: the default
        # Payment by last name: index row, a later index row, customer;
        # StockLevel commits nothing but reads the most rounds.
        rounds=max(3 + coord.COMMIT_ROUNDS, STOCK_LEVEL_ROUNDS)),
    scaling=Scaling(title="TPC-C", unit="warehouse", maximum=MAX_W, divisors=DIVISORS,
                    profiles={"local": Size(2, divisor=10), "paper": Size(10)}),
    check=check.check, replicated=True,
    key_rule="by NURand and uniform draws, as its specification says",
    # Rows a client process inserts per second, at most (NewOrder: an
    # order, a NEW_ORDER row and 5-15 lines; Payment: a HISTORY row)
    rows_per_s=30_000)
