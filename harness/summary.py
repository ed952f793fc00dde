"""A run's result, from its clients' results and its servers' counters: one
typed summary, serialised once into summary.json (the format the README
documents), and its one-line report. Nothing here starts or stops anything
(harness/run.py does)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from . import engine_costs, envinfo, faults as fault_injection, metrics, stability
from .config import RunConfig
from .inventory import Inventory
from .protocol import Op, Status

SATURATED_UTIL = 0.90
SATURATION_RULE = (f"a client process used at least {SATURATED_UTIL:.0%} of the CPU time of the cores it is "
                   "pinned to over the measured window (user + system time, getrusage); with --napi inline "
                   "that time includes the server's packet work, which veth runs on the sending CPU")
OPEN_LOOP_RULE = ("each client process starts its transactions (requests) on a schedule fixed in advance; latency "
                  "counts from when each was due; 'late' ones were sent over {late_us:g} us after (the client or "
                  "the in-flight cap held them back); what fell behind in the warm-up is dropped at the window's "
                  "start")
# Conflicts are outcomes of a transactional run, not errors of the instrument:
# LOCKED, STALE, and FULL (a LOCK_SHARED finding no room for another holder;
# a FULL anywhere else is a transaction "error" in transactions.error_statuses),
# and NOT_FOUND / EXISTS (a row read absent, an insert that lost a race: the
# transaction decides; one it did not expect is in error_statuses too).
CONFLICT_STATUSES = frozenset(int(s) for s in (Status.LOCKED, Status.STALE, Status.FULL, Status.NOT_FOUND,
                                               Status.EXISTS))
# Lock operations, as DINT's lock clients report their rate: the lock
# requests answered (granted or rejected).
LOCK_OPS = frozenset(int(o) for o in (Op.LOCK_SHARED, Op.LOCK_EXCL))
LOCK_OPS_RULE = ("LOCK_SHARED and LOCK_EXCL requests answered (granted or rejected), of those first sent in the "
                 "measured window, per second of it")


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


# -- transactions ------------------------------------------------------------
@dataclass
class TxnCounts:
    """Transactions of one type (or all): started, committed, aborted by
    cause, outcome labels. The same shape in a client's result, merged over
    clients, and in summary.json."""
    started: int = 0
    committed: int = 0
    aborted: int = 0
    aborts: dict = field(default_factory=dict)
    outcomes: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "TxnCounts":
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    def add(self, other: "TxnCounts") -> None:
        self.started += other.started
        self.committed += other.committed
        self.aborted += other.aborted
        for mine, theirs in ((self.aborts, other.aborts), (self.outcomes, other.outcomes)):
            for name, n in theirs.items():
                mine[name] = mine.get(name, 0) + n

    def figures(self, hist, window_s: float) -> dict:
        """The summary's entry: the counts, rates over the window and the
        latency of committed ones (from their merged histogram)."""
        finished = self.committed + self.aborted
        lat = metrics.latency_us(hist)
        return {**asdict(self),
                "throughput_per_s": round(finished / window_s, 1),
                "goodput_per_s": round(self.committed / window_s, 1),
                "abort_rate": round(self.aborted / finished, 4) if finished else None,
                "abort_rate_by_cause": {c: (round(n / finished, 4) if finished else None)
                                        for c, n in self.aborts.items()},
                "latency_us": {k: lat[k] for k in ("mean", "p50", "p90", "p99", "p999", "max")}}


def summarize_transactions(results: list[dict], window_s: float) -> tuple[dict, dict]:
    """The `transactions` section: per type and in total, transactions that
    started in the measured window (committed, aborted by cause, throughput
    = finished / window, goodput = committed / window, latency of committed
    ones from the merged histograms), plus whole-run totals; and the merged
    histograms per type."""
    window: dict[str, TxnCounts] = {}
    run: dict[str, TxnCounts] = {}
    hists: dict[str, list] = {}
    all_window, all_run = TxnCounts(), TxnCounts()
    error_statuses: dict[str, int] = {}
    for r in results:
        t = r["transactions"]
        for k, n in t["error_statuses"].items():
            error_statuses[k] = error_statuses.get(k, 0) + n
        for name, c in t["types"].items():
            w, tot = TxnCounts.from_dict(c), TxnCounts.from_dict(c["total"])
            window.setdefault(name, TxnCounts()).add(w)
            run.setdefault(name, TxnCounts()).add(tot)
            all_window.add(w)
            all_run.add(tot)
            hists.setdefault(name, []).append(metrics.decode(c["histogram"]))
    merged = {name: metrics.merge(hs) for name, hs in hists.items()}
    section = {name: {**c.figures(merged[name], window_s), "run_total": asdict(run[name])}
               for name, c in window.items()}
    section["total"] = {**all_window.figures(metrics.merge(merged.values()), window_s), "run_total": asdict(all_run)}
    section["unfinished"] = sum(r["transactions"]["active"] for r in results)
    section["params_wrapped"] = sum(r["transactions"].get("params_wrapped", 0) for r in results)
    section["release_failures"] = sum(r["transactions"]["release_failures"] for r in results)
    section["error_statuses"] = error_statuses
    if all("answered_by_op" in r["stats"] for r in results):
        section["lock_ops"] = sum(n for r in results for op, n in r["stats"]["answered_by_op"].items()
                                  if int(op) in LOCK_OPS)
        section["lock_ops_per_s"] = round(section["lock_ops"] / window_s, 1)
        section["lock_ops_rule"] = LOCK_OPS_RULE
    return section, merged


def committed_by_type(txns: dict) -> dict:
    """{type: whole-run counts} of a `transactions` section, for the
    workload's consistency check."""
    return {name: t["run_total"] for name, t in txns.items()
            if isinstance(t, dict) and "run_total" in t and name != "total"}


