"""REPORT.md's "Fidelity to DINT's experiments": each experiment of DINT's
evaluation (NSDI'24, as its authors' artifact runs it) beside the run's
counterpart, every setting that differs and why, and the paper's headline
claims beside the run's figures.

DINT's side is the table DINT below (data: one entry per experiment,
written from the paper and its artifact's experiment scripts and
clients). The run's side is read from the run: its points as resolved in
experiments.yml (each point's RunConfig, defaults filled in), the
inventory a point ran on (<point>/inventory.yml), and for the claims the
points' measurements (ratios of medians with their intervals, as the rest
of the report gives them). An experiment the run's profile lacks is "not
in this profile", with the shipped profiles that have it."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from . import HarnessError, experiments, inventory

# What every experiment of DINT's shares (the artifact's scripts and clients).
DINT_STACK = "Caladan (its own kernel-bypass runtime)"
DINT_NETWORK = "a ConnectX NIC (mlx5) per CloudLab machine"
DINT_WARMUP_S, DINT_WINDOW_S = 5.0, 10.0  # clients count seconds 5-15 of 20 s runs
DINT_REPEAT = 1  # the scripts run each level once


@dataclass(frozen=True)
class DintExperiment:
    """One experiment of DINT's evaluation, and how to find its
    counterpart among a run's points: figure types, a workload (None: any)
    and RunConfig fields the counterpart has."""
    name: str
    figures: tuple[str, ...]
    workload: str | None
    where: dict
    size: tuple[str, int] | None  # (the RunConfig field it is, DINT's figure)
    size_text: str                # DINT's data, as the artifact sets it up
    servers: int
    server_cores: str
    client_machines: int
    load: str                     # how DINT loads it
    metric: str
    key_dist: str | None = None   # DINT's, in --key-dist's spelling; None: the benchmark's own rule
    lock_protocol: str | None = None
    cc: str | None = None
    variants: tuple[str, ...] = ()  # ablations: the variants DINT has (beside its default build)
    workloads: tuple[str, ...] = ()  # ablations: the workloads DINT runs them on
    slowpath: tuple[str, ...] = ()  # colocation: the placements of dint's slow path DINT compares (slowpath_cpus)
    # what differs by design, whatever the run: (aspect, DINT's, the harness's, why)
    notes: tuple[tuple[str, str, str, str], ...] = field(default=())


CORES_8 = "8 (NIC queues and interrupts on 8 cores; dint: 7 of them for XDP and one for its user-space slow path)"
DINT = (
    DintExperiment(
        "Lock server, 2PL", ("curve",), "lock", {"cc": "2pl"}, ("keys", 24_000_000),
        "24M locks; 5-10 locks a transaction, 80% shared", 1, CORES_8, 12,
        "10-300 user threads per client machine (kernel: 2-40)",
        "lock operations per second (every request, releases too)",
        key_dist="uniform", lock_protocol="sequential", cc="2pl",
        notes=(("metric", "lock operations per second, releases counted",
                "transactions and lock requests per second (`lock_ops_per_s`: locks only)",
                "a transaction is the unit of the harness's executor; its lock count is kept beside"),)),
    DintExperiment(
        "Lock server, FaSST (OCC)", ("curve",), "lock", {"cc": "occ"}, ("keys", 24_000_000),
        "24M locks; 5-10 keys a transaction, 80% read", 1, CORES_8, 12,
        "10-300 user threads per client machine (kernel: 2-40)", "operations per second",
        key_dist="uniform", cc="occ"),
    DintExperiment(
        "Log server", ("curve",), "log", {}, ("keys", 7_010_000),
        "40-byte appends, keys drawn from 0-7,009,999", 1, CORES_8, 12,
        "10-300 user threads per client machine (kernel: 2-40)", "appends per second", key_dist="uniform"),
    DintExperiment(
        "KV store", ("curve",), "kv", {}, ("keys", 24_000_000),
        "24M 40-byte records (2M subscribers x 12 call-forwarding keys); a kernel cache of 9M 4-slot buckets",
        1, CORES_8, 12, "10-300 user threads per client machine (kernel: 2-40)",
        "requests per second: parallel (100% reads) and contention (80% reads, 20% writes)",
        key_dist="nurand:1048575",
        notes=(("key space", "NURand(1048575) over 2M subscribers, then one of a subscriber's 12 call-forwarding "
                "keys uniformly", "one space of `keys` keys, each drawn by `key_dist`",
                "the harness's KV store is flat: a key is a number"),)),
    DintExperiment(
        "SmallBank", ("curve",), "smallbank", {}, ("scale", 24_000_000),
        "24M accounts, 960k hot (90% of transactions), 3-way replication", 3, CORES_8, 10,
        "10-200 user threads per client machine (kernel: 2-40)", "committed transactions per second", cc="2pl"),
    DintExperiment(
        "TATP", ("curve",), "tatp", {}, ("scale", 7_000_000),
        "7M subscribers, 3-way replication", 3, CORES_8, 13,
        "10-300 user threads per client machine (kernel: 2-40)", "committed transactions per second", cc="occ"),
    DintExperiment(
        "TATP CPU", ("cpu",), "tatp", {}, ("scale", 7_000_000),
        "7M subscribers", 3, "15 (dint) or 16 (kernel) for NIC queues", 3,
        "20 fixed total offered rates, 0.5M-10M txn/s", "server cores used, user and kernel apart (/proc/stat)",
        cc="occ",
        notes=(("metric", "the primary's cores used at each offered rate, user and kernel time from /proc/stat",
                "every server's cores used at each offered rate (`server_cores`): its processes' CPU time and the "
                "kernel's packet work for it (XDP runs, or NAPI threads), user and kernel apart where its stats "
                "lines carry its processes' user and system time, else packet work and processes; and server CPU "
                "us per request",
                "the harness reads each server's own CPU time on its host over the window (harness/cost.py), "
                "where /proc/stat would also count whatever else ran on those cores"),
               ("rates", "total offered load", "per client process (`rate`)",
                "the total is the rate times the client processes of the inventory"))),
    DintExperiment(
        "TATP colocation", ("colocation",), "tatp", {}, ("scale", 7_000_000),
        "7M subscribers", 3, "8, dint's user-space slow path pinned on the cores that run XDP", 10,
        "10-300 user threads per client machine", "committed transactions per second", cc="occ",
        slowpath=("xdp", "own")),
    DintExperiment(
        "Ablations", ("ablation",), None, {}, None,
        "the KV store's builds: write-through cache, and no bloom filter", 1, CORES_8, 12,
        "10-300 user threads per client machine", "requests per second",
        variants=("write-through", "no-bloom"), workloads=("kv",)),
)

# Why a setting differs, per aspect (the harness's design or the run's profile).
WHY = {
    "size": "the profile's size: local profiles fit one 2-core host, the paper profile takes DINT's sizes as far "
            "as its hosts hold them (`reproduce --plan`)",
    "key distribution": "the profile's `key_dist` (`--key-dist`); the paper profile draws as DINT does",
    "lock protocol": "the profile's `lock_protocol`: parallel takes a transaction's locks in one batch; the paper "
                     "profile takes them as DINT's client does (sequential)",
    "concurrency control": "the profile's `cc`",
    "kernel-bypass stack": "no Caladan package exists for this system: the bypass baseline is a DPDK server (on a "
                           "local testbed with DPDK's AF_XDP driver on a veth)",
    "network": "a local testbed is one machine: hosts are network namespaces joined by veth pairs, XDP runs in the "
               "veth driver",
    "network of a cluster": "the inventory's hosts and NICs, not DINT's machines",
    "variants": "the profile's ablations; a cache for a tenth of the records is the harness's own",
    "slow path placement": "the profile's `slowpath_cpus` variants: xdp pins dint's user space (dintd and the slow "
                           "path) to the server host's cores, where XDP runs; own to cores of its own (the "
                           "inventory's slowpath_cpus; on a testbed, the machine's cores no server runs on)",
    "workloads": "the profile's ablation workloads",
    "servers": "every server holds every key, a request goes to its key's primary (harness/placement.py): the "
               "microbenchmarks use every server of the inventory",
    "server cores": "the inventory's cores per server host",
    "client processes": "the inventory's client hosts times `clients_per_host`",
    "load": "the profile's sweep: requests in flight per client process (DINT: user threads per client machine)",
    "offered load": "the profile's `rate` sweep: transactions offered per second by each client process, below what "
                    "every system serves on the profile's hosts (DINT's total over its client machines)",
    "warm-up and window": "the profile's `warmup_s` and `duration_s` (the harness stops at the window's end)",
    "repetitions": "the profile's `repeat`: medians with intervals over repetitions interleaved across systems",
}


# -- the run's side -------------------------------------------------------------
@dataclass
class Counterpart:
    points: list            # [(experiments.Point, RunConfig)]
    systems: list[str]


def _resolved_points(source) -> list[experiments.Point]:
    """The points of a run's experiments.yml (a path) or of an experiment
    file (an ExperimentFile)."""
    if isinstance(source, experiments.ExperimentFile):
        return source.points()
    data = yaml.safe_load(Path(source).read_text()) or {}
    return [experiments.Point(name=p["name"], experiment=p["experiment"], figure=p["figure"], workload=p["workload"],
                              system=p["system"], variant=p.get("variant", ""), sweep_field="", sweep_value=None,
                              fields=p.get("fields") or {}, repeat=p.get("repeat", 1))
            for p in data.get("points", [])]


def _configs(points) -> list:
    out = []
    for p in points:
        try:
            out.append((p, p.config()))
        except (HarnessError, TypeError):
            continue  # a point this checkout no longer reads
    return out


def matches(e: DintExperiment, point, cfg) -> bool:
    if point.figure not in e.figures or (e.workload and point.workload != e.workload):
        return False
    if any(getattr(cfg, k, None) != v for k, v in e.where.items()):
        return False
    return True


def counterpart(e: DintExperiment, configs) -> Counterpart:
    pts = [(p, c) for p, c in configs if matches(e, p, c)]
    return Counterpart(pts, list(dict.fromkeys(p.system for p, _ in pts)))


def _shipped_profiles() -> dict[str, list]:
    """Each shipped profile's point configurations (read once per report)."""
    out = {}
    for path in sorted(experiments.EXPERIMENTS_DIR.glob("*.yml")):
        try:
            out[path.stem] = _configs(experiments.load(str(path)).points())
        except HarnessError:
            continue
    return out


