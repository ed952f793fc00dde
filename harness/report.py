"""REPORT.md of a run: consistency and other flags first, then per workload
and system the peak goodput, the unloaded latency and the server CPU per
transaction, with the dint/kernel and dint/bypass ratios beside the paper's
claims and beside the same run's echo ceilings.

Values are a point's medians over its measured repetitions
(results.per_point); every ratio carries its 95% bootstrap interval from
the repetitions of the points it divides (stats.ratio_ci), "~" before it
when the interval includes 1 (not significant), "[? one repetition]" when
there is no interval. Flags speak of each repetition; a point any of whose
repetitions had an unstable window (harness/stability.py) carries
UNSTABLE_MARK after its figures."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from . import results, stability, stats

SYSTEMS = results.SYSTEM_ORDER
# DINT (NSDI'24), abstract and section 6: up to 2.6x the throughput of the
# DPDK-based system, at most 10% (mean) / 16% (p99) more unloaded latency.
PAPER_TPUT_VS_BYPASS = 2.6
PAPER_MEAN_LAT_VS_BYPASS = 1.10
PAPER_P99_LAT_VS_BYPASS = 1.16
UNSTABLE_MARK = "†"  # after a point's figures: a repetition's rate was not steady over its window


def _num(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (int, float)) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _r(df: pd.DataFrame, num: str | None, den: str | None, col: str, den_col: str | None = None) -> stats.Ratio:
    """num's median of col over den's median of den_col (col), with its
    interval from both points' repetitions (df: one row per repetition)."""
    if not num or not den:
        return stats.Ratio(None, None, None, 0, 0, stats.NONE)
    return stats.ratio_ci(results.samples(df, num, col), results.samples(df, den, den_col or col))


def _ratio(df: pd.DataFrame, num: str | None, den: str | None, col: str, den_col: str | None = None,
           percent: bool = False) -> str:
    return _r(df, num, den, col, den_col).text(percent)


def _points(g: pd.DataFrame) -> dict:
    """system -> point name, of per-point rows indexed by system."""
    return {s: g.loc[s, "point"] for s in g.index}


def md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def _label(r) -> str:
    parts = [r["workload"]]
    v = r.get("variant") or ""
    if isinstance(v, str) and v:
        parts.append(v)
    elif r["workload"] == "kv" and isinstance(r.get("kv_mix"), str) and r["kv_mix"]:
        parts.append(r["kv_mix"])
    elif isinstance(r.get("cc"), str) and r["cc"]:
        parts.append(r["cc"])
    # the options other than their defaults (workloads they do not apply to have "")
    for col, default in (("lock_protocol", "parallel"), ("key_dist", "uniform")):
        if isinstance(r.get(col), str) and r[col] not in ("", default) and r[col] not in parts:
            parts.append(r[col])
    return " ".join(parts)


def _cost(v, digits: int = 2) -> str:
    """A server CPU figure; "n/a" where the point has none (its reason is
    among the flags)."""
    s = _num(v, digits)
    return "n/a" if s == "-" else s


def _sat(r) -> str:
    return " (client saturated)" if bool(r.get("client_saturated")) else ""


def _unstable(r) -> str:
    """UNSTABLE_MARK after a point's figure (a row of results.per_point, or
    one of its itertuples) when any of its repetitions was unstable."""
    v = r.get("unstable") if hasattr(r, "get") else getattr(r, "unstable", 0)
    try:
        return UNSTABLE_MARK if int(v or 0) > 0 else ""
    except (TypeError, ValueError):  # NaN: a point without the column
        return ""


def _attempts(r) -> str:
    try:
        return str(int(r.attempts))
    except (TypeError, ValueError):
        return "-"


