"""The checkpoint barrier (DINT_OP_CHECKPOINT, userspace/barrier.h) on every
system: the clients of a point each send CHECKPOINT(epoch, n, index) once
their point is drained, and poll until OK; the server takes the checkpoint
of the epoch (stats line, <dump>.<epoch> and <log>.<epoch>, checkpoint
line with the epoch) once all n have arrived, exactly as SIGUSR2 takes one.
Barrier datagrams are counted in none of a server's counters. The model
(harness/engine_model.py, Barrier) answers as every system does."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from harness import snapshot
from harness.engine_model import REPLY, Barrier, Engine
from harness.protocol import (BARRIER_MAX, HEADER_LEN, MAGIC, Op, Status, checkpoint_request, is_control, pack,
                              unpack)
from harness.schema import Schema

from conftest import INITIAL, Served

CID = 0x0001_0001  # the client's id (slot 1)
POLL_S = 0.002     # as a client polls
SYSTEMS = ["dint", "kernel", "bypass"]


# -- the model (no testbed) --------------------------------------------------------
def test_the_model_s_barrier():
    b = Barrier()
    st = lambda e, n, i: b.answer(checkpoint_request(e, n, i, CID)).status  # noqa: E731
    assert st(1, 2, 0) == Status.RETRY
    assert st(1, 2, 0) == Status.RETRY  # again: the same arrival
    assert st(1, 3, 1) == Status.BAD_REQUEST  # another n than the epoch's first arrival gave
    assert st(2, 2, 1) == Status.RETRY and b.arrived == {0}  # an epoch ahead: not recorded
    assert st(1, 2, 1) == Status.RETRY and b.done == 1  # complete: taken
    assert st(1, 2, 0) == st(1, 7, 6) == Status.OK  # an old epoch, whatever its n
    assert st(2, 1, 0) == Status.RETRY and b.done == 2
    bad = {"value": pack(Op.CHECKPOINT, 3, b"x", ver=1), "trailing": checkpoint_request(3, 1, 0, CID) + b"\0"}
    assert {k: b.answer(d).status for k, d in bad.items()} == {"value": Status.BAD_LENGTH, "trailing": Status.BAD_LENGTH}
    for e, n, i in ((0, 1, 0), (3, 0, 0), (3, BARRIER_MAX + 1, 0), (3, 2, 2)):
        assert b.answer(pack(Op.CHECKPOINT, e, ver=n, txn=i)).status == Status.BAD_REQUEST
    assert b.done == 2 and not b.arrived


def test_the_engine_model_answers_a_barrier_before_the_engine():
    e = Engine(Schema().sizes, 2, INITIAL)
    out = e.process(checkpoint_request(1, 1, 0, CID))
    assert (out.verdict, out.status) == (REPLY, Status.RETRY) and e.barrier.done == 1
    # not a control request: the engine's, which knows no such operation
    assert e.process(pack(Op.CHECKPOINT, 1, ver=1, proto=3)).status == Status.BAD_VERSION
    assert e.process(pack(Op.CHECKPOINT, 1, ver=1, status=Status.OK)).verdict != REPLY
    assert not is_control(checkpoint_request(1, 1, 0, CID)[:HEADER_LEN - 1])


# -- every system ------------------------------------------------------------------
@pytest.fixture(scope="module", params=SYSTEMS)
def barrier(request, testbed, test_inventory_path, test_inventory, tmp_path_factory):
    """A running system that served a little (inserts, logs, commits) on
    every server, and a model of each server's barrier."""
    from harness.config import RunConfig
    from harness.systems import make_system
    d = tmp_path_factory.mktemp(f"barrier-{request.param}")
    snapshot.write_snapshot(d / "initial.snap", Schema(), INITIAL)
    cfg = RunConfig(system=request.param, inventory=str(test_inventory_path))
    system = make_system(test_inventory, cfg, d / "logs", Schema(), d / "initial.snap")
    with system:
        s = Served(system, test_inventory)
        s.models = {srv.name: Barrier() for srv in test_inventory.servers}
        for srv in test_inventory.servers:
            for k in range(5):
                assert s.request(Op.INSERT, 5000 + k, (k + 1).to_bytes(8, "big"), txn=70 + k, ver=1,
                                 server=srv).status == Status.OK
                assert s.request(Op.LOG, 5000 + k, bytes([k]) * 8, txn=70 + k, ver=2, server=srv).status == Status.OK
            assert s.request(Op.LOCK_EXCL, 100, bytes(8), txn=90, server=srv).status == Status.OK
            assert s.request(Op.COMMIT_PRIMARY, 100, b"barrier!", txn=90, ver=2, server=srv).status == Status.OK
        yield s
        s.close()