def _shipped_profiles_with(e: DintExperiment, skip: str, shipped: dict[str, list]) -> list[str]:
    return [name for name, configs in shipped.items() if name != skip and counterpart(e, configs).points]


def run_inventory(run_dir: Path) -> inventory.Inventory | None:
    """The inventory the run's points ran on (the first point's copy)."""
    for pattern in ("*/inventory.yml", "*/r*/inventory.yml"):
        for path in sorted(Path(run_dir).glob(pattern)):
            try:
                return inventory.parse(yaml.safe_load(path.read_text()), str(path))
            except (HarnessError, yaml.YAMLError, OSError):
                continue
    return None


def _values(vals, fmt=str) -> str:
    vals = list(dict.fromkeys(vals))
    return ", ".join(fmt(v) for v in vals) if vals else "-"


def _num(v) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:g}"


def _window(w, d) -> str:
    return f"{_num(w)} s warm-up, {_num(d)} s window"


def aspects(e: DintExperiment, cp: Counterpart,
            inv: inventory.Inventory | None) -> list[tuple[str, str, str, bool, str]]:
    """(aspect, DINT's, this run's, same, why) for every setting compared."""
    rows = [(a, d, m, same, WHY["offered load"] if a == "load" and "cpu" in e.figures else WHY[a])
            for a, d, m, same in _aspects(e, cp, inv)]
    if inv is None or not (inv.local or inv.simulated):
        rows = [(a, d, m, same, "" if inv is None else WHY["network of a cluster"]) if a == "network"
                else (a, d, m, same, why) for a, d, m, same, why in rows]
    return rows