def flags(df: pd.DataFrame) -> list[str]:
    """The flags, one repetition at a time: a point repeated names each
    repetition it flags ("<point> r2")."""
    lines = []
    rep = pd.to_numeric(df["repetition"], errors="coerce").fillna(1).astype(int) if "repetition" in df \
        else pd.Series(1, index=df.index)
    many = df.groupby("point")["point"].transform("size") > 1
    df = df.assign(point=[f"{p} r{k}" if m else p for p, k, m in zip(df["point"], rep, many)])
    unit = "run(s)" if many.any() else "point(s)"
    d = df[df["status"] == "done"]
    verdict = d["consistency"].fillna("").astype(str)
    checked = d[verdict.isin(["ok", "violations", "partly unchecked"])]
    viol = d[verdict == "violations"]
    partly = checked[checked["consistency_unchecked"].fillna("").astype(str) != ""]
    unchecked = d[verdict == "unchecked"]
    if not viol.empty:
        lines.append(f"**CONSISTENCY VIOLATIONS in {len(viol)} {unit}: "
                     + "; ".join(f"{r.point} ({r.consistency_failed})" for r in viol.itertuples()) + "**")
    if not unchecked.empty:
        lines.append(f"**CONSISTENCY NOT CHECKED in {len(unchecked)} measured {unit} (no verdict drawn; a red x "
                     "in the figures): " + "; ".join(f"{r.point} ({r.consistency_unchecked}; attempts "
                                                      f"{_attempts(r)})" for r in unchecked.itertuples()) + "**")
    if len(checked):
        # no violation reads as fully checked only when every check drew a verdict
        line = f"Consistency: checked after {len(checked)} transactional {unit}, " + (
            "no violation" if viol.empty else f"violations in {len(viol)}")
        if partly.empty:
            line += "; every check drew a verdict."
        else:
            line += (f"; but in {len(partly)} of them some checks drew no verdict (they pass unchecked): "
                     + "; ".join(f"{r.point}: {r.consistency_unchecked}" for r in partly.itertuples()) + ".")
        lines.append(line)
    failed = df[df["status"] == "failed"]
    if not failed.empty:
        lines.append(f"**{len(failed)} {unit} failed:** " + "; ".join(
            f"{r.point}: {str(r.error)[:160]}" for r in failed.itertuples()))
    errs = d[d["error"].fillna("").astype(str) != ""]
    errs = errs[~errs.index.isin(viol.index) & ~errs.index.isin(unchecked.index)]
    if not errs.empty:
        lines.append(f"{len(errs)} measured {unit} reported an error: " + "; ".join(
            f"{r.point}: {str(r.error)[:120]}" for r in errs.itertuples()))
    sat = d[d["client_saturated"].fillna(False).astype(bool)]
    if not sat.empty:
        lines.append(f"Client saturated (>= 90% CPU) in {len(sat)} of {len(d)} {unit}: there the client, not the "
                     "system, may be the limit (hollow markers in the figures).")
    over = d[d["oversubscribed"].fillna(False).astype(bool)]
    if not over.empty:
        lines.append(f"Oversubscribed hosts in {len(over)} of {len(d)} {unit} (servers sharing cores with each "
                     "other or with clients; see each summary's placement): compare systems as ratios only.")
    if "server_cpu_missing" in d.columns:
        nocost = d[d["server_cpu_missing"].fillna("").astype(str) != ""]
        if not nocost.empty:
            lines.append(f"No server CPU figure in {len(nocost)} measured {unit} (n/a in the tables, missing from "
                         "the figures): " + "; ".join(f"{r.point} ({r.server_cpu_missing})"
                                                      for r in nocost.head(8).itertuples())
                         + (" ..." if len(nocost) > 8 else ""))
    if "rate_not_reached" in d.columns:
        short = d[d["rate_not_reached"].astype(object).fillna(False).astype(bool)]
        if not short.empty:
            lines.append(f"Offered rate not reached in {len(short)} of "
                         f"{int(d['offered_per_s'].notna().sum())} open-loop {unit} (finished less than "
                         f"{results.REACHED_SHARE:.0%} of it; NOT REACHED in the tables, the share in red in the "
                         "figures): " + "; ".join(f"{r.point} ({_share(r.achieved_share)} of "
                                                  f"{_num(r.offered_per_s)}/s)" for r in short.head(8).itertuples())
                         + (" ..." if len(short) > 8 else ""))
    lines += stability_flags(d, unit)
    lost = d[d["instrument_match"].astype(str).str.lower() == "false"]
    if not lost.empty:
        lines.append(f"Instrument check mismatch (sent != received by servers) in {len(lost)} {unit}.")
    errors = d[d["errors"].fillna(0).astype(float) > 0]
    if not errors.empty:
        lines.append(f"Request errors (lost or error statuses) in {len(errors)} {unit}: "
                     + ", ".join(f"{r.point} ({int(r.errors)})" for r in errors.head(8).itertuples())
                     + (" ..." if len(errors) > 8 else ""))
    return lines


