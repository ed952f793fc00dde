"""One client process on a client host: checks every server answers, then
runs the closed loop through warm-up and the measured window (flat requests:
the native loop in harness._netloop; transactions: the executor in
harness/txn.py over the native TxnIO), and writes its counters, latency
histograms and CPU use as JSON. Progress goes to stdout as `progress {json}` lines.

    python -m harness.loadgen SPEC.json RESULT.json
    python -m harness.loadgen --series SERIES.json   (harness/run.py, Series)
"""
from __future__ import annotations

import gc
import json
import os
import resource
import select
import socket
import sys
import time
from dataclasses import asdict, dataclass, replace

import workloads
from workloads import DataSpec, LoadSpec

from . import HarnessError, coord, metrics
from ._netloop import Loop
from .protocol import Op, Status, checkpoint_request, pack, unpack
from .txn import BatchTooLarge, Executor

PING_ID_BIT = 0x80000000  # readiness pings use their own client id
SLICE_NS = 250_000_000    # the native loop returns this often, for progress and signals
LINGER_QUIET_NS = 20_000_000  # at the end: stop reading once nothing has come for this long


@dataclass(frozen=True)
class ClientSpec:
    """What one client process is told (written as JSON by the run,
    harness/processes.py, and read here): who it is, where its servers
    are, how to drive them, and what to generate (`load`)."""
    client_id: int
    host: str
    address: str
    dests: tuple[tuple[str, int], ...]  # one (address, port) per server, in server order
    workload: str
    load: LoadSpec
    concurrency: int
    warmup_s: float
    duration_s: float
    timeout_ms: float
    max_retries: int
    rto_min_ms: float
    server_window: int
    client_gso: str = "auto"
    rate: float = 0.0  # open loop: transactions (requests) per second; 0: closed loop

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "ClientSpec":
        d = json.loads(text)
        load = d.pop("load")
        load = LoadSpec(**{**load, "data": DataSpec(**load["data"])})
        return cls(**{**d, "dests": tuple(tuple(x) for x in d["dests"]), "load": load})


def open_sockets(address: str, dests: list[tuple[str, int]]) -> list[socket.socket]:
    """One UDP socket per server, connected to it (see harness/native/wire.h)."""
    socks = []
    for dest in dests:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
        sock.bind((address, 0))
        sock.connect(dest)
        socks.append(sock)
    return socks


def ping(socks: list[socket.socket], client_id: int, timeout_s: float = 10.0) -> tuple[int, int]:
    """Sends echo requests until every server has answered; returns how many
    datagrams were sent and received. The check that the whole path works,
    from the client's side."""
    pending = set(range(len(socks)))
    sent = received = 0
    deadline = time.monotonic() + timeout_s
    for sock in socks:
        sock.settimeout(0.05)
    while pending:
        if time.monotonic() > deadline:
            names = ", ".join("%s:%d" % socks[i].getpeername() for i in sorted(pending))
            raise HarnessError(f"no answer to echo from {names} within {timeout_s:.0f}s")
        for i in sorted(pending):
            socks[i].send(pack(Op.ECHO, client_id=client_id | PING_ID_BIT, seq=i))
            sent += 1
            try:
                while True:
                    msg = unpack(socks[i].recv(2048))
                    received += 1
                    if msg.client_id == client_id | PING_ID_BIT and msg.status == Status.OK:
                        pending.discard(i)
                        break
            except (TimeoutError, ConnectionRefusedError, ValueError):
                pass
    # Blocking from here on: the native loop waits in recvmmsg (bounded by
    # its own receive timeout) when its window is full, as a C client would.
    for sock in socks:
        sock.settimeout(None)
    return sent, received


def _cpu_ticks(cpus: list[int]) -> tuple[int, int]:
    """(busy, total) jiffies of the given CPUs, from /proc/stat."""
    busy = total = 0
    want = {f"cpu{c}" for c in cpus}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0] in want:
                vals = list(map(int, parts[1:]))
                idle = vals[3] + vals[4]  # idle + iowait
                busy += sum(vals[:8]) - idle
                total += sum(vals[:8])
    return busy, total


def use_gso(mode: str, servers: int) -> bool:
    """Whether a client groups its sends into UDP GSO sends (RunConfig.client_gso)."""
    return mode == "on" or (mode == "auto" and servers > 1)