def _aspects(e: DintExperiment, cp: Counterpart, inv: inventory.Inventory | None) -> list[tuple[str, str, str, bool]]:
    cfgs = [c for _, c in cp.points]
    rows = []
    if e.workloads:
        mine = [p.workload for p, _ in cp.points]
        rows.append(("workloads", ", ".join(e.workloads), _values(mine), set(mine) == set(e.workloads)))
    if e.variants:
        mine = [p.variant for p, _ in cp.points if p.variant not in ("", "base")]
        rows.append(("variants", ", ".join(e.variants), _values(mine), set(mine) == set(e.variants)))
    if e.slowpath:
        mine = [c.slowpath_cpus for p, c in cp.points if p.system == "dint"]
        rows.append(("slow path placement", "on the cores that run XDP and take the NIC's interrupts (xdp), against "
                     "a core of its own as in DINT's other experiments (own)", _values(mine),
                     set(mine) == set(e.slowpath)))
    if e.size:
        fld, dint = e.size
        mine = [getattr(c, fld) for c in cfgs]
        rows.append(("size", f"{e.size_text} ({fld} {dint:,})", _values(mine, lambda v: f"{fld} {v:,}"),
                     set(mine) == {dint}))
    if e.key_dist:
        mine = [c.key_dist for c in cfgs]
        rows.append(("key distribution", e.key_dist, _values(mine), set(mine) == {e.key_dist}))
    if e.cc:
        mine = [c.cc for c in cfgs]
        rows.append(("concurrency control", e.cc, _values(mine), set(mine) == {e.cc}))
    if e.lock_protocol:
        mine = [c.lock_protocol for c in cfgs]
        rows.append(("lock protocol", e.lock_protocol, _values(mine), set(mine) == {e.lock_protocol}))
    if "bypass" in cp.systems:
        where = ("" if inv is None else " with DPDK's AF_XDP driver on a veth" if inv.local or inv.simulated
                 else " on the inventory's DPDK port")
        rows.append(("kernel-bypass stack", DINT_STACK, f"DPDK{where}", False))
    if inv is not None:
        net = ("veth pairs between network namespaces of one machine" if inv.local or inv.simulated
               else "the inventory's NICs")
        rows.append(("network", DINT_NETWORK, net, False))
        rows.append(("servers", str(e.servers), str(len(inv.servers)), e.servers == len(inv.servers)))
        cores = _values(len(h.cpus) for h in inv.servers)
        note = " (shared by the server hosts)" if (inv.local or inv.simulated) else ""
        rows.append(("server cores", e.server_cores, cores + note, False))
        procs = [len(inv.clients) * c.clients_per_host for c in cfgs]
        rows.append(("client processes", f"{e.client_machines} client machines",
                     _values(procs, lambda n: f"{n} on {len(inv.clients)} client host(s)"), False))
    else:
        rows.append(("network", DINT_NETWORK, "not recorded in this run (no point's inventory.yml)", False))
    sweep = [c.rate if "cpu" in e.figures else c.concurrency for c in cfgs]
    what = "offered rates per client process" if "cpu" in e.figures else "in flight per client process"
    load = f"{_values(sorted(set(sweep), key=float), _num)} {what}"
    if "cpu" in e.figures and inv is not None and cfgs:
        procs = {len(inv.clients) * c.clients_per_host for c in cfgs}
        if len(procs) == 1:
            n = procs.pop()
            totals = sorted({c.rate * n for c in cfgs})
            load += (f" ({len(totals)} total offered rates over its {n} client process{'' if n == 1 else 'es'}, "
                     f"{_num(totals[0])}-{_num(totals[-1])}/s)")
    rows.append(("load", e.load, load, False))
    windows = [(c.warmup_s, c.duration_s) for c in cfgs]
    rows.append(("warm-up and window", _window(DINT_WARMUP_S, DINT_WINDOW_S) + " (seconds 5-15 of 20 s runs)",
                 _values(windows, lambda w: _window(*w)), set(windows) == {(DINT_WARMUP_S, DINT_WINDOW_S)}))
    reps = [p.repeat for p, _ in cp.points]
    rows.append(("repetitions", str(DINT_REPEAT), _values(reps), set(reps) == {DINT_REPEAT}))
    return rows