# -- requests -----------------------------------------------------------------
def request_errors(results: list[dict], transactional: bool) -> tuple[int, int]:
    """(errors, conflicts) at the request level: requests given up, and
    replies whose status is not OK. In a transactional run, a conflict
    (CONFLICT_STATUSES) is an outcome of the transaction, counted apart
    from the errors."""
    errors = conflicts = 0
    for r in results:
        errors += r["stats"]["lost"]
        for code, n in r["stats"]["statuses"].items():
            if int(code) == Status.OK:
                continue
            if transactional and int(code) in CONFLICT_STATUSES:
                conflicts += n
            else:
                errors += n
    return errors, conflicts


@dataclass
class RunSummary:
    """summary.json. Optional sections are left out when None."""
    system: str
    workload: str
    concurrency: int
    clients: int
    napi: str
    duration_s: float
    warmup_s: float
    completed: int
    errors: int
    error_detail: dict
    throughput_per_s: float
    latency_us: dict
    client_cpu_util: float
    client_core_util: float
    client_wait_fraction: float
    client_saturated: bool
    client_saturation_rule: str
    instrument_check: dict
    servers: dict
    placement: dict
    napi_placement: dict
    env: dict
    config: dict
    server_cpu_us_per_op: float | None = None
    server_cost: dict | None = None
    schema: str = ""
    neighbour: dict | None = None
    open_loop: dict | None = None
    transactions: dict | None = None
    consistency: dict | None = None
    faults: dict | None = None
    stability: dict | None = None
    series: dict | None = None  # a point served by servers that served others (harness/run.py, Series)

    def to_dict(self) -> dict:
        out = {}
        for k, v in asdict(self).items():
            if v is not None or k in ("server_cpu_us_per_op", "server_cost"):
                out[k] = v
            if k == "server_cost":
                # what dint's ways around eBPF's constraints cost over the
                # same span (null figures with the reason for the others)
                out["dint_engine"] = engine_costs.section(self.system, self.server_cost, self.config,
                                                          self.latency_us, self.error_detail)
        return out


