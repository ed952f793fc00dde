"""A series client (harness/loadgen.py, run_series) against loopback
servers: one process runs the points one after the other, writes each
point's result as it ends, and between two points has the servers take a
checkpoint together with the other clients (checkpoint_barrier, a
CHECKPOINT request answered RETRY until every client has come and the
server has written its files); it starts the next point only once every
server has said OK, and gives up with one line when that does not come."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from harness import HarnessError
from harness.loadgen import ClientSpec, checkpoint_barrier
from harness.protocol import Op, Status, unpack
from workloads import DataSpec, LoadSpec

from conftest import EchoServer


class BarrierServer(EchoServer):
    """Echoes dint requests and keeps a checkpoint barrier as the servers
    do (userspace/server_common.h): RETRY until all n participants of the
    next epoch have come, then (after `write_s`, the files) OK for it and
    every epoch before. Records when each epoch was taken."""

    def __init__(self, write_s: float = 0.0, refuse: int | None = None):
        super().__init__()
        self.write_s, self.refuse = write_s, refuse
        self.done, self.arrived = 0, set()
        self.taken: dict[int, float] = {}
        self.ready_at = 0.0
        self.barrier_datagrams = 0

    def answer(self, data: bytes, peer) -> None:
        msg = unpack(data)
        if msg.op != Op.CHECKPOINT:
            return super().answer(data, peer)
        self.barrier_datagrams += 1
        epoch, n, index = msg.key, msg.ver, msg.txn
        if self.refuse is not None:
            status = self.refuse
        elif epoch <= self.done:
            status = Status.OK
        elif epoch == self.done + 1:
            self.arrived.add(index)
            if len(self.arrived) == n and not self.ready_at:
                self.ready_at = time.monotonic() + self.write_s
            if self.ready_at and time.monotonic() >= self.ready_at:
                self.done, self.arrived, self.ready_at = epoch, set(), 0.0
                self.taken[epoch] = time.monotonic()
                status = Status.OK
            else:
                status = Status.RETRY
        else:
            status = Status.RETRY
        reply = bytearray(data)
        reply[4] = status
        self.sock.sendto(bytes(reply), peer)


def spec(server, cid: int = 1) -> ClientSpec:
    return ClientSpec(client_id=1 << 16 | cid, host="c0", address="127.0.0.1", dests=(server.addr,),
                      workload="echo", load=LoadSpec(data=DataSpec(keys=100), seed=cid, requests=1000, servers=1),
                      concurrency=2, warmup_s=0.05, duration_s=0.2, timeout_ms=50, max_retries=3, rto_min_ms=1,
                      server_window=64)


def plan(tmp_path, server, n: int = 1, index: int = 0, timeout_s: float = 30) -> tuple[list[str], object]:
    base = spec(server, index + 1)
    points = [base, replace(base, client_id=2 << 16 | index + 1, concurrency=4)]
    results = [str(tmp_path / f"result-{index}-{k}.json") for k in range(2)]
    path = tmp_path / f"series-{index}.json"
    path.write_text(json.dumps({"points": [json.loads(p.to_json()) for p in points], "results": results,
                                "barrier": {"n": n, "index": index}, "timeout_s": timeout_s}))
    return results, path


def start(path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.loadgen", "--series", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_clients_go_on_together_once_the_checkpoint_is_taken(tmp_path):
    """The first client to finish waits for the other (started 1 s later)
    and for the server's files; both then run their second point, and each
    says it finished a point only once its checkpoint was taken."""
    with BarrierServer(write_s=0.2) as server:
        r0, p0 = plan(tmp_path, server, n=2, index=0)
        r1, p1 = plan(tmp_path, server, n=2, index=1)
        first = start(p0)
        time.sleep(1.0)
        second = start(p1)
        outs = [proc.communicate(timeout=60) for proc in (first, second)]
        assert first.returncode == 0 and second.returncode == 0, [o[1] for o in outs]
    taken = server.taken[1]
    for results in (r0, r1):
        point0, point1 = (json.loads(open(r).read()) for r in results)
        assert point0["stats"]["ok"] > 0 and point1["stats"]["ok"] > 0
        # the first point ended before the checkpoint, the second started after it
        assert point0["window_ns"][1] / 1e9 < taken < point1["window_ns"][0] / 1e9
    assert point1["client_id"] == 2 << 16 | 2
    for out, _ in outs:
        done = [json.loads(ln.split(" ", 1)[1]) for ln in out.splitlines() if '"phase": "done"' in ln]
        assert [d["point"] for d in done] == [0, 1]
    # no second checkpoint after the last point
    assert list(server.taken) == [1]


def test_a_checkpoint_not_taken_ends_the_series_with_one_line(tmp_path):
    """Two participants, one client: the other never comes."""
    with BarrierServer() as server:
        results, path = plan(tmp_path, server, n=2, index=0, timeout_s=0.5)
        proc = start(path)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip() == ("loadgen: error: the checkpoint after point 1 was not taken within 0.5 s "
                           f"(no OK from 127.0.0.1:{server.addr[1]}: another client or a server is missing)")
    assert json.loads(open(results[0]).read())["stats"]["ok"] > 0
    assert not (tmp_path / "result-0-1.json").exists()
    assert '"phase": "done"' not in out


def test_a_refused_checkpoint_is_one_line():
    with BarrierServer(refuse=Status.BAD_REQUEST) as server:
        with pytest.raises(HarnessError, match=r"server 127.0.0.1:\d+ refused the checkpoint after point 3: BAD_REQUEST"):
            checkpoint_barrier(spec(server), 3, 1, 0, timeout_s=5)


def test_the_next_inputs_are_made_while_the_servers_write():
    """The request goes out before `meanwhile` runs: a server's files are
    written while the client makes its next inputs, and the barrier returns
    what `meanwhile` made."""
    with BarrierServer(write_s=0.3) as server:
        t0 = time.monotonic()
        seen = []

        def meanwhile():
            time.sleep(0.3)
            seen.append(server.barrier_datagrams)
            return "inputs"
        assert checkpoint_barrier(spec(server), 1, 1, 0, timeout_s=5, meanwhile=meanwhile) == "inputs"
        assert seen == [1] and server.done == 1
        assert time.monotonic() - t0 < 0.55  # the two overlapped
        # an epoch already taken: OK at once
        assert checkpoint_barrier(spec(server), 1, 1, 0, timeout_s=1) is None


def test_a_lost_request_is_sent_again():
    """The server drops the first two checkpoint requests it gets."""
    class Lossy(BarrierServer):
        dropped = 0

        def answer(self, data, peer):
            if unpack(data).op == Op.CHECKPOINT and self.dropped < 2:
                self.dropped += 1
                return
            super().answer(data, peer)
    with Lossy() as server:
        checkpoint_barrier(spec(server), 1, 1, 0, timeout_s=5)
        assert server.done == 1 and server.dropped == 2


def test_every_server_must_say_ok():
    """Two servers: the barrier waits for the slower one."""
    with BarrierServer() as fast, BarrierServer(write_s=0.3) as slow:
        s = replace(spec(fast), dests=(fast.addr, slow.addr))
        done = threading.Event()
        t = threading.Thread(target=lambda: (checkpoint_barrier(s, 1, 1, 0, timeout_s=5), done.set()))
        t.start()
        time.sleep(0.15)
        assert fast.done == 1 and not done.is_set()
        t.join(5)
        assert done.is_set() and slow.done == 1
