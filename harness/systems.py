"""Control plane of the three systems under test: one class each, saying how
its server process is started on a server host; starting, readiness,
stopping and counters are shared. Used as context managers, so servers are
stopped (and XDP detached) also on errors and Ctrl-C."""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from . import HarnessError, snapshot
from .config import RunConfig
from .inventory import Host, Inventory
from .procs import Proc
from .schema import Schema
from .sh import in_netns

READY_TIMEOUT_S = 90.0  # bcc compiles the data plane at start-up
CACHE_SLOTS = 4         # DINT_CACHE_SLOTS (bpf/dint_cache.h)


def _cpus(host: Host) -> str:
    return ",".join(map(str, host.cpus))


class System:
    """The servers of one system on every server host. `data` is a snapshot
    loaded into every server before it answers (the same file for all three
    systems); on stop each server writes a dump of its store and its log
    into logdir, read back with dump() and log()."""
    name = ""
    polls = False  # whether its servers burn their cores polling

    def __init__(self, inv: Inventory, cfg: RunConfig, logdir: Path, schema: Schema | None = None,
                 data: Path | None = None):
        if not inv.local:
            raise HarnessError("cluster inventories are deployed through the Ansible playbooks, "
                               "which this version does not have yet; use a local inventory")
        self.inv, self.cfg, self.logdir = inv, cfg, logdir
        self.schema = schema or Schema()
        self.data = data
        self.procs: list[Proc] = []
        self.stats: dict[str, dict | None] = {}

    def command(self, host: Host) -> list[str]:
        raise NotImplementedError

    def build(self) -> None:
        """Makes what the servers run for this schema."""

    def files(self, host: Host) -> dict[str, Path]:
        return {"dump": self.logdir / f"store-{host.name}.snap", "log": self.logdir / f"log-{host.name}.dlog"}

    def store_args(self, host: Host) -> list[str]:
        f = self.files(host)
        return ["--capacity", str(self.cfg.capacity), *(["--load", str(self.data)] if self.data else []),
                "--dump", str(f["dump"]), "--log", str(f["log"])]

    def dump(self, host: Host) -> list:
        """The store of a stopped server: [snapshot.Record]."""
        return snapshot.read_snapshot(self.files(host)["dump"])[1]

    def log(self, host: Host) -> list:
        return snapshot.read_log(self.files(host)["log"])[1]

    def launch(self, host: Host) -> list[str]:
        """The full command line on the host: in its namespace, on its cores."""
        return in_netns(host.netns, ["taskset", "-c", _cpus(host), *self.command(host)])

    def describe(self) -> dict:
        return {"system": self.name, "commands": {h.name: self.launch(h) for h in self.inv.servers}}

    def start(self) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.build()
        for host in self.inv.servers:
            proc = Proc(f"{self.name} server on {host.name}", self.launch(host),
                        self.logdir / f"server-{host.name}.log")
            self.procs.append(proc.start())
        deadline = time.monotonic() + READY_TIMEOUT_S
        for proc in self.procs:
            proc.wait_ready(deadline)

    def stop(self) -> dict[str, dict | None]:
        for host, proc in zip(self.inv.servers, self.procs):
            proc.stop()
            self.stats[host.name] = proc.final_stats()
        self.procs = []
        return self.stats

    def check_alive(self) -> None:
        for proc in self.procs:
            if not proc.running():
                raise HarnessError(f"{proc.name} died during the run (log {proc.log}): {proc.tail()}")

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

    def build(self) -> None:
        self.schema.ensure_built()

    def buckets(self) -> int:
        """Cache buckets (of CACHE_SLOTS slots): one per record, or slots for
        cfg.cache_fraction of the records. The records are those loaded, or
        the keys the workload may create if more (a log server starts
        empty)."""
        n = snapshot.count_records(self.data) if self.data else 0
        if self.cfg.workload != "echo":
            n = max(n, self.cfg.keys)
        if self.cfg.cache_fraction:
            return max(1, math.ceil(self.cfg.cache_fraction * n / CACHE_SLOTS))
        return max(64, n)

    def command(self, host: Host) -> list[str]:
        if not hasattr(self, "_buckets"):
            self._buckets = self.buckets()
        return [sys.executable, "-m", "harness.dintd", "--ifaces", ",".join(i.name for i in host.interfaces),
                "--slowpath", str(self.schema.build_dir / "dint_slowpath"),
                "--port", str(self.inv.port), "--cpus", _cpus(host), "--schema", str(self.schema),
                "--buckets", str(self._buckets), *([] if self.cfg.cache_bloom else ["--no-bloom"]),
                *(["--write-through"] if self.cfg.cache_write_through else []), *self.store_args(host)]

    def launch(self, host: Host) -> list[str]:
        # Unpinned while bcc compiles (it is slow on a busy core); dintd pins
        # itself to the host's cores once the program is attached.
        return in_netns(host.netns, self.command(host))


class KernelSystem(System):
    """UDP sockets: SO_REUSEPORT threads with recvmmsg/sendmmsg batches."""
    name = "kernel"

    def build(self) -> None:
        self.schema.ensure_built()

    def command(self, host: Host) -> list[str]:
        return [str(self.schema.build_dir / "kernel_server"), "--port", str(self.inv.port),
                "--threads", str(self.cfg.kernel_threads), "--cpus", _cpus(host), *self.store_args(host)]


class BypassSystem(System):
    """DPDK poll-mode server: the AF_XDP poll-mode driver on each of the
    host's veths locally (a real port on a cluster), one polling lcore."""
    name = "bypass"
    polls = True

    def build(self) -> None:
        self.schema.ensure_built()

    def command(self, host: Host) -> list[str]:
        eal = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", f"dint-{host.netns or host.name}",
               "-l", str(host.cpus[0]), "--log-level=notice"]
        for i, iface in enumerate(host.interfaces):
            eal += ["--vdev", f"net_af_xdp{i},iface={iface.name}"]
        return [str(self.schema.build_dir / "bypass_server"), *eal, "--",
                "--idle-poll-us", str(self.cfg.bypass_idle_poll_us),
                "--idle-sleep-max-us", str(self.cfg.bypass_idle_sleep_max_us), *self.store_args(host)]


SYSTEM_CLASSES: dict[str, type[System]] = {c.name: c for c in (DintSystem, KernelSystem, BypassSystem)}


def make_system(inv: Inventory, cfg: RunConfig, logdir: Path, schema: Schema | None = None,
                data: Path | None = None) -> System:
    return SYSTEM_CLASSES[cfg.system](inv, cfg, logdir, schema, data)
