"""One run: the testbed up, the system's servers started and ready, the NAPI
placement applied, client processes driving load from every client host,
then everything stopped and the results written to the run's directory:
summary.json, config.json, env.json, inventory.yml, the merged latency
histogram, each client's result and every server's and client's log."""
from __future__ import annotations

import contextlib
import json
import selectors
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

import workloads

from . import HarnessError, envinfo, inventory, metrics, snapshot
from .config import RunConfig
from .inventory import Inventory
from .cost import ServerCost
from .procs import Proc
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


class Clients:
    """The load-generating processes of a run, one or more per client host."""

    def __init__(self, inv: Inventory, cfg: RunConfig, out: Path):
        self.inv, self.cfg, self.out = inv, cfg, out
        self.procs: list[tuple[Proc, Path]] = []

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
                            "keys", "timeout_ms", "max_retries")},
                        "seed": self.cfg.seed * 1000 + cid,
                        # transactional microbenchmarks
                        "lock_mode": self.cfg.lock_mode, "kv_mix": self.cfg.kv_mix}
                spec_path = cdir / f"client-{cid}.spec.json"
                spec_path.write_text(json.dumps(spec, indent=1))
                result = cdir / f"client-{cid}.json"
                cmd = in_netns(host.netns, ["taskset", "-c", ",".join(map(str, host.cpus)), sys.executable,
                                            "-m", "harness.loadgen", str(spec_path), str(result)])
                proc = Proc(f"client {cid} on {host.name}", cmd, self.out / "logs" / f"client-{cid}.log")
                self.procs.append((proc.start(stdout=subprocess.PIPE), result))

    def wait(self, system, show_progress: bool) -> list[dict]:
        total = self.cfg.warmup_s + self.cfg.duration_s
        bar = None
        if show_progress:
            from tqdm import tqdm
            bar = tqdm(total=round(total, 1), unit="s", leave=False, file=sys.stderr,
                       ncols=min(120, shutil.get_terminal_size((100, 24)).columns),
                       bar_format="{desc} {bar} {n:.1f}/{total:.1f}s")
        sel = selectors.DefaultSelector()
        for i, (proc, _) in enumerate(self.procs):
            sel.register(proc.popen.stdout, selectors.EVENT_READ, i)
        ok: dict[int, int] = {}
        try:
            while sel.get_map():
                for key, _ in sel.select(timeout=1.0):
                    line = key.fileobj.readline()
                    if not line:
                        sel.unregister(key.fileobj)
                        continue
                    line = line.decode(errors="replace").strip()
                    if line.startswith("progress ") and bar is not None:
                        p = json.loads(line[9:])
                        ok[key.data] = p["ok"]
                        bar.set_description(f"{self.cfg.system} c={self.cfg.concurrency} {p['phase']}: "
                                            f"{sum(ok.values())} ok")
                        bar.n = min(total, p["elapsed_s"])
                        bar.refresh()
                system.check_alive()
        finally:
            sel.close()
            if bar is not None:
                bar.close()
        results = []
        for proc, path in self.procs:
            proc.popen.wait()
            if proc.popen.returncode != 0 or not path.exists():
                raise HarnessError(f"{proc.name} failed with code {proc.popen.returncode} "
                                   f"(log {proc.log}): {proc.tail()}")
            results.append(json.loads(path.read_text()))
        return results

    def stop(self) -> None:
        for proc, _ in self.procs:
            proc.stop(grace=2.0)


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


def prepare_data(cfg: RunConfig, out: Path) -> tuple[Schema, Path | None]:
    """The workload's schema and its initial data, written once as a
    snapshot that every system loads."""
    mod = workloads.load(cfg.workload)
    records = mod.initial(cfg.keys)
    if not records:
        return mod.SCHEMA, None
    path = out / "initial.snap"
    snapshot.write_snapshot(path, mod.SCHEMA, records)
    return mod.SCHEMA, path