def link_drops_taken(links: dict | None) -> tuple[int, int, dict]:
    """What the links dropped (requests, replies) as the instrument check
    counts it, and what the check says of it: the links' counters when they
    were read (a local testbed's), else 0 for both, said so in a field of
    its own (`link_drops_not_measured`): then nothing may have been lost."""
    req = (links or {}).get("requests")
    rep = (links or {}).get("replies")
    if req is not None and rep is not None:
        return req, rep, {}
    why = (links or {}).get("why_null") or "not read"
    return 0, 0, {"link_drops_not_measured": f"the links' drops were not measured on this testbed ({why}) and are "
                                             "taken as 0: a datagram a link lost shows as a mismatch"}


def instrument_check(sent: int, received: int, srv: dict, servers_reported: bool, links: dict | None) -> dict:
    """Every datagram explained: the clients' requests reached the servers
    but for those the links dropped, the servers answered or dropped each,
    and the answers reached the clients but for those the links dropped."""
    req, rep, unmeasured = link_drops_taken(links)
    out = {"client_sent": sent, "server_rx": srv["rx"], "server_drop": srv["drop"], "server_tx": srv["tx"],
           "client_received": received, "link_drops": links, **unmeasured}
    out["match"] = (servers_reported and sent - req == srv["rx"] and srv["tx"] + srv["drop"] == srv["rx"]
                    and received == srv["tx"] - rep)
    return out


def summarize(cfg: RunConfig, results: list[dict], hist, server_stats: dict, placed: dict, napi: dict,
              late_ns: int, faults: dict | None = None, links: dict | None = None) -> tuple[RunSummary, dict]:
    """The run's summary from its clients' results and its servers' final
    counters (and, in a run with faults, the injector's: see
    harness/faults.py); and the merged latency histogram of each
    transaction type."""
    window = max(r["window_s"] for r in results)
    st = lambda key: sum(r["stats"][key] for r in results)  # noqa: E731
    transactional = any("transactions" in r for r in results)
    errors, conflicts = request_errors(results, transactional)
    util = max(r["cpu"]["process_util"] for r in results)
    sent = st("sent") - st("send_failed") + sum(r["pings_sent"] for r in results)
    received = st("replies") + st("stray") + sum(r["pings_received"] for r in results)
    srv = {k: sum((s or {}).get(k, 0) for s in server_stats.values()) for k in ("rx", "tx", "drop", "err")}
    statuses: dict[str, int] = {}
    for r in results:
        for code, n in r["stats"]["statuses"].items():
            statuses[str(code)] = statuses.get(str(code), 0) + n
    detail = {"error_status": st("err_status"), "lost": st("lost"), "retransmits": st("retransmits"),
              "busy_retries": st("busy_retries"), "statuses": statuses}
    if transactional:
        detail["conflict_statuses"] = conflicts
    s = RunSummary(
        system=cfg.system, workload=cfg.workload, concurrency=cfg.concurrency, clients=len(results),
        napi=cfg.napi, duration_s=round(window, 4), warmup_s=cfg.warmup_s,
        completed=st("ok"), errors=errors, error_detail=detail,
        throughput_per_s=round(st("ok") / window, 1), latency_us=metrics.latency_us(hist),
        client_cpu_util=round(util, 4),
        client_core_util=round(max(r["cpu"]["core_util"] for r in results), 4),
        client_wait_fraction=round(max(r["cpu"]["wait_fraction"] for r in results), 4),
        client_saturated=util >= SATURATED_UTIL, client_saturation_rule=SATURATION_RULE,
        # Validating the instrument: what the clients sent, the servers
        # received, but for what the links dropped on the way; what the
        # servers did not drop, they answered; and every answer reached a
        # client (pings included), but for what the links dropped. With
        # faults, what the injector dropped and added is accounted for too.
        instrument_check=fault_injection.instrument_check(
            sent, received, srv, None not in server_stats.values(), faults, links) if faults else
        instrument_check(sent, received, srv, None not in server_stats.values(), links),
        servers=server_stats, placement=placed, napi_placement=napi, env=envinfo.collect(),
        config=cfg.to_dict(), faults=faults,
        # whether the rate held steady over the window, from the clients' series
        stability=stability.section(results))
    if cfg.rate:
        s.open_loop = {
            "rate_per_client": cfg.rate, "offered_per_s": cfg.rate * len(results),
            "late": sum(r["stats"].get("open_loop_late", 0) for r in results),
            "skipped_after_warmup": sum(r["stats"].get("open_loop_skipped", 0) for r in results),
            "rule": OPEN_LOOP_RULE.format(late_us=late_ns / 1000)}
    hists: dict = {}
    if transactional:
        s.transactions, hists = summarize_transactions(results, s.duration_s)
    return s, hists