# -- the section ------------------------------------------------------------------
def _claims(pp: pd.DataFrame, df: pd.DataFrame) -> list[str]:
    """The paper's headline claims beside the run's figures."""
    from . import report
    rows = []
    best = None
    p = report.peaks(pp)
    if not p.empty:
        for label in dict.fromkeys(p["label"]):
            g = p[p["label"] == label].set_index("system")
            if {"dint", "bypass"} <= set(g.index):
                r = report._r(df, g.loc["dint", "point"], g.loc["bypass", "point"], "goodput_per_s")
                if r.value is not None and (best is None or r.value > best[1].value):
                    best = (label, r)
    rows.append([f"up to {report.PAPER_TPUT_VS_BYPASS}x the throughput of the kernel-bypass stack",
                 f"dint/bypass peak goodput: the largest is {best[1].text()} ({best[0]}; every workload under Peak "
                 "goodput)" if best else "not measured in this run"])
    # the claim is about DINT's workloads: echo (the calibration) is not one
    d = pp[(pp["figure"] == "latency") & (pp["status"] == "done") & (pp["workload"] != "echo")]
    for col, limit, what in (("lat_mean_us", report.PAPER_MEAN_LAT_VS_BYPASS, "average"),
                             ("lat_p99_us", report.PAPER_P99_LAT_VS_BYPASS, "p99")):
        worst = None
        for wl, g in d.groupby("workload", sort=False):
            for _, gg in g.groupby(g["variant"].fillna(""), sort=False):
                gg = gg.set_index("system")
                if {"dint", "bypass"} <= set(gg.index):
                    r = report._r(df, gg.loc["dint", "point"], gg.loc["bypass", "point"], col)
                    if r.value is not None and (worst is None or r.value > worst[1].value):
                        worst = (report._label(gg.loc["dint"]), r)
        rows.append([f"at most {limit - 1:.0%} more {what} unloaded latency than kernel-bypass",
                     f"dint/bypass {what} at concurrency 1: the largest is {report._within(worst[1], limit)} "
                     f"({worst[0]}; every workload under Unloaded latency)" if worst else "not measured in this run"])
    return [report.md_table(["DINT's claim (against Caladan)", "this run (against its DPDK bypass server)"], rows)]


