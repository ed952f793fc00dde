"""The process groups of a run besides its servers (harness/systems.py):
the load-generating clients on every client host, and the colocation
neighbours on the server hosts, each started, followed and stopped through
the Ansible playbooks (harness/deploy.py)."""
from __future__ import annotations

import json
import secrets
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from workloads import LoadSpec

from . import HarnessError
from .config import RunConfig
from .deploy import Deployer, ProcSpec, host_pidfile
from .inventory import Inventory
from .loadgen import ClientSpec
from .sh import in_netns
from .watch import new_progress


# Run nonces: 15 bits above a client's 16-bit number.
NONCES = (1 << 15) - 1
# Client seeds of the k-th point of a series: k strides past the first's
# (seed * 1000 + client number).
SERIES_SEED_STRIDE = 1_000_003


class Neighbours:
    """Colocation: a CPU-bound neighbour (harness/neighbour.py) on every
    server host's cores, started and stopped through deploy/servers.yml.
    Its work rate is measured with the servers up but idle (IDLE_S before
    the clients start) and over the measured window."""
    IDLE_S = 1.0

    def __init__(self, inv: Inventory, out: Path, deployer: Deployer):
        self.inv, self.out, self.deployer = inv, out, deployer
        self.procs: list[tuple[str, ProcSpec]] = []
        self.idle: tuple[int, int] = (0, 0)
        self.stopped = False

    def start(self) -> None:
        for host in self.inv.servers:
            cmd = in_netns(host.netns, ["taskset", "-c", ",".join(map(str, host.cpus)), sys.executable,
                                        "-m", "harness.neighbour"])
            self.procs.append((host.name, ProcSpec(
                host.name, f"neighbour on {host.name}", cmd, self.out / "logs" / f"neighbour-{host.name}.log",
                host_pidfile(self.deployer.pdir, host, "neighbour"), ready="ready", timeout=10, grace=2.0)))
        self.deployer.start_servers([p for _, p in self.procs], label="neighbours-start")
        t0 = time.monotonic_ns()
        time.sleep(self.IDLE_S)
        self.idle = (t0, time.monotonic_ns())

    def result(self, window: tuple[int, int]) -> dict:
        """From their logs: on a cluster they are the hosts' until the stop
        fetches them, so the neighbours are stopped first (their window is
        over)."""
        from . import neighbour
        if not self.inv.local:
            self.stop()
        hosts = {}
        for name, proc in self.procs:
            points = neighbour.progress(proc.log.read_text(errors="replace"))
            idle, busy = neighbour.rate(points, *self.idle), neighbour.rate(points, *window)
            hosts[name] = {"idle_units_per_s": idle and round(idle, 1), "window_units_per_s": busy and round(busy, 1),
                           "share": round(busy / idle, 4) if idle and busy is not None else None}
        shares = [h["share"] for h in hosts.values() if h["share"] is not None]
        return {"hosts": hosts, "share": round(sum(shares) / len(shares), 4) if shares else None,
                "rule": "the neighbour's work rate over the measured window divided by its rate with the servers "
                        f"up and idle ({self.IDLE_S:g} s before the clients start); 1.0 = the server took nothing "
                        "from it"}

    def stop(self) -> None:
        """Through deploy/servers.yml (their logs fetched on a cluster); once."""
        if self.procs and not self.stopped:
            self.stopped = True
            self.deployer.stop_servers([p for _, p in self.procs], label="neighbours-stop")