def _ask(served, server, data: bytes, wait: float = 1.0) -> bytes | None:
    """A barrier datagram and its reply (None: none within wait): not
    counted in served.sent, as no server counts it."""
    served.sock.sendto(data, (server.address, served.inv.port))
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        served.sock.settimeout(left)
        try:
            reply = served.sock.recvfrom(4096)[0]
        except TimeoutError:
            return None
        if reply[:4] + reply[5:] == data[:4] + data[5:]:  # not a late reply to an earlier poll
            return reply
    return None


def _status(served, server, data: bytes) -> int:
    """The status a server answers, checked against the model's."""
    reply = _ask(served, server, data)
    assert reply is not None, f"{served.system.name}/{server.name}: no reply to {data.hex()}"
    want = served.models[server.name].answer(data).reply
    assert reply == want, f"{served.system.name}/{server.name}: {unpack(reply)} but the model {unpack(want)}"
    return reply[4]


def _poll(served, server, data: bytes, timeout: float = 30.0) -> tuple[float, int]:
    """Sends data every POLL_S until it is answered OK: (seconds, polls)."""
    t0, polls = time.monotonic(), 0
    while time.monotonic() - t0 < timeout:
        polls += 1
        reply = _ask(served, server, data, 0.5)
        if reply is not None and reply[4] == Status.OK:
            return time.monotonic() - t0, polls
        assert reply is None or reply[4] == Status.RETRY, unpack(reply)
        time.sleep(POLL_S)
    raise AssertionError(f"{served.system.name}/{server.name}: no OK within {timeout} s")


def _spec(served, server):
    return served.system.procs[served.inv.servers.index(server)]


def _files(served, server, epoch: int = 0) -> list[Path]:
    """The dump, and the log (every system writes one), of a checkpoint."""
    f = served.system.files(server)
    return [Path(f"{f['dump']}.{epoch}" if epoch else f["dump"]), Path(f"{f['log']}.{epoch}" if epoch else f["log"])]


def _checkpoint(served, server, epoch: int, timeout: float = 10.0) -> tuple[dict, dict]:
    """The checkpoint line of that epoch in the server's log (the last one
    of epoch 0) and the stats line printed just before it."""
    deadline = time.monotonic() + timeout
    while True:
        found, last = None, None
        for kind, line in _spec(served, server).tagged_lines():
            if kind == "stats":
                last = line
            elif line is not None and line.get("epoch") == epoch:
                found = (line, last)
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert found, f"{served.system.name}/{server.name}: no checkpoint line of epoch {epoch}: {_spec(served, server).tail()}"
    return found


def _counted(served, server) -> dict:
    return {k: served.sent[(server.name, k)] for k in ("rx", "tx", "drop", "err")}


def test_a_first_arrival_waits_and_nothing_is_written(barrier):
    for srv in barrier.inv.servers:
        assert _status(barrier, srv, checkpoint_request(1, 2, 0, CID)) == Status.RETRY
        assert _status(barrier, srv, checkpoint_request(1, 2, 0, CID)) == Status.RETRY  # a poll
        # a later epoch's arrival is not recorded: it would complete epoch 3 later on
        assert _status(barrier, srv, checkpoint_request(3, 2, 1, CID)) == Status.RETRY
    time.sleep(0.3)
    for srv in barrier.inv.servers:
        assert not any(p.exists() for p in _files(barrier, srv, 1))
        assert not [line for kind, line in _spec(barrier, srv).tagged_lines() if kind == "checkpoint"]


