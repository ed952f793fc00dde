"""One run: the testbed up, the system's servers started and ready, the NAPI
placement applied, client processes driving load from every client host,
then everything stopped and the results written to the run's directory:
summary.json, config.json, env.json, inventory.yml, the merged latency
histogram, each client's result and every server's and client's log."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

import workloads

from . import HarnessError, envinfo, inventory, metrics, snapshot
from .config import RunConfig
from .inventory import Inventory
from .cost import ServerCost
from .deploy import Deployer, ProcSpec, host_pidfile
from .protocol import Status
from .schema import Schema
from .sh import in_netns
from .systems import make_system
from .testbed import Testbed

SATURATED_UTIL = 0.90
SATURATION_RULE = (f"a client process used at least {SATURATED_UTIL:.0%} of the CPU time of the cores it is "
                   "pinned to over the measured window (user + system time, getrusage); with --napi inline "
                   "that time includes the server's packet work, which veth runs on the sending CPU")


def prepare_out(out: Path) -> Path:
    out = Path(out)
    if (out / "summary.json").exists():
        raise HarnessError(f"{out} already holds a run (summary.json); choose another --out or remove it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def placement(inv: Inventory, system_polls: bool) -> dict:
    """Which cores each host runs on, and where hosts share cores."""
    share: dict[int, list[str]] = {}
    for h in inv.servers:
        for c in h.cpus:
            share.setdefault(c, []).append(h.name)
    shared = {c: names for c, names in share.items() if len(names) > 1}
    client_cpus = {c for h in inv.clients for c in h.cpus}
    overlap = sorted(client_cpus & set(share))
    notes = []
    if shared:
        notes.append("server hosts share cores: " + "; ".join(f"cpu{c}: {', '.join(n)}" for c, n in shared.items()))
    if overlap:
        notes.append(f"clients and servers share cpus {overlap}")
    if shared and system_polls:
        notes.append("polling servers sharing a core back off when idle, and take turns when busy")
    return {"hosts": {h.name: list(h.cpus) for h in inv.hosts}, "oversubscribed": bool(shared or overlap),
            "notes": notes}


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
        from . import neighbour
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
        if self.procs:
            self.deployer.stop_servers([p for _, p in self.procs], label="neighbours-stop")


class Clients:
    """The load-generating processes of a run, one or more per client host,
    run through deploy/clients.yml: started together, waited for, their
    results and logs collected. Their progress lines come from their logs."""

    def __init__(self, inv: Inventory, cfg: RunConfig, out: Path, deployer: Deployer):
        self.inv, self.cfg, self.out, self.deployer = inv, cfg, Path(out).resolve(), deployer
        self.procs: list[tuple[ProcSpec, Path]] = []
        self.play = None
        self.finished = False

    def start(self) -> None:
        cdir = self.out / "clients"
        cdir.mkdir(exist_ok=True)
        cid = 0
        for host in self.inv.clients:
            dests = [[s.address, self.inv.port] for s in self.inv.servers]
            for _ in range(self.cfg.clients_per_host):
                cid += 1
                spec = {"client_id": cid, "host": host.name, "address": host.address, "dests": dests,
                        **{k: getattr(self.cfg, k) for k in (
                            "workload", "concurrency", "warmup_s", "duration_s", "requests", "value_size",
                            "keys", "timeout_ms", "max_retries", "client_gso")},
                        "seed": self.cfg.seed * 1000 + cid,
                        # transactional microbenchmarks
                        "cc": self.cfg.cc, "kv_mix": self.cfg.kv_mix, "scale": self.cfg.scale, "rate": self.cfg.rate}
                spec_path = cdir / f"client-{cid}.spec.json"
                spec_path.write_text(json.dumps(spec, indent=1))
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
        self.play = self.deployer.run_clients([p for p, _ in self.procs])

    def _all_exited(self) -> bool:
        """Every client process has come and gone (local hosts: pid files)."""
        return self.inv.local and all(p.pidfile.exists() and p.pid() is None for p, _ in self.procs)

    def wait(self, system, show_progress: bool, when_done=None) -> list[dict]:
        """Until every client has finished, with the servers checked alive
        and a progress bar fed from the clients' logs; `when_done` is called
        as soon as the clients are seen to be finished (the server cost's
        second sample)."""
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
                        for p in _progress(proc.log, offsets, i):
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
            self.deployer.stop_clients([p for p, _ in self.procs])


def _progress(log: Path, offsets: list[int], i: int) -> list[dict]:
    """New `progress {json}` lines of a client's log since the last look."""
    try:
        with open(log, "rb") as f:
            f.seek(offsets[i])
            data = f.read()
    except OSError:
        return []
    end = data.rfind(b"\n") + 1  # whole lines only
    offsets[i] += end
    out = []
    for line in data[:end].decode(errors="replace").splitlines():
        if line.startswith("progress "):
            try:
                out.append(json.loads(line[9:]))
            except ValueError:
                pass
    return out


