"""TPC-C's consistency conditions 1-7 (clause 3.3.2), per warehouse and
district, on the primaries' live rows; plus this mapping's own invariant,
that each district's NEW_ORDER queue head is its oldest NEW_ORDER."""
from __future__ import annotations

from collections import defaultdict

from ..contract import CheckSpec
from . import schema as s

EXAMPLES = 5

CONDITIONS = (
    ("tpcc_1_w_ytd_is_sum_of_d_ytd", "W_YTD = sum(D_YTD)"),
    ("tpcc_2_next_o_id", "D_NEXT_O_ID - 1 = max(O_ID) = max(NO_O_ID)"),
    ("tpcc_3_new_order_contiguous", "max(NO_O_ID) - min(NO_O_ID) + 1 = rows in NEW_ORDER"),
    ("tpcc_4_sum_ol_cnt", "sum(O_OL_CNT) = rows in ORDER_LINE"),
    ("tpcc_5_carrier_iff_delivered", "O_CARRIER_ID unset exactly for orders in NEW_ORDER"),
    ("tpcc_6_ol_cnt_per_order", "O_OL_CNT = the order's ORDER_LINE rows"),
    ("tpcc_7_delivery_d_iff_carrier", "OL_DELIVERY_D unset exactly when O_CARRIER_ID is unset"),
    ("tpcc_new_order_queue_head", "NO_HEAD = min(NO_O_ID), or D_NEXT_O_ID when NEW_ORDER is empty"),
)


def check(state: dict, committed: dict, spec: CheckSpec) -> list[dict]:
    card = s.Card.of(spec.data)
    w_ytd, d_ytd, d_row, head = {}, {}, {}, {}
    orders = defaultdict(dict)        # (w, d) -> {o: Order}
    lines = defaultdict(lambda: defaultdict(list))  # (w, d) -> o -> [delivery_d]
    new_orders = defaultdict(set)     # (w, d) -> {o}
    for (t, k), r in state.items():
        lt, w, d, rest = s.unkey(k)
        if lt == s.W_YTD:
            w_ytd[w] = s.WY.decode(r.value).ytd
        elif lt == s.D_YTD:
            d_ytd[(w, d)] = s.DY.decode(r.value).ytd
        elif lt == s.DISTRICT:
            d_row[(w, d)] = s.D.decode(r.value)
        elif lt == s.ORDER:
            orders[(w, d)][rest] = s.O.decode(r.value)
        elif lt == s.ORDER_LINE:
            lines[(w, d)][rest >> 4].append(s.OL.decode(r.value).delivery_d)
        elif lt == s.NEW_ORDER:
            new_orders[(w, d)].add(rest)
        elif lt == s.NO_HEAD:
            head[(w, d)] = s.HEAD.decode(r.value).o_id
    bad = defaultdict(list)
    for w in range(1, card.warehouses + 1):
        ds = [d_ytd.get((w, d)) for d in range(1, s.DISTRICTS + 1)]
        if w not in w_ytd or None in ds or w_ytd[w] != sum(ds):
            bad[0].append({"w": w, "w_ytd": w_ytd.get(w), "sum_d_ytd": sum(x for x in ds if x is not None)})
        for d in range(1, s.DISTRICTS + 1):
            wd, dr = (w, d), d_row.get((w, d))
            os_, ls, nos = orders.get(wd, {}), lines.get(wd, {}), new_orders.get(wd, set())
            where = {"w": w, "d": d}
            nxt = dr.next_o_id if dr else None
            max_o = max(os_, default=None)
            if nxt is None or max_o != nxt - 1 or (nos and max(nos) != nxt - 1):
                bad[1].append({**where, "d_next_o_id": nxt, "max_o_id": max_o, "max_no_o_id": max(nos, default=None)})
            if nos and max(nos) - min(nos) + 1 != len(nos):
                bad[2].append({**where, "min": min(nos), "max": max(nos), "rows": len(nos)})
            n_lines = sum(len(v) for v in ls.values())
            if sum(o.ol_cnt for o in os_.values()) != n_lines:
                bad[3].append({**where, "sum_ol_cnt": sum(o.ol_cnt for o in os_.values()), "lines": n_lines})
            for o, orow in os_.items():
                if (orow.carrier_id == 0) != (o in nos):
                    bad[4].append({**where, "o": o, "carrier_id": orow.carrier_id, "in_new_order": o in nos})
                if orow.ol_cnt != len(ls.get(o, ())):
                    bad[5].append({**where, "o": o, "ol_cnt": orow.ol_cnt, "lines": len(ls.get(o, ()))})
                if any((dd == 0) != (orow.carrier_id == 0) for dd in ls.get(o, ())):
                    bad[6].append({**where, "o": o, "carrier_id": orow.carrier_id,
                                   "delivery_d": sorted(set(ls.get(o, ())))})
            for o in set(nos) - set(os_):
                bad[4].append({**where, "o": o, "carrier_id": None, "in_new_order": True})
            for o in set(ls) - set(os_):
                bad[5].append({**where, "o": o, "ol_cnt": None, "lines": len(ls[o])})
            want = min(nos) if nos else nxt
            if head.get(wd) != want:
                bad[7].append({**where, "head": head.get(wd), "expected": want})
    return [{"name": name, "ok": not bad[i],
             "detail": {"rule": rule, "violations": len(bad[i]), "examples": bad[i][:EXAMPLES]}}
            for i, (name, rule) in enumerate(CONDITIONS)]