def _true(v) -> bool:
    """A boolean column's value as points.csv reads back (True, "True", NaN)."""
    if isinstance(v, str):
        return v.lower() == "true"
    try:
        return v == v and bool(v)
    except (TypeError, ValueError):
        return False


def _share(v) -> str:
    try:
        return f"{float(v):.0%}"
    except (TypeError, ValueError):
        return "?"


def stability_flags(d: pd.DataFrame, unit: str) -> list[str]:
    """The flag of the measured runs (d, points named per repetition)
    whose window's rate was not steady, with the mark's one explanation;
    or, when none was, how many were judged."""
    if "stability" not in d:
        return []
    v = d["stability"].fillna("").astype(str)
    judged, unstable, unjudged = d[v.isin(["stable", "unstable"])], d[v == "unstable"], d[v == "not judged"]
    if judged.empty and unjudged.empty:
        return []
    rule = (f"a linear trend of its rate changing by more than {stability.DRIFT_LIMIT:.0%} over the window, "
            f"{{}} {stability.BIN_S:g} s rates with a coefficient of variation over {stability.SPREAD_LIMIT:.0%}")
    if not unstable.empty:
        line = (f"Unstable window in {len(unstable)} of {len(judged)} judged {unit} ("
                + rule.format("or") + ": a warm-up not over, "
                f"a neighbour on the host; {UNSTABLE_MARK} after a point's figures in the tables and on the curves "
                "when any of its repetitions was): " + "; ".join(
                    f"{r.point} ({r.stability_note})" for r in unstable.head(8).itertuples())
                + (" ..." if len(unstable) > 8 else "") + ".")
    elif judged.empty:
        line = "Stability: no run's window judged."
    else:
        line = (f"Stability: the rate held steady over the window in all {len(judged)} judged {unit} (none had "
                + rule.format("nor") + ").")
    if not unjudged.empty:
        line += (f" {len(unjudged)} measured {unit} not judged (e.g. {unjudged.iloc[0]['point']}: "
                 f"{unjudged.iloc[0]['stability_note']}).")
    return [line]


def ceilings_section(pp: pd.DataFrame, df: pd.DataFrame) -> list[str]:
    """pp: one row per point (results.per_point); df: one per repetition."""
    cal = pp[(pp["figure"] == "calibration") & (pp["status"] == "done")]
    if cal.empty:
        return ["No echo calibration in this run."]
    rows = []
    for s in SYSTEMS:
        c = cal[cal["system"] == s]
        if c.empty:
            continue
        lo, hi = c[c["concurrency"] == c["concurrency"].min()].iloc[0], c[c["concurrency"] == c["concurrency"].max()].iloc[0]
        rows.append([s, f"{_num(hi['throughput_per_s'])}/s{_sat(hi)}{_unstable(hi)}",
                     _num(lo["lat_mean_us"]) + _unstable(lo), _num(lo["lat_p50_us"]), _num(lo["lat_p99_us"])])
    out = [md_table(["system", "echo throughput (ceiling)", "echo mean us (c=1)", "p50 us", "p99 us"], rows)]
    ceil = results.echo_ceiling_points(df)
    if "dint" in ceil:
        out.append("")
        out.append("Echo ratios (the most any workload's ratio can show on this client): " + ", ".join(
            f"dint/{s} {_ratio(df, ceil['dint'], ceil[s], 'throughput_per_s')}" for s in ("kernel", "bypass")
            if s in ceil))
    return out


def peaks(df: pd.DataFrame) -> pd.DataFrame:
    d = df[(df["figure"] == "curve") & (df["status"] == "done") & df["goodput_per_s"].notna()].copy()
    if d.empty:
        return d
    d["label"] = [_label(r) for _, r in d.iterrows()]
    idx = d.groupby(["label", "system"])["goodput_per_s"].idxmax()
    return d.loc[idx]