class Clients:
    """The load-generating processes of a run or a series, one or more per
    client host, run through deploy/clients.yml: started together, their
    results and logs collected. Each process runs every point of the
    series (harness/loadgen.py, run_series; a run is a series of one):
    between two points the clients have the servers take a checkpoint
    together, in band (loadgen.checkpoint_barrier), and each says in its log
    that it finished the point once it is taken. Their progress lines come
    from their logs (on a cluster, through the run's HostWatch)."""

    # how long a client waits for the others and the servers at a checkpoint
    BARRIER_TIMEOUT_S = 600.0

    def __init__(self, inv: Inventory, points: list[tuple[RunConfig, Path]], where: Path, deployer: Deployer):
        self.inv, self.deployer = inv, deployer
        self.points = [(cfg, Path(out).resolve()) for cfg, out in points]
        self.where = Path(where).resolve()  # the series' plans and client logs (a run's: its directory)
        self.procs: list[ProcSpec] = []
        self.results: list[list[Path]] = [[] for _ in self.points]  # per point, per client
        self.play = None
        self.finished = False
        self.watch = None  # a cluster run's HostWatch (harness/watch.py)
        # Client ids stay below 2^31: the high bit marks readiness pings. A
        # nonce per point: a point's requests never pass for an earlier one's.
        self.nonces = [secrets.randbelow(NONCES) + 1 for _ in self.points]
        self.offsets: dict[Path, int] = {}
        self.done: dict[Path, int] = {}  # the last point each client said it finished

    def spec(self, k: int, cid: int, host, dests: tuple) -> ClientSpec:
        """Client cid's inputs for point k: the point's settings, and its own
        seed (the k-th point of a series draws from seeds of its own, the same
        for every system: harness/run.py, Series). Its id on the wire is cid
        in the low 16 bits (the servers keep its exactly-once state in slot
        cid) and the point's nonce above, so that no request of an earlier
        point's or run's client passes for one of its own."""
        c = self.points[k][0]
        seed = c.seed * 1000 + cid + SERIES_SEED_STRIDE * k
        load = LoadSpec(data=c.data, seed=seed, requests=c.requests, servers=len(dests), cc=c.cc,
                        mix=c.kv_mix, value_size=c.value_size, key_dist=c.key_dist, lock_protocol=c.lock_protocol)
        return ClientSpec(client_id=self.nonces[k] << 16 | cid, host=host.name, address=host.address, dests=dests,
                          workload=c.workload, load=load, concurrency=c.concurrency, warmup_s=c.warmup_s,
                          duration_s=c.duration_s, timeout_ms=c.timeout_ms, max_retries=c.max_retries,
                          rto_min_ms=c.rto_min_ms, server_window=c.server_window, client_gso=c.client_gso,
                          rate=c.rate)

    def start(self) -> None:
        for _, out in self.points:
            (out / "clients").mkdir(parents=True, exist_ok=True)
        (self.where / "clients").mkdir(parents=True, exist_ok=True)
        (self.where / "logs").mkdir(parents=True, exist_ok=True)
        cid = 0
        busy_s = sum(c.warmup_s + c.duration_s for c, _ in self.points)
        total = len(self.inv.clients) * self.points[0][0].clients_per_host
        for host in self.inv.clients:
            dests = tuple((s.address, self.inv.port) for s in self.inv.servers)
            for _ in range(self.points[0][0].clients_per_host):
                cid += 1
                specs, plans, results = [], [], []
                for k, (_, out) in enumerate(self.points):
                    spec = self.spec(k, cid, host, dests)
                    spec_path = out / "clients" / f"client-{cid}.spec.json"
                    spec_path.write_text(spec.to_json())
                    specs.append(spec_path)
                    plans.append(asdict(spec))
                    results.append(out / "clients" / f"client-{cid}.json")
                    self.results[k].append(results[-1])
                # (not client-N.json: that is a result)
                plan = self.where / "clients" / f"series-client-{cid}.json"
                plan.write_text(json.dumps({
                    "points": plans, "results": [str(r) for r in results],
                    "barrier": {"n": total, "index": cid - 1}, "timeout_s": self.BARRIER_TIMEOUT_S}, indent=1))
                cmd = in_netns(host.netns, ["taskset", "-c", ",".join(map(str, host.cpus)), sys.executable,
                                            "-m", "harness.loadgen", "--series", str(plan)])
                proc = ProcSpec(host.name, f"client {cid} on {host.name}", cmd,
                                self.where / "logs" / f"client-{cid}.log",
                                host_pidfile(self.deployer.pdir, host, f"client-{cid}"),
                                rc_file=self.where / "clients" / f"client-{cid}.rc", grace=2.0,
                                timeout=120 + 3 * busy_s + self.BARRIER_TIMEOUT_S * (len(self.points) - 1),
                                inputs=(plan, *specs), collect=tuple(results))
                for stale in (proc.pidfile, proc.rc_file, *results):
                    stale.unlink(missing_ok=True)
                self.procs.append(proc)
        self.play = self.deployer.run_clients(self.procs)

    def _all_exited(self) -> bool:
        """Every client process has come and gone (local hosts: pid files)."""
        return self.inv.local and all(p.pidfile.exists() and p.pid() is None for p in self.procs)

    def _lines(self, proc: ProcSpec) -> list[dict]:
        """A client's new progress lines (a cluster's through its HostWatch)."""
        if self.watch:
            return self.watch.progress(proc.log)
        lines, self.offsets[proc.log] = new_progress(proc.log, self.offsets.get(proc.log, 0))
        return lines

    def wait(self, k: int, system, show_progress: bool, when_done=None) -> None:
        """Until every client has finished point k, with the servers checked
        alive and a progress bar fed from the clients' logs; `when_done` is
        called as soon as they are seen to be finished (the links' drop
        counters' second sample). A client that ended before (it failed)
        raises HarnessError with its log's tail."""
        cfg = self.points[k][0]
        total = cfg.warmup_s + cfg.duration_s
        bar = None
        if show_progress:
            from tqdm import tqdm
            bar = tqdm(total=round(total, 1), unit="s", leave=False, file=sys.stderr,
                       ncols=min(120, shutil.get_terminal_size((100, 24)).columns),
                       bar_format="{desc} {bar} {n:.1f}/{total:.1f}s")
        ok: dict[Path, int] = {}
        try:
            while True:
                # sampled before the logs are read: a client's last lines
                # are read after it is seen gone
                running = not self.play.done()
                exited = self._all_exited()
                for proc in self.procs:
                    for p in self._lines(proc):
                        if p.get("phase") == "done":
                            self.done[proc.log] = p.get("point", 0)
                        elif bar is not None and p.get("point", 0) == k:
                            ok[proc.log] = p["ok"]
                            bar.set_description(f"{cfg.system} c={cfg.concurrency} {p['phase']}: "
                                                f"{sum(ok.values())} ok")
                            bar.n = min(total, p["elapsed_s"])
                            bar.refresh()
                if all(self.done.get(p.log, -1) >= k for p in self.procs):
                    break
                if not running or exited:
                    if not running:
                        self.play.wait()  # a failed client fails the play: raised here
                    self.fail(k)
                system.check_alive()
                time.sleep(0.02)
        finally:
            if bar is not None:
                bar.close()
        if when_done:
            when_done()

    def fail(self, k: int) -> None:
        """A client ended before it finished point k: the error, from its exit code and log."""
        for proc in self.procs:
            if self.done.get(proc.log, -1) < k and proc.pid() is None:
                raise HarnessError(f"{proc.name} failed with code {_exit_code(proc)} (log {proc.log}): {proc.tail()}")
        raise HarnessError(f"the clients ended before they finished point {k + 1} (logs in {self.where / 'logs'})")

    def finish(self) -> None:
        """Waits until the clients have exited and their outputs are back
        (their playbook run's end); an error if one failed."""
        self.play.wait()
        for proc in self.procs:
            rc = _exit_code(proc)
            if rc != 0:
                raise HarnessError(f"{proc.name} failed with code {rc} (log {proc.log}): {proc.tail()}")
        self.finished = True

    def result(self, k: int) -> list[dict]:
        """Every client's result of point k."""
        out = []
        for proc, path in zip(self.procs, self.results[k]):
            if not path.exists():
                raise HarnessError(f"{proc.name} wrote no result for point {k + 1} (log {proc.log}): {proc.tail()}")
            out.append(json.loads(path.read_text()))
        return out

    def stop(self) -> None:
        """Stops clients still running (an aborted run), through the playbook."""
        if self.play is not None and not self.play.done():
            self.play.cancel()
        if self.procs and not self.finished:
            self.finished = True  # once
            self.deployer.stop_clients(self.procs)


def _exit_code(proc: ProcSpec) -> int | None:
    """A client's exit code, from its rc file (None: not written)."""
    try:
        return int(proc.rc_file.read_text().strip())
    except (OSError, ValueError):
        return None