@dataclass
class Inputs:
    """What a client sends in one point, generated from its seed before the
    point starts (in a series, while the servers take the checkpoint of
    the point before): the requests of a flat workload, or the transaction
    types and parameters of a transactional one."""
    workload: workloads.Workload
    transactional: bool
    reqs: object = None
    types: list | None = None
    funcs: list | None = None
    params: list | None = None


def inputs(spec: ClientSpec) -> Inputs:
    wl = workloads.get(spec.workload).for_data(spec.load.data)  # kv: its schema for --kv-value-size
    if not wl.transactional(spec.load.mix):
        return Inputs(wl, False, reqs=wl.stream.generate(spec.load))
    tx = wl.transactions
    load = spec.load
    if tx.params_per_s:
        # Enough parameters that none is used twice, for a workload whose
        # outcomes depend on it; the executor reports it if it had to start
        # the list over.
        need = int((spec.warmup_s + spec.duration_s + 2) * tx.params_per_s)
        load = replace(load, requests=max(load.requests, need))
    types = tx.types_for(load.cc, load.lock_protocol)
    funcs = [t.func for t in types]
    if tx.coordinated:
        funcs = [coord.bind(f, load.cc, load.servers, wl.schema.sizes) for f in funcs]
    # drawn with the collector paused: the parameters are tuples of ints,
    # bytes and strings (no cycles), and a collection while they are made
    # walks every one made so far
    gc.disable()
    try:
        params = tx.params(load, types)
    finally:
        gc.enable()
    # The parameters (up to a million tuples) live for the whole point:
    # out of the collector's sight, so its full collections stay short
    # (a series' next point unfreezes them: release()).
    gc.collect()
    gc.freeze()
    return Inputs(wl, True, types=types, funcs=funcs, params=params)


def release() -> None:
    """A point's inputs back in the collector's sight, once they are dropped."""
    gc.unfreeze()
    gc.collect()


def _executor(spec: ClientSpec, inp: Inputs, fds: list[int], interval_ns: int) -> Executor:
    """The transaction executor over the workload's transactions, with the
    parameters drawn from the client's seed."""
    return Executor(fds, spec.client_id, [t.name for t in inp.types], inp.funcs, inp.params, spec.concurrency,
                    int(spec.timeout_ms * 1e6), spec.max_retries, max(inp.workload.schema.sizes),
                    rto_min_ns=int(spec.rto_min_ms * 1e6), server_window=spec.server_window,
                    interval_ns=interval_ns, gso=use_gso(spec.client_gso, len(spec.dests)))


class Series:
    """The measured window as it went: at its start and at the end of every
    slice the loop ran (SLICE_NS, or sooner), the time since the window
    began and the cumulative counts of requests answered OK, of those not
    (answered with another status, a transactional run's conflicts
    included, or given up) and, in a transactional run, of transactions
    committed. Only what started in the window counts (the
    loop's window), so every count starts from 0 at the window's start.
    summary.py judges from it whether the rate held steady over the window
    (harness/stability.py). A 30 s window keeps about 120 samples."""

    def __init__(self, transactional: bool):
        self.t_ns: list[int] = []
        self.ok: list[int] = []
        self.not_ok: list[int] = []
        self.committed: list[int] | None = [] if transactional else None

    def add(self, t_ns: int, st: dict) -> None:
        self.t_ns.append(t_ns)
        self.ok.append(st["ok"])
        self.not_ok.append(st["err_status"] + st["lost"])
        if self.committed is not None:
            self.committed.append(st["txn_committed"])

    def to_dict(self) -> dict:
        return {"slice_s": SLICE_NS / 1e9, "t_ns": self.t_ns, "ok": self.ok, "not_ok": self.not_ok,
                **({"committed": self.committed} if self.committed is not None else {})}