def one_line(s: dict) -> str:
    return _one_line(s) + _faults_note(s.get("faults")) + stability.note(s.get("stability"))


def _faults_note(f: dict | None) -> str:
    if not f:
        return ""
    c = f.get("counters")
    if not c:
        return f"  faults {f['canonical']} (counters not read)"
    req, rep = c["requests"], c["replies"]
    did = [f"{n} {what}" for n, what in ((req["dropped"], "requests dropped"), (req["duplicated"], "copied"),
                                         (req["late_duplicated"], "copied late"), (req["reordered"], "reordered"),
                                         (rep["dropped"], "replies dropped")) if n]
    return f"  faults {f['canonical']}: {', '.join(did) or 'none injected'}"


def _napi(s: dict) -> str:
    """The NAPI placement as it was: a cluster's is the hosts' own, not the
    one asked for (napi_placement: set false, with a note)."""
    return "hosts'" if (s.get("napi_placement") or {}).get("set") is False else s["napi"]


def _one_line(s: dict) -> str:
    lat = s["latency_us"]
    sat = " CLIENT-SATURATED" if s["client_saturated"] else ""
    if "transactions" in s:
        t = s["transactions"]["total"]
        causes = " ".join(f"{c} {n / max(1, t['committed'] + t['aborted']):.1%}" for c, n in t["aborts"].items() if n)
        mode = f" {s['config']['kv_mix']}" if s["workload"] == "kv" else f" {s['config'].get('cc') or ''}".rstrip()
        if s["config"].get("lock_protocol", "parallel") != "parallel":
            mode += f" {s['config']['lock_protocol']}"
        if s["config"].get("key_dist", "uniform") != "uniform":
            mode += f" keys={s['config']['key_dist']}"
        lock_ops = s["transactions"].get("lock_ops_per_s")
        return (f"{s['system']:>6} {s['workload']}{mode} c={s['concurrency']} napi={_napi(s)}: "
                f"{t['throughput_per_s']:,.0f} txn/s  goodput {t['goodput_per_s']:,.0f}/s  "
                f"aborts {t['abort_rate'] or 0:.1%}{' (' + causes + ')' if causes else ''}  "
                f"p50 {t['latency_us']['p50']} us  p99 {t['latency_us']['p99']} us  "
                f"requests {s['throughput_per_s']:,.0f}/s  "
                f"{f'lock ops {lock_ops:,.0f}/s  ' if lock_ops else ''}errors {s['errors']}  "
                f"client cpu {s['client_cpu_util']:.0%}{sat}")
    cfg = s.get("config") or {}  # (a summary written before runs recorded their config has none)
    keys = f" keys={cfg['key_dist']}" if cfg.get("key_dist", "uniform") != "uniform" else ""
    return (f"{s['system']:>6} {s['workload']}{keys} c={s['concurrency']} napi={_napi(s)}: "
            f"{s['throughput_per_s']:,.0f}/s  p50 {lat['p50']} us  p99 {lat['p99']} us  "
            f"errors {s['errors']}  client cpu {s['client_cpu_util']:.0%}{sat}")