def peaks_section(pp: pd.DataFrame, df: pd.DataFrame) -> list[str]:
    p = peaks(pp)
    if p.empty:
        return ["No throughput-latency curve in this run."]
    ceil, cpt = results.echo_ceilings(pp), results.echo_ceiling_points(df)
    rows = []
    for label in dict.fromkeys(p["label"]):
        g = p[p["label"] == label].set_index("system")
        pt = _points(g)
        cells = []
        for s in SYSTEMS:
            if s in g.index:
                r = g.loc[s]
                cells.append(f"{_num(r['goodput_per_s'])} (c={int(r['concurrency'])}){_sat(r)}{_unstable(r)}")
            else:
                cells.append("-")
        req = [f"{s} {_ratio(df, pt[s], cpt[s], 'request_throughput_per_s', 'throughput_per_s', percent=True)}"
               for s in SYSTEMS if s in g.index and s in ceil and ceil[s]]
        rows.append([label] + cells + [_ratio(df, pt.get("dint"), pt.get("kernel"), "goodput_per_s"),
                                       _ratio(df, pt.get("dint"), pt.get("bypass"), "goodput_per_s"),
                                       ", ".join(req) or "-"])
    out = [md_table(["workload", "dint goodput/s", "kernel goodput/s", "bypass goodput/s", "dint/kernel",
                     "dint/bypass", "request rate / echo ceiling"], rows)]
    out.append("")
    line = f"Paper: dint up to {PAPER_TPUT_VS_BYPASS}x the throughput of the DPDK system (bypass)."
    if "dint" in ceil and "bypass" in ceil:
        line += (" This run's echo ceiling ratio dint/bypass is "
                 f"{_ratio(df, cpt['dint'], cpt['bypass'], 'throughput_per_s')}")
        if "kernel" in ceil:
            line += f", dint/kernel {_ratio(df, cpt['dint'], cpt['kernel'], 'throughput_per_s')}"
        line += ": a workload ratio near it says the client, not the server, bounds the comparison."
    out.append(line)
    over = [f"{r['label']} on {r['system']}" for _, r in p.iterrows()
            if r["system"] in ceil and ceil[r["system"]] and r["request_throughput_per_s"] > ceil[r["system"]]]
    if over:
        out += ["", "Request rate above the system's own echo calibration (" + ", ".join(over) + "): that "
                "calibration point is not a ceiling there (noise, or a polling server sharing its core)."]
    return out


def _within(r: stats.Ratio, limit: float) -> str:
    """A latency ratio against the paper's limit: within, above, or (with an
    interval that holds the limit) undecided."""
    if r.value is None:
        return "-"
    if r.low is None:
        where = "within" if r.value <= limit else "above"
    else:
        where = "within" if r.high <= limit else "above" if r.low > limit else "the limit inside the interval"
    return f"{r.text()} ({where})"


