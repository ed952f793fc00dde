"""Control plane of the three systems under test: one class each, saying how
its server process is started on a server host; starting, readiness,
stopping and counters are shared, and go through the Ansible playbooks
(harness/deploy.py, deploy/servers.yml) for every inventory, the local
testbed included. Used as context managers, so servers are stopped (and
XDP detached) also on errors and Ctrl-C."""
from __future__ import annotations

import sys
from pathlib import Path

import workloads

from . import HarnessError, snapshot
from .config import RunConfig
from .deploy import Deployer, ProcSpec, ResidueError, dpdk_prefix, host_pidfile
from .dintd import cache_buckets
from .inventory import Host, Inventory, slowpath_cpus
from .schema import Schema
from .sh import in_netns, run

READY_TIMEOUT_S = 90.0  # bcc compiles the data plane at start-up
# SIGTERM starts a clean stop: dint writes its cache back to the slow path
# and its log, every server its store dump (a 30-second TPC-C run leaves a
# million rows and as many log records). SIGKILL only after this long.
STOP_GRACE_S = 120.0
# Every server prints a stats line this often (and on SIGUSR1, and at stop),
# with what it has cost so far: harness/cost.py takes the server cost from
# the lines around the clients' window.
STATS_INTERVAL_MS = 100
# What this process has already had built, per inventory and schema: the
# start playbook builds only the first time (a reproduce builds once).
_BUILT: set[tuple[str, str]] = set()


def _cpus(host: Host) -> str:
    return ",".join(map(str, host.cpus))


class ServerDied(HarnessError):
    """A server process of the run exited while the clients ran."""

    def __init__(self, msg: str, name: str):
        super().__init__(msg)
        self.name = name


def full_checksums_on_links(inv: Inventory) -> None:
    """On the local testbed, makes the client ends of the links put whole
    UDP checksums on the wire (transmit checksum offload off, so the
    client's kernel computes them). With it on, a veth hands its peer a
    checksum left for a NIC to finish, which the kernel's stack takes on
    trust but XDP and AF_XDP read as it is: dint and bypass check UDP
    checksums as the kernel does for a frame off a wire, where a NIC has
    always finished them. The same for every system, so clients cost the
    same."""
    for srv in inv.servers:
        for iface in srv.interfaces:
            cli = inv.host(iface.peer)
            run(in_netns(cli.netns, ["ethtool", "-K", cli.interface_to(srv.name).name, "tx", "off"]))