def test_malformed_barrier_requests_are_refused(barrier):
    good = checkpoint_request(1, 2, 0, CID)
    cases = {
        "a_value": (pack(Op.CHECKPOINT, 1, b"v" * 8, ver=2, txn=0, client_id=CID), Status.BAD_LENGTH),
        "trailing_bytes": (good + b"tail", Status.BAD_LENGTH),
        "val_len_without_value": (good[:6] + (4).to_bytes(2, "big") + good[8:], Status.BAD_LENGTH),
        "epoch_0": (pack(Op.CHECKPOINT, 0, ver=2, txn=0, client_id=CID), Status.BAD_REQUEST),
        "no_participants": (pack(Op.CHECKPOINT, 1, ver=0, txn=0, client_id=CID), Status.BAD_REQUEST),
        "too_many_participants": (pack(Op.CHECKPOINT, 1, ver=BARRIER_MAX + 1, txn=0, client_id=CID),
                                  Status.BAD_REQUEST),
        "index_past_n": (pack(Op.CHECKPOINT, 1, ver=2, txn=2, client_id=CID), Status.BAD_REQUEST),
        "index_huge": (pack(Op.CHECKPOINT, 1, ver=2, txn=2**64 - 1, client_id=CID), Status.BAD_REQUEST),
        "another_n_for_the_epoch": (pack(Op.CHECKPOINT, 1, ver=3, txn=1, client_id=CID), Status.BAD_REQUEST),
    }
    for srv in barrier.inv.servers:
        for name, (data, want) in cases.items():
            assert _status(barrier, srv, data) == want, name
    # not control requests: the engine answers them as any other, counted
    for srv in barrier.inv.servers:
        reply = barrier.exchange(srv, pack(Op.CHECKPOINT, 1, ver=2, proto=3))
        assert reply is not None and unpack(reply).status == Status.BAD_VERSION
        barrier.sent[(srv.name, "tx")] += 1
        barrier.sent[(srv.name, "err")] += 1
        assert barrier.exchange(srv, pack(Op.CHECKPOINT, 1, ver=2, status=Status.RETRY)) is None  # a reply
        barrier.sent[(srv.name, "drop")] += 1
        assert barrier.exchange(srv, good[:HEADER_LEN - 1]) is None
        barrier.sent[(srv.name, "drop")] += 1
        assert barrier.exchange(srv, pack(Op.CHECKPOINT, 1, ver=2, magic=MAGIC ^ 1)) is None
        barrier.sent[(srv.name, "drop")] += 1


def test_the_last_arrival_takes_the_checkpoint(barrier):
    """What SIGUSR2 would write at that moment, at <path>.1; the stats line
    before it counts what the clients sent, no barrier datagram."""
    for srv in barrier.inv.servers:
        assert not _files(barrier, srv, 1)[0].exists()
        t0 = time.monotonic()
        assert _status(barrier, srv, checkpoint_request(1, 2, 1, CID)) == Status.RETRY  # the last: complete
        took, polls = _poll(barrier, srv, checkpoint_request(1, 2, 0, CID))
        took = time.monotonic() - t0
        print(f"{barrier.system.name}/{srv.name}: epoch 1 answered OK {took * 1e3:.1f} ms after it completed "
              f"({polls} polls)")
        assert took < 10
        assert _status(barrier, srv, checkpoint_request(1, 2, 0, CID)) == Status.OK
        line, stats = _checkpoint(barrier, srv, 1)
        assert line["ok"] is True and line["epoch"] == 1 and line["barrier_rx"] >= 13, line
        assert {k: stats[k] for k in ("rx", "tx", "drop", "err")} == _counted(barrier, srv)
        dump, log = _files(barrier, srv, 1)
        assert dump.exists() and log.exists()
        records = {(r.table, r.key): r for r in snapshot.read_snapshot(dump)[1]}
        assert records[(0, 100)].value == b"barrier!" and records[(0, 100)].ver == 2
        assert all(records[(0, 5000 + k)].live for k in range(5))
        assert sorted((r.txn, r.key) for r in snapshot.read_log(log)[1]) == [(70 + k, 5000 + k) for k in range(5)]

        # SIGUSR2 now (nothing changed since) writes the same, at the plain paths
        os.kill(_spec(barrier, srv).pid(), signal.SIGUSR2)
        plain, plain_stats = _checkpoint(barrier, srv, 0)
        assert plain["ok"] is True
        assert {k: plain_stats[k] for k in ("rx", "tx", "drop", "err")} == _counted(barrier, srv)
        for ours, theirs in zip(_files(barrier, srv, 1), _files(barrier, srv, 0)):
            assert ours.read_bytes() == theirs.read_bytes(), ours