def drive(spec: ClientSpec, progress=print, inp: Inputs | None = None, point: int | None = None) -> dict:
    """One point: warm-up, the measured window, and the requests started
    in it finished; returns the client's result. `inp`: its inputs if
    generated already; `point`: its index in a series (in every progress
    line)."""
    inp = inp or inputs(spec)
    socks = open_sockets(spec.address, list(spec.dests))
    pings_sent, pings_received = ping(socks, spec.client_id)
    fds = [s.fileno() for s in socks]
    timeout_ns = int(spec.timeout_ms * 1e6)
    interval_ns = round(1e9 / spec.rate) if spec.rate else 0  # open loop
    transactional = inp.transactional
    if transactional:
        loop = _executor(spec, inp, fds, interval_ns)
        rounds = inp.workload.transactions.rounds + 1  # and the round of ABORTs of an abort
    else:
        reqs = inp.reqs
        loop = Loop(fds, spec.client_id, reqs.data, reqs.offsets.tobytes(), reqs.dest_of, spec.concurrency,
                    timeout_ns, spec.max_retries, stamp_txn=inp.workload.stream.stamp_txn, interval_ns=interval_ns,
                    rto_min_ns=int(spec.rto_min_ms * 1e6), server_window=spec.server_window,
                    gso=use_gso(spec.client_gso, len(spec.dests)))
        rounds = 1
    cpus = sorted(os.sched_getaffinity(0))
    t0 = time.monotonic_ns()
    # the same instants on CLOCK_REALTIME, the clock the servers' stats
    # lines are stamped with (harness/cost.py)
    to_realtime = time.time_ns() - time.monotonic_ns()
    win_from = t0 + int(spec.warmup_s * 1e9)
    win_until = win_from + int(spec.duration_s * 1e9)
    loop.set_window(win_from, win_until)

    series = Series(transactional)

    def run_until(deadline: int, phase: str, record: bool = False) -> None:
        while (now := time.monotonic_ns()) < deadline:
            loop.run(min(deadline, now + SLICE_NS), True)
            now, st = time.monotonic_ns(), loop.stats()
            if record:
                series.add(now - win_from, st)
            line = {'phase': phase, 'elapsed_s': (now - t0) / 1e9, 'ok': st['ok']}
            if point is not None:
                line['point'] = point
            progress(f"progress {json.dumps(line)}")

    run_until(win_from, "warmup")
    ru0, ticks0, st0 = resource.getrusage(resource.RUSAGE_SELF), _cpu_ticks(cpus), loop.stats()
    w0 = st0["wait_ns"]
    series.add(time.monotonic_ns() - win_from, st0)
    run_until(win_until, "measure", record=True)
    ru1, ticks1, w1 = resource.getrusage(resource.RUSAGE_SELF), _cpu_ticks(cpus), loop.stats()["wait_ns"]
    window_s = (time.monotonic_ns() - win_from) / 1e9
    # Requests (transactions) started in the window may still be in flight: let them finish.
    loop.run(time.monotonic_ns() + rounds * timeout_ns * (spec.max_retries + 1) + 100_000_000, False)
    # Replies to copies of requests sent again may still be on their way:
    # read them, so that every reply a server sent is seen (the instrument
    # check) before the sockets close.
    loop.linger(LINGER_QUIET_NS, timeout_ns)
    stats = loop.stats()
    cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    hist = metrics.from_pairs(loop.histogram())
    txns = loop.transactions() if transactional else None
    for sock in socks:
        sock.close()
    return {
        "client_id": spec.client_id,
        "host": spec.host,
        "window_s": window_s,
        "window_ns": [win_from, win_until],  # CLOCK_MONOTONIC, as every process on the host sees it
        "window_realtime_ns": [win_from + to_realtime, win_until + to_realtime],
        "pings_sent": pings_sent,
        "pings_received": pings_received,
        "stats": stats,
        "series": series.to_dict(),
        "histogram": metrics.encode(hist),
        **({"transactions": txns} if transactional else {}),
        "cpu": {
            "cpus": cpus,
            "user_s": ru1.ru_utime - ru0.ru_utime,
            "sys_s": ru1.ru_stime - ru0.ru_stime,
            # the process's own CPU time per core it may use
            "process_util": cpu_s / window_s / len(cpus),
            # everything that ran on those cores, softirq work included
            "core_util": (ticks1[0] - ticks0[0]) / max(1, ticks1[1] - ticks0[1]),
            "wait_fraction": (w1 - w0) / 1e9 / window_s,
        },
    }


def write_result(result: dict, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, path)


# A series client (run_series): between two points, it polls every server
# with its CHECKPOINT request this often (doubling from the first), until
# each answers OK.
BARRIER_POLL_S = (0.001, 0.01)


