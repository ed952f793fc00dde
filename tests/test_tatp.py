"""TATP (workloads/tatp) without a network: key packing and value layouts,
the loader's population rules, the parameters (mix, non-uniform subscriber
choice), the transactions driven by hand against a store in a dict, and the
consistency check on states made up to break each rule."""
from __future__ import annotations

import importlib
from collections import Counter

import numpy as np
import pytest

from harness import consistency, coord, results as results_table
from harness.protocol import Op, Status
from harness.snapshot import Record
from harness.txn import Abort, Batch, cause_of
from workloads import CC_MODES, CheckSpec, DataSpec, LoadSpec, Size, tatp
from workloads.tatp import loader, params, schema
from workloads.tatp.schema import (ACCESS_INFO, CALL_FORWARDING, SPECIAL_FACILITY, SUB_NBR, SUBSCRIBER, ai_key,
                                   cf_key, sf_key)

OK, NF, STALE, EXISTS = (int(s) for s in (Status.OK, Status.NOT_FOUND, Status.STALE, Status.EXISTS))
tcheck = importlib.import_module("workloads.tatp.check")


# -- keys and values --------------------------------------------------------
def test_keys_pack_and_unpack():
    seen = set()
    for s in (1, 2, 7, 99_999, 7_000_000):
        for t in schema.TYPES:
            assert schema.split4(ai_key(s, t)) == (s, t) == schema.split4(sf_key(s, t))
            for st in schema.START_TIMES:
                k = cf_key(s, t, st)
                assert schema.split_cf(k) == (s, t, st)
                assert k // 3 == sf_key(s, t) and k // 12 == s
                seen.add(k)
    assert len(seen) == 5 * 4 * 3  # distinct
    assert schema.sub_nbr(42) == "000000000000042" and schema.nbr_key(schema.sub_nbr(42)) == 42
    assert cf_key(7_000_000, 4, 16) < 2 ** 64


def test_values_are_40_bytes_and_round_trip():
    sub = schema.Subscriber(5, 0x2A5, b"\x12\x34\x56\x78\x9a", bytes(range(10)), 7, 2 ** 32 - 1)
    assert len(sub.encode()) == 40 and schema.subscriber(sub.encode()) == sub and sub.bit_1 == 1
    ai = schema.AccessInfo(1, 2, b"ABC", b"DEFGH")
    sf = schema.SpecialFacility(1, 3, 200, b"VWXYZ")
    cf = schema.CallForwarding(12, b"123456789012345")
    for v, dec in ((ai, schema.access_info), (sf, schema.special_facility), (cf, schema.call_forwarding)):
        assert len(v.encode()) == 40 and dec(v.encode()) == v
    assert schema.index(schema.encode_index(99)) == 99 and len(schema.encode_index(99)) == 40
    assert schema.SCHEMA.sizes == (40,) * 5


# -- the loader -------------------------------------------------------------
@pytest.fixture(scope="module")
def pop():
    return loader.population(4000, 1)


def by_table(records):
    out = {t: {} for t in range(5)}
    for r in records:
        out[r.table][r.key] = r.value
    return out