class System:
    """The servers of one system on every server host. `data` is a snapshot
    loaded into every server before it answers (the same file for all three
    systems); on stop each server writes a dump of its store and its log
    into logdir, read back with dump() and log()."""
    name = ""
    polls = False  # whether its servers burn their cores polling

    def __init__(self, inv: Inventory, cfg: RunConfig, logdir: Path, schema: Schema | None = None,
                 data: Path | None = None, deployer: Deployer | None = None):
        self.inv, self.cfg, self.logdir = inv, cfg, Path(logdir).resolve()
        self.schema = schema or Schema()
        self.data = Path(data).resolve() if data else None
        # A run shares its deployer (event logs in <out>/ansible); alone, a
        # system keeps them beside its log directory.
        self.deployer = deployer or Deployer(inv, self.logdir.parent / "ansible")
        self.procs: list[ProcSpec] = []
        self.stats: dict[str, dict | None] = {}
        # every stats line of each server's log, read at stop (the cost's
        # samples: harness/cost.py)
        self.stats_lines: dict[str, list[dict]] = {}
        # what the stop found left on each server host and removed (a
        # server that died keeps its XDP program attached)
        self.removed: dict[str, list[str]] = {}
        self.watch = None  # a cluster run's HostWatch (harness/watch.py)
        # seconds of load the servers serve before they stop: one run's
        # (None), or a series' of points (harness/run.py, Series)
        self.span_s: float | None = None
        # checkpoints the servers take (in band, between two points of a
        # series): each writes files of its own (files(host, epoch))
        self.epochs = 0
        self.stopped: list[ProcSpec] = []  # the servers' specs once stopped (their logs)

    def command(self, host: Host) -> list[str]:
        raise NotImplementedError

    def build_command(self) -> list[str]:
        """The command that makes what the servers run for this schema
        (run on each server host by the start playbook; make skips what is
        current)."""
        if (self.inv.source, str(self.schema)) in _BUILT:
            return []
        return self.schema.make_command()

    def files(self, host: Host, epoch: int = 0) -> dict[str, Path]:
        """A server's dump and log at stop, or (epoch k >= 1) those it wrote
        at the checkpoint after point k of a series: the same paths with
        `.k` after them (userspace/server_common.h)."""
        suffix = f".{epoch}" if epoch else ""
        return {"dump": self.logdir / f"store-{host.name}.snap{suffix}",
                "log": self.logdir / f"log-{host.name}.dlog{suffix}"}

    def outputs(self, host: Host) -> tuple[Path, ...]:
        """Every file a server writes: at stop and at each checkpoint."""
        return tuple(f for e in range(self.epochs + 1) for f in self.files(host, e).values())

    @property
    def clients(self) -> int:
        """Client slots of the servers' exactly-once state: one per client
        process of the run (their ids' low bits number them 1..N), and slot
        0 for requests from anything else."""
        return self.cfg.clients_per_host * len(self.inv.clients) + 1

    def sample_args(self, host: Host) -> list[str]:
        """How often the server prints its stats line, and (kernel and
        bypass) the interfaces whose threaded-NAPI threads it counts in its
        cost (userspace/server_common.h)."""
        return ["--stats-interval-ms", str(STATS_INTERVAL_MS),
                "--napi-ifaces", ",".join(i.name for i in host.interfaces)]

    def store_args(self, host: Host) -> list[str]:
        f = self.files(host)
        return ["--capacity", str(self.capacity), "--clients", str(self.clients),
                *(["--load", str(self.data)] if self.data else []), "--dump", str(f["dump"]), "--log", str(f["log"])]

    @property
    def records(self) -> int:
        """Records loaded at start."""
        if not hasattr(self, "_records"):
            self._records = snapshot.count_records(self.data) if self.data else 0
        return self._records

    def growth(self) -> int:
        """Rows a run may insert on each server, at most: the workload's
        bound per client process and second (Workload.rows_per_s, e.g. TPC-C's
        orders, lines and history) over the whole run and its drain."""
        per_s = workloads.get(self.cfg.workload).rows_per_s
        clients = self.cfg.clients_per_host * len(self.inv.clients)
        span = self.span_s if self.span_s is not None else self.cfg.warmup_s + self.cfg.duration_s + 5
        return int(per_s * clients * span)

    @property
    def capacity(self) -> int:
        """Records each server's store holds: the configured capacity, or
        twice the records loaded plus the rows the run may insert."""
        if self.cfg.store_capacity:
            return self.cfg.store_capacity
        return max(self.cfg.capacity, 2 * self.records + self.growth())

    def dump(self, host: Host) -> list:
        """The store of a stopped server: [snapshot.Record]."""
        return snapshot.read_snapshot(self.files(host)["dump"])[1]

    def log(self, host: Host) -> list:
        return snapshot.read_log(self.files(host)["log"])[1]

    def launch(self, host: Host) -> list[str]:
        """The full command line on the host: in its namespace, on its cores."""
        return in_netns(host.netns, ["taskset", "-c", _cpus(host), *self.command(host)])

    def describe(self) -> dict:
        checked = getattr(self.deployer, "checked", None)
        return {"system": self.name, "commands": {h.name: self.launch(h) for h in self.inv.servers},
                "hosts_checked_at_start": checked,
                **({} if checked is not False else {
                    "hosts_not_checked_because": "the servers' stop before this start, in this reproduce, "
                                                 "left nothing and stopped every server on SIGTERM "
                                                 "(harness/deploy.py, own_stops_trusted)"})}

    def proc_specs(self) -> list[ProcSpec]:
        """Each server as the playbooks take it: its command line, log, pid
        file, ready line, and what a cluster host receives and sends back."""
        specs = []
        for host in self.inv.servers:
            f = self.files(host)
            specs.append(ProcSpec(
                host.name, f"{self.name} server on {host.name}", self.launch(host),
                self.logdir / f"server-{host.name}.log", host_pidfile(self.deployer.pdir, host, "server"),
                ready="ready", timeout=READY_TIMEOUT_S, grace=STOP_GRACE_S,
                inputs=(self.data,) if self.data else (), collect=self.outputs(host)))
        return specs

    def pids(self) -> list[int]:
        """The live server processes' pids (local hosts: from their pid files)."""
        if not self.inv.local:
            return []
        return [p for p in (s.pid() for s in self.procs) if p]

    def start(self) -> None:
        """Through deploy/servers.yml: check that no host has anything the
        harness did not start (a process, an XDP or TC program, a DPDK
        runtime in use: refused, naming it), build, start every server,
        wait for each one's ready line."""
        self.logdir.mkdir(parents=True, exist_ok=True)
        if self.inv.local:
            full_checksums_on_links(self.inv)
        self.procs = self.proc_specs()
        for spec in self.procs:
            spec.pidfile.unlink(missing_ok=True)
        for host in self.inv.servers:  # an earlier start's: never read as this one's
            for f in self.outputs(host):
                f.unlink(missing_ok=True)
        try:
            self.deployer.start_servers(self.procs, build=self.build_command(), check=True)
        except ResidueError:
            self.procs = []  # nothing started, and what was found is not this run's to remove
            raise
        _BUILT.add((self.inv.source, str(self.schema)))

    def stop(self) -> dict[str, dict | None]:
        """Through deploy/servers.yml: SIGTERM, SIGKILL after a grace
        period, what a dead server left removed, outputs fetched; the final
        counters from each log."""
        if not self.procs:
            return self.stats
        try:
            self.removed = self.deployer.stop_servers(self.procs, clean=True)
            for host, what in self.removed.items():
                print(f"warning: {host}: removed what a server that did not stop left: {'; '.join(what)}",
                      file=sys.stderr)
        finally:
            for host, spec in zip(self.inv.servers, self.procs):
                lines = spec.stats_lines()
                self.stats[host.name] = lines[-1] if lines else None
                self.stats_lines[host.name] = [line for line in lines if line]
            self.stopped, self.procs = self.procs, []
        return self.stats

    def live_stats(self, timeout_s: float = 3.0) -> dict[str, dict | None]:
        """The counters of every running server so far, without stopping it
        (each prints one more stats line on SIGUSR1; dint's are its XDP
        program's, the slow path's come at stop)."""
        self.deployer.server_stats(self.procs)
        out: dict[str, dict | None] = {}
        for host, spec in zip(self.inv.servers, self.procs):
            lines = spec.stats_lines()
            if not lines:
                raise HarnessError(f"{spec.name} did not report its counters (log {spec.log}): {spec.tail()}")
            out[host.name] = lines[-1]
        return out

    def checkpoint(self, epoch: int) -> dict[str, dict]:
        """The checkpoint after point `epoch` of a series, as each server's
        log tells it (read once the servers have stopped): every server
        wrote its dump and log (files(host, epoch)) while it served on, with
        no request in flight (the clients took it in band: processes.Clients).
        Returns {host: {"checkpoint": its checkpoint line, "stats": the
        stats line printed with it, "lines": its stats lines until then}},
        the checkpoint line {"ok": false, "error": ...} for one that did
        not say it wrote both."""
        out = {}
        for host, spec in zip(self.inv.servers, self.procs or self.stopped):
            stats: list[dict] = []
            for kind, line in spec.tagged_lines():
                if kind == "checkpoint" and isinstance(line, dict) and line.get("epoch") == epoch:
                    ok = line.get("ok") is True
                    out[host.name] = {"checkpoint": line if ok else {
                        "ok": False, "error": line.get("error", "it said its files were not written")},
                        "stats": stats[-1] if stats else None, "lines": stats}
                    break
                if kind == "stats" and line is not None:
                    stats.append(line)
            else:
                out[host.name] = {"checkpoint": {"ok": False, "error": f"no checkpoint {epoch} in {spec.log}"},
                                  "stats": None, "lines": stats}
        return out

    def check_alive(self) -> None:
        """Raises ServerDied if a server died: on a local testbed from their
        pid files, on a cluster from what the run's HostWatch saw on the
        hosts (harness/watch.py)."""
        if not self.inv.local:
            dead = self.watch.check() if self.watch else None
            if dead:
                raise ServerDied(f"{dead['name']} died during the run (log {dead['log']} on host {dead['host']}): "
                                 f"{dead['tail']}", dead["name"])
            return
        for spec in self.procs:
            if spec.pid() is None:
                raise ServerDied(f"{spec.name} died during the run (log {spec.log}): {spec.tail()}", spec.name)

    def __enter__(self) -> "System":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class DintSystem(System):
    """XDP program loaded with bcc by harness.dintd on each server host,
    with its user-space slow path (bpf/dint_slowpath.c)."""
    name = "dint"

    def buckets(self) -> int:
        """Cache buckets: the budget of harness.dintd.cache_buckets for
        cfg.cache_fraction and the records. The records are those loaded
        and those the run may insert, or the keys the workload may create
        if more (a log server starts empty)."""
        n = self.records + self.growth()
        if workloads.get(self.cfg.workload).keyed:
            n = max(n, self.cfg.keys)
        return cache_buckets(n, self.cfg.cache_fraction)

    def command(self, host: Host) -> list[str]:
        if not hasattr(self, "_buckets"):
            self._buckets = self.buckets()
        return [sys.executable, "-m", "harness.dintd", "--ifaces", ",".join(i.name for i in host.interfaces),
                "--slowpath", str(self.schema.build_dir / "dint_slowpath"),
                "--port", str(self.inv.port), "--schema", str(self.schema),
                # where dintd pins itself and its slow path once the program is attached
                "--cpus", ",".join(map(str, slowpath_cpus(self.inv, host, self.cfg.slowpath_cpus))),
                "--buckets", str(self._buckets), *([] if self.cfg.cache_bloom else ["--no-bloom"]),
                *(["--write-through"] if self.cfg.cache_write_through else []),
                "--stats-interval-ms", str(STATS_INTERVAL_MS), *self.store_args(host)]

    def launch(self, host: Host) -> list[str]:
        # Unpinned while bcc compiles (it is slow on a busy core); dintd pins
        # itself to the host's cores once the program is attached.
        return in_netns(host.netns, self.command(host))