def summarize(cfg: RunConfig, results: list[dict], hist, server_stats: dict, placed: dict, napi: dict) -> dict:
    window = max(r["window_s"] for r in results)
    st = lambda key: sum(r["stats"][key] for r in results)  # noqa: E731
    completed, errors = st("ok"), st("err_status") + st("lost")
    util = max(r["cpu"]["process_util"] for r in results)
    sent = st("sent") - st("send_failed") + sum(r["pings_sent"] for r in results)
    received = st("replies") + st("stray") + sum(r["pings_received"] for r in results)
    srv = {k: sum((s or {}).get(k, 0) for s in server_stats.values()) for k in ("rx", "tx", "drop", "err")}
    statuses: dict[str, int] = {}
    for r in results:
        for code, n in r["stats"]["statuses"].items():
            statuses[str(code)] = statuses.get(str(code), 0) + n
    return {
        "system": cfg.system,
        "workload": cfg.workload,
        "concurrency": cfg.concurrency,
        "clients": len(results),
        "napi": cfg.napi,
        "duration_s": round(window, 4),
        "warmup_s": cfg.warmup_s,
        "completed": completed,
        "errors": errors,
        "error_detail": {"error_status": st("err_status"), "lost": st("lost"), "retransmits": st("retransmits"),
                         "busy_retries": st("busy_retries"),
                         "statuses": statuses},
        "throughput_per_s": round(completed / window, 1),
        "latency_us": metrics.latency_us(hist),
        "client_cpu_util": round(util, 4),
        "client_core_util": round(max(r["cpu"]["core_util"] for r in results), 4),
        "client_wait_fraction": round(max(r["cpu"]["wait_fraction"] for r in results), 4),
        "client_saturated": util >= SATURATED_UTIL,
        "client_saturation_rule": SATURATION_RULE,
        # Validating the instrument: what the clients sent, the servers
        # received; what the servers did not drop, they answered; and every
        # answer reached a client (pings included).
        "instrument_check": {
            "client_sent": sent, "server_rx": srv["rx"], "server_drop": srv["drop"], "server_tx": srv["tx"],
            "client_received": received,
            "match": (None not in server_stats.values() and sent == srv["rx"]
                      and srv["tx"] + srv["drop"] == srv["rx"] and received == srv["tx"]),
        },
        "servers": server_stats,
        "placement": placed,
        "napi_placement": napi,
        "env": envinfo.collect(),
        "config": cfg.to_dict(),
    }


def prepare_data(cfg: RunConfig, out: Path, cache: Path | None = None) -> tuple[Schema, Path | None]:
    """The workload's schema and its initial data, written once as a
    snapshot that every system loads. With a cache directory (a reproduce
    run's), data made once for a (workload, keys, scale, seed) is linked
    into every point that loads the same."""
    mod = workloads.load(cfg.workload)
    path = out / "initial.snap"
    cached = cache / f"{cfg.workload}-k{cfg.keys}-s{cfg.scale}-seed{cfg.seed}.snap" if cache else None
    if cached and cached.exists():
        os.link(cached, path)
        return mod.SCHEMA, path
    records = mod.initial({"keys": cfg.keys, "scale": cfg.scale, "seed": cfg.seed})
    if not records:
        return mod.SCHEMA, None
    snapshot.write_snapshot(path, mod.SCHEMA, records)
    if cached:
        cache.mkdir(parents=True, exist_ok=True)
        os.link(path, cached)
    return mod.SCHEMA, path


