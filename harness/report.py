"""REPORT.md of a run: consistency and other flags first, then per workload
and system the peak goodput, the unloaded latency and the server CPU per
transaction, with the dint/kernel and dint/bypass ratios beside the paper's
claims and beside the same run's echo ceilings."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from . import results

SYSTEMS = results.SYSTEM_ORDER
# DINT (NSDI'24), abstract and section 6: up to 2.6x the throughput of the
# DPDK-based system, at most 10% (mean) / 16% (p99) more unloaded latency.
PAPER_TPUT_VS_BYPASS = 2.6
PAPER_MEAN_LAT_VS_BYPASS = 1.10
PAPER_P99_LAT_VS_BYPASS = 1.16


def _num(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (int, float)) and abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _ratio(a, b) -> str:
    try:
        if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
            return "-"
    except TypeError:
        return "-"
    return f"{a / b:.2f}x"


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
    return " ".join(parts)


def _cost(v, digits: int = 2) -> str:
    """A server CPU figure; "n/a" where the point has none (its reason is
    among the flags)."""
    s = _num(v, digits)
    return "n/a" if s == "-" else s


def _sat(r) -> str:
    return " (client saturated)" if bool(r.get("client_saturated")) else ""


def _attempts(r) -> str:
    try:
        return str(int(r.attempts))
    except (TypeError, ValueError):
        return "-"


def flags(df: pd.DataFrame) -> list[str]:
    lines = []
    d = df[df["status"] == "done"]
    verdict = d["consistency"].fillna("").astype(str)
    checked = d[verdict.isin(["ok", "violations", "partly unchecked"])]
    viol = d[verdict == "violations"]
    partly = checked[checked["consistency_unchecked"].fillna("").astype(str) != ""]
    unchecked = d[verdict == "unchecked"]
    if not viol.empty:
        lines.append(f"**CONSISTENCY VIOLATIONS in {len(viol)} point(s): "
                     + "; ".join(f"{r.point} ({r.consistency_failed})" for r in viol.itertuples()) + "**")
    if not unchecked.empty:
        lines.append(f"**CONSISTENCY NOT CHECKED in {len(unchecked)} measured point(s) (no verdict drawn; a red x "
                     "in the figures): " + "; ".join(f"{r.point} ({r.consistency_unchecked}; attempts "
                                                      f"{_attempts(r)})" for r in unchecked.itertuples()) + "**")
    if len(checked):
        # no violation reads as fully checked only when every check drew a verdict
        line = f"Consistency: checked after {len(checked)} transactional point(s), " + (
            "no violation" if viol.empty else f"violations in {len(viol)}")
        if partly.empty:
            line += "; every check drew a verdict."
        else:
            line += (f"; but in {len(partly)} of them some checks drew no verdict (they pass unchecked): "
                     + "; ".join(f"{r.point}: {r.consistency_unchecked}" for r in partly.itertuples()) + ".")
        lines.append(line)
    failed = df[df["status"] == "failed"]
    if not failed.empty:
        lines.append(f"**{len(failed)} point(s) failed:** " + "; ".join(
            f"{r.point}: {str(r.error)[:160]}" for r in failed.itertuples()))
    errs = d[d["error"].fillna("").astype(str) != ""]
    errs = errs[~errs.index.isin(viol.index) & ~errs.index.isin(unchecked.index)]
    if not errs.empty:
        lines.append(f"{len(errs)} measured point(s) reported an error: " + "; ".join(
            f"{r.point}: {str(r.error)[:120]}" for r in errs.itertuples()))
    sat = d[d["client_saturated"].fillna(False).astype(bool)]
    if not sat.empty:
        lines.append(f"Client saturated (>= 90% CPU) in {len(sat)} of {len(d)} points: there the client, not the "
                     "system, may be the limit (hollow markers in the figures).")
    over = d[d["oversubscribed"].fillna(False).astype(bool)]
    if not over.empty:
        lines.append(f"Oversubscribed hosts in {len(over)} of {len(d)} points (servers sharing cores with each "
                     "other or with clients; see each summary's placement): compare systems as ratios only.")
    if "server_cpu_missing" in d.columns:
        nocost = d[d["server_cpu_missing"].fillna("").astype(str) != ""]
        if not nocost.empty:
            lines.append(f"No server CPU figure in {len(nocost)} measured point(s) (n/a in the tables, missing from "
                         "the figures): " + "; ".join(f"{r.point} ({r.server_cpu_missing})"
                                                      for r in nocost.head(8).itertuples())
                         + (" ..." if len(nocost) > 8 else ""))
    lost = d[d["instrument_match"].astype(str).str.lower() == "false"]
    if not lost.empty:
        lines.append(f"Instrument check mismatch (sent != received by servers) in {len(lost)} point(s).")
    errors = d[d["errors"].fillna(0).astype(float) > 0]
    if not errors.empty:
        lines.append(f"Request errors (lost or error statuses) in {len(errors)} point(s): "
                     + ", ".join(f"{r.point} ({int(r.errors)})" for r in errors.head(8).itertuples())
                     + (" ..." if len(errors) > 8 else ""))
    return lines


def ceilings_section(df: pd.DataFrame) -> list[str]:
    cal = df[(df["figure"] == "calibration") & (df["status"] == "done")]
    if cal.empty:
        return ["No echo calibration in this run."]
    rows = []
    for s in SYSTEMS:
        c = cal[cal["system"] == s]
        if c.empty:
            continue
        lo, hi = c[c["concurrency"] == c["concurrency"].min()].iloc[0], c[c["concurrency"] == c["concurrency"].max()].iloc[0]
        rows.append([s, f"{_num(hi['throughput_per_s'])}/s{_sat(hi)}", _num(lo["lat_mean_us"]), _num(lo["lat_p50_us"]),
                     _num(lo["lat_p99_us"])])
    out = [md_table(["system", "echo throughput (ceiling)", "echo mean us (c=1)", "p50 us", "p99 us"], rows)]
    ceil = results.echo_ceilings(df)
    if "dint" in ceil:
        out.append("")
        out.append("Echo ratios (the most any workload's ratio can show on this client): " + ", ".join(
            f"dint/{s} {_ratio(ceil['dint'], ceil[s])}" for s in ("kernel", "bypass") if s in ceil))
    return out


def peaks(df: pd.DataFrame) -> pd.DataFrame:
    d = df[(df["figure"] == "curve") & (df["status"] == "done") & df["goodput_per_s"].notna()].copy()
    if d.empty:
        return d
    d["label"] = [_label(r) for _, r in d.iterrows()]
    idx = d.groupby(["label", "system"])["goodput_per_s"].idxmax()
    return d.loc[idx]


def peaks_section(df: pd.DataFrame) -> list[str]:
    p = peaks(df)
    if p.empty:
        return ["No throughput-latency curve in this run."]
    ceil = results.echo_ceilings(df)
    rows = []
    for label in dict.fromkeys(p["label"]):
        g = p[p["label"] == label].set_index("system")
        get = lambda s, c: float(g.loc[s, c]) if s in g.index and pd.notna(g.loc[s, c]) else float("nan")  # noqa: E731
        cells = []
        for s in SYSTEMS:
            if s in g.index:
                r = g.loc[s]
                cells.append(f"{_num(r['goodput_per_s'])} (c={int(r['concurrency'])}){_sat(r)}")
            else:
                cells.append("-")
        req = [f"{s} {get(s, 'request_throughput_per_s') / ceil[s]:.0%}" for s in SYSTEMS
               if s in g.index and s in ceil and ceil[s]]
        rows.append([label] + cells + [_ratio(get("dint", "goodput_per_s"), get("kernel", "goodput_per_s")),
                                       _ratio(get("dint", "goodput_per_s"), get("bypass", "goodput_per_s")),
                                       ", ".join(req) or "-"])
    out = [md_table(["workload", "dint goodput/s", "kernel goodput/s", "bypass goodput/s", "dint/kernel",
                     "dint/bypass", "request rate / echo ceiling"], rows)]
    out.append("")
    line = f"Paper: dint up to {PAPER_TPUT_VS_BYPASS}x the throughput of the DPDK system (bypass)."
    if "dint" in ceil and "bypass" in ceil:
        line += f" This run's echo ceiling ratio dint/bypass is {_ratio(ceil['dint'], ceil['bypass'])}"
        if "kernel" in ceil:
            line += f", dint/kernel {_ratio(ceil['dint'], ceil['kernel'])}"
        line += ": a workload ratio near it says the client, not the server, bounds the comparison."
    out.append(line)
    over = [f"{r['label']} on {r['system']}" for _, r in p.iterrows()
            if r["system"] in ceil and ceil[r["system"]] and r["request_throughput_per_s"] > ceil[r["system"]]]
    if over:
        out += ["", "Request rate above the system's own echo calibration (" + ", ".join(over) + "): that "
                "calibration point is not a ceiling there (noise, or a polling server sharing its core)."]
    return out


def latency_section(df: pd.DataFrame) -> list[str]:
    d = df[(df["figure"] == "latency") & (df["status"] == "done")].copy()
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
                       if s in g.index else "-")
        rm, r99 = cell("dint", "lat_mean_us") / cell("bypass", "lat_mean_us"), \
            cell("dint", "lat_p99_us") / cell("bypass", "lat_p99_us")
        ok = lambda r, lim: "-" if math.isnan(r) else (f"{r:.2f}x" + (" (within)" if r <= lim else " (above)"))  # noqa: E731
        row += [ok(rm, PAPER_MEAN_LAT_VS_BYPASS), ok(r99, PAPER_P99_LAT_VS_BYPASS),
                _ratio(cell("dint", "lat_mean_us"), cell("kernel", "lat_mean_us"))]
        rows.append(row)
    out = [md_table(["workload", "dint mean/p50/p99 us", "kernel mean/p50/p99 us", "bypass mean/p50/p99 us",
                     f"dint/bypass mean (paper <= {PAPER_MEAN_LAT_VS_BYPASS:.2f}x)",
                     f"dint/bypass p99 (paper <= {PAPER_P99_LAT_VS_BYPASS:.2f}x)", "dint/kernel mean"], rows)]
    out += ["", "With --napi inline, veth runs the receiver's packet work on the sending CPU: dint answers in XDP "
                "on the client's core with no wake-up, while the kernel and bypass servers are woken on the "
                "server core (bypass backs off when idle). On this testbed that, not the stack alone, separates "
                "the unloaded latencies."]
    cal = df[(df["figure"] == "calibration") & (df["status"] == "done")]
    lo = cal[cal["concurrency"] == cal["concurrency"].min()].set_index("system") if not cal.empty else None
    if lo is not None and {"dint", "bypass"} <= set(lo.index):
        out += ["", f"Echo at concurrency 1 in this run: dint/bypass mean "
                    f"{_ratio(float(lo.loc['dint', 'lat_mean_us']), float(lo.loc['bypass', 'lat_mean_us']))}, "
                    f"p99 {_ratio(float(lo.loc['dint', 'lat_p99_us']), float(lo.loc['bypass', 'lat_p99_us']))}."]
    return out


def cpu_section(df: pd.DataFrame) -> list[str]:
    out = []
    p = peaks(df)
    if not p.empty:
        rows = []
        for label in dict.fromkeys(p["label"]):
            g = p[p["label"] == label].set_index("system")
            rows.append([label] + [f"{_cost(g.loc[s, 'server_cpu_us_per_txn'])} ({_cost(g.loc[s, 'server_cpu_us_per_op'])})"
                                   if s in g.index else "-" for s in SYSTEMS])
        out += ["At each system's peak-goodput point: server CPU us per transaction (per request in brackets). "
                "Per transaction = per request x requests per finished transaction over the run.", "",
                md_table(["workload"] + [f"{s}" for s in SYSTEMS], rows)]
    c = df[(df["figure"] == "cpu") & (df["status"] == "done")]
    if not c.empty:
        rows = []
        for (exp, rate), g in c.groupby(["experiment", "rate"], sort=False):
            g = g.set_index("system")
            rows.append([exp, _num(rate)] + [
                f"{_cost(g.loc[s, 'server_cpu_us_per_op'])} at {_num(g.loc[s, 'throughput_per_s'])}/s{_sat(g.loc[s])}"
                if s in g.index else "-" for s in SYSTEMS])
        out += ["", "Fixed offered rates (open loop): server CPU us per request, at the achieved rate.", "",
                md_table(["experiment", "offered/s per client"] + SYSTEMS, rows)]
    return out or ["No CPU figures in this run."]


def bars_section(df: pd.DataFrame, figure: str) -> list[str]:
    d = df[(df["figure"] == figure) & (df["status"] == "done")]
    if d.empty:
        return []
    rows = [[r.experiment, r.workload, r.variant, r.system, _num(r.goodput_per_s), _num(r.lat_p50_us),
             _num(r.lat_p99_us), _cost(r.server_cpu_us_per_op), "yes" if r.client_saturated else ""]
            for r in d.itertuples()]
    head = ["experiment", "workload", "variant", "system", "goodput/s", "p50 us", "p99 us", "server CPU us/req",
            "client saturated"]
    if figure == "colocation":
        for row, r in zip(rows, d.itertuples()):
            row.append(f"{r.neighbour_share:.2f}" if pd.notna(r.neighbour_share) else "")
        head.append("neighbour's work kept (loaded / idle servers)")
    out = [md_table(head, rows)]
    if figure == "colocation":
        out += ["", "The neighbour's work rate with the servers up but idle shows what a server takes from its "
                    "cores even with nothing to do (a polling bypass server); under load, what serving the "
                    "requests took from it."]
    return out


def faults_section(df: pd.DataFrame) -> list[str]:
    """Per experiment of the faults figure and system: the goodput kept at
    each injected loss rate as a share of the same system's fault-free
    point, with each point's consistency verdict."""
    d = df[(df["figure"] == "faults") & (df["status"] == "done")]
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
                b = float(base["goodput_per_s"].iloc[0]) if len(base) and pd.notna(base["goodput_per_s"].iloc[0]) \
                    else float("nan")
                kept = (f"{r.goodput_per_s / b:.0%}" if b == b and b and pd.notna(r.goodput_per_s)
                        else "- (no fault-free point)" if base.empty else "-")
                cells.append(f"{r.faults}: {kept} ({r.consistency or 'no check'})")
            fault_free = (f"fault-free {_num(float(base['goodput_per_s'].iloc[0]))}/s "
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
    counts = df["status"].value_counts().to_dict()
    lines = [f"# Report: run {run_dir.name}", ""]
    fl = flags(df)
    if fl:
        lines += ["## Flags", ""] + [f"- {f}" for f in fl] + [""]
    lines += ["Points: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in results.STATUSES) + ". "
              "Table: `points.csv`; figures: `plots/`; resolved experiments: `experiments.yml`.", ""]
    if env:
        keys = ("hostname", "kernel", "cpu_model", "cpus", "git_revision", "git_dirty")
        lines += ["Environment: " + ", ".join(f"{k} {env[k]}" for k in keys if k in env), ""]
    lines += ["## Echo calibration (the client's own ceiling)", ""] + ceilings_section(df) + [""]
    lines += ["## Peak goodput (closed-loop sweeps)", ""] + peaks_section(df) + [""]
    lines += ["## Unloaded latency (concurrency 1, napi inline)", ""] + latency_section(df) + [""]
    lines += ["## Server CPU", ""] + cpu_section(df) + [""]
    for fig, title in (("ablation", "dint ablations"), ("colocation", "Colocation with a CPU-bound neighbour")):
        sec = bars_section(df, fig)
        if sec:
            lines += [f"## {title}", ""] + sec + [""]
    sec = faults_section(df)
    if sec:
        lines += ["## Fault injection", ""] + sec + [""]
    figs = sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").exists() else []
    if figs:
        lines += ["## Figures", ""] + [f"- [{f.stem}](plots/{f.name})" for f in figs] + [""]
    return "\n".join(lines)


def write(run_dir: Path, df: pd.DataFrame | None = None) -> Path:
    run_dir = Path(run_dir)
    df = results.load_table(run_dir) if df is None else df
    path = run_dir / "REPORT.md"
    path.write_text(render(run_dir, df))
    return path