def checkpoint_barrier(spec: ClientSpec, epoch: int, n: int, index: int, timeout_s: float,
                       meanwhile=None):
    """The checkpoint after point `epoch` of a series, taken in band: this
    client (participant `index` of `n`, every client of the series) tells
    each of its servers it has finished the point (nothing of it is in
    flight any more) with a CHECKPOINT request, runs `meanwhile` (the next
    point's inputs) while the others finish and the servers write, then
    sends it again until every server answers OK: each server answers RETRY
    until all n have arrived and it has written its dump and log of that
    moment (userspace/server_common.h). Returns what `meanwhile` returned.
    One line (HarnessError) if a server refuses the request or the
    checkpoint is not taken within timeout_s."""
    req = checkpoint_request(epoch, n, index, spec.client_id)
    socks = open_sockets(spec.address, spec.dests)
    pending = {s.fileno(): (s, dest) for s, dest in zip(socks, spec.dests)}
    try:
        for sock in socks:
            sock.setblocking(False)

        def send() -> None:
            for sock, _ in pending.values():
                try:
                    sock.send(req)
                except (BlockingIOError, ConnectionRefusedError):
                    pass  # sent again at the next poll
        send()
        got = meanwhile() if meanwhile else None
        deadline = time.monotonic() + timeout_s
        wait = BARRIER_POLL_S[0]
        while pending:
            ready, _, _ = select.select([sock for sock, _ in pending.values()], [], [], wait)
            for sock in ready:
                while sock.fileno() in pending:
                    try:
                        msg = unpack(sock.recv(2048))
                    except (BlockingIOError, ConnectionRefusedError):
                        break
                    except ValueError:
                        continue
                    if msg.op != Op.CHECKPOINT or msg.key != epoch or msg.status in (Status.REQUEST, Status.RETRY):
                        continue
                    dest = "%s:%d" % pending[sock.fileno()][1]
                    if msg.status != Status.OK:
                        raise HarnessError(f"server {dest} refused the checkpoint after point {epoch}: "
                                           f"{Status(msg.status).name if msg.status in Status._value2member_map_ else msg.status}")
                    del pending[sock.fileno()]
            if pending:
                if time.monotonic() > deadline:
                    names = ", ".join("%s:%d" % dest for _, dest in pending.values())
                    raise HarnessError(f"the checkpoint after point {epoch} was not taken within {timeout_s:g} s "
                                       f"(no OK from {names}: another client or a server is missing)")
                send()
                wait = min(2 * wait, BARRIER_POLL_S[1])
        return got
    finally:
        for sock in socks:
            sock.close()


def run_series(points: list[ClientSpec], results: list[str], barrier: dict, timeout_s: float,
               progress=print) -> None:
    """The points of a series, one after the other in this one process
    (harness/run.py, Series): each point's result is written to its path;
    then, but after the last point, the clients take the checkpoint of the
    servers together (checkpoint_barrier: `barrier` says how many clients
    and which one this is), generating the next point's inputs meanwhile;
    then `progress {"phase": "done", "point": k}` is printed, and the next
    point starts at once. Without the checkpoint within timeout_s the
    series is over (an error)."""
    inp = inputs(points[0])
    for k, spec in enumerate(points):
        result = drive(spec, progress, inp, point=k)
        inp = None
        write_result(result, results[k])
        del result
        release()
        if k + 1 < len(points):
            inp = checkpoint_barrier(spec, k + 1, barrier["n"], barrier["index"], timeout_s,
                                     meanwhile=lambda: inputs(points[k + 1]))
        progress(f"progress {json.dumps({'phase': 'done', 'point': k})}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    series = len(argv) == 2 and argv[0] == "--series"
    if len(argv) != 2:
        print("usage: python -m harness.loadgen SPEC.json RESULT.json | --series SERIES.json", file=sys.stderr)
        return 2
    if series:
        plan = json.loads(open(argv[1]).read())
        specs = [ClientSpec.from_json(json.dumps(p)) for p in plan["points"]]
    else:
        specs = [ClientSpec.from_json(open(argv[0]).read())]
    try:
        if series:
            run_series(specs, plan["results"], plan["barrier"], plan["timeout_s"],
                       progress=lambda line: print(line, flush=True))
        else:
            write_result(drive(specs[0], progress=lambda line: print(line, flush=True)), argv[1])
    except (HarnessError, BatchTooLarge) as e:
        print(f"loadgen: error: {e}", file=sys.stderr)
        return 1
    except TimeoutError as e:  # the native loops: a server stopped answering
        servers = ", ".join(f"{i} = {a}:{p}" for i, (a, p) in enumerate(specs[0].dests))
        print(f"loadgen: error: {e} (servers: {servers})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