class KernelSystem(System):
    """UDP sockets: SO_REUSEPORT threads with recvmmsg/sendmmsg batches."""
    name = "kernel"

    def command(self, host: Host) -> list[str]:
        return [str(self.schema.build_dir / "kernel_server"), "--port", str(self.inv.port),
                "--threads", str(self.cfg.kernel_threads), "--cpus", _cpus(host), *self.sample_args(host),
                *self.store_args(host)]


class BypassSystem(System):
    """DPDK poll-mode server: the AF_XDP poll-mode driver on each of the
    host's veths locally (a real port on a cluster), one polling lcore. It
    has no kernel to tell it its addresses: each port is given the host's
    (--addr, in port order)."""
    name = "bypass"
    polls = True

    def command(self, host: Host) -> list[str]:
        prefix = ["--file-prefix", dpdk_prefix(host), "-l", str(host.cpus[0]), "--log-level=notice"]
        if host.dpdk_port:
            # a cluster host: its real port (PCI address), hugepages
            eal = ["-a", host.dpdk_port, *prefix]
            nports = 1
        else:
            eal = ["--no-huge", "-m", "512", "--no-pci", *prefix]
            for i, iface in enumerate(host.interfaces):
                eal += ["--vdev", f"net_af_xdp{i},iface={iface.name}"]
            nports = len(host.interfaces)
        return [str(self.schema.build_dir / "bypass_server"), *eal, "--",
                *(arg for _ in range(nports) for arg in ("--addr", host.address)),
                "--idle-poll-us", str(self.cfg.bypass_idle_poll_us),
                "--idle-sleep-max-us", str(self.cfg.bypass_idle_sleep_max_us), *self.sample_args(host),
                *self.store_args(host)]


SYSTEM_CLASSES: dict[str, type[System]] = {c.name: c for c in (DintSystem, KernelSystem, BypassSystem)}


def make_system(inv: Inventory, cfg: RunConfig, logdir: Path, schema: Schema | None = None,
                data: Path | None = None, deployer: Deployer | None = None) -> System:
    return SYSTEM_CLASSES[cfg.system](inv, cfg, logdir, schema, data, deployer)
