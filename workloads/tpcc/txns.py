"""TPC-C's five transactions (clause 2), one function each, written against
the coordinator (harness/coord.py); independent reads share a round trip."""
from __future__ import annotations

import time

from harness.protocol import Op
from harness.txn import MAX_BATCH, Abort

from ..contract import mix_of
from . import schema as s
from .schema import MIX

STOCK_LEVEL_ORDERS = 20  # clause 2.8.2.2


def _now() -> int:
    return int(time.time())


def _pick(tx, w, d, last, first_row):
    """C_ID of the customer at position ceil(n/2) of those named `last` in
    (w, d), ordered by C_FIRST (clause 2.5.2.2); first_row is the value of
    their first CUSTOMER_NAME row; one more round trip if the position is in
    a later row."""
    if first_row is None:
        raise Abort("missing")
    total, ids = s.decode_name(first_row)
    seq, off = divmod((total + 1) // 2 - 1, s.NAME_SLOTS)
    if seq:
        (row,) = yield from tx.read([s.cname(w, d, last, seq)])
        ids = s.decode_name(row)[1]
    return ids[off]


def NewOrder(tx, w, d, c, lines, rollback):
    """Clause 2.4.2: one round trip reads the warehouse, customer and items
    and locks the district, the customer's LAST_ORDER row and the stocks; a
    missing item rolls the transaction back (the 1%, a user abort)."""
    read = [s.wh(w), s.cust(w, d, c)] + [s.item(i) for i, _, _ in lines]
    update = [s.dist(w, d), s.last_order(w, d, c)] + [s.stock(sw, i) for i, sw, _ in lines]
    r, u = yield from tx.access(read=read, update=update, missing_ok=rollback)
    if any(v is None for v in r[len(read) - len(lines):]):
        raise Abort("user")                     # clause 2.4.2.3: an unused item
    if any(v is None for v in r[:2] + u):
        raise Abort("missing")
    wr, cr, dr = s.W.decode(r[0]), s.C.decode(r[1]), s.D.decode(u[0])
    o = dr.next_o_id
    tx.write(*s.dist(w, d), s.D.encode(dr._replace(next_o_id=o + 1)))
    tx.write(*s.last_order(w, d, c), s.LAST.encode(o, len(lines)))
    now, total, all_local = _now(), 0, 1
    for n, ((i, sw, qty), iv, sv) in enumerate(zip(lines, r[2:], u[2:]), 1):
        it, st = s.I.decode(iv), s.S.decode(sv)
        q = st.quantity - qty if st.quantity >= qty + 10 else st.quantity - qty + 91   # clause 2.4.2.2
        remote = sw != w
        all_local &= not remote
        tx.write(*s.stock(sw, i), s.S.encode(st._replace(quantity=q, ytd=st.ytd + qty, order_cnt=st.order_cnt + 1,
                                                         remote_cnt=st.remote_cnt + remote)))
        amount = qty * it.price
        total += amount
        tx.insert(*s.line(w, d, o, n), s.OL.encode(amount, i, 0, sw, qty, s.s_dist(st, d)))
    tx.insert(*s.order(w, d, o), s.O.encode(c, now, 0, len(lines), all_local))
    tx.insert(*s.new_order(w, d, o), s.NO.encode(o))
    # total * (1 - C_DISCOUNT) * (1 + W_TAX + D_TAX) is the terminal's figure; nothing stores it
    _ = total * (10_000 - cr.discount) * (10_000 + wr.tax + dr.tax)
    yield from tx.commit()
    return "local" if all_local else "remote"


def Payment(tx, w, d, cw, cd, by_name, who, amount):
    """Clause 2.5.2: W_YTD and D_YTD locked in the first round trip, with
    the customer (by id) or the customer's last-name index row. W_NAME and
    D_NAME (for H_DATA) are never written: read without validation."""
    (wv, dv) = yield from _read_committed(tx, [s.wh(w), s.dist(w, d)])
    if by_name:
        (idx,), (wy, dy) = yield from tx.access(read=[s.cname(cw, cd, who, 0)],
                                                update=[s.wh_ytd(w), s.dist_ytd(w, d)])
        c = yield from _pick(tx, cw, cd, who, idx)
        (cv,) = yield from tx.read_for_update([s.cust(cw, cd, c)])
    else:
        c = who
        wy, dy, cv = yield from tx.read_for_update([s.wh_ytd(w), s.dist_ytd(w, d), s.cust(cw, cd, c)])
    wr, dr, cr = s.W.decode(wv), s.D.decode(dv), s.C.decode(cv)
    tx.write(*s.wh_ytd(w), s.WY.encode(s.WY.decode(wy).ytd + amount))
    tx.write(*s.dist_ytd(w, d), s.DY.encode(s.DY.decode(dy).ytd + amount))
    cr = cr._replace(balance=cr.balance - amount, ytd_payment=cr.ytd_payment + amount,
                     payment_cnt=cr.payment_cnt + 1)
    if cr.credit == b"BC":                      # clause 2.5.2.2: C_DATA gets the payment in front
        cr = cr._replace(data=(f"{c} {cd} {cw} {d} {w} {amount}|".encode() + cr.data)[:22])
    tx.write(*s.cust(cw, cd, c), s.C.encode(cr))
    h_data = (wr.name.rstrip(b"\0") + b"    " + dr.name.rstrip(b"\0"))[:17]
    tx.insert(*s.hist(cw, cd, c, cr.payment_cnt), s.H.encode(amount, _now(), w, d, h_data))
    yield from tx.commit()
    return "by_name" if by_name else "by_id"


def OrderStatus(tx, w, d, by_name, who):
    """Clause 2.6.2: the customer, then their latest order and its lines."""
    if by_name:
        (idx,) = yield from tx.read([s.cname(w, d, who, 0)])
        c = yield from _pick(tx, w, d, who, idx)
    else:
        c = who
    cv, lv = yield from tx.read([s.cust(w, d, c), s.last_order(w, d, c)])
    last = s.LAST.decode(lv)
    yield from tx.read([s.order(w, d, last.o_id)] + [s.line(w, d, last.o_id, n) for n in range(1, last.ol_cnt + 1)])
    yield from tx.commit()
    return "by_name" if by_name else "by_id"


def Delivery(tx, w, d, carrier):
    """Clause 2.7.4, one district: the oldest NEW_ORDER (at the district's
    queue head; none if the head is absent) is deleted, its order gets the
    carrier, its lines the delivery date, its customer the lines' total."""
    (hv,) = yield from tx.read_for_update([s.no_head(w, d)])
    o = s.HEAD.decode(hv).o_id
    _, (nov, ov) = yield from tx.access(update=[s.new_order(w, d, o), s.order(w, d, o)], missing_ok=True)
    if nov is None or ov is None:               # no undelivered order (or one not yet all inserted)
        yield from tx.commit()
        return "skipped"
    orow = s.O.decode(ov)
    items = [s.line(w, d, o, n) for n in range(1, orow.ol_cnt + 1)] + [s.cust(w, d, orow.c_id)]
    _, vals = yield from tx.access(update=items, missing_ok=True)
    if any(v is None for v in vals):
        raise Abort("lock")                     # the order's lines are still being inserted
    now, total = _now(), 0
    for it, v in zip(items, vals[:-1]):
        ol = s.OL.decode(v)
        total += ol.amount
        tx.write(*it, s.OL.encode(ol._replace(delivery_d=now)))
    cr = s.C.decode(vals[-1])
    tx.write(*items[-1], s.C.encode(cr._replace(balance=cr.balance + total, delivery_cnt=cr.delivery_cnt + 1)))
    tx.write(*s.order(w, d, o), s.O.encode(orow._replace(carrier_id=carrier)))
    tx.write(*s.no_head(w, d), s.HEAD.encode(o + 1))
    tx.delete(*s.new_order(w, d, o))
    yield from tx.commit()
    return "delivered"


def _read_committed(tx, items):
    """Plain READs, at most MAX_BATCH per round trip, no locks and no
    validation: StockLevel's read committed (clause 3.4.0.1, Table 3-1)."""
    out = []
    for i in range(0, len(items), MAX_BATCH):
        chunk = items[i:i + MAX_BATCH]
        replies = yield [(Op.READ, t, k, bytes(tx.sizes[t]), 0, tx.place.primary(k)) for t, k in chunk]
        out += [r[2] for r in replies]
    return out


def StockLevel(tx, w, d, threshold):
    """Clause 2.8.2: distinct items of the district's last 20 orders whose
    stock is below the threshold."""
    (dv,) = yield from _read_committed(tx, [s.dist(w, d)])
    nxt = s.D.decode(dv).next_o_id
    orders = list(range(max(1, nxt - STOCK_LEVEL_ORDERS), nxt))
    ovs = yield from _read_committed(tx, [s.order(w, d, o) for o in orders])
    lines = [s.line(w, d, o, n) for o, ov in zip(orders, ovs) for n in range(1, s.O.decode(ov).ol_cnt + 1)]
    ids = sorted({s.OL.decode(v).i_id for v in (yield from _read_committed(tx, lines))})
    svs = yield from _read_committed(tx, [s.stock(w, i) for i in ids])
    low = sum(1 for v in svs if s.S.decode(v).quantity < threshold)
    return "low" if low else "none_low"


TXN_TYPES = mix_of(MIX, NewOrder, Payment, OrderStatus, Delivery, StockLevel)
# StockLevel's round trips at most: district, orders, lines, stocks (15 lines per order)
STOCK_LEVEL_ROUNDS = 2 + 2 * -(-STOCK_LEVEL_ORDERS * 15 // MAX_BATCH)