def latency_section(pp: pd.DataFrame, df: pd.DataFrame) -> list[str]:
    d = pp[(pp["figure"] == "latency") & (pp["status"] == "done")].copy()
    if d.empty:
        return ["No unloaded latency points in this run."]
    d["label"] = [_label(r) for _, r in d.iterrows()]
    rows = []
    for label in dict.fromkeys(d["label"]):
        g = d[d["label"] == label].set_index("system")
        cell = lambda s, c: float(g.loc[s, c]) if s in g.index and pd.notna(g.loc[s, c]) else float("nan")  # noqa: E731
        row = [label]
        for s in SYSTEMS:
            row.append(" / ".join(_num(cell(s, c)) for c in ("lat_mean_us", "lat_p50_us", "lat_p99_us"))
                       + _unstable(g.loc[s]) if s in g.index else "-")
        pt = _points(g)
        row += [_within(_r(df, pt.get("dint"), pt.get("bypass"), "lat_mean_us"), PAPER_MEAN_LAT_VS_BYPASS),
                _within(_r(df, pt.get("dint"), pt.get("bypass"), "lat_p99_us"), PAPER_P99_LAT_VS_BYPASS),
                _ratio(df, pt.get("dint"), pt.get("kernel"), "lat_mean_us")]
        rows.append(row)
    out = [md_table(["workload", "dint mean/p50/p99 us", "kernel mean/p50/p99 us", "bypass mean/p50/p99 us",
                     f"dint/bypass mean (paper <= {PAPER_MEAN_LAT_VS_BYPASS:.2f}x)",
                     f"dint/bypass p99 (paper <= {PAPER_P99_LAT_VS_BYPASS:.2f}x)", "dint/kernel mean"], rows)]
    out += ["", "With --napi inline, veth runs the receiver's packet work on the sending CPU: dint answers in XDP "
                "on the client's core with no wake-up, while the kernel and bypass servers are woken on the "
                "server core (bypass backs off when idle). On this testbed that, not the stack alone, separates "
                "the unloaded latencies."]
    cal = pp[(pp["figure"] == "calibration") & (pp["status"] == "done")]
    lo = cal[cal["concurrency"] == cal["concurrency"].min()].set_index("system") if not cal.empty else None
    if lo is not None and {"dint", "bypass"} <= set(lo.index):
        pt = _points(lo)
        out += ["", f"Echo at concurrency 1 in this run: dint/bypass mean "
                    f"{_ratio(df, pt['dint'], pt['bypass'], 'lat_mean_us')}, "
                    f"p99 {_ratio(df, pt['dint'], pt['bypass'], 'lat_p99_us')}."]
    return out


def cpu_section(df: pd.DataFrame) -> list[str]:
    out = []
    p = peaks(df)
    if not p.empty:
        rows = []
        for label in dict.fromkeys(p["label"]):
            g = p[p["label"] == label].set_index("system")
            rows.append([label] + [f"{_cost(g.loc[s, 'server_cpu_us_per_txn'])} ({_cost(g.loc[s, 'server_cpu_us_per_op'])})"
                                   f"{_unstable(g.loc[s])}" if s in g.index else "-" for s in SYSTEMS])
        out += ["At each system's peak-goodput point: server CPU us per transaction (per request in brackets). "
                "Per transaction = per request x requests per finished transaction over the run.", "",
                md_table(["workload"] + [f"{s}" for s in SYSTEMS], rows)]
    c = df[(df["figure"] == "cpu") & (df["status"] == "done")]
    if not c.empty:
        out += ([""] if out else []) + [
                "Fixed offered rates (open loop), as DINT measures CPU efficiency: the server cores used over the "
                "window (CPU seconds per second, all servers; harness/cost.py), apart as /proc/stat would split "
                "them (kernel and user) where the servers' stats lines carry their processes' user and system time, "
                "else as the kernel's packet work (XDP or NAPI) and the server processes; then server CPU us per "
                "request and the rate achieved (transactions, or requests, per second). "
                f"**NOT REACHED**: the system finished less than {results.REACHED_SHARE:.0%} of the offered rate "
                "(the share it finished in brackets): the server or the client could not keep up, and its figures "
                "are not those of the offered rate.", ""]
        for exp, e in c.groupby("experiment", sort=False):
            rows = []
            for rate, g in e.groupby("rate", sort=True):
                g = g.set_index("system")
                offered = pd.to_numeric(g["offered_per_s"], errors="coerce").max() if "offered_per_s" in g else None
                rows.append([_num(offered) if offered == offered and offered is not None else "-", _num(rate)]
                            + [_cores_cell(g.loc[s]) if s in g.index else "-" for s in SYSTEMS])
            out += [f"{exp}:", "", md_table(["offered/s (all clients)", "offered/s per client"] + SYSTEMS, rows), ""]
        out.pop()
    return out or ["No CPU figures in this run."]


