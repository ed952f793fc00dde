"""One run, orchestrated: the testbed up, the system's servers started and
ready, the NAPI placement applied, the client processes (and colocation
neighbours, harness/processes.py) driving load from every client host,
then everything stopped and the results written to the run's directory:
summary.json (harness/summary.py), config.json, env.json, inventory.yml,
the merged latency histograms, each client's result and every server's and
client's log."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

import yaml

import workloads

from . import HarnessError, consistency, cost, envinfo, faults, inventory, limits, metrics, results, snapshot
from ._netloop import LATE_NS
from .config import RunConfig
from .deploy import Deployer
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
    wl = workloads.get(cfg.workload)
    d = cfg.data
    path = out / "initial.snap"
    cached = cache / f"{cfg.workload}-k{d.keys}-s{d.scale}-d{d.divisor}-seed{d.seed}.snap" if cache else None
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
    cfg.validate()
    inv = inventory.load(cfg.inventory)
    faults.check_inventory(cfg.faults, inv)
    check_can_run(inv, out)
    limits.check_memory(cfg, inv, Path(out))
    made = not Path(out).exists()
    out = prepare_out(out)
    progress = Progress()
    try:
        return _execute(cfg, inv, out, progress, show_progress, testbed, data_cache)
    except BaseException as exc:
        if (out / "summary.json").exists():
            raise  # measured, then failed a check: its summary says so
        if made and progress.phase == "preparing" and not any(out.iterdir()):
            out.rmdir()
        else:
            write_failed_summary(out, cfg, exc, progress)
        raise


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


def _execute(cfg: RunConfig, inv: Inventory, out: Path, progress: Progress, show_progress: bool | None,
             testbed: Testbed | None, data_cache: Path | None) -> dict:
    show_progress = sys.stderr.isatty() if show_progress is None else show_progress
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    (out / "inventory.yml").write_text(yaml.safe_dump(inv.raw, sort_keys=False))
    (out / "env.json").write_text(json.dumps(envinfo.collect(), indent=2))
    # Every process of the run goes through the playbooks in deploy/, with
    # their event logs in out/ansible (harness/deploy.py).
    deployer = Deployer(inv, out / "ansible")
    with contextlib.ExitStack() as stack:
        progress.phase = "testbed"
        if testbed is None and inv.local:
            testbed = stack.enter_context(Testbed(inv))
        progress.phase = "initial data"
        schema, data = prepare_data(cfg, out, data_cache)
        system = progress.system = make_system(inv, cfg, out / "logs", schema, data, deployer)
        (out / "system.json").write_text(json.dumps(system.describe(), indent=2))
        progress.phase = "starting the servers"
        stack.enter_context(system)
        progress.phase = "servers ready"
        if testbed is not None:
            stack.callback(testbed.reset_napi)  # before the servers stop (again: a no-op)
            napi = testbed.set_napi(cfg.napi)
        else:
            napi = {"mode": cfg.napi, "set": False,
                    "note": "a cluster's interrupt placement is the hosts' own (not set by the harness)"}
        neighbours = None
        if cfg.neighbour:
            neighbours = Neighbours(inv, out, deployer)
            stack.callback(neighbours.stop)
            neighbours.start()
        # after the servers are ready, before the clients start; removed
        # (after the delayed packets have left) before the servers stop
        injector = stack.enter_context(faults.Injector(inv, cfg.faults, cfg.seed, cfg.client_gso))
        clients = Clients(inv, cfg, out, deployer)
        if not inv.local:
            # a cluster's pid files and logs are the hosts': watched there
            watch = stack.enter_context(HostWatch(inv, system.procs, out / "logs"))
            system.watch = clients.watch = watch
        stack.callback(clients.stop)
        links = LinkDrops(testbed)

        def done() -> None:
            links.sample()
        progress.phase = "clients running"
        clients.start()
        try:
            results = clients.wait(system, show_progress, when_done=done)
        except ServerDied as e:
            progress.phase = "a server died"
            print(f"error: {e.name} died during the run; stopping the run", file=sys.stderr, flush=True)
            if testbed is not None:
                testbed.reset_napi()
            stop_together(clients, system)
            raise
        progress.phase = "stopping"
        window = (min(r["window_ns"][0] for r in results), max(r["window_ns"][1] for r in results))
        colocation = neighbours.result(window) if neighbours else None
    # leaving the stack stopped the clients, reset NAPI, then stopped the servers
    (out / "ansible" / "timings.json").write_text(json.dumps(dict(deployer.timings), indent=1))
    hist = metrics.merge(metrics.decode(r["histogram"]) for r in results)
    summary, txn_hists = summarize(cfg, results, hist, system.stats, placement(inv, system.polls), napi, LATE_NS,
                                   injector.result(), links.result())
    # from the servers' own stats lines around the clients' window (their
    # logs: fetched back at stop on a cluster)
    cost_now = cost.per_op(system.name, system.stats_lines, cost.client_window(results))
    summary.server_cpu_us_per_op = cost_now.pop("server_cpu_us_per_op")
    summary.server_cost = cost_now
    summary.schema = str(schema)
    summary.neighbour = colocation
    (out / "histogram.hdr").write_text(metrics.encode(hist) + "\n")
    for name, h in txn_hists.items():
        (out / f"histogram-txn-{name}.hdr").write_text(metrics.encode(h) + "\n")
    # A server that printed no final counters did not stop cleanly: its
    # dump may miss what it held (dint's slow path writes the cache back at
    # stop), so no verdict is drawn from it and the run fails.
    unclean = sorted(h for h, st in system.stats.items() if st is None or st.get("clean") is False)
    wl = workloads.get(cfg.workload)
    if wl.check:
        summary.consistency = (
            check_consistency(wl, cfg, system, inv, summary.transactions) if not unclean else
            {"checked": False, "violations": 0, "failed": [],
             "reason": f"server(s) {', '.join(unclean)} did not stop cleanly: their dumps are not trusted"})
    result = summary.to_dict()
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out / "summary.json")
    if unclean:
        raise HarnessError(f"server(s) {', '.join(unclean)} did not stop cleanly: see "
                           + ", ".join(str(out / "logs" / f"server-{h}.log") for h in unclean))
    c = summary.consistency
    if c and c["violations"]:
        raise HarnessError(f"consistency check failed: {', '.join(c['failed'])} "
                           f"(details in {out / 'summary.json'}, under consistency)")
    return result


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


def check_consistency(wl: workloads.Workload, cfg: RunConfig, system, inv: Inventory, txns: dict) -> dict:
    """The verdict from the stopped servers' dumps (harness/consistency.py)."""
    dumps = [system.dump(h) for h in inv.servers]
    spec = workloads.CheckSpec(data=cfg.data, servers=len(inv.servers), params_wrapped=txns["params_wrapped"])
    return consistency.check(wl, dumps, committed_by_type(txns), spec, txns["unfinished"])