def execute(cfg: RunConfig, out: Path, show_progress: bool | None = None, testbed: Testbed | None = None) -> dict:
    """Runs one configuration; returns the summary (also in out/summary.json)."""
    cfg.validate()
    out = prepare_out(out)
    inv = inventory.load(cfg.inventory)
    show_progress = sys.stderr.isatty() if show_progress is None else show_progress
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    (out / "inventory.yml").write_text(yaml.safe_dump(inv.raw, sort_keys=False))
    (out / "env.json").write_text(json.dumps(envinfo.collect(), indent=2))
    with contextlib.ExitStack() as stack:
        if testbed is None:
            testbed = stack.enter_context(Testbed(inv))
        schema, data = prepare_data(cfg, out)
        system = make_system(inv, cfg, out / "logs", schema, data)
        (out / "system.json").write_text(json.dumps(system.describe(), indent=2))
        stack.enter_context(system)
        stack.callback(testbed.reset_napi)  # before the servers stop
        napi = testbed.set_napi(cfg.napi)
        cost = stack.enter_context(ServerCost(system, inv))
        clients = Clients(inv, cfg, out)
        stack.callback(clients.stop)
        before = cost.sample()
        clients.start()
        results = clients.wait(system, show_progress)
        after = cost.sample()
    # leaving the stack stopped the clients, reset NAPI, then stopped the servers
    hist = metrics.merge(metrics.decode(r["histogram"]) for r in results)
    summary = summarize(cfg, results, hist, system.stats, placement(inv, system.polls), napi)
    cost_now = ServerCost.per_op(system.name, before, after, summary["instrument_check"]["client_sent"])
    summary["server_cpu_us_per_op"] = cost_now.pop("server_cpu_us_per_op")
    summary["server_cost"] = cost_now
    summary["schema"] = str(schema)
    (out / "histogram.hdr").write_text(metrics.encode(hist) + "\n")
    if any("transactions" in r for r in results):
        summary["transactions"], txn_hists = summarize_transactions(results, summary["duration_s"])
        summary["errors"], summary["error_detail"]["conflict_statuses"] = request_errors(results)
        for name, h in txn_hists.items():
            (out / f"histogram-txn-{name}.hdr").write_text(metrics.encode(h) + "\n")
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "summary.json")
    return summary


# -- transactional runs (the executor, harness/txn.py) -------------------
# Conflicts are outcomes of a transactional run, not errors of the instrument:
# LOCKED, STALE, and FULL (a LOCK_SHARED finding no room for another holder;
# a FULL anywhere else is a transaction "error" in transactions.error_statuses).
CONFLICT_STATUSES = (int(Status.LOCKED), int(Status.STALE), int(Status.FULL))


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
        aborts = into.setdefault("aborts", {})
        for cause, n in c["aborts"].items():
            aborts[cause] = aborts.get(cause, 0) + n

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
    section["release_failures"] = release_failures
    section["error_statuses"] = error_statuses
    return section, merged


def one_line(s: dict) -> str:
    lat = s["latency_us"]
    sat = " CLIENT-SATURATED" if s["client_saturated"] else ""
    if "transactions" in s:
        t = s["transactions"]["total"]
        causes = " ".join(f"{c} {n / max(1, t['committed'] + t['aborted']):.1%}" for c, n in t["aborts"].items() if n)
        mode = {"lock": f" {s['config']['lock_mode']}", "kv": f" {s['config']['kv_mix']}"}.get(s["workload"], "")
        return (f"{s['system']:>6} {s['workload']}{mode} c={s['concurrency']} napi={s['napi']}: "
                f"{t['throughput_per_s']:,.0f} txn/s  goodput {t['goodput_per_s']:,.0f}/s  "
                f"aborts {t['abort_rate'] or 0:.1%}{' (' + causes + ')' if causes else ''}  "
                f"p50 {t['latency_us']['p50']} us  p99 {t['latency_us']['p99']} us  "
                f"requests {s['throughput_per_s']:,.0f}/s  errors {s['errors']}  "
                f"client cpu {s['client_cpu_util']:.0%}{sat}")
    return (f"{s['system']:>6} {s['workload']} c={s['concurrency']} napi={s['napi']}: "
            f"{s['throughput_per_s']:,.0f}/s  p50 {lat['p50']} us  p99 {lat['p99']} us  "
            f"errors {s['errors']}  client cpu {s['client_cpu_util']:.0%}{sat}")