def _cores_cell(r) -> str:
    """A fixed-rate point: cores used and their split, CPU per request, the
    achieved rate, and NOT REACHED when it fell short."""
    def v(col):
        x = r.get(col)
        try:
            x = float(x)
        except (TypeError, ValueError):
            return None
        return None if x != x else x
    total = v("server_cores")
    if total is None:
        cores = "cores n/a"
    elif v("server_cores_user") is not None and v("server_cores_kernel") is not None:
        cores = f"{total:.2f} cores (kernel {v('server_cores_kernel'):.2f}, user {v('server_cores_user'):.2f})"
    else:
        cores = (f"{total:.2f} cores (packet work {_num(v('server_cores_packet'), 2)}, processes "
                 f"{_num(v('server_cores_process'), 2)})")
    cell = f"{cores}; {_cost(r.get('server_cpu_us_per_op'))} us/req; {_num(r.get('throughput_per_s'))}/s"
    if _true(r.get("rate_not_reached")):
        share = v("achieved_share")
        cell += f" **NOT REACHED** ({share:.0%})" if share is not None else " **NOT REACHED**"
    return cell + _sat(r) + _unstable(r)


def _median(df: pd.DataFrame, point: str, col: str) -> str:
    """A point's median of a ratio it measures itself (the neighbour's work
    kept), with the interval of the median (stats.median_ci)."""
    m = stats.median_ci(results.samples(df, point, col))
    if m.median is None:
        return ""
    if m.low is None:
        return f"{m.median:.2f} [? {m.note}]"
    level = "" if m.level >= stats.CONFIDENCE else f", {m.level:.1%}"
    return f"{m.median:.2f} [{m.low:.2f}-{m.high:.2f}{level}]"


def slowpath_note(run_dir: Path | None, d: pd.DataFrame) -> list[str]:
    """Where dint's slow path ran in the points that place it
    (slowpath_cpus), read from the run's inventory: on a testbed without a
    spare core, `own` is the clients' core, and the report says so."""
    if "slowpath_cpus" not in d or not (d["slowpath_cpus"] == "own").any():
        return []
    from . import HarnessError, inventory
    from .fidelity import run_inventory
    inv = run_inventory(run_dir) if run_dir else None
    if inv is None:
        return ["", "dint's slow path: `xdp` on the server hosts' cores (where XDP runs), `own` on cores of its "
                    "own (the inventory's slowpath_cpus); this run's inventory was not recorded."]
    try:
        own = sorted({c for h in inv.servers for c in inventory.slowpath_cpus(inv, h, "own")})
    except HarnessError as e:
        return ["", f"dint's slow path: {e}"]
    xdp = sorted({c for h in inv.servers for c in h.cpus})
    shared = sorted(set(own) & {c for h in inv.clients for c in h.cpus})
    line = (f"dint's slow path (dintd and its slow path process): `xdp` on the server hosts' cores "
            f"(cpu {', '.join(map(str, xdp))}), where XDP runs (NAPI pinned there, or the NIC's interrupts); `own` "
            f"on cpu {', '.join(map(str, own))}")
    if shared:
        line += (f", which the clients run on too: this machine has no core that neither a server nor a client "
                 "runs on, so `own` takes the slow path off XDP's core but puts it beside the client (and the "
                 "client's share of that core with it)")
    return ["", line + "."]


def bars_section(pp: pd.DataFrame, df: pd.DataFrame, figure: str, run_dir: Path | None = None) -> list[str]:
    d = pp[(pp["figure"] == figure) & (pp["status"] == "done")]
    if d.empty:
        return []
    rows = [[r.experiment, r.workload, r.variant, r.system, _num(r.goodput_per_s) + _unstable(r), _num(r.lat_p50_us),
             _num(r.lat_p99_us), _cost(r.server_cpu_us_per_op), "yes" if r.client_saturated else ""]
            for r in d.itertuples()]
    head = ["experiment", "workload", "variant", "system", "goodput/s", "p50 us", "p99 us", "server CPU us/req",
            "client saturated"]
    if figure == "colocation":
        for row, r in zip(rows, d.itertuples()):
            row.append(_median(df, r.point, "neighbour_share"))
        head.append("neighbour's work kept (loaded / idle servers)")
    out = [md_table(head, rows)]
    if figure == "colocation" and d["neighbour_share"].notna().any():
        out += ["", "The neighbour's work rate with the servers up but idle shows what a server takes from its "
                    "cores even with nothing to do (a polling bypass server); under load, what serving the "
                    "requests took from it."]
    if figure == "colocation":
        out += slowpath_note(run_dir, d)
    return out


