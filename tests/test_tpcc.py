"""TPC-C (workloads/tpcc): NURand and its constants, key packing, the
loaded state against consistency conditions 1-7, check() on states doctored
to break them, and the transactions driven by hand against an in-memory
store (one copy of every row, answering as the engine does)."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from harness import coord
from harness.protocol import Op, Status
from harness.snapshot import Record
from harness.txn import Abort
from workloads import CC_MODES, CheckSpec, DataSpec, Size, tpcc
from workloads.tpcc import params, schema as s, txns

OK, NF, LOCKED, EXISTS = int(Status.OK), int(Status.NOT_FOUND), int(Status.LOCKED), int(Status.EXISTS)
TINY = DataSpec(scale=2, divisor=100, seed=3, keys=0)
SPEC = CheckSpec(TINY, servers=3)
TYPES = tpcc.WORKLOAD.transactions.types
KINDS = [t.name for t in TYPES]


@pytest.fixture(scope="module")
def loaded():
    return tpcc.WORKLOAD.initial(TINY)


def state_of(records):
    return {(r.table, r.key): r for r in records}


def failed(state):
    return [r["name"] for r in tpcc.WORKLOAD.check(state, {}, SPEC) if not r["ok"]]


def test_nurand_in_range_and_skewed():
    rng = random.Random(1)
    draws = [s.nurand(rng, 1023, 1, 3000, 259) for _ in range(30_000)]
    assert min(draws) >= 1 and max(draws) <= 3000
    top = Counter(draws).most_common(1)[0][1]
    assert top > 3 * 30_000 / 3000  # non-uniform


@pytest.mark.parametrize("seed", range(50))
def test_c_last_run_constant_differs_by_65_to_119_not_96_or_112(seed):
    k = s.constants(seed)
    delta = abs(k.c_last_run - k.c_last_load)
    assert 65 <= delta <= 119 and delta not in (96, 112)
    assert 0 <= k.c_id <= 1023 and 0 <= k.ol_i_id <= 8191


def test_key_packing_round_trips_and_tables_fit():
    assert s.unkey(s.line(65535, 10, (1 << 28) - 1, 15)[1]) == (s.ORDER_LINE, 65535, 10, ((1 << 28) - 1) << 4 | 15)
    assert s.unkey(s.hist(7, 3, 3000, 99)[1]) == (s.HISTORY, 7, 3, 3000 << s.HIST_BITS | 99)
    assert s.unkey(s.stock(2, 100_000)[1]) == (s.STOCK, 2, 0, 100_000)
    keys = {s.wh(1), s.dist(1, 1), s.cust(1, 1, 1), s.order(1, 1, 1), s.new_order(1, 1, 1), s.no_head(1, 1),
            s.last_order(1, 1, 1), s.item(1), s.stock(1, 1), s.line(1, 1, 1, 1), s.hist(1, 1, 1, 1),
            s.cname(1, 1, 1, 0)}
    assert len({k for _, k in keys}) == 12  # no two logical tables share a key
    assert all(s.SIZES[t] == s.SIZE_OF[s.unkey(k)[0]] for t, k in keys)
    row = s.C.decode(s.C.encode(-5, 6, 7, 8, 900, 42, b"BC", b"abcdefgh", 1, b"x" * 22))
    assert (row.balance, row.last, row.credit) == (-5, 42, b"BC")
    assert s.decode_name(s.encode_name(40, [3, 1, 2]))[0] == 40


def test_scale_and_divisor():
    assert s.Card.of(DataSpec(scale=5)) == s.Card(5, 1) and s.Card.of(DataSpec(scale=2, divisor=10)) == s.Card(2, 10)
    scaling = tpcc.WORKLOAD.scaling
    assert all(scaling.problem(size) is None for size in scaling.profiles.values())
    assert scaling.profiles["local"] == Size(2, 10) and scaling.profiles["paper"] == Size(10, 1)
    assert scaling.problem(Size(0)) and scaling.problem(Size(1, 7)) and scaling.problem(Size(s.MAX_W + 1))


def test_initial_state_satisfies_conditions_1_to_7(loaded):
    card = s.Card.of(TINY)
    st = state_of(loaded)
    assert len(st) == len(loaded)  # keys unique
    assert all(r["ok"] for r in tpcc.WORKLOAD.check(st, {}, SPEC)), failed(st)
    by = Counter(s.unkey(r.key)[0] for r in loaded)
    assert by[s.ITEM] == card.items and by[s.STOCK] == card.items * 2
    assert by[s.NEW_ORDER] == card.new_orders * 20 and by[s.ORDER] == card.orders * 20
    assert s.D.decode(st[s.dist(1, 1)].value).next_o_id == card.orders + 1


def test_initial_state_is_the_seeds():
    assert tpcc.WORKLOAD.initial(TINY)[:50] == tpcc.WORKLOAD.initial(TINY)[:50]
    assert tpcc.WORKLOAD.initial(TINY)[:50] != tpcc.WORKLOAD.initial(DataSpec(scale=2, divisor=100, seed=4, keys=0))[:50]


def doctor(records, lt, w, d, rest, fn):
    """records with the row (lt, w, d, rest) changed by fn(decoded) -> value
    bytes, or removed if fn is None."""
    st = state_of(records)
    t, k = s._item(lt, w, d, rest)
    if fn is None:
        del st[(t, k)]
    else:
        r = st[(t, k)]
        st[(t, k)] = Record(t, k, r.ver, fn(r.value))
    return st


def test_check_catches_each_condition(loaded):
    card = s.Card.of(TINY)
    last = card.orders
    delivered = card.orders - card.new_orders

    def bump_w(v):
        return s.WY.encode(s.WY.decode(v).ytd + 1)
    assert "tpcc_1_w_ytd_is_sum_of_d_ytd" in failed(doctor(loaded, s.W_YTD, 1, 0, 0, bump_w))

    def bump_next(v):
        x = s.D.decode(v)
        return s.D.encode(x._replace(next_o_id=x.next_o_id + 1))
    assert "tpcc_2_next_o_id" in failed(doctor(loaded, s.DISTRICT, 2, 3, 0, bump_next))
    assert "tpcc_3_new_order_contiguous" in failed(doctor(loaded, s.NEW_ORDER, 1, 4, delivered + 3, None))

    def more_lines(v):
        x = s.O.decode(v)
        return s.O.encode(x._replace(ol_cnt=x.ol_cnt + 1))
    f = failed(doctor(loaded, s.ORDER, 1, 1, 5, more_lines))
    assert "tpcc_4_sum_ol_cnt" in f and "tpcc_6_ol_cnt_per_order" in f

    def carrier(v):
        return s.O.encode(s.O.decode(v)._replace(carrier_id=3))
    f = failed(doctor(loaded, s.ORDER, 1, 2, last, carrier))  # undelivered order with a carrier
    assert "tpcc_5_carrier_iff_delivered" in f and "tpcc_7_delivery_d_iff_carrier" in f

    def undelivered_line(v):
        return s.OL.encode(s.OL.decode(v)._replace(delivery_d=0))
    assert failed(doctor(loaded, s.ORDER_LINE, 2, 1, 1 << 4 | 1, undelivered_line)) == ["tpcc_7_delivery_d_iff_carrier"]
    assert failed(doctor(loaded, s.NO_HEAD, 1, 1, 0, lambda v: s.HEAD.encode(1))) == ["tpcc_new_order_queue_head"]


# -- the transactions, driven by hand ----------------------------------------
class Store:
    """One copy of every row, answering batches as the engine would for a
    single transaction at a time (locks kept, so a leak shows)."""

    def __init__(self, records):
        self.rows = {(r.table, r.key): [r.ver, r.value] for r in records}
        self.locks = {}
        self.txn = 0

    def answer(self, batch):
        out = []
        for op, t, k, v, ver, *_ in batch:
            row = self.rows.get((t, k))
            if op in (Op.READ, Op.LOCK_SHARED, Op.LOCK_EXCL):
                if row is None:
                    out.append((NF, 0, None))
                    continue
                if op == Op.LOCK_EXCL:
                    self.locks[(t, k)] = self.txn
                out.append((OK, row[0], row[1]))
            elif op == Op.VALIDATE:
                out.append((NF, 0, None) if row is None else (OK if row[0] == ver else int(Status.STALE), row[0], None))
            elif op == Op.COMMIT_PRIMARY:
                self.rows[(t, k)] = [ver, v]
                self.locks.pop((t, k), None)
                out.append((OK, ver, None))
            elif op == Op.INSERT:
                if row is None:
                    self.rows[(t, k)] = [1, v]
                    out.append((OK, 1, None))
                else:
                    out.append((OK if ver == row[0] else EXISTS, row[0], None))
            elif op == Op.DELETE:
                self.rows.pop((t, k), None)
                self.locks.pop((t, k), None)
                out.append((OK, ver, None))
            elif op == Op.ABORT:
                self.locks.pop((t, k), None)
                out.append((OK, 0, None))
            else:  # LOG, COMMIT_BACKUP: one copy here
                out.append((OK, ver, None))
        return out

    def state(self):
        return {tk: Record(tk[0], tk[1], ver, val) for tk, (ver, val) in self.rows.items()}


def drive(gen, store):
    store.txn += 1
    try:
        batch = next(gen)
        while True:
            batch = gen.send(store.answer(batch))
    except StopIteration as e:
        return e.value
    except Abort as e:
        store.locks = {k: t for k, t in store.locks.items() if t != store.txn}
        return e


def bound(cc):
    return {t.name: coord.bind(t.func, cc, 3, s.SIZES) for t in TYPES}


@pytest.mark.parametrize("cc", CC_MODES)
def test_new_order_by_hand(loaded, cc):
    store = Store(loaded)
    card = s.Card.of(TINY)
    lines = ((1, 1, 3), (2, 2, 10), (3, 1, 1), (4, 1, 2), (5, 1, 5))
    before = s.S.decode(store.rows[s.stock(2, 2)][1])
    out = drive(bound(cc)["NewOrder"](1, 4, 7, lines, False), store)
    assert out == "remote" and not store.locks
    o = card.orders + 1
    assert s.D.decode(store.rows[s.dist(1, 4)][1]).next_o_id == o + 1
    assert s.O.decode(store.rows[s.order(1, 4, o)][1]).ol_cnt == 5 and s.new_order(1, 4, o) in store.rows
    after = s.S.decode(store.rows[s.stock(2, 2)][1])
    q = before.quantity
    assert after.quantity == (q - 10 if q >= 20 else q - 10 + 91) and after.remote_cnt == 1
    assert s.LAST.decode(store.rows[s.last_order(1, 4, 7)][1]) == (o, 5)
    price = s.I.decode(store.rows[s.item(2)][1]).price
    assert s.OL.decode(store.rows[s.line(1, 4, o, 2)][1]).amount == 10 * price
    assert failed(store.state()) == []
    # the 1% rollback: an unused item aborts it as a user abort, nothing changes
    rolled = drive(bound(cc)["NewOrder"](1, 4, 7, ((1, 1, 1), (card.items + 1, 1, 1)), True), store)
    assert isinstance(rolled, Abort) and rolled.cause == "user"
    assert s.D.decode(store.rows[s.dist(1, 4)][1]).next_o_id == o + 1


@pytest.mark.parametrize("cc", CC_MODES)
def test_payment_by_name_picks_the_middle_customer(loaded, cc):
    store = Store(loaded)
    # a last name shared by several customers of (1, 1)
    total, ids = max((s.decode_name(v) for (t, k), (_, v) in store.rows.items()
                      if s.unkey(k)[0] == s.CUSTOMER_NAME and s.unkey(k)[1:3] == (1, 1)), key=lambda x: x[0])
    last = next(s.unkey(k)[3] >> 8 for (t, k), (_, v) in store.rows.items()
                if s.unkey(k)[0] == s.CUSTOMER_NAME and s.unkey(k)[1:3] == (1, 1) and s.decode_name(v)[1] == ids)
    firsts = [s.C.decode(store.rows[s.cust(1, 1, c)][1]).first for c in ids[:total]]
    assert firsts == sorted(firsts)
    c = ids[(total + 1) // 2 - 1]
    before = s.C.decode(store.rows[s.cust(1, 1, c)][1])
    w_before = s.WY.decode(store.rows[s.wh_ytd(2)][1]).ytd
    assert drive(bound(cc)["Payment"](2, 5, 1, 1, True, last, 12_345), store) == "by_name" and not store.locks
    after = s.C.decode(store.rows[s.cust(1, 1, c)][1])
    assert (after.balance, after.ytd_payment, after.payment_cnt) == (
        before.balance - 12_345, before.ytd_payment + 12_345, before.payment_cnt + 1)
    assert s.WY.decode(store.rows[s.wh_ytd(2)][1]).ytd == w_before + 12_345
    assert s.H.decode(store.rows[s.hist(1, 1, c, 2)][1]).amount == 12_345
    assert failed(store.state()) == []


@pytest.mark.parametrize("cc", CC_MODES)
def test_a_stream_of_every_type_keeps_the_conditions(loaded, cc):
    store = Store(loaded)
    fns = bound(cc)
    outcomes = Counter()
    for kind, args in params.generate(600, s.Card.of(TINY), 9, TYPES):
        out = drive(fns[KINDS[kind]](*args), store)
        assert not store.locks
        outcomes[(KINDS[kind], out if isinstance(out, str) else out.cause)] += 1
    assert failed(store.state()) == [], outcomes
    kinds = {k for k, _ in outcomes}
    assert kinds == set(KINDS)
    assert outcomes[("Delivery", "delivered")] > 0
    assert {o for (k, o) in outcomes if k != "NewOrder"} <= {"by_name", "by_id", "delivered", "skipped", "low",
                                                             "none_low"}


def test_mix_and_parameters():
    card = s.Card(3, 10)
    ps = params.generate(20_000, card, 1, TYPES)
    assert ps == params.generate(20_000, card, 1, TYPES) and ps != params.generate(20_000, card, 2, TYPES)
    assert 20_000 <= len(ps) < 20_010
    arity = {"NewOrder": 5, "Payment": 7, "OrderStatus": 4, "Delivery": 3, "StockLevel": 3}
    for i, (k, a) in enumerate(ps):
        name = KINDS[k]
        # plain Python values, as the transactions take them
        assert type(k) is int and type(a) is tuple and len(a) == arity[name]
        assert all(type(x) in (int, bool, tuple) for x in a), (name, a)
        assert 1 <= a[0] <= card.warehouses and 1 <= a[1] <= s.DISTRICTS
        if name == "NewOrder":
            assert 1 <= a[2] <= card.customers and type(a[4]) is bool
            assert all(type(x) is int for line in a[3] for x in line)
            assert all(1 <= i <= card.items + a[4] and 1 <= sw <= card.warehouses and 1 <= q <= 10
                       for i, sw, q in a[3])
            assert (a[3][-1][0] == card.items + 1) == a[4]
        elif name == "Payment":
            assert 1 <= a[2] <= card.warehouses and 1 <= a[3] <= s.DISTRICTS and type(a[4]) is bool
            assert (0 <= a[5] < card.last_names if a[4] else 1 <= a[5] <= card.customers) and 100 <= a[6] <= 500_000
        elif name == "Delivery" and a[1] == 1:
            # ten in a row, one per district, one carrier
            assert [p[1] for p in ps[i:i + 10]] == [(a[0], d, a[2]) for d in range(1, s.DISTRICTS + 1)]
            assert 1 <= a[2] <= 10
        elif name == "StockLevel":
            assert 10 <= a[2] <= 20
    kinds = Counter(KINDS[k] for k, _ in ps)
    business = {k: n / (10 if k == "Delivery" else 1) for k, n in kinds.items()}
    total = sum(business.values())
    for k, pct in s.MIX.items():
        assert abs(100 * business[k] / total - pct) < 1.5, (k, business[k] / total)
    new = [a for k, a in ps if KINDS[k] == "NewOrder"]
    assert all(5 <= len(a[3]) <= 15 and len({i for i, _, _ in a[3]}) == len(a[3]) for a in new)
    assert 0.005 < sum(a[4] for a in new) / len(new) < 0.02
    pay = [a for k, a in ps if KINDS[k] == "Payment"]
    assert 0.55 < sum(a[4] for a in pay) / len(pay) < 0.65
    assert 0.10 < sum(a[0] != a[2] for a in pay) / len(pay) < 0.20


def test_max_rounds_covers_the_longest():
    rounds = tpcc.WORKLOAD.transactions.rounds
    assert rounds >= txns.STOCK_LEVEL_ROUNDS and rounds >= 3 + coord.COMMIT_ROUNDS