def execute(cfg: RunConfig, out: Path, show_progress: bool | None = None, testbed: Testbed | None = None,
            data_cache: Path | None = None) -> dict:
    """Runs one configuration; returns the summary (also in out/summary.json)."""
    cfg.validate()
    out = prepare_out(out)
    inv = inventory.load(cfg.inventory)
    show_progress = sys.stderr.isatty() if show_progress is None else show_progress
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    (out / "inventory.yml").write_text(yaml.safe_dump(inv.raw, sort_keys=False))
    (out / "env.json").write_text(json.dumps(envinfo.collect(), indent=2))
    # Every process of the run goes through the playbooks in deploy/, with
    # their event logs in out/ansible (harness/deploy.py).
    deployer = Deployer(inv, out / "ansible")
    with contextlib.ExitStack() as stack:
        if testbed is None and inv.local:
            testbed = stack.enter_context(Testbed(inv))
        schema, data = prepare_data(cfg, out, data_cache)
        system = make_system(inv, cfg, out / "logs", schema, data, deployer)
        (out / "system.json").write_text(json.dumps(system.describe(), indent=2))
        stack.enter_context(system)
        if testbed is not None:
            stack.callback(testbed.reset_napi)  # before the servers stop
            napi = testbed.set_napi(cfg.napi)
        else:
            napi = {"mode": cfg.napi, "note": "a cluster's interrupt placement is the hosts' own (not set by the harness)"}
        neighbours = None
        if cfg.neighbour:
            neighbours = Neighbours(inv, out, deployer)
            stack.callback(neighbours.stop)
            neighbours.start()
        cost = stack.enter_context(ServerCost(system, inv))
        clients = Clients(inv, cfg, out, deployer)
        stack.callback(clients.stop)
        before = cost.sample()
        after: dict = {}
        clients.start()
        results = clients.wait(system, show_progress, when_done=lambda: after.update(cost.sample()))
        window = (min(r["window_ns"][0] for r in results), max(r["window_ns"][1] for r in results))
        colocation = neighbours.result(window) if neighbours else None
    # leaving the stack stopped the clients, reset NAPI, then stopped the servers
    (out / "ansible" / "timings.json").write_text(json.dumps(dict(deployer.timings), indent=1))
    hist = metrics.merge(metrics.decode(r["histogram"]) for r in results)
    summary = summarize(cfg, results, hist, system.stats, placement(inv, system.polls), napi)
    cost_now = ServerCost.per_op(system.name, before, after, summary["instrument_check"]["client_sent"])
    summary["server_cpu_us_per_op"] = cost_now.pop("server_cpu_us_per_op")
    summary["server_cost"] = cost_now
    summary["schema"] = str(schema)
    if colocation:
        summary["neighbour"] = colocation
    if cfg.rate:
        summary["open_loop"] = {
            "rate_per_client": cfg.rate, "offered_per_s": cfg.rate * len(results),
            "late": sum(r["stats"].get("open_loop_late", 0) for r in results),
            "skipped_after_warmup": sum(r["stats"].get("open_loop_skipped", 0) for r in results),
            "rule": "each client process starts its transactions (requests) on a schedule fixed in advance; "
                    "latency counts from when each was due; 'late' ones were sent over 100 us after (the client "
                    "or the in-flight cap held them back); what fell behind in the warm-up is dropped at the "
                    "window's start"}
    (out / "histogram.hdr").write_text(metrics.encode(hist) + "\n")
    if any("transactions" in r for r in results):
        summary["transactions"], txn_hists = summarize_transactions(results, summary["duration_s"])
        summary["errors"], summary["error_detail"]["conflict_statuses"] = request_errors(results)
        for name, h in txn_hists.items():
            (out / f"histogram-txn-{name}.hdr").write_text(metrics.encode(h) + "\n")
    mod = workloads.load(cfg.workload)
    # A server that printed no final counters did not stop cleanly: its
    # dump may miss what it held (dint's slow path writes the cache back at
    # stop), so no verdict is drawn from it and the run fails.
    unclean = sorted(h for h, st in system.stats.items() if st is None or st.get("clean") is False)
    if hasattr(mod, "check"):
        summary["consistency"] = (
            check_consistency(mod, cfg, system, inv, summary["transactions"]) if not unclean else
            {"checked": False, "violations": 0, "failed": [],
             "reason": f"server(s) {', '.join(unclean)} did not stop cleanly: their dumps are not trusted"})
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "summary.json")
    if unclean:
        raise HarnessError(f"server(s) {', '.join(unclean)} did not stop cleanly: see "
                           + ", ".join(str(out / "logs" / f"server-{h}.log") for h in unclean))
    c = summary.get("consistency")
    if c and c["violations"]:
        raise HarnessError(f"consistency check failed: {', '.join(c['failed'])} "
                           f"(details in {out / 'summary.json'}, under consistency)")
    return summary


def check_consistency(mod, cfg: RunConfig, system, inv: Inventory, txns: dict) -> dict:
    """The verdict from the stopped servers' dumps (harness/consistency.py)."""
    from . import consistency
    dumps = [system.dump(h) for h in inv.servers]
    committed = {name: t["run_total"] for name, t in txns.items()
                 if isinstance(t, dict) and "run_total" in t and name != "total"}
    spec = {"keys": cfg.keys, "scale": cfg.scale, "seed": cfg.seed, "servers": len(inv.servers),
            "params_wrapped": txns.get("params_wrapped", 0)}
    return consistency.check(mod, dumps, committed, spec, txns.get("unfinished", 0))


# -- transactional runs (the executor, harness/txn.py) -------------------
# Conflicts are outcomes of a transactional run, not errors of the instrument:
# LOCKED, STALE, and FULL (a LOCK_SHARED finding no room for another holder;
# a FULL anywhere else is a transaction "error" in transactions.error_statuses),
# and NOT_FOUND / EXISTS (a row read absent, an insert that lost a race: the
# transaction decides; one it did not expect is in error_statuses too).
CONFLICT_STATUSES = (int(Status.LOCKED), int(Status.STALE), int(Status.FULL), int(Status.NOT_FOUND),
                     int(Status.EXISTS))