def test_the_next_epochs_and_an_old_epoch_s_repeat(barrier):
    for srv in barrier.inv.servers:
        assert _status(barrier, srv, checkpoint_request(1, 2, 0, CID)) == Status.OK
        assert _status(barrier, srv, checkpoint_request(1, 9, 8, CID)) == Status.OK  # old: n not asked
        # something served between the two epochs is in epoch 2's files only
        assert barrier.request(Op.INSERT, 6000, (6000).to_bytes(8, "big"), txn=99, ver=1,
                               server=srv).status == Status.OK
        assert _status(barrier, srv, checkpoint_request(2, 1, 0, CID)) == Status.RETRY  # one participant: complete
        _poll(barrier, srv, checkpoint_request(2, 1, 0, CID))
        line, stats = _checkpoint(barrier, srv, 2)
        assert line["ok"] is True
        assert {k: stats[k] for k in ("rx", "tx", "drop", "err")} == _counted(barrier, srv)
        keys = lambda p: {(r.table, r.key) for r in snapshot.read_snapshot(p)[1]}  # noqa: E731
        assert (0, 6000) in keys(_files(barrier, srv, 2)[0]) and (0, 6000) not in keys(_files(barrier, srv, 1)[0])
        # epoch 3's earlier arrival (index 1) was not recorded: index 0 alone does not complete it
        assert _status(barrier, srv, checkpoint_request(3, 2, 0, CID)) == Status.RETRY
    time.sleep(0.3)
    for srv in barrier.inv.servers:
        assert _status(barrier, srv, checkpoint_request(3, 2, 0, CID)) == Status.RETRY
        assert not _files(barrier, srv, 3)[0].exists()
        assert _status(barrier, srv, checkpoint_request(3, 2, 1, CID)) == Status.RETRY
        _poll(barrier, srv, checkpoint_request(3, 2, 0, CID))
        assert _checkpoint(barrier, srv, 3)[0]["ok"] is True


@pytest.mark.parametrize("how", ["ip_options", "fragments"])
def test_a_barrier_request_the_kernel_reassembles_or_strips(barrier, how):
    """Not a simple frame: dint's XDP program leaves it to the kernel, which
    hands it to the slow path; bypass applies the kernel's rules itself.
    Answered as any barrier request, and counted nowhere all the same."""
    from scapy.layers.inet import fragment
    from test_conformance import base, with_options
    for srv in barrier.inv.servers:
        link = barrier.link(srv)
        for data in (checkpoint_request(2, 5, 4, CID), checkpoint_request(7, 2, 0, CID),
                     pack(Op.CHECKPOINT, 8, ver=2, txn=2, client_id=CID)):
            pkt = base(link, data, barrier.sport, id=0x4242)
            frames = ([with_options(bytes(pkt), b"\x01\x01\x01\x00")] if how == "ip_options"
                      else [bytes(f) for f in fragment(pkt, fragsize=24)])
            assert not barrier.replies(0), "a reply left over"
            barrier.send_frames(srv, frames)
            got = barrier.replies(2.0, want=1)
            want = barrier.models[srv.name].answer(data).reply
            assert got == [want], (barrier.system.name, srv.name, [unpack(g) for g in got], unpack(want))


def test_barrier_datagrams_are_counted_nowhere(barrier):
    """The instrument's check: a server's counters are exactly what the
    client sent it, as if no barrier datagram had come."""
    live = barrier.system.live_stats()
    for srv in barrier.inv.servers:
        assert {k: live[srv.name][k] for k in ("rx", "tx", "drop", "err")} == _counted(barrier, srv)
        if barrier.system.name == "dint":
            # XDP passed them up uncounted, and the slow path did not count
            # them either: what it received is what XDP passed, and the one
            # datagram the kernel delivered (the truncated header, not a
            # simple frame)
            got = live[srv.name]
            assert got["slow_rx"] == got["pass"] + 1, got
        if barrier.system.name == "bypass":  # nor were the frames the kernel takes dropped by its rules
            assert live[srv.name]["net_drop"] == 0, live[srv.name]
    stats = barrier.system.stop()
    for srv in barrier.inv.servers:
        assert {k: stats[srv.name][k] for k in ("rx", "tx", "drop", "err")} == _counted(barrier, srv)
