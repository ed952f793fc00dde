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
    """The load-generating processes of a run, one or more per client host,
    run through deploy/clients.yml: started together, waited for, their
    results and logs collected. Their progress lines come from their logs."""

    def __init__(self, inv: Inventory, cfg: RunConfig, out: Path, deployer: Deployer, series_index: int = 0,
                 checkpoint: list[ProcSpec] = ()):
        self.inv, self.cfg, self.out, self.deployer = inv, cfg, Path(out).resolve(), deployer
        # a point of a series: its index, and the servers its clients'
        # playbook run checkpoints once they have finished
        self.series_index, self.checkpoint = series_index, list(checkpoint)
        self.procs: list[tuple[ProcSpec, Path]] = []
        self.play = None
        self.finished = False
        self.watch = None  # a cluster run's HostWatch (harness/watch.py)
        # client ids stay below 2^31: the high bit marks readiness pings
        self.nonce = secrets.randbelow(NONCES) + 1

    def spec(self, cid: int, host, dests: tuple) -> ClientSpec:
        """Client cid's inputs: the run's settings, and its own seed (the
        k-th point of a series served by the same servers draws from seeds
        of its own, the same for every system: harness/run.py, Series). Its
        id on the wire is cid in the low 16 bits (the servers keep its
        exactly-once state in slot cid) and this run's nonce above, so that
        no request of an earlier run's client passes for one of its own."""
        c = self.cfg
        seed = c.seed * 1000 + cid + SERIES_SEED_STRIDE * self.series_index
        load = LoadSpec(data=c.data, seed=seed, requests=c.requests, servers=len(dests), cc=c.cc,
                        mix=c.kv_mix, value_size=c.value_size, key_dist=c.key_dist, lock_protocol=c.lock_protocol)
        return ClientSpec(client_id=self.nonce << 16 | cid, host=host.name, address=host.address, dests=dests, workload=c.workload,
                          load=load, concurrency=c.concurrency, warmup_s=c.warmup_s, duration_s=c.duration_s,
                          timeout_ms=c.timeout_ms, max_retries=c.max_retries, rto_min_ms=c.rto_min_ms, server_window=c.server_window,
                          client_gso=c.client_gso, rate=c.rate)

    def start(self) -> None:
        cdir = self.out / "clients"
        cdir.mkdir(exist_ok=True)
        cid = 0
        for host in self.inv.clients:
            dests = tuple((s.address, self.inv.port) for s in self.inv.servers)
            for _ in range(self.cfg.clients_per_host):
                cid += 1
                spec = self.spec(cid, host, dests)
                spec_path = cdir / f"client-{cid}.spec.json"
                spec_path.write_text(spec.to_json())
                result = cdir / f"client-{cid}.json"
                cmd = in_netns(host.netns, ["taskset", "-c", ",".join(map(str, host.cpus)), sys.executable,
                                            "-m", "harness.loadgen", str(spec_path), str(result)])
                proc = ProcSpec(host.name, f"client {cid} on {host.name}", cmd,
                                self.out / "logs" / f"client-{cid}.log",
                                host_pidfile(self.deployer.pdir, host, f"client-{cid}"),
                                rc_file=cdir / f"client-{cid}.rc", grace=2.0,
                                timeout=120 + 3 * (self.cfg.warmup_s + self.cfg.duration_s),
                                inputs=(spec_path,), collect=(result,))
                for stale in (proc.pidfile, proc.rc_file, result):
                    stale.unlink(missing_ok=True)
                self.procs.append((proc, result))
        (self.out / "logs").mkdir(exist_ok=True)
        self.play = self.deployer.run_clients([p for p, _ in self.procs], checkpoint=self.checkpoint)

    def _all_exited(self) -> bool:
        """Every client process has come and gone (local hosts: pid files)."""
        return self.inv.local and all(p.pidfile.exists() and p.pid() is None for p, _ in self.procs)

    def wait(self, system, show_progress: bool, when_done=None) -> list[dict]:
        """Until every client has finished, with the servers checked alive
        and a progress bar fed from the clients' logs; `when_done` is called
        as soon as the clients are seen to be finished (the links' drop
        counters' second sample)."""
        total = self.cfg.warmup_s + self.cfg.duration_s
        bar = None
        if show_progress:
            from tqdm import tqdm
            bar = tqdm(total=round(total, 1), unit="s", leave=False, file=sys.stderr,
                       ncols=min(120, shutil.get_terminal_size((100, 24)).columns),
                       bar_format="{desc} {bar} {n:.1f}/{total:.1f}s")
        ok: dict[int, int] = {}
        offsets = [0] * len(self.procs)
        done_called = False
        try:
            while True:
                running = not self.play.done()
                if bar is not None:
                    for i, (proc, _) in enumerate(self.procs):
                        # a cluster's client logs are the hosts': their lines
                        # come through the run's HostWatch
                        lines = self.watch.progress(proc.log) if self.watch else _progress(proc.log, offsets, i)
                        for p in lines:
                            ok[i] = p["ok"]
                            bar.set_description(f"{self.cfg.system} c={self.cfg.concurrency} {p['phase']}: "
                                                f"{sum(ok.values())} ok")
                            bar.n = min(total, p["elapsed_s"])
                            bar.refresh()
                if not done_called and (not running or self._all_exited()):
                    done_called = True
                    if when_done:
                        when_done()
                if not running:
                    break
                system.check_alive()
                time.sleep(0.05)
        finally:
            if bar is not None:
                bar.close()
        self.play.wait()
        results = []
        for proc, path in self.procs:
            try:
                rc = int(proc.rc_file.read_text().strip())
            except (OSError, ValueError):
                rc = None
            if rc != 0 or not path.exists():
                raise HarnessError(f"{proc.name} failed with code {rc} (log {proc.log}): {proc.tail()}")
            results.append(json.loads(path.read_text()))
        self.finished = True
        return results

    def stop(self) -> None:
        """Stops clients still running (an aborted run), through the playbook."""
        if self.play is not None and not self.play.done():
            self.play.cancel()
        if self.procs and not self.finished:
            self.finished = True  # once
            self.deployer.stop_clients([p for p, _ in self.procs])


def _progress(log: Path, offsets: list[int], i: int) -> list[dict]:
    """New `progress {json}` lines of a client's log since the last look."""
    lines, offsets[i] = new_progress(log, offsets[i])
    return lines