def sweep_section(pp: pd.DataFrame, df: pd.DataFrame) -> list[str]:
    """Per experiment of the sweep figure (beyond DINT's evaluation: the
    KV store's value size, its keys' skew) and variant: each swept value's
    goodput and latency per system, and dint's goodput over the others'."""
    d = pp[(pp["figure"] == "sweep") & (pp["status"] == "done")]
    if d.empty:
        return []
    out = ["Settings DINT's evaluation does not vary, at a fixed load: per value, each system's goodput/s and "
           "p50 / p99 latency (us), and for transactions the abort rate; then dint's goodput over the others'.", ""]
    for exp, e in d.groupby("experiment", sort=False):
        found = results.swept_axis(e)
        if found is None:
            continue
        col, label, conv = found
        for variant, g in e.groupby(e["variant"].fillna(""), sort=False):
            g = g.assign(_x=[conv(v) for v in g[col]])
            rows = []
            for value, gg in sorted(g.groupby(col, sort=False), key=lambda kv: conv(kv[0])):
                gg = gg.set_index("system")
                cells = []
                for sname in SYSTEMS:
                    if sname not in gg.index:
                        cells.append("-")
                        continue
                    r = gg.loc[sname]
                    aborts = r.get("abort_rate")
                    cells.append(f"{_num(r['goodput_per_s'])}/s, {_num(r['lat_p50_us'])} / {_num(r['lat_p99_us'])} us"
                                 + (f", aborts {float(aborts):.1%}" if aborts is not None and aborts == aborts else "")
                                 + _sat(r) + _unstable(r))
                pt = _points(gg)
                shown = int(value) if isinstance(value, float) and value.is_integer() else value
                rows.append([str(shown)] + cells + [_ratio(df, pt.get("dint"), pt.get("kernel"), "goodput_per_s"),
                                                    _ratio(df, pt.get("dint"), pt.get("bypass"), "goodput_per_s")])
            name = exp + (f" ({variant})" if variant else "")
            out += [f"{name}, by {label}:", "",
                    md_table([col] + SYSTEMS + ["dint/kernel goodput", "dint/bypass goodput"], rows), ""]
    return out[:-1]


def faults_section(pp: pd.DataFrame, df: pd.DataFrame) -> list[str]:
    """Per experiment of the faults figure and system: the goodput kept at
    each injected loss rate as a share of the same system's fault-free
    point, with each point's consistency verdict."""
    d = pp[(pp["figure"] == "faults") & (pp["status"] == "done")]
    if d.empty:
        return []
    out = ["Goodput kept at each injected loss rate, as a share of the same system's point without faults "
           "(consistency verdict in brackets; requests are exactly once, so any violation is a bug). The instrument "
           "check accounts for what the injector dropped and added.", ""]
    for (exp, variant), g in d.groupby(["experiment", d["variant"].fillna("")], sort=False):
        name = exp + (f" ({variant})" if variant else "")
        for s in SYSTEMS:
            rows = g[g["system"] == s].sort_values("loss_percent")
            if rows.empty:
                continue
            base = rows[rows["faults"].fillna("") == ""]
            cells = []
            for r in rows.itertuples():
                if r.faults == "":
                    continue
                kept = ("- (no fault-free point)" if base.empty else
                        _ratio(df, r.point, base["point"].iloc[0], "goodput_per_s", percent=True))
                cells.append(f"{r.faults}: {kept} ({r.consistency or 'no check'}){_unstable(r)}")
            fault_free = (f"fault-free {_num(float(base['goodput_per_s'].iloc[0]))}/s{_unstable(base.iloc[0])} "
                          f"({base['consistency'].iloc[0] or 'no check'})" if len(base) else "no fault-free point")
            out.append(f"- {name}, {s}: {fault_free}; " + ("; ".join(cells) or "no point with faults"))
    mism = d[(d["faults"].fillna("") != "") & (d["instrument_match"].astype(str).str.lower() == "false")]
    if not mism.empty:
        out += ["", "Not every datagram explained by the injector's counters in: "
                + ", ".join(mism["point"]) + " (see each summary's instrument_check.parts)."]
    return out


