"""The packet fuzzer (harness/fuzz.py) and its model of the engine
(harness/engine_model.py): the model passes the engine's own conformance
suites, the generator is deterministic and covers every class, the checks
fail on a planted mismatch, bad arguments give one line, and a short run
on every system finds nothing."""
from __future__ import annotations

import collections
import copy
import inspect

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

import test_conformance
import test_engine
from harness import __main__ as cli
from harness import fuzz, snapshot
from harness.engine_model import DROP, REPLY, STALE, Engine
from harness.protocol import HEADER_LEN, Op, Status, pack, unpack
from harness.schema import Schema

from conftest import INITIAL

SIZES = Schema().sizes
SLOTS = 2  # the servers' client slots on a testbed of one client host (harness/systems.py)

SHORT = 2000


# -- the model against the engine's own suites ---------------------------------
class _Host:
    def __init__(self, name):
        self.name = name


class ModelServed:
    """conftest's Served, over one Engine per server instead of a system on
    the testbed: what tests/test_engine.py asks of a system."""

    def __init__(self):
        self.inv = type("Inv", (), {"servers": [_Host(n) for n in ("s0", "s1", "s2")]})()
        self.engines = {s.name: Engine(SIZES, SLOTS, INITIAL) for s in self.inv.servers}
        self.sent = collections.Counter()
        self.counted = collections.Counter()  # what a server would count
        self.seq = 0
        self.system = self

    def _process(self, server, data: bytes):
        out = self.engines[server.name].process(data)
        self.counted[(server.name, "rx")] += 1
        if out.verdict == REPLY:
            self.counted[(server.name, "tx")] += 1
            self.counted[(server.name, "err")] += out.reply[4] != Status.OK
        else:
            self.counted[(server.name, "drop")] += 1
            self.counted[(server.name, "stale")] += out.verdict == STALE
        return out

    def request(self, op, key, value=b"", server=None, **kw):
        server = server or self.inv.servers[0]
        if "seq" not in kw:
            self.seq += 1
            kw["seq"] = self.seq
        data = pack(op, key, value, **kw)
        out = self._process(server, data)
        assert out.verdict == REPLY, f"the model did not answer {Op(op).name} {key}"
        for k in ("rx", "tx"):
            self.sent[(server.name, k)] += 1
        m = unpack(out.reply)
        if m.status != Status.OK:
            self.sent[(server.name, "err")] += 1
        return m

    def unanswered(self, op, key, value=b"", server=None, **kw):
        server = server or self.inv.servers[0]
        out = self._process(server, pack(op, key, value, **kw))
        assert out.verdict != REPLY, f"the model answered {Op(op).name} {key}"
        for k in ("rx", "drop", "stale"):
            self.sent[(server.name, k)] += 1

    # what test_engine asks of served.system
    def stop(self):
        return {s.name: {k: self.counted[(s.name, k)] for k in ("rx", "tx", "drop", "err", "stale")}
                for s in self.inv.servers}

    def dump(self, host):
        return list(self.engines[host.name].dump().values())

    def log(self, host):
        return list(self.engines[host.name].log)