def request_errors(results: list[dict]) -> tuple[int, int]:
    """(errors, conflicts) at the request level of a transactional run:
    errors are requests given up and replies with a status that is neither OK
    nor a conflict (CONFLICT_STATUSES); conflicts are the latter."""
    errors = conflicts = 0
    for r in results:
        errors += r["stats"]["lost"]
        for code, n in r["stats"]["statuses"].items():
            if int(code) in CONFLICT_STATUSES:
                conflicts += n
            elif int(code) != Status.OK:
                errors += n
    return errors, conflicts


def _txn_figures(counts: dict, hist, window: float) -> dict:
    finished = counts["committed"] + counts["aborted"]
    lat = metrics.latency_us(hist)
    return {**counts,
            "throughput_per_s": round(finished / window, 1), "goodput_per_s": round(counts["committed"] / window, 1),
            "abort_rate": round(counts["aborted"] / finished, 4) if finished else None,
            "abort_rate_by_cause": {c: (round(n / finished, 4) if finished else None)
                                    for c, n in counts["aborts"].items()},
            "latency_us": {k: lat[k] for k in ("mean", "p50", "p90", "p99", "p999", "max")}}


def summarize_transactions(results: list[dict], window: float) -> tuple[dict, dict]:
    """The `transactions` section: per type and in total, transactions that
    started in the measured window (committed, aborted by cause, throughput
    = finished / window, goodput = committed / window, latency of committed
    ones from the merged histograms), plus whole-run totals; and the merged
    histograms per type."""
    def add(into: dict, c: dict) -> None:
        for k in ("started", "committed", "aborted"):
            into[k] = into.get(k, 0) + c[k]
        for part in ("aborts", "outcomes"):
            sums = into.setdefault(part, {})
            for name, n in c.get(part, {}).items():
                sums[name] = sums.get(name, 0) + n

    types: dict[str, dict] = {}
    totals: dict[str, dict] = {}
    hists: dict[str, list] = {}
    all_counts: dict = {}
    all_totals: dict = {}
    active = release_failures = 0
    error_statuses: dict[str, int] = {}
    for r in results:
        t = r["transactions"]
        active += t["active"]
        release_failures += t["release_failures"]
        for k, n in t["error_statuses"].items():
            error_statuses[k] = error_statuses.get(k, 0) + n
        for name, c in t["types"].items():
            add(types.setdefault(name, {}), c)
            add(totals.setdefault(name, {}), c["total"])
            add(all_counts, c)
            add(all_totals, c["total"])
            hists.setdefault(name, []).append(metrics.decode(c["histogram"]))
    merged = {name: metrics.merge(hs) for name, hs in hists.items()}
    section = {name: {**_txn_figures(c, merged[name], window), "run_total": totals[name]}
               for name, c in types.items()}
    section["total"] = {**_txn_figures(all_counts, metrics.merge(merged.values()), window), "run_total": all_totals}
    section["unfinished"] = active
    section["params_wrapped"] = sum(r["transactions"].get("params_wrapped", 0) for r in results)
    section["release_failures"] = release_failures
    section["error_statuses"] = error_statuses
    return section, merged


def one_line(s: dict) -> str:
    lat = s["latency_us"]
    sat = " CLIENT-SATURATED" if s["client_saturated"] else ""
    if "transactions" in s:
        t = s["transactions"]["total"]
        causes = " ".join(f"{c} {n / max(1, t['committed'] + t['aborted']):.1%}" for c, n in t["aborts"].items() if n)
        mode = f" {s['config']['kv_mix']}" if s["workload"] == "kv" else f" {s['config'].get('cc') or ''}".rstrip()
        return (f"{s['system']:>6} {s['workload']}{mode} c={s['concurrency']} napi={s['napi']}: "
                f"{t['throughput_per_s']:,.0f} txn/s  goodput {t['goodput_per_s']:,.0f}/s  "
                f"aborts {t['abort_rate'] or 0:.1%}{' (' + causes + ')' if causes else ''}  "
                f"p50 {t['latency_us']['p50']} us  p99 {t['latency_us']['p99']} us  "
                f"requests {s['throughput_per_s']:,.0f}/s  errors {s['errors']}  "
                f"client cpu {s['client_cpu_util']:.0%}{sat}")
    return (f"{s['system']:>6} {s['workload']} c={s['concurrency']} napi={s['napi']}: "
            f"{s['throughput_per_s']:,.0f}/s  p50 {lat['p50']} us  p99 {lat['p99']} us  "
            f"errors {s['errors']}  client cpu {s['client_cpu_util']:.0%}{sat}")
