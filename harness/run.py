"""One run, orchestrated: the testbed up, the system's servers started and
ready, the NAPI placement applied, the client processes (and colocation
neighbours, harness/processes.py) driving load from every client host,
then everything stopped and the results written to the run's directory:
summary.json (harness/summary.py), config.json, env.json, inventory.yml,
the merged latency histograms, each client's result and every server's and
client's log."""
from __future__ import annotations

import contextlib
import copy
import json
import multiprocessing
import os
import shutil
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

import workloads

from . import HarnessError, consistency, cost, envinfo, faults, inventory, limits, metrics, results, snapshot
from ._netloop import LATE_NS
from .config import RunConfig
from .deploy import Deployer, distrust_own_stops
from .inventory import Inventory
from .processes import Clients, Neighbours
from .results import read_summary
from .schema import Schema
from .summary import committed_by_type, one_line, placement, summarize
from .systems import ServerDied, make_system
from .testbed import Testbed
from .watch import HostWatch

def prepare_out(out: Path) -> Path:
    out = Path(out)
    summary = read_summary(out)
    if summary is not None:
        what = "a failed run" if summary.get("status") == "failed" else "a run"
        raise HarnessError(f"{out} already holds {what} (summary.json); choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def check_can_run(inv: Inventory, out: Path) -> None:
    """What would make a run fail before it measures anything, checked
    before its directory is made: root for the local testbed, a simulated
    cluster that is up, and a results directory this user can write."""
    if inv.local and os.geteuid() != 0:
        raise HarnessError("the local testbed needs root (network namespaces, BPF, XDP): run as root")
    if inv.simulated and not Testbed(inv).is_up():
        raise HarnessError(f"the simulated cluster of {inv.source} is not up: 'python -m harness testbed up "
                           f"--inventory {inv.source}', then 'python -m harness deploy setup --inventory "
                           f"{inv.source}'")
    parent = Path(out).resolve()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise HarnessError(f"{out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise HarnessError(f"{out}: no permission to write in {parent}")


class Progress:
    """How far a run got, for the summary of a run that failed: the phase it
    was in and the system it had started."""

    def __init__(self):
        self.phase = "preparing"
        self.system = None
        self.t0 = time.monotonic()


def write_failed_summary(out: Path, cfg: RunConfig, exc: BaseException, progress: Progress) -> None:
    """summary.json of a run that did not finish: the error, where it
    happened and what is known (the servers' last counters, what a dead
    server left that the stop removed). Marked "status": "failed"; never
    read as a measurement (harness/results.py)."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    system = progress.system
    failed = {"status": "failed", "error": "interrupted (Ctrl-C)" if interrupted else
              (str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"),
              "phase": progress.phase, "elapsed_s": round(time.monotonic() - progress.t0, 1),
              "system": cfg.system, "workload": cfg.workload, "config": cfg.to_dict(),
              "servers": system.stats if system is not None else {},
              "removed_after_stop": system.removed if system is not None else {}}
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(failed, indent=2, default=str))
    tmp.replace(out / "summary.json")


def prepare_data(cfg: RunConfig, out: Path, cache: Path | None = None) -> tuple[Schema, Path | None]:
    """The workload's schema and its initial data, written once as a
    snapshot that every system loads. With a cache directory (a reproduce
    run's), data made once from the same DataSpec is linked into every
    point that loads the same."""
    d = cfg.data
    wl = workloads.get(cfg.workload).for_data(d)  # kv: its schema for --kv-value-size
    path = out / "initial.snap"
    sized = f"-v{d.value_size}" if d.value_size else ""
    cached = cache / f"{cfg.workload}-k{d.keys}-s{d.scale}-d{d.divisor}-seed{d.seed}{sized}.snap" if cache else None
    if cached and cached.exists():
        os.link(cached, path)
        return wl.schema, path
    records = wl.initial(d)
    if not records:
        return wl.schema, None
    snapshot.write_snapshot(path, wl.schema, records)
    if cached:
        cache.mkdir(parents=True, exist_ok=True)
        os.link(path, cached)
    return wl.schema, path


def execute(cfg: RunConfig, out: Path, show_progress: bool | None = None, testbed: Testbed | None = None,
            data_cache: Path | None = None) -> dict:
    """Runs one configuration; returns the summary (also in out/summary.json).
    Nothing is made for a run that cannot start (a bad configuration or
    inventory, no permission); a run that fails once started keeps its
    directory with a summary.json saying what failed where."""
    outcome = execute_series([(cfg, out)], out, show_progress, testbed, data_cache)[0]
    if isinstance(outcome, BaseException):  # measured, then failed a check: its summary says so
        raise outcome
    return outcome


# What may differ between consecutive points served by one start of the
# servers (Series): the load (how much, which keys the clients draw, and
# the KV store's mix of reads and writes: the data loaded is the same
# whatever the skew or the mix). Everything else (system,
# workload, data, build flags, where the testbed's receive work runs,
# faults, neighbour, durations) is the servers' or the run's, and a point
# that changes it starts servers of its own: nothing runs on the hosts
# between two points but the clients' checkpoint, in band.
SERIES_FIELDS = ("concurrency", "rate", "key_dist", "kv_mix")


def series_span_s(cfgs: list[RunConfig]) -> float | None:
    """How long one start of the servers serves these points (their stores
    grow over all of it: System.growth); None for a point served alone,
    sized as a run."""
    return sum(c.warmup_s + c.duration_s + 5 for c in cfgs) if len(cfgs) > 1 else None


def series_key(cfg: RunConfig) -> str:
    """Equal for configurations one start of the servers may serve in turn.
    A point with injected faults or a colocated neighbour is served alone:
    what those measure (drops, the neighbour's rate) is taken around one
    point's clients."""
    alone = SERIES_FIELDS if (cfg.faults or cfg.neighbour) else ()
    return json.dumps({k: v for k, v in cfg.to_dict().items() if k not in SERIES_FIELDS or k in alone},
                      sort_keys=True)


def execute_series(points: list[tuple[RunConfig, Path]], sdir: Path, show_progress: bool | None = None,
                   testbed: Testbed | None = None, data_cache: Path | None = None,
                   on_point=None) -> list[dict | BaseException]:
    """Runs points (configurations of one series_key, each into its own
    directory) in turn against one start of the servers (Series), whose
    own files go under sdir (the point's directory for a point served
    alone). A point that fails does not stop the others: when it left the
    servers unable to serve on (one died, a checkpoint or a consistency
    check failed), the points after it get servers of their own, in
    sdir.2, ...
    A series of one is `harness run`: it raises its point's error.
    Returns, and hands to on_point(i, outcome, elapsed_s) as each is
    concluded, each point's summary or the exception it failed with, and
    the wall time it took (Series.run)."""
    keys = {series_key(c) for c, _ in points}
    if len(keys) != 1:
        raise HarnessError("the points of a series must differ in " + ", ".join(SERIES_FIELDS) + " only")
    outcomes: list[dict | BaseException] = []
    attempt = 0

    def concluded(outcome, elapsed_s: float) -> None:
        outcomes.append(outcome)
        if on_point:
            on_point(len(outcomes) - 1, outcome, elapsed_s)
    while len(outcomes) < len(points):
        rest = points[len(outcomes):]
        attempt += 1
        # a point served alone is a run: the servers' files in its directory
        where = Path(rest[0][1]) if len(rest) == 1 else Path(sdir) if attempt == 1 else Path(f"{sdir}.{attempt}")
        series = Series(rest, where, show_progress, testbed, data_cache)
        before = len(outcomes)
        try:
            series.run(concluded)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            distrust_own_stops(points[0][0].inventory)  # the next start checks every host
            if len(points) == 1:
                raise
            if len(outcomes) == before:  # nothing concluded (a fault of the harness): the rest fail with it
                for _ in rest:
                    concluded(exc, 0.0)
        finally:
            try:
                series.close()
            except Exception as exc:  # noqa: BLE001 - its points are measured (each checkpoint) already
                if len(points) == 1:
                    raise
                # the next start refuses in one line if a server left anything behind
                print(f"warning: stopping the servers of {where} failed: "
                      f"{exc if isinstance(exc, HarnessError) else f'{type(exc).__name__}: {exc}'}",
                      file=sys.stderr, flush=True)
    return outcomes


class Series:
    """Consecutive points of one system served by one start of its servers
    and by one start of its clients: a sweep over concurrency or offered
    rate measures its windows without a server start and stop (and dint's
    XDP compile), a client start or a playbook run of its own per point.

    Every point runs as a run would (its directory holds what a run's
    does), with its own client seeds (the k-th point of every system's
    series draws the same: processes.Clients). Each client process runs
    the points one after the other (harness/loadgen.py, run_series). Once
    every client has finished a point but the last, the clients have every
    server take a checkpoint together, in band (a CHECKPOINT request from
    each, loadgen.checkpoint_barrier): once all have come, each server
    writes its store dump and log of that moment, with no request in
    flight, to files of that checkpoint while it serves on
    (userspace/barrier.h), and the clients start the next point;
    nothing else runs between two points. The last point's files are those
    the servers write at stop (a run's, for a point served alone). Once the
    servers have stopped (a cluster's files come back then), each point's
    files go into its logs/, and
    - its server counters are the difference between the stats lines
      printed with its checkpoint (or at stop) and with the previous one
      (from the start for the first point); its CPU cost comes from the
      lines around its window, as for a run;
    - its consistency verdict is drawn from its dumps against the initial
      data and what every point of the series so far committed: the state
      carries over, and a violation first seen at a point was caused by it,
      since every earlier point's check passed on the same state.
    The points' summaries are drawn once the servers have stopped (on a
    local testbed, all but the last one's while they stop: Stopping), with
    the points' checks run meanwhile in processes of their own (Checks). A point whose
    check fails, whose checkpoint is not written, or during which a server
    died leaves the servers `broken`: the points after it are measured
    again on servers of their own (execute_series)."""

    def __init__(self, points: list[tuple[RunConfig, Path]], sdir: Path, show_progress: bool | None,
                 testbed: Testbed | None, data_cache: Path | None):
        self.points, self.sdir, self.data_cache = points, Path(sdir), data_cache
        self.show_progress = sys.stderr.isatty() if show_progress is None else show_progress
        self.first = points[0][0]
        self.checkpoints = len(points) > 1
        self.span_s = series_span_s([c for c, _ in points])
        self.inv = inventory.load(self.first.inventory)
        self.testbed = testbed
        self.stack = contextlib.ExitStack()
        self.system = None
        self.schema = None
        self.napi: dict | None = None  # the NAPI placement the points are measured with, as set
        self.broken: str | None = None
        # what the points so far did to the servers' state (the consistency check)
        self.committed: dict[str, dict] = {}
        self.unfinished = 0
        self.wrapped = False
        self.base: dict[str, dict | None] = {}  # each server's stats line at the last checkpoint

    # -- the servers ---------------------------------------------------------
    def start(self, progress: Progress) -> None:
        cfg, inv = self.first, self.inv
        progress.phase = "testbed"
        if self.testbed is None and inv.local:
            self.testbed = self.stack.enter_context(Testbed(inv))
        progress.phase = "initial data"
        self.sdir.mkdir(parents=True, exist_ok=True)
        self.schema, data = prepare_data(cfg, self.sdir, self.data_cache)
        # Every process of the run goes through the playbooks in deploy/,
        # with their event logs in <dir>/ansible (harness/deploy.py).
        system = progress.system = self.system = make_system(inv, cfg, self.sdir / "logs", self.schema, data,
                                                             Deployer(inv, self.sdir / "ansible"))
        system.span_s = self.span_s
        system.epochs = len(self.points) - 1
        progress.phase = "starting the servers"
        self.stack.enter_context(system)
        progress.phase = "servers ready"
        if self.testbed is not None:
            self.stack.callback(self.testbed.reset_napi)  # before the servers stop (again: a no-op)
        mode = cfg.napi  # the same for every point (series_key)
        self.napi = (self.testbed.set_napi(mode) if self.testbed is not None else
                     {"mode": mode, "set": False,
                      "note": "a cluster's interrupt placement is the hosts' own (not set by the harness)"})

    def close(self) -> None:
        """Stops the servers (resets NAPI first), and a testbed of its own."""
        self.stack.close()

    # -- the points ----------------------------------------------------------
    def run(self, concluded) -> None:
        """Measures the points; hands each one's outcome (its summary, or
        the exception it failed with) and the wall time it took to
        concluded(outcome, elapsed_s), in order, up
        to the last one whose servers were still sound (self.broken says
        why the rest were not concluded; their directories go). A point that
        cannot start (a bad configuration) makes nothing; one that failed
        once started keeps a summary.json saying what failed where. Raises
        what made the series fail. A point's wall time runs from the end of
        the one before (the series' start for the first) to the end of its
        checkpoint; the last point's to its conclusion (the summaries of
        all are drawn then)."""
        t0 = time.monotonic()
        inv = self.inv
        for cfg, out in self.points:
            cfg.validate()
            faults.check_inventory(cfg.faults, inv)
            check_can_run(inv, out)
            limits.check_memory(cfg, inv, Path(out), self.span_s)
        made = [not Path(out).exists() for _, out in self.points]
        outs = [prepare_out(out) for _, out in self.points]
        progress = Progress()
        self.partial: list = []  # per point measured: its links' drops
        self.ends: list[float] = []  # when each point's checkpoint was over
        self.clients = None

        def elapsed(i: int) -> float:
            end = self.ends[i] if i < len(self.ends) and i + 1 < len(outs) else time.monotonic()
            return end - (self.ends[i - 1] if i else t0)
        try:
            self.start(progress)
            self.describe()
            self.measure(progress)
        except BaseException as exc:
            failed = min(len(self.partial), len(outs) - 1)
            self.broken = self.broken or f"point {outs[failed].name} failed"
            # the servers stop before the summaries: the failed one's last
            # counters, and the checkpoints' files and lines (a cluster's
            # come back at stop)
            with contextlib.suppress(Exception):
                self.close()
            for i in range(failed):  # measured, each ended by its checkpoint
                try:
                    outcome = self.conclude(i, *self.measured(i))
                except HarnessError as e:
                    outcome = e
                concluded(outcome, elapsed(i))
            out, cfg = outs[failed], self.points[failed][0]
            if made[failed] and progress.phase == "preparing" and not any(out.iterdir()):
                out.rmdir()
            elif not (out / "summary.json").exists():
                write_failed_summary(out, cfg, exc, progress)
            for later in outs[failed + 1:]:
                self.unmade(later)
            if len(outs) > 1:  # a run (a series of one) raises its error only
                concluded(exc, time.monotonic() - (self.ends[failed - 1] if failed else t0))
            raise
        # The points' summaries are drawn in order, their consistency checks
        # run meanwhile, two at a time (Checks), and each point is concluded
        # in order. The checkpoints' files and lines are read once the
        # servers have stopped on a cluster (they come back then); on a
        # local testbed, where they are already in place, the summaries of
        # the points but the last are drawn while the servers stop (the last
        # point's files are the servers' at stop).
        with Checks(len(self.points)) as checks:
            stopping = Stopping(self.close, meanwhile=self.inv.local and len(self.points) > 1)
            staged: list = []
            try:
                for i in range(len(self.points)):
                    if i == len(self.points) - 1:
                        stopping.wait()
                    try:
                        m = self.measured(i)
                    except HarnessError as exc:  # its clients' results are missing
                        staged.append(exc)
                        break
                    try:
                        staged.append(self.stage_summary(i, *m, checks=checks))
                    except HarnessError as exc:
                        staged.append(Failed(exc))
                stopping.wait()
            finally:
                stopping.join()
            for i, st in enumerate(staged):
                if isinstance(st, HarnessError):
                    self.broken = self.broken or f"point {outs[i].name} has no results"
                    write_failed_summary(outs[i], self.points[i][0], st, progress)
                    outcome = st
                elif isinstance(st, Failed):
                    outcome = st.exc
                else:
                    try:
                        outcome = self.verdict(st)
                    except HarnessError as exc:
                        outcome = exc
                concluded(outcome, elapsed(i))
                if self.broken:
                    for later in outs[i + 1:]:
                        self.unmade(later)
                    return

    def unmade(self, out: Path) -> None:
        """A point of a broken series not concluded: what its measurement
        left goes (it is measured again on servers of its own)."""
        if not (out / "summary.json").exists():
            shutil.rmtree(out, ignore_errors=True)

    def describe(self) -> None:
        """What every point's directory holds before its clients start."""
        inv, system = self.inv, self.system
        for k, (cfg, out) in enumerate(self.points):
            out = Path(out)
            (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
            (out / "inventory.yml").write_text(yaml.safe_dump(inv.raw, sort_keys=False))
            (out / "env.json").write_text(json.dumps(envinfo.collect(), indent=2))
            (out / "system.json").write_text(json.dumps(system.describe(), indent=2))
            (out / "logs").mkdir(parents=True, exist_ok=True)
            if self.checkpoints:
                (out / "series.json").write_text(json.dumps(self.series_info(k), indent=2))

    def series_info(self, k: int) -> dict:
        return {"index": k + 1, "points": len(self.points), "servers_dir": str(self.sdir),
                "started_from": "the initial data" if k == 0 else
                f"the state point {self.points[k - 1][1].name} left",
                "rule": "consecutive points served by one start of the servers and of the clients, each ended "
                        "by a checkpoint (harness/run.py, Series)"}

    def measure(self, progress: Progress) -> None:
        """The clients through every point, each point's checkpoint after
        it, taken by the clients in band (self.partial: per point, its
        links' drops)."""
        inv, system, testbed = self.inv, self.system, self.testbed
        cfg = self.first
        with contextlib.ExitStack() as stack:
            self.neighbours = None
            if cfg.neighbour:  # a point served alone (series_key)
                self.neighbours = Neighbours(inv, Path(self.points[0][1]), system.deployer)
                stack.callback(self.neighbours.stop)
                self.neighbours.start()
            # after the servers are ready, before the clients start; removed
            # (after the delayed packets have left) before the servers stop
            self.injector = stack.enter_context(faults.Injector(inv, cfg.faults, cfg.seed, cfg.client_gso))
            clients = self.clients = Clients(inv, self.points, self.sdir, system.deployer)
            if not inv.local:
                # a cluster's pid files and logs are the hosts': watched there
                watch = stack.enter_context(HostWatch(inv, system.procs, self.sdir / "logs"))
                system.watch = clients.watch = watch
            stack.callback(clients.stop)
            progress.phase = "clients running"
            clients.start()
            for k, (_, out) in enumerate(self.points):
                links = LinkDrops(testbed)
                try:
                    clients.wait(k, system, self.show_progress, when_done=links.sample)
                except ServerDied as e:
                    progress.phase = "a server died"
                    self.broken = f"{e.name} died"
                    print(f"error: {e.name} died during the run; stopping the run", file=sys.stderr, flush=True)
                    if testbed is not None:
                        testbed.reset_napi()
                    stop_together(clients, system)
                    raise
                # finished: its checkpoint taken (but the last's), the next
                # point started (no playbook run between them)
                self.partial.append(links)
                self.ends.append(time.monotonic())
            progress.phase = "stopping"
            clients.finish()
            if self.neighbours and not inv.local:
                self.neighbours.stop()  # a cluster's logs come back with the stop
        # leaving the stack stopped the clients and the neighbours
        self.clients_timings = dict(system.deployer.timings)

    def measured(self, k: int) -> tuple:
        """What point k's summary is drawn from: its clients' results (each
        point's directory gets a copy of the clients' logs), what its
        checkpoint gave, the drops, its plays' timings, the faults injected
        and the neighbour's share."""
        links = self.partial[k]
        out = Path(self.points[k][1])
        # but the last, whose files and counters are the servers' at stop
        ckpt = self.point_counters(k + 1, out) if k + 1 < len(self.points) else None
        for proc in self.clients.procs:
            if proc.log.exists() and out / "logs" != proc.log.parent:
                shutil.copy2(proc.log, out / "logs" / proc.log.name)
        results = self.clients.result(k)
        window = (min(r["window_ns"][0] for r in results), max(r["window_ns"][1] for r in results))
        colocation = self.neighbours.result(window) if self.neighbours else None
        return results, ckpt, links.result(), {}, self.injector.result(), colocation

    def conclude(self, k: int, results: list[dict], ckpt, links: dict, timings: dict, injected: dict,
                 colocation) -> dict | BaseException:
        """Point k's summary; the exception it failed with (its summary.json
        says so) for one that failed a check."""
        try:
            return self.verdict(self.stage_summary(k, results, ckpt, links, timings, injected, colocation))
        except HarnessError as exc:
            return exc

    def stage_summary(self, k: int, results: list[dict], ckpt, links: dict, timings: dict, injected: dict,
                      colocation, checks: "Checks | None" = None) -> "Staged":
        """Point k's summary but its consistency verdict, whose check is
        handed to checks (run at once without); adds what the point
        committed to what the series has (the next points' checks start
        from it)."""
        inv, system = self.inv, self.system
        cfg, out = self.points[k][0], Path(self.points[k][1])
        if ckpt is not None:
            stats, lines, unclean = ckpt
        else:  # the last point: from the servers' files and counters at stop
            self.close()  # NAPI reset, then the servers stopped
            plays = dict(system.deployer.timings)
            # a series' last point: its stop; a run: all its plays
            timings = {k: v for k, v in plays.items() if k not in self.clients_timings or not self.checkpoints}
            unclean = {h: "did not stop cleanly" for h, st in system.stats.items()
                       if st is None or st.get("clean") is False}
            stats = {h: counters_since(st, self.base.get(h)) for h, st in system.stats.items()}
            lines = system.stats_lines
            if self.checkpoints:
                self.copy_files(out)
        (out / "ansible").mkdir(exist_ok=True)
        (out / "ansible" / "timings.json").write_text(json.dumps(timings, indent=1))
        hist = metrics.merge(metrics.decode(r["histogram"]) for r in results)
        summary, txn_hists = summarize(cfg, results, hist, stats, placement(inv, system.polls), self.napi, LATE_NS,
                                       injected, links)
        # from the servers' own stats lines around the clients' window (their
        # logs: fetched back at stop, or at the checkpoint, on a cluster)
        cost_now = cost.per_op(system.name, lines, cost.client_window(results))
        summary.server_cpu_us_per_op = cost_now.pop("server_cpu_us_per_op")
        summary.server_cost = cost_now
        summary.schema = str(self.schema)
        summary.neighbour = colocation
        summary.series = self.series_info(k) if self.checkpoints else None
        (out / "histogram.hdr").write_text(metrics.encode(hist) + "\n")
        for name, h in txn_hists.items():
            (out / f"histogram-txn-{name}.hdr").write_text(metrics.encode(h) + "\n")
        # A server that did not write its files cleanly (no final counters at
        # stop, or a checkpoint it did not finish) may have dumped less than
        # it held (dint's slow path writes the cache back first): no verdict
        # is drawn from its dump, and the point fails.
        wl = workloads.get(cfg.workload)
        txns = summary.transactions
        if txns:
            self.count(txns)
        check = None
        if wl.check and unclean:
            summary.consistency = {"checked": False, "violations": 0, "failed": [],
                                   "reason": "; ".join(f"server {h} {why}" for h, why in sorted(unclean.items()))
                                   + ": their dumps are not trusted"}
        elif wl.check:
            args = (cfg, [out / "logs" / f"store-{h.name}.snap" for h in inv.servers],
                    copy.deepcopy(self.committed), self.unfinished, self.wrapped)
            check = checks.submit(*args) if checks is not None else Checks.now(*args)
        return Staged(out, summary, unclean, check)

    def verdict(self, st: "Staged") -> dict:
        """The point's summary.json, with its consistency verdict once its
        check is over; raises (HarnessError) for a point that failed: a
        server that did not write its files, or a violation. Either leaves
        the servers `broken`."""
        out, summary, unclean = st.out, st.summary, st.unclean
        if st.check is not None:
            summary.consistency = st.check.result()
        result = summary.to_dict()
        tmp = out / "summary.json.tmp"
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(out / "summary.json")
        if unclean:
            self.broken = self.broken or "a server did not write its files"
            raise HarnessError("; ".join(f"server {h} {why}" for h, why in sorted(unclean.items())) + ": see "
                               + ", ".join(str(out / "logs" / f"server-{h}.log") for h in sorted(unclean)))
        c = summary.consistency
        if c and c["violations"]:
            self.broken = self.broken or "a consistency check failed"
            raise HarnessError(f"consistency check failed: {', '.join(c['failed'])} "
                               f"(details in {out / 'summary.json'}, under consistency)")
        return result

    def point_counters(self, epoch: int, out: Path) -> tuple[dict, dict, dict]:
        """From the checkpoint after point `epoch` (1: the first), read from
        the stopped servers' logs: each server's counters over the point (its
        stats line with this checkpoint less the one with the last), its
        stats lines so far (the cost's samples), and {host: why} for those
        whose files were not written. The dump, log and server log of each
        host are copied into the point's logs/ (copy_files)."""
        taken = self.system.checkpoint(epoch)
        stats, lines, unclean = {}, {}, {}
        for host in self.inv.servers:
            t = taken[host.name]
            if not t["checkpoint"].get("ok"):
                unclean[host.name] = f"did not write its checkpoint ({t['checkpoint'].get('error')})"
            end = t["stats"]
            stats[host.name] = counters_since(end, self.base.get(host.name))
            self.base[host.name] = end
            lines[host.name] = t["lines"]
        self.copy_files(out, epoch)
        return stats, lines, unclean

    def copy_files(self, out: Path, epoch: int = 0) -> None:
        """Each server's dump and log of the checkpoint after point `epoch`
        (0: at stop), and its server log, into the point's logs/ under the
        names a run's have."""
        for host in self.inv.servers:
            files = self.system.files(host, epoch)
            plain = self.system.files(host)
            for key in ("dump", "log"):
                if files[key].exists():
                    shutil.copy2(files[key], out / "logs" / plain[key].name)
            log = self.sdir / "logs" / f"server-{host.name}.log"
            if log.exists():
                shutil.copy2(log, out / "logs" / log.name)

    def count(self, txns: dict) -> None:
        """Adds a point's transactions to what the series has committed."""
        for name, t in committed_by_type(txns).items():
            c = self.committed.setdefault(name, {"committed": 0, "outcomes": {}})
            c["committed"] += t.get("committed", 0)
            for label, n in t.get("outcomes", {}).items():
                c["outcomes"][label] = c["outcomes"].get(label, 0) + n
        self.unfinished += txns.get("unfinished", 0)
        self.wrapped = self.wrapped or bool(txns.get("params_wrapped"))


# Fields of a stats line that are instants, not counters: a point's line
# keeps them as they were at its checkpoint.
INSTANT_FIELDS = ("t_ns", "mono_ns")


def counters_since(end: dict | None, base: dict | None) -> dict | None:
    """A server's stats line over a span: every counter less its value at
    the span's start (base; None: since the server started)."""
    if end is None or base is None:
        return end
    return {k: v - base[k] if (isinstance(v, int) and not isinstance(v, bool) and k not in INSTANT_FIELDS
                               and isinstance(base.get(k), int)) else v for k, v in end.items()}


def execute_repeated(cfg: RunConfig, out: Path, repeat: int, log=print) -> list[dict]:
    """`harness run --repeat N`: N runs of one configuration into out/r1 ..
    rN, one after the other on one testbed, each a full run with its own
    summary.json and consistency verdict (same seed: the repetitions
    measure the run-to-run spread, not other inputs). A repetition that
    fails does not stop the others; the error at the end names those that
    failed. Afterwards out/points.csv holds every repetition and
    out/points-summary.csv the medians with their intervals (results.py).
    Returns the measured summaries."""
    cfg.validate()
    inv = inventory.load(cfg.inventory)
    faults.check_inventory(cfg.faults, inv)
    out = Path(out)
    check_can_run(inv, out)
    limits.check_memory(cfg, inv, out)
    held = [d for _, d in results.repetition_dirs(out) if read_summary(d) is not None]
    if held:
        what = "a run" if held == [out] else f"repetitions ({', '.join(d.name for d in held)})"
        raise HarnessError(f"{out} already holds {what}; choose another --out or remove it")
    summaries, failed = [], []
    with Testbed(inv) if inv.local else contextlib.nullcontext() as testbed:
        for k in range(1, repeat + 1):
            try:
                summaries.append(execute(cfg, out / f"r{k}", testbed=testbed))
                log(f"r{k}: {one_line(summaries[-1])}")
            except Exception as exc:  # noqa: BLE001 - one repetition failing does not stop the others
                msg = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
                failed.append(f"r{k}: {msg}")
                log(f"r{k}: FAILED: {msg}")
    if any((d / "summary.json").exists() for _, d in results.repetition_dirs(out)):
        summary = results.summary_table(results.write_table(out))
        log(f"over the repetitions ({out / results.SUMMARY}):")
        for line in results.summary_lines(summary):
            log(f"  {line}")
    if failed:
        raise HarnessError(f"{len(failed)} of {repeat} repetitions failed: " + "; ".join(failed))
    return summaries


def stop_together(clients: Clients, system) -> None:
    """Stops the clients and the servers at once (each through its
    playbook): after a server died the run is lost, and its failure is
    reported the sooner. Both stops run to their end; the first error is
    raised."""
    errors: list[BaseException] = []

    def stop_clients() -> None:
        try:
            clients.stop()
        except BaseException as e:  # noqa: BLE001 - raised below, after the servers stopped
            errors.append(e)
    t = threading.Thread(target=stop_clients, name="clients-stop")
    t.start()
    try:
        system.stop()
    finally:
        t.join()
    if errors:
        raise errors[0]


class LinkDrops:
    """What the testbed's links dropped while the clients ran (a burst
    filled a veth ring): read when the clients start and when they are
    done; a cluster's links are not the harness's to read (null)."""

    def __init__(self, testbed: Testbed | None):
        self.testbed = testbed
        self.before = testbed.link_drops() if testbed else None
        self.after = None

    def sample(self) -> None:
        if self.testbed:
            self.after = self.testbed.link_drops()

    def result(self) -> dict:
        if self.before is None or self.after is None:
            return {"requests": None, "replies": None,
                    "why_null": "not a local testbed: its links' counters are the hosts'" if self.before is None
                    else "the clients did not finish"}
        return {k: self.after[k] - self.before[k] for k in self.before}


@dataclass
class Staged:
    """A point's summary drawn but its consistency verdict (Series.stage_summary)."""
    out: Path
    summary: object
    unclean: dict
    check: "Future | None"


class Stopping:
    """stop() (the servers' stop) at once, or, meanwhile, in a thread of its
    own: wait() waits for it and raises what it raised (once); join() only
    waits."""

    def __init__(self, stop, meanwhile: bool):
        self.error: BaseException | None = None
        self.thread = None
        if not meanwhile:
            stop()
            return

        def run() -> None:
            try:
                stop()
            except BaseException as exc:  # noqa: BLE001 - raised by wait()
                self.error = exc
        self.thread = threading.Thread(target=run, name="servers-stop", daemon=True)
        self.thread.start()

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join()

    def wait(self) -> None:
        self.join()
        error, self.error = self.error, None
        if error is not None:
            raise error


@dataclass
class Failed:
    """A point whose summary could not be drawn."""
    exc: HarnessError


def _check(cfg: RunConfig, dumps: list[Path], committed: dict, unfinished: int, wrapped: bool) -> dict:
    return check_consistency(workloads.get(cfg.workload), cfg, dumps, committed, unfinished, wrapped)


class Checks:
    """The consistency checks of a series' points, run while the next
    points' summaries are drawn: two at a time in processes of their own
    (forked: what the harness has loaded, such as a workload's initial
    data, comes with them) once the servers have stopped, when the host
    runs nothing else; at once, in this process, for a point served alone."""
    WORKERS = 2

    def __init__(self, points: int):
        self.pool = None
        if points > 1 and "fork" in multiprocessing.get_all_start_methods():
            self.pool = ProcessPoolExecutor(min(self.WORKERS, points), mp_context=multiprocessing.get_context("fork"))
            # its processes forked now, before the servers' stop runs in a
            # thread (Stopping)
            self.pool.submit(int).result()

    def __enter__(self) -> "Checks":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if self.pool is not None:  # on an error (Ctrl-C too), what has not started is not started
            self.pool.shutdown(wait=kind is None, cancel_futures=kind is not None)

    def submit(self, *args) -> Future:
        return self.pool.submit(_check, *args) if self.pool is not None else self.now(*args)

    @staticmethod
    def now(*args) -> Future:
        f: Future = Future()
        f.set_result(_check(*args))
        return f


def check_consistency(wl: workloads.Workload, cfg: RunConfig, dumps: list[Path], committed: dict,
                      unfinished: int, wrapped: bool) -> dict:
    """The verdict from the servers' dumps (harness/consistency.py), in the
    order of the inventory's servers, against what was committed since the
    initial data."""
    spec = workloads.CheckSpec(data=cfg.data, servers=len(dumps), params_wrapped=wrapped)
    return consistency.check(wl, [snapshot.read_columns(d)[1] for d in dumps], committed, spec, unfinished)