def render(run_dir: Path, df: pd.DataFrame) -> str:
    run_dir = Path(run_dir)
    env = {}
    if (run_dir / "env.json").exists():
        env = json.loads((run_dir / "env.json").read_text())
    pp = results.per_point(df)
    counts = pp["status"].value_counts().to_dict()
    lines = [f"# Report: run {run_dir.name}", ""]
    fl = flags(df)
    if fl:
        lines += ["## Flags", ""] + [f"- {f}" for f in fl] + [""]
    runs = df["status"].value_counts().to_dict()
    lines += ["Points: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in results.STATUSES)
              + (f" ({len(df)} runs with their repetitions: " + ", ".join(f"{runs.get(s, 0)} {s}"
                                                                         for s in results.STATUSES) + ")"
                 if len(df) > len(pp) else "") + ". "
              "Table: `points.csv` (a row per run), `points-summary.csv` (per point and headline metric: median "
              "and its interval); figures: `plots/`; resolved experiments: `experiments.yml`.", ""]
    most = int(pp["n"].max()) if len(pp) else 0
    if most > 1:
        lines += [f"Repetitions: up to {most} per point, interleaved across systems. Values are medians over a "
                  "point's measured repetitions; each ratio is one of medians with its 95% bootstrap interval "
                  "[low-high], ~ before it when the interval includes 1 (not significant); figures draw the "
                  "medians' intervals as error bars.", ""]
    else:
        lines += ["One repetition per point: values are single measurements, and no ratio has an interval "
                  "([? one repetition]); set `repeat` in the experiment file for intervals.", ""]
    if env:
        keys = ("hostname", "kernel", "cpu_model", "cpus", "git_revision", "git_dirty")
        lines += ["Environment: " + ", ".join(f"{k} {env[k]}" for k in keys if k in env), ""]
    lines += ["## Echo calibration (the client's own ceiling)", ""] + ceilings_section(pp, df) + [""]
    lines += ["## Peak goodput (closed-loop sweeps)", ""] + peaks_section(pp, df) + [""]
    lines += ["## Unloaded latency (concurrency 1, napi inline)", ""] + latency_section(pp, df) + [""]
    lines += ["## Server CPU", ""] + cpu_section(pp) + [""]
    for fig, title in (("ablation", "dint ablations"),
                       ("colocation", "Colocation: a CPU-bound neighbour, and dint's slow path beside XDP")):
        sec = bars_section(pp, df, fig, run_dir)
        if sec:
            lines += [f"## {title}", ""] + sec + [""]
    sec = faults_section(pp, df)
    if sec:
        lines += ["## Fault injection", ""] + sec + [""]
    sec = sweep_section(pp, df)
    if sec:
        lines += ["## Beyond DINT: value size and key skew", ""] + sec + [""]
    lines += engine_section(run_dir, df)
    from .fidelity import section as fidelity_section
    lines += ["## Fidelity to DINT's experiments", ""] + fidelity_section(run_dir, pp, df) + [""]
    if (run_dir / "xdpbench" / "xdpbench.json").exists():
        from .xdpbench import report_section
        lines += ["## Where dint's time goes in XDP", "", report_section(run_dir / "xdpbench", link_from=run_dir)]
    if (run_dir / "verifier.json").exists():
        from .verifier import report_section as verifier_section
        lines += ["## The BPF programs against the verifier's limits", "", verifier_section(run_dir / "verifier.json")]
    figs = sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").exists() else []
    if figs:
        lines += ["## Figures", ""] + [f"- [{f.stem}](plots/{f.name})" for f in figs] + [""]
    return "\n".join(lines)


def engine_section(run_dir: Path, df: pd.DataFrame) -> list[str]:
    """dint's latch, bloom filter and slow path over this run's dint points
    (harness/engine_costs.py), if it has any."""
    from .engine_costs import report_section as engine_costs_section
    sec = engine_costs_section(run_dir, df)
    return ["## How dint lives within eBPF's constraints", ""] + sec if sec else []


def write(run_dir: Path, df: pd.DataFrame | None = None) -> Path:
    run_dir = Path(run_dir)
    df = results.load_table(run_dir) if df is None else df
    path = run_dir / "REPORT.md"
    path.write_text(render(run_dir, df))
    return path