def section(run_dir: Path, pp: pd.DataFrame, df: pd.DataFrame, profile: str | None = None) -> list[str]:
    """The section's lines: the experiments' table, each one's settings that
    differ, and the headline claims."""
    from . import report
    run_dir = Path(run_dir)
    res = run_dir / "experiments.yml"
    if not res.exists():
        return ["No experiments.yml in this run: its points cannot be set beside DINT's experiments."]
    if profile is None:
        profile = str((yaml.safe_load(res.read_text()) or {}).get("profile") or "")
    configs = _configs(_resolved_points(res))
    inv = run_inventory(run_dir)
    done = set(pp.loc[pp["status"] == "done", "point"]) if len(pp) else set()
    overview, details = [], []
    shipped = None
    for e in DINT:
        cp = counterpart(e, configs)
        if not cp.points:
            shipped = _shipped_profiles() if shipped is None else shipped
            where = _shipped_profiles_with(e, profile, shipped)
            overview.append([e.name, e.size_text, "not in this profile" + (
                f" (in: {', '.join(where)})" if where else " (in no shipped profile)"), "-"])
            continue
        names = list(dict.fromkeys(p.experiment for p, _ in cp.points))
        measured = sum(1 for p, _ in cp.points if p.name in done)
        rows = aspects(e, cp, inv)
        differ = [r for r in rows if not r[3]]
        overview.append([e.name, e.size_text, f"{', '.join(names)}: {len(cp.points)} points "
                         f"({measured} measured) on {', '.join(cp.systems)}", str(len(differ) + len(e.notes))])
        lines = [f"- **{a}**: DINT {d}; here {m}" + (f" (why: {why})" if why else "") + "."
                 for a, d, m, _, why in differ + [(*n[:3], False, n[3]) for n in e.notes]]
        same = [a for a, _, _, s, _ in rows if s]
        if same:
            lines.append(f"- as DINT: {', '.join(same)}.")
        details += [f"**{e.name}** (DINT: {e.metric}; {e.servers} server(s))", ""] + lines + [""]
    out = ["Each experiment of DINT's evaluation (NSDI'24, as its artifact runs it) beside its counterpart in this "
           f"run's profile ({profile or 'unknown'}); below, every setting that differs and why.", "",
           report.md_table(["DINT's experiment", "DINT's data", "this run", "settings that differ"], overview), ""]
    out += details
    out += ["The paper's headline claims beside this run's figures (medians, each ratio with its 95% interval):", ""]
    out += _claims(pp, df)
    return out