def test_population_rules(pop):
    n = 4000
    t = by_table(pop)
    assert sorted(t[SUBSCRIBER]) == list(range(1, n + 1)) == sorted(t[SUB_NBR])
    assert all(schema.subscriber(v).s_id == k for k, v in t[SUBSCRIBER].items())
    assert all(schema.index(v) == k for k, v in t[SUB_NBR].items())
    assert len({(r.table, r.key) for r in pop}) == len(pop) and all(r.ver == 1 for r in pop)
    for table in (ACCESS_INFO, SPECIAL_FACILITY):
        per = Counter(k // 4 for k in t[table])
        assert set(per) == set(range(1, n + 1))          # every subscriber has 1..4 rows
        dist = Counter(per.values())
        assert set(dist) == {1, 2, 3, 4}
        assert all(abs(dist[k] / n - 0.25) < 0.03 for k in dist)   # 1-4 uniformly
        kinds = Counter(k % 4 + 1 for k in t[table])
        assert all(abs(kinds[x] / len(t[table]) - 0.25) < 0.03 for x in schema.TYPES)
    active = [schema.special_facility(v).is_active for v in t[SPECIAL_FACILITY].values()]
    assert set(active) == {0, 1} and abs(sum(active) / len(active) - 0.85) < 0.02
    cfs = t[CALL_FORWARDING]
    assert all(k // 3 in t[SPECIAL_FACILITY] for k in cfs)
    assert abs(len(cfs) / (3 * len(t[SPECIAL_FACILITY])) - 0.5) < 0.02
    spans = Counter(schema.call_forwarding(v).end_time - schema.split_cf(k)[2] for k, v in cfs.items())
    assert set(spans) == set(range(1, 9))
    assert all(schema.call_forwarding(v).numberx.isdigit() for v in cfs.values())


def test_population_comes_from_the_seed(pop):
    assert loader.initial(DataSpec(scale=4000, seed=1, keys=0)) == pop
    assert loader.population(50, 2) != loader.population(50, 1)


# -- the parameters ---------------------------------------------------------
def test_nonuniform_constant_by_size():
    assert [schema.nonuniform_a(n) for n in (1, 1_000_000, 1_000_001, 10_000_000, 10_000_001)] == \
        [65535, 65535, 1048575, 1048575, 2097151]


def test_subscriber_choice_is_the_spec_formula_and_skewed():
    n = 100_000
    picked = params.subscriber_ids(np.random.default_rng(5), n, 1000)
    rng = np.random.default_rng(5)
    a, s_id = rng.integers(0, 2**16 - 1, 1000, endpoint=True), rng.integers(1, n, 1000, endpoint=True)
    assert picked.tolist() == (((a | s_id) % n) + 1).tolist()
    draws = params.subscriber_ids(np.random.default_rng(6), n, 200_000)
    assert draws.min() >= 1 and draws.max() <= n
    # far from uniform: two draws meet ~28 times as often as under a uniform choice
    assert tcheck.concentration(n) > 10 and tcheck.concentration(300) < 3


def test_mix_and_arguments():
    n, subs = 100_000, 1000
    types = tatp.WORKLOAD.transactions.types
    ps = params.generate(n, subs, 3, types)
    assert ps == params.generate(n, subs, 3, types) and ps != params.generate(n, subs, 4, types)
    mix = Counter(types[k].name for k, _ in ps)
    for name, pct in schema.MIX.items():
        assert abs(mix[name] / n - pct / 100) < 0.006, name
    arity = {"GetSubscriberData": 1, "GetNewDestination": 4, "GetAccessData": 2, "UpdateSubscriberData": 4,
             "UpdateLocation": 2, "InsertCallForwarding": 5, "DeleteCallForwarding": 3}
    for k, args in ps:
        name = types[k].name
        # plain Python values, as the transactions and the executor take them
        assert type(k) is int and type(args) is tuple and len(args) == arity[name]
        assert all(type(a) in (int, str) for a in args), (name, args)
        if name in ("UpdateLocation", "InsertCallForwarding", "DeleteCallForwarding"):
            assert len(args[0]) == 15 and 1 <= int(args[0]) <= subs
        else:
            assert 1 <= args[0] <= subs
        if name not in ("GetSubscriberData", "UpdateLocation"):
            assert args[1] in schema.TYPES
        if name == "GetNewDestination":
            assert args[2] in schema.START_TIMES and 1 <= args[3] <= 24
        if name == "UpdateSubscriberData":
            assert args[2] in (0, 1) and 0 <= args[3] <= 255
        if name == "UpdateLocation":
            assert 0 <= args[1] < 2**32
        if name in ("InsertCallForwarding", "DeleteCallForwarding"):
            assert args[2] in schema.START_TIMES
        if name == "InsertCallForwarding":
            assert 1 <= args[3] - args[2] <= 8 and args[4].isdigit() and len(args[4]) == 15
    # the types and times uniform
    sf_types = Counter(args[1] for k, args in ps if types[k].name not in ("GetSubscriberData", "UpdateLocation"))
    assert all(abs(c / sum(sf_types.values()) - 1 / 4) < 0.01 for c in sf_types.values()) and len(sf_types) == 4
    ends = Counter(args[3] for k, args in ps if types[k].name == "GetNewDestination")
    assert len(ends) == 24 and all(abs(c / sum(ends.values()) - 1 / 24) < 0.012 for c in ends.values())


def test_transactions_interface():
    wl = tatp.WORKLOAD
    tx = wl.transactions
    load = LoadSpec(data=DataSpec(scale=50), seed=1, requests=100, servers=3, cc="occ")
    ps = tx.params(load, tx.types_for("occ"))
    assert [t.name for t in tx.types] == list(schema.MIX) == [t.func.__name__ for t in tx.types] and len(ps) == 100
    assert [t.weight for t in tx.types] == list(schema.MIX.values())
    assert wl.default_cc == "occ" and tx.coordinated and wl.replicated and wl.check is tcheck.check
    assert {p: s.scale for p, s in wl.scaling.profiles.items()} == {"local": 20_000, "paper": 7_000_000}
    assert wl.scaling.problem(Size(0)) and wl.scaling.problem(Size(1)) is None and wl.stream is None


# -- the transactions against a store in a dict -----------------------------
class Store:
    """One copy of every row, answering the coordinator's requests one
    transaction at a time: what a server does, without replication (the
    requests to backups are answered but change nothing)."""

    def __init__(self, records, servers=3):
        self.rows = {(r.table, r.key): [r.ver, r.value] for r in records}
        self.servers = servers
        self.ops = []

    def answer(self, batch):
        out = []
        for op, t, k, value, ver, dest in batch:
            self.ops.append((op, t, k))
            row, primary = self.rows.get((t, k)), dest == k % self.servers
            if op in (Op.READ, Op.LOCK_SHARED, Op.LOCK_EXCL):
                out.append((NF, 0, None) if row is None else (OK, row[0], row[1]))
            elif op == Op.VALIDATE:
                out.append((NF, 0, None) if row is None else (OK if row[0] == ver else STALE, row[0], None))
            elif op == Op.INSERT:
                if not primary:
                    out.append((OK, ver, None))
                elif row is not None:
                    out.append((EXISTS, row[0], None))
                else:
                    self.rows[(t, k)] = [1, value]
                    out.append((OK, 1, None))
            elif op == Op.COMMIT_PRIMARY:
                self.rows[(t, k)] = [ver, value]
                out.append((OK, ver, None))
            elif op == Op.DELETE:
                if primary:
                    self.rows.pop((t, k), None)
                out.append((OK, ver, None))
            else:  # LOG, COMMIT_BACKUP, ABORT
                out.append((OK, 0, None))
        return out

    def run(self, gen):
        """Drives one transaction: its outcome, or "abort:<cause>" (a status
        the batch does not tolerate aborts it, with the executor's cause)."""
        try:
            batch = next(gen)
            while True:
                replies = self.answer(batch)
                tolerate = batch.tolerate if isinstance(batch, Batch) else frozenset()
                bad = [(r[0], rep[0]) for r, rep in zip(batch, replies) if rep[0] != OK and rep[0] not in tolerate]
                if bad:
                    gen.close()
                    return f"abort:{cause_of(*bad[0])}"
                batch = gen.send(replies)
        except StopIteration as e:
            return e.value
        except Abort as e:
            return f"abort:{e.cause}"

    def state(self):
        return {(t, k): Record(t, k, v[0], v[1]) for (t, k), v in self.rows.items()}


def bound(cc="occ"):
    return {t.name: coord.bind(t.func, cc, 3, schema.SCHEMA.sizes) for t in tatp.WORKLOAD.transactions.types}


def small_world():
    """Subscriber 1 with ACCESS_INFO type 2, SPECIAL_FACILITY types 1
    (active) and 3 (inactive), CALL_FORWARDING (1, 0) ending at 5 and
    (1, 16) ending at 20."""
    recs = [Record(SUBSCRIBER, 1, 1, schema.Subscriber(1, 0, bytes(5), bytes(10), 3, 4).encode()),
            Record(SUB_NBR, 1, 1, schema.encode_index(1)),
            Record(ACCESS_INFO, ai_key(1, 2), 1, schema.AccessInfo(1, 2, b"ABC", b"DEFGH").encode()),
            Record(SPECIAL_FACILITY, sf_key(1, 1), 1, schema.SpecialFacility(1, 0, 9, b"ABCDE").encode()),
            Record(SPECIAL_FACILITY, sf_key(1, 3), 1, schema.SpecialFacility(0, 0, 9, b"ABCDE").encode()),
            Record(CALL_FORWARDING, cf_key(1, 1, 0), 1, schema.CallForwarding(5, b"1" * 15).encode()),
            Record(CALL_FORWARDING, cf_key(1, 1, 16), 1, schema.CallForwarding(20, b"2" * 15).encode())]
    return Store(recs)


@pytest.mark.parametrize("cc", CC_MODES)
def test_reads(cc):
    st, f = small_world(), bound(cc)
    assert st.run(f["GetSubscriberData"](1)) == "success"
    assert st.run(f["GetSubscriberData"](2)) == "abort:error"   # a subscriber that does not exist
    assert [st.run(f["GetAccessData"](1, t)) for t in schema.TYPES] == ["fail", "success", "fail", "fail"]
    gnd = f["GetNewDestination"]
    assert st.run(gnd(1, 1, 0, 4)) == "success"     # (1, 0) ends at 5 > 4
    assert st.run(gnd(1, 1, 0, 5)) == "fail"        # 5 < 5 does not hold
    assert st.run(gnd(1, 1, 8, 4)) == "success"     # start 0 <= 8
    assert st.run(gnd(1, 1, 16, 19)) == "success"   # (1, 16) ends at 20
    assert st.run(gnd(1, 1, 8, 19)) == "fail"       # (1, 16) starts after 8
    assert st.run(gnd(1, 3, 16, 1)) == "fail"       # inactive
    assert st.run(gnd(1, 2, 16, 1)) == "fail"       # no SPECIAL_FACILITY row
    st.ops.clear()
    st.run(gnd(1, 1, 8, 1))  # reads the SPECIAL_FACILITY row and the rows of start times 0 and 8
    assert [(op, t, k) for op, t, k in st.ops][:3] == [
        (Op.READ if cc == "occ" else Op.LOCK_SHARED, t, k)
        for t, k in ((SPECIAL_FACILITY, sf_key(1, 1)), (CALL_FORWARDING, cf_key(1, 1, 0)),
                     (CALL_FORWARDING, cf_key(1, 1, 8)))]


def test_updates():
    st, f = small_world(), bound()
    before = dict(st.rows)
    assert st.run(f["UpdateSubscriberData"](1, 2, 1, 77)) == "fail"
    assert st.rows == before  # wrote nothing
    assert st.run(f["UpdateSubscriberData"](1, 1, 1, 77)) == "success"
    assert schema.subscriber(st.rows[(SUBSCRIBER, 1)][1]).bit_1 == 1
    assert schema.special_facility(st.rows[(SPECIAL_FACILITY, sf_key(1, 1))][1]).data_a == 77
    assert st.rows[(SUBSCRIBER, 1)][0] == 2
    st.ops.clear()
    assert st.run(f["UpdateLocation"](schema.sub_nbr(1), 12345)) == "success"
    assert st.ops[0] == (Op.READ, SUB_NBR, 1)   # through the index, a round trip of its own
    sub = schema.subscriber(st.rows[(SUBSCRIBER, 1)][1])
    assert (sub.vlr_location, sub.msc_location, sub.bit_1) == (12345, 3, 1)


def test_insert_and_delete_call_forwarding():
    st, f = small_world(), bound()
    ins, dele = f["InsertCallForwarding"], f["DeleteCallForwarding"]
    nbr = schema.sub_nbr(1)
    assert st.run(ins(nbr, 2, 8, 10, "5" * 15)) == "fail"   # no SPECIAL_FACILITY row of type 2
    assert st.run(ins(nbr, 1, 0, 3, "5" * 15)) == "fail"    # the row exists
    assert st.run(ins(nbr, 1, 8, 10, "5" * 15)) == "success"
    assert schema.call_forwarding(st.rows[(CALL_FORWARDING, cf_key(1, 1, 8))][1]) == (10, b"5" * 15)
    assert st.run(ins(nbr, 3, 8, 10, "5" * 15)) == "success"  # an inactive facility is still there
    assert st.run(dele(nbr, 1, 8)) == "success" and (CALL_FORWARDING, cf_key(1, 1, 8)) not in st.rows
    assert st.run(dele(nbr, 1, 8)) == "fail" and st.run(dele(nbr, 4, 0)) == "fail"


@pytest.mark.parametrize("appears_at, cause", [(Op.VALIDATE, "validation"), (Op.LOG, "lock")])
def test_a_row_inserted_by_another_aborts_the_insert(appears_at, cause):
    key = cf_key(1, 1, 8)

    class Racing(Store):
        def answer(self, batch):
            if batch[0][0] == appears_at:   # another transaction inserts the row first
                self.rows.setdefault((CALL_FORWARDING, key), [1, bytes(40)])
            return super().answer(batch)
    st = Racing(small_world().state().values())
    assert st.run(bound()["InsertCallForwarding"](schema.sub_nbr(1), 1, 8, 10, "5" * 15)) == f"abort:{cause}"
    assert st.rows[(CALL_FORWARDING, key)] == [1, bytes(40)]


# -- a run, sequentially, then the check ------------------------------------
@pytest.fixture(scope="module")
def sequential_run():
    n, seed = 2000, 7
    st = Store(loader.population(n, seed))
    f = bound()
    names = [t.name for t in tatp.WORKLOAD.transactions.types]
    funcs = [f[k] for k in names]
    committed = {k: {"committed": 0, "outcomes": {}} for k in names}
    for kind, args in params.generate(30_000, n, seed * 1000 + 1, tatp.WORKLOAD.transactions.types):
        out = st.run(funcs[kind](*args))
        assert out in ("success", "fail"), (names[kind], args, out)
        c = committed[names[kind]]
        c["committed"] += 1
        c["outcomes"][out] = c["outcomes"].get(out, 0) + 1
    return st, committed, CheckSpec(DataSpec(scale=n, seed=seed, keys=0), servers=3)


def test_expected_success_rates():
    e = tcheck.expected_success()
    assert e["GetAccessData"] == e["UpdateSubscriberData"] == 0.625
    assert e["InsertCallForwarding"] == e["DeleteCallForwarding"] == 0.3125
    assert e["GetSubscriberData"] == e["UpdateLocation"] == 1.0
    assert abs(e["GetNewDestination"] - 0.1582) < 0.0001


def test_a_sequential_run_passes_the_check(sequential_run):
    st, committed, spec = sequential_run
    results = {r["name"]: r for r in tatp.WORKLOAD.check(st.state(), committed, spec)}
    assert all(r["ok"] for r in results.values()), {k: r["detail"] for k, r in results.items() if not r["ok"]}
    rates = results["success_rates"]["detail"]["types"]
    assert all(rates[k]["checked"] for k in schema.MIX if k not in ("UpdateSubscriberData",
                                                                       "InsertCallForwarding",
                                                                       "DeleteCallForwarding"))
    # the rates themselves, loosely; given the rows loaded, GetAccessData's closely
    for k in ("GetAccessData", "GetNewDestination"):
        assert abs(rates[k]["rate"] - rates[k]["expected"]) < 0.05, (k, rates[k])
        assert abs(rates[k]["expected"] - rates[k]["rules"]) < 0.05, (k, rates[k])
    assert rates["GetAccessData"]["tolerance"] < 0.03
    assert results["call_forwarding_count"]["detail"]["inserted"] > 0
    assert results["call_forwarding_count"]["detail"]["deleted"] > 0
    # and as the harness calls it, with three identical dumps
    dumps = [[Record(t, k, v[0], v[1]) for (t, k), v in st.rows.items()]] * 3
    section = consistency.check(tatp.WORKLOAD, dumps, committed, spec)
    assert section["violations"] == 0 and section["unchecked"] == []
    assert results_table.consistency_verdict(section) == ("ok", "")


def test_rates_too_small_to_judge_are_named_as_unchecked(sequential_run):
    """A type with fewer than MIN_SAMPLE commits passes without a verdict:
    the consistency section says which and why, and the verdict is not a
    plain "ok"."""
    st, committed, spec = sequential_run
    few = {k: dict(v) for k, v in committed.items()}
    few["UpdateSubscriberData"] = {"committed": 150, "outcomes": {"success": 150}}   # 100%: far off 62.5%
    dumps = [[Record(t, k, v[0], v[1]) for (t, k), v in st.rows.items()]] * 3
    section = consistency.check(tatp.WORKLOAD, dumps, few, spec)
    assert section["violations"] == 0
    assert section["unchecked"] == [{"check": "success_rates.UpdateSubscriberData",
                                     "reason": f"150 committed, fewer than the {tcheck.MIN_SAMPLE} a rate is "
                                               "judged from"}]
    assert section["details"]["success_rates"]["types"]["UpdateSubscriberData"]["checked"] is False
    verdict, note = results_table.consistency_verdict(section)
    assert verdict == "partly unchecked"
    assert note.startswith("1 check unchecked: success_rates.UpdateSubscriberData (150 committed")


def doctored(sequential_run, change):
    st, committed, spec = sequential_run
    state = st.state()
    committed = {k: {"committed": v["committed"], "outcomes": dict(v["outcomes"])} for k, v in committed.items()}
    change(state, committed)
    return sorted(r["name"] for r in tatp.WORKLOAD.check(state, committed, spec) if not r["ok"])


def some(state, table):
    return next(k for t, k in sorted(state) if t == table)


def test_check_catches_doctored_states(sequential_run):
    def drop(table, pick=None):
        def change(state, committed):
            del state[(table, pick(state) if pick else some(state, table))]
        return change

    # a subscriber gone: its rows are orphans, its index row points nowhere
    assert doctored(sequential_run, drop(SUBSCRIBER)) == [
        "fixed_tables_unchanged", "references", "sub_nbr_index"]
    assert doctored(sequential_run, drop(SUB_NBR)) == ["fixed_tables_unchanged", "sub_nbr_index"]
    assert doctored(sequential_run, drop(ACCESS_INFO)) == ["fixed_tables_unchanged"]
    # a SPECIAL_FACILITY row gone under its CALL_FORWARDING rows
    assert doctored(sequential_run, drop(SPECIAL_FACILITY, lambda s: some(s, CALL_FORWARDING) // 3)) == [
        "fixed_tables_unchanged", "references"]
    # a CALL_FORWARDING row lost, or one too many
    assert doctored(sequential_run, drop(CALL_FORWARDING)) == ["call_forwarding_count"]

    def orphan_cf(state, committed):
        s = max(k for t, k in state if t == SUBSCRIBER) + 1
        state[(CALL_FORWARDING, cf_key(s, 1, 0))] = Record(CALL_FORWARDING, cf_key(s, 1, 0), 1,
                                                            schema.CallForwarding(3, b"1" * 15).encode())
        committed["InsertCallForwarding"]["outcomes"]["success"] += 1
    assert doctored(sequential_run, orphan_cf) == ["references"]

    def index_elsewhere(state, committed):
        state[(SUB_NBR, 5)] = Record(SUB_NBR, 5, 2, schema.encode_index(6))
    assert doctored(sequential_run, index_elsewhere) == ["sub_nbr_index"]

    def bad_end(state, committed):
        k = some(state, CALL_FORWARDING)
        state[(CALL_FORWARDING, k)] = Record(CALL_FORWARDING, k, 2, schema.CallForwarding(30, b"1" * 15).encode())
    assert doctored(sequential_run, bad_end) == ["values_well_formed"]

    def one_subscriber_read_failed(state, committed):
        committed["GetSubscriberData"]["outcomes"] = {"success": committed["GetSubscriberData"]["committed"] - 1,
                                                      "fail": 1}
    assert doctored(sequential_run, one_subscriber_read_failed) == ["success_rates"]

    def access_found_a_little_more_often(state, committed):
        c = committed["GetAccessData"]   # 5 points more than the rows loaded explain
        c["outcomes"]["success"] = min(c["committed"], c["outcomes"]["success"] + c["committed"] // 20)
    assert doctored(sequential_run, access_found_a_little_more_often) == ["success_rates"]

    def access_always_found(state, committed):
        c = committed["GetAccessData"]
        c["outcomes"] = {"success": c["committed"]}
    assert doctored(sequential_run, access_always_found) == ["success_rates"]


def test_small_samples_are_not_judged():
    committed = {"GetAccessData": {"committed": 150, "outcomes": {"success": 150}},
                 "GetNewDestination": {"committed": 5000, "outcomes": {"success": 790, "fail": 4210}}}
    r = tcheck.success_rates(committed, 100_000)
    assert r["ok"] and not r["detail"]["types"]["GetAccessData"]["checked"]
    assert r["detail"]["types"]["GetNewDestination"]["checked"]
    # every rate not judged is named, with its sample (none committed counts too)
    assert {u["check"]: u["reason"] for u in r["unchecked"]} == {
        f"success_rates.{k}": f"{n} committed, fewer than the 200 a rate is judged from"
        for k, n in (("GetAccessData", 150), ("UpdateSubscriberData", 0), ("InsertCallForwarding", 0),
                     ("DeleteCallForwarding", 0))}
    committed["GetNewDestination"]["outcomes"] = {"success": 1200, "fail": 3800}   # the spec's 24%
    assert not tcheck.success_rates(committed, 100_000)["ok"]


def test_reused_parameters_leave_the_call_forwarding_rates_unjudged():
    """A client that started its parameter list over repeats its inserts,
    which then find their rows: those rates are reported, not judged."""
    import importlib
    tcheck = importlib.import_module("workloads.tatp.check")
    committed = {"InsertCallForwarding": {"committed": 5000, "outcomes": {"success": 500}},
                 "DeleteCallForwarding": {"committed": 5000, "outcomes": {"success": 500}}}
    judged = tcheck.success_rates(committed, 100_000)
    assert not judged["ok"] and "InsertCallForwarding" in judged["detail"]["off"]
    lenient = tcheck.success_rates(committed, 100_000, reused=True)
    assert lenient["ok"]
    assert lenient["detail"]["types"]["InsertCallForwarding"]["why"] == "parameters reused"
    assert {"check": "success_rates.InsertCallForwarding", "reason": "parameters reused"} in lenient["unchecked"]