def _calls(module):
    """Every test function of a module with its parameters, in the order
    the module defines them."""
    fns = sorted((f for n, f in inspect.getmembers(module, inspect.isfunction)
                  if n.startswith("test_") and f.__module__ == module.__name__),
                 key=lambda f: f.__code__.co_firstlineno)
    for f in fns:
        marks = [m for m in getattr(f, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            yield f.__name__, f, {}
            continue
        names, values = marks[0].args
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        for v in values:
            v = v if len(names) > 1 else (v,)
            yield f"{f.__name__}{list(v)}", f, dict(zip(names, v))


def test_the_model_passes_the_engines_conformance_suite():
    """tests/test_engine.py, every test in order (they share the servers'
    state), run against the model: what the three systems pass."""
    served = ModelServed()
    ran = 0
    for name, f, params in _calls(test_engine):
        assert set(inspect.signature(f).parameters) == {"served", *params}, name
        f(served, **params)
        ran += 1
    assert ran >= 25


@pytest.mark.parametrize("case", list(test_conformance.CASES))
def test_the_model_answers_the_packet_table_as_every_system(case):
    data, expected = test_conformance.CASES[case]
    out = Engine(SIZES, SLOTS, INITIAL).process(data)
    if expected is None:
        assert out.verdict == DROP
    else:
        assert out.verdict == REPLY and out.status == expected
        assert out.reply[:4] + out.reply[5:] == data[:4] + data[5:]


def test_the_models_exactly_once_rules():
    """Serial-number order across the wrap, a client taking a slot over
    (its ack with it), and a copy answered from its record without being
    applied again."""
    e = Engine(SIZES, 2)
    a, b = 0x0001_0001, 0x0002_0001  # both in slot 1
    ins = pack(Op.INSERT, 7, b"seven7!!", txn=3, ver=1, client_id=a, seq=0xFFFF_FFFE, ack=0xFFFF_FFFE)
    assert e.process(ins).status == Status.OK
    assert e.process(pack(Op.LOG, 7, b"L" * 8, txn=3, client_id=a, seq=1, ack=1)).status == Status.OK  # past the wrap
    assert e.process(ins).verdict == STALE  # 0xFFFFFFFE comes before 1
    assert e.process(pack(Op.ABORT, 7, bytes(8), txn=3, client_id=b, seq=5, ack=5)).status == Status.OK
    assert e.process(ins).status == Status.OK  # b took the slot over: a's ack went with it; a copy, not applied
    assert len(e.log) == 1 and e.recs[(0, 7)].ver == 1
    lock = pack(Op.LOCK_EXCL, 7, bytes(8), txn=4, client_id=b, seq=6, ack=5)
    first = e.process(lock)
    assert (first.status, first.reply[HEADER_LEN:]) == (Status.OK, b"seven7!!")
    assert e.process(pack(Op.COMMIT_PRIMARY, 7, b"eight8!!", txn=4, ver=2, client_id=b, seq=7, ack=5)).status == Status.OK
    again = e.process(lock)  # a late copy: the kept outcome, the record's value read again, no lock taken
    assert (again.status, again.reply[32:36], again.reply[HEADER_LEN:]) == (Status.OK, (1).to_bytes(4, "big"),
                                                                           b"eight8!!")
    assert e.recs[(0, 7)].owner == 0


def test_the_model_dumps_as_the_servers_do():
    e = Engine(SIZES, 2, INITIAL)
    e.process(pack(Op.LOCK_SHARED, 100, bytes(8), txn=5))
    e.process(pack(Op.LOG, 123_456, bytes(8), txn=5, ver=1))  # makes an absent record, as the store does
    d = e.dump()
    assert d[(0, 100)].nshared == 1 and d[(0, 100)].ver == 1
    assert d[(0, 123_456)] == snapshot.Record(0, 123_456, 0, bytes(8), live=False)
    assert len(d) == len(INITIAL) + 1


# -- the generator -----------------------------------------------------------
ADDR = [fuzz.Addressing("02:d1:00:00:00:02", f"02:d1:00:0{i}:00:01", "10.9.0.101", f"10.9.0.{i + 1}", 40000,
                        "10.9.0.50") for i in range(3)]


def _gen(seed=7, **kw):
    return fuzz.Generator(seed, 3, SLOTS, fuzz.initial_records(seed), addressing=ADDR, **kw)


def test_the_generator_is_deterministic_and_covers_every_class():
    a, b, c = _gen().items(3000), _gen().items(3000), _gen(seed=8).items(3000)
    assert [(i.data, i.frames, i.expect, i.reply) for i in a] == [(i.data, i.frames, i.expect, i.reply) for i in b]
    assert [i.data for i in a] != [i.data for i in c]
    cases = collections.defaultdict(set)
    for i in a:
        cases[i.cls].add(i.case)
    assert set(cases) == set(fuzz.CLASSES)
    assert cases["header"] == set(fuzz.Generator.HEADER_CASES)
    assert cases["frame"] == set(fuzz.Generator.FRAME_CASES)
    assert {"copy", "copy_new_ack", "reused_id", "COMMIT_PRIMARY", "LOCK_SHARED", "LOG"} <= cases["request"]
    assert {i.expect for i in a} == {REPLY, DROP, STALE, fuzz.EITHER}
    statuses = collections.Counter(i.reply[4] for i in a if i.cls == "request" and i.expect == REPLY)
    assert {Status.OK, Status.NOT_FOUND, Status.LOCKED, Status.STALE, Status.EXISTS, Status.NOT_OWNER} <= set(statuses)
    assert all(len(i.data) <= fuzz.MTU_PAYLOAD for i in a)
    only = _gen().items(500, ("reply", "random"))
    assert {i.cls for i in only} == {"reply", "random"}


def test_frames_are_what_their_case_says():
    items = [i for i in _gen().items(3000, ("frame",))]
    by = collections.defaultdict(list)
    for i in items:
        by[i.case].append(i)

    def valid(raw):
        """IPv4 and UDP checksums as scapy recomputes them."""
        e = Ether(raw)
        ip, udp = e[IP], e[UDP]
        ip2 = IP(bytes(ip))
        del ip2.chksum
        good_ip = IP(bytes(ip2)).chksum == ip.chksum
        u = IP(bytes(ip))
        del u[UDP].chksum
        good_udp = udp.chksum == 0 or IP(bytes(u))[UDP].chksum == udp.chksum
        return good_ip, good_udp

    for i in by["ok"]:
        e = Ether(i.frames[0])
        assert (e.dst, e[IP].dst, e[UDP].dport) == (ADDR[i.server].server_mac, ADDR[i.server].server_ip, 7777)
        assert bytes(e[UDP].payload) == i.data and valid(i.frames[0]) == (True, True)
        assert i.expect == REPLY and i.reply[4] == Status.OK and i.effect
    assert all(valid(i.frames[0]) == (False, True) for i in by["ip_bad_checksum"])
    assert all(valid(i.frames[0])[1] is False and Ether(i.frames[0])[UDP].chksum for i in by["udp_bad_checksum"])
    assert all(Ether(i.frames[0])[IP].flags.MF and len(i.frames) == 1 for i in by["ip_frag_first"])
    assert all(len(i.frames) == 2 and i.expect == fuzz.EITHER for i in by["ip_frag_pair"])
    assert all(i.expect == DROP and i.effect for c in ("ip_src_martian", "eth_dst_other") for i in by[c])
    ids = [Ether(i.frames[0])[IP].id for c in ("ip_frag_first", "ip_frag_later", "ip_frag_pair") for i in by[c]]
    assert len(ids) == len(set(ids))  # no two lone fragments make a datagram


# -- the checks ------------------------------------------------------------------
def test_a_dump_is_compared_record_by_record():
    r = snapshot.Record(0, 5, 2, b"a" * 8)
    zero = snapshot.Record(0, 9, 0, bytes(8), live=False)
    assert fuzz.compare_store({(0, 5): r}, [r]) == []
    diffs = fuzz.compare_store({(0, 5): r}, [snapshot.Record(0, 5, 2, b"b" * 8)])
    assert len(diffs) == 1 and diffs[0]["expected"]["value"] == (b"a" * 8).hex()
    diffs = fuzz.compare_store({(0, 5): r}, [r, zero])  # a record never live, with nothing in it
    assert len(diffs) == 1 and diffs[0]["expected"] is None
    log = [snapshot.LogRecord(1, 0, 5, 1, b"x" * 8), snapshot.LogRecord(2, 0, 6, 1, b"y" * 8)]
    assert fuzz.compare_log(log, log[::-1], ordered=False) == []
    assert fuzz.compare_log(log, log[::-1], ordered=True)[0]["at"] == 0
    assert fuzz.compare_log(log, log[:1], ordered=False)[0]["missing"]["txn"] == 2


@pytest.mark.parametrize("args,exit_status", [
    (["--system", "xdp"], 2), (["--count", "0"], 2), (["--count", "many"], 2), (["--seed", "-1"], 2),
    (["--classes", "request,bogus"], 2), (["--cache-fraction", "9"], 2), (["--inventory", "/nonexistent.yml"], 1),
])
def test_bad_arguments_give_one_line(capsys, args, exit_status):
    assert cli.main(["fuzz", *args]) == exit_status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err


def test_a_cluster_inventory_is_refused_in_one_line(capsys, tmp_path):
    from harness import inventory
    import yaml
    data = inventory.local_inventory(prefix="zq")
    data["all"]["vars"]["deployment"] = "cluster"
    (tmp_path / "c.yml").write_text(yaml.safe_dump(data))
    assert cli.main(["fuzz", "--inventory", str(tmp_path / "c.yml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cluster" in err


# -- short runs on the testbed ---------------------------------------------------
@pytest.fixture(scope="module")
def wire(testbed, test_inventory):
    with fuzz.Wire(test_inventory, frames=True) as w:
        yield w


def _short_run(system, wire, inv, inv_path, out):
    records = fuzz.initial_records(3)
    data = out / "initial.snap"
    out.mkdir(parents=True, exist_ok=True)
    snapshot.write_snapshot(data, Schema(), records)
    gen = fuzz.Generator(3, len(inv.servers), SLOTS, records, addressing=wire.addressing)
    items = gen.items(SHORT, fuzz.CLASSES)
    run = fuzz.run_system(system, inv, str(inv_path), items, gen.models, data, out, wire, fuzz.Options(),
                          counters_before=False)
    return gen, items, run


def _lines(run):
    by = collections.defaultdict(list)
    for f in run.findings:
        by[f.kind].append(f)
    return "\n".join(fuzz.finding_line(run.name, k, v) for k, v in by.items())


@pytest.mark.parametrize("system", ["dint", "bypass"])
def test_a_short_fuzz_run_finds_nothing(wire, test_inventory, test_inventory_path, tmp_path, system):
    _, items, run = _short_run(system, wire, test_inventory, test_inventory_path, tmp_path)
    assert not run.findings, _lines(run)
    assert run.figures["sent"] == SHORT
    assert all(not c["mismatch"] for c in run.figures["counters"].values())


def test_a_short_fuzz_run_on_the_reference_and_a_planted_mismatch(wire, test_inventory, test_inventory_path,
                                                                   tmp_path):
    """The kernel gets every class (frames included: it is what a frame's
    expectation is taken from). Then the same run is checked against a
    model told a wrong value: the checks must fail, on the reply and on
    the store."""
    gen, items, run = _short_run("kernel", wire, test_inventory, test_inventory_path, tmp_path)
    assert not run.findings, _lines(run)
    o = run.figures["outcomes"]["frame"]
    assert o["answered"] and o["dropped"] and o["answered_tolerated"], o
    # one READ answered OK, its value and the record both wrong in the model
    read = next(i for i in items if i.cls == "request" and i.case == "READ" and i.expect == REPLY
                and i.reply[4] == Status.OK and unpack(i.data).table == 0)
    planted = copy.copy(read)
    bad = bytearray(read.reply)
    bad[HEADER_LEN] ^= 0xFF
    planted.reply = bytes(bad)
    models = [m.copy() for m in gen.models]
    m = unpack(read.data)
    models[read.server].recs[(m.table, m.key)].value = bytes(bad[HEADER_LEN:])
    findings, _ = fuzz.check("kernel", test_inventory, [planted if i is read else i for i in items], run.ex,
                             models, run.stats, run.dumps, run.logs)
    kinds = collections.Counter(f.kind for f in findings)
    assert kinds == {"wrong_reply": 1, "store": 1}, kinds
    line = fuzz.finding_line("kernel", "wrong_reply", [f for f in findings if f.kind == "wrong_reply"])
    assert "\n" not in line and bytes(bad).hex()[:80] in line
