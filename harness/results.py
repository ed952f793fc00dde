"""A run's results as one tidy table (results/<run-id>/points.csv): one row
per repetition of a point in its index (index.json), with the figures of its
summary.json when it has one, and the run's echo ceilings beside each row;
and per point and headline metric the median over its repetitions with a
confidence interval (points-summary.csv, harness/stats.py).

Layout: a point's directory holds one run (its summary.json) when the point
is run once, or one run directory per repetition, r1 .. rN (`repeat: N`,
`harness run --repeat N`). The index is keyed by run directory, relative to
the run: `<point>` or `<point>/r<k>`."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd

from . import stats

INDEX = "index.json"
TABLE = "points.csv"
SUMMARY = "points-summary.csv"
REP_RE = re.compile(r"^r([1-9][0-9]*)$")
# A point's status in the index: measured (done; a consistency violation
# or an unclean stop leaves it done, with its error), failed (no
# measurement), or not run yet (pending).
STATUSES = ("done", "failed", "pending")
SYSTEM_ORDER = ["dint", "kernel", "bypass"]

COLUMNS = [
    "experiment", "figure", "point", "repetition", "status", "system", "workload", "variant", "cc", "kv_mix",
    "lock_protocol", "key_dist", "scale", "scale_divisor", "keys",
    "cache_fraction", "cache_bloom", "cache_write_through", "neighbour", "slowpath_cpus", "kv_value_size", "napi",
    "concurrency", "rate", "offered_per_s", "achieved_share", "rate_not_reached",
    "faults", "loss_percent",
    "transactional", "goodput_per_s", "throughput_per_s", "request_throughput_per_s", "lock_ops_per_s",
    "lat_mean_us", "lat_p50_us", "lat_p99_us", "lat_p999_us", "abort_rate", "abort_causes",
    "server_cpu_us_per_op", "server_cpu_us_per_txn", "server_cpu_missing",
    "server_cores", "server_cores_packet", "server_cores_process", "server_cores_user", "server_cores_kernel",
    "client_cpu_util", "client_saturated", "oversubscribed",
    "consistency", "consistency_unchecked", "consistency_checked", "consistency_violations", "consistency_failed",
    "errors", "instrument_match", "stability", "stability_note", "rate_trend", "rate_cv",
    "neighbour_share", "neighbour_idle_units_per_s", "neighbour_window_units_per_s",
    "echo_ceiling_per_s", "error", "attempts", "dir",
]
# columns of text, empty (not NaN) where a point has none
TEXT_COLUMNS = ("variant", "cc", "kv_mix", "lock_protocol", "key_dist", "slowpath_cpus", "faults", "error",
                "abort_causes", "consistency", "consistency_unchecked",
                "consistency_failed", "server_cpu_missing", "stability", "stability_note")
# An open-loop point reached its offered rate when it finished at least
# this share of it (transactions, or requests, per second over the window);
# below, points.csv's rate_not_reached is true and the report says so.
REACHED_SHARE = 0.95
# summary.json's stability.stable as points.csv says it ("" for a summary without the section)
STABILITY_VERDICTS = {True: "stable", False: "unstable", None: "not judged"}


def loss_percent(spec: str) -> float | None:
    """The share of datagrams a --faults spec drops, in percent (reply
    loss plus request loss): the faults figure's x axis. None for a spec
    this checkout cannot read."""
    from . import HarnessError, faults
    try:
        s = faults.parse(spec or "")
    except HarnessError:
        return None
    return round((s.reply_loss + s.request_loss) * 100, 6)


def read_index(run_dir: Path) -> dict:
    path = Path(run_dir) / INDEX
    return json.loads(path.read_text()) if path.exists() else {"points": {}}


def write_index(run_dir: Path, index: dict) -> None:
    path = Path(run_dir) / INDEX
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(index, indent=1, default=str))
    tmp.replace(path)


def rep_key(point: str, k: int, nested: bool) -> str:
    """The index key and directory (under the run) of a point's k-th
    repetition: the point's own directory, or its r<k> (nested)."""
    return f"{point}/r{k}" if nested else point


def repetition_dirs(point_dir: Path) -> list[tuple[int, Path]]:
    """A point directory's runs as (repetition, directory): itself when it
    holds a run's summary.json, else its r1 .. rN that exist."""
    d = Path(point_dir)
    if (d / "summary.json").exists():
        return [(1, d)]
    if not d.is_dir():
        return []
    return sorted((int(m.group(1)), c) for c in d.iterdir() if c.is_dir() and (m := REP_RE.match(c.name)))


def is_point_dir(path: Path) -> bool:
    """Whether a directory is one point's (`harness run --out`): a run, or repetitions of one."""
    return any((d / "summary.json").exists() for _, d in repetition_dirs(path))


def discover(run_dir: Path) -> dict[str, tuple[str, int]]:
    """The runs with a summary.json under a results directory, as
    {key: (point, repetition)}: a reproduce run's or a sweep's point
    directories, or the directory itself when it is one point's (its point
    named after it)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return {}
    if is_point_dir(run_dir):
        name = run_dir.resolve().name
        return {str(d.relative_to(run_dir)): (name, k) for k, d in repetition_dirs(run_dir)
                if (d / "summary.json").exists()}
    found = {}
    for c in sorted(p for p in run_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        for k, d in repetition_dirs(c):
            if (d / "summary.json").exists():
                found[str(d.relative_to(run_dir))] = (c.name, k)
    return found


def consistency_verdict(c: dict | None) -> tuple[str, str]:
    """A summary's consistency section as (verdict, what drew no verdict):
    ("", "") for a workload without a check; ("unchecked", why) when no
    verdict was drawn at all (a server did not stop cleanly); else
    "violations", "partly unchecked" (no violation, but some checks drew no
    verdict: they pass without being checked) or "ok" (every check drew
    one, and none failed). The second part names the unchecked checks
    ("N checks unchecked: check (reason); ...")."""
    if not c:
        return "", ""
    if not c.get("checked"):
        return "unchecked", str(c.get("reason") or "no reason recorded")
    un = c.get("unchecked") or []
    note = (f"{len(un)} check{'' if len(un) == 1 else 's'} unchecked: "
            + "; ".join(f"{u.get('check')} ({u.get('reason')})" for u in un)) if un else ""
    if c.get("violations"):
        return "violations", note
    return ("partly unchecked" if un else "ok"), note


def read_summary(point_dir: Path) -> dict | None:
    """A run directory's summary.json (a measured run's, or the one a run
    that failed once started writes: "status": "failed" with its error), or
    None without a readable one."""
    try:
        return json.loads((Path(point_dir) / "summary.json").read_text())
    except (OSError, ValueError):
        return None


def measured(point_dir: Path) -> bool:
    """Whether a run directory holds a measurement (not a failed run's summary)."""
    s = read_summary(point_dir)
    return s is not None and s.get("status") != "failed"


def unchecked_reason(point_dir: Path) -> str:
    """Why a measured point's consistency drew no verdict at all ("" when it
    did, when its workload has no check, or without a summary)."""
    summary = read_summary(point_dir)
    if summary is None or summary.get("status") == "failed":
        return ""
    verdict, why = consistency_verdict(summary.get("consistency"))
    return why if verdict == "unchecked" else ""


def stability_of(st: dict | None) -> dict:
    """A summary's stability section as points.csv's columns: the verdict
    (STABILITY_VERDICTS), the reason it is unstable or why it was not
    judged, and the rate's relative change over the window (its linear
    trend) and coefficient of variation (harness/stability.py)."""
    if not st:
        return {"stability": "", "stability_note": ""}
    return {"stability": STABILITY_VERDICTS.get(st.get("stable"), "not judged"),
            "stability_note": st.get("reason") or st.get("why_null") or "",
            "rate_trend": st.get("trend_change"), "rate_cv": st.get("cv")}


def _feature(workload, pred) -> bool:
    """Whether pred holds of the workload named so (False for a name this
    checkout does not know)."""
    import workloads
    return workload in workloads.NAMES and bool(pred(workloads.get(workload)))


def option_columns(workload, fields: dict) -> dict:
    """The lock protocol and key distribution of a point, for the
    workloads they apply to ("" for the others, and for a point recorded
    before the option existed)."""
    return {"lock_protocol": fields.get("lock_protocol", "parallel")
            if _feature(workload, lambda w: w.transactions and w.transactions.protocols) else "",
            "key_dist": fields.get("key_dist", "uniform") if _feature(workload, lambda w: w.key_dist) else ""}


def placement_columns(system, workload, fields: dict) -> dict:
    """Where dint's slow path ran (slowpath_cpus, dint points only) and the
    KV store's value size (kv points only): "" and None elsewhere, and the
    defaults for a point recorded before the options existed."""
    return {"slowpath_cpus": fields.get("slowpath_cpus", "xdp") if system == "dint" else "",
            "kv_value_size": fields.get("kv_value_size", KV_VALUE_SIZE) if workload == "kv" else None}


KV_VALUE_SIZE = 40  # workloads/kv.py: DINT's records


def cores_columns(summary: dict) -> dict:
    """The server cores used over the window (harness/cost.py, cores):
    total, packet work and process, user and kernel (None where a summary
    has none)."""
    c = (summary.get("server_cost") or {}).get("cores") or {}
    return {f"server_cores{'' if k == 'total' else '_' + k}": c.get(k)
            for k in ("total", "packet", "process", "user", "kernel")}


def reached_columns(row: dict, summary: dict) -> dict:
    """An open-loop point's offered rate (every client process's, per
    second), the share of it finished over the window, and whether that
    fell short of REACHED_SHARE; nothing for a closed-loop point."""
    offered = (summary.get("open_loop") or {}).get("offered_per_s")
    got = row.get("throughput_per_s")
    if not offered or got is None:
        return {}
    share = got / offered
    return {"offered_per_s": offered, "achieved_share": round(share, 4), "rate_not_reached": share < REACHED_SHARE}


def row_of(summary: dict) -> dict:
    """The table's figures of one summary.json."""
    cfg = summary.get("config", {})
    lat = summary.get("latency_us", {})
    row = {
        "system": summary.get("system"), "workload": summary.get("workload"),
        "concurrency": summary.get("concurrency"), "napi": summary.get("napi", cfg.get("napi")),
        "cc": cfg.get("cc", ""), "kv_mix": cfg.get("kv_mix") if summary.get("workload") == "kv" else "",
        **option_columns(summary.get("workload"), cfg),
        **placement_columns(summary.get("system"), summary.get("workload"), cfg),
        **cores_columns(summary),
        "scale": cfg.get("scale"), "scale_divisor": cfg.get("scale_divisor"), "keys": cfg.get("keys"),
        "cache_fraction": cfg.get("cache_fraction"), "cache_bloom": cfg.get("cache_bloom"),
        "cache_write_through": cfg.get("cache_write_through"), "neighbour": cfg.get("neighbour"),
        "rate": cfg.get("rate", summary.get("rate")),
        "faults": cfg.get("faults", ""), "loss_percent": loss_percent(cfg.get("faults", "")),
        "request_throughput_per_s": summary.get("throughput_per_s"),
        "server_cpu_us_per_op": summary.get("server_cpu_us_per_op"),
        # why a measured point has no server cost (harness/cost.py): empty otherwise
        "server_cpu_missing": ((summary.get("server_cost") or {}).get("reason") or "no server cost recorded")
        if summary.get("server_cpu_us_per_op") is None else "",
        "client_cpu_util": summary.get("client_cpu_util"),
        "client_saturated": bool(summary.get("client_saturated", False)),
        "oversubscribed": bool(summary.get("placement", {}).get("oversubscribed", False)),
        "errors": summary.get("errors"),
        "instrument_match": summary.get("instrument_check", {}).get("match"),
        **stability_of(summary.get("stability")),
    }
    nb = summary.get("neighbour")
    if nb:  # colocation: the neighbour's work rate, summed over the server hosts
        hosts = nb.get("hosts", {}).values()
        row.update({"neighbour_share": nb.get("share"),
                    "neighbour_idle_units_per_s": sum(h.get("idle_units_per_s") or 0 for h in hosts),
                    "neighbour_window_units_per_s": sum(h.get("window_units_per_s") or 0 for h in hosts)})
    t = summary.get("transactions")
    if t:
        tot = t["total"]
        tl = tot.get("latency_us", {})
        row.update({
            "transactional": True, "goodput_per_s": tot.get("goodput_per_s"),
            "throughput_per_s": tot.get("throughput_per_s"), "lock_ops_per_s": t.get("lock_ops_per_s"),
            "lat_mean_us": tl.get("mean"), "lat_p50_us": tl.get("p50"), "lat_p99_us": tl.get("p99"),
            "lat_p999_us": tl.get("p999"), "abort_rate": tot.get("abort_rate"),
            "abort_causes": " ".join(f"{c}={r:.4f}" for c, r in (tot.get("abort_rate_by_cause") or {}).items()
                                     if r),
        })
        # server CPU per transaction: the per-request cost (over the
        # measured window) times the requests per finished transaction over
        # the whole run (warm-up included)
        rt = tot.get("run_total") or {}
        finished = rt.get("committed", 0) + rt.get("aborted", 0)
        sent = summary.get("instrument_check", {}).get("client_sent")
        if summary.get("server_cpu_us_per_op") is not None and finished and sent:
            row["server_cpu_us_per_txn"] = round(summary["server_cpu_us_per_op"] * sent / finished, 4)
    else:
        row.update({
            "transactional": False, "goodput_per_s": summary.get("throughput_per_s"),
            "throughput_per_s": summary.get("throughput_per_s"),
            "lat_mean_us": lat.get("mean"), "lat_p50_us": lat.get("p50"), "lat_p99_us": lat.get("p99"),
            "lat_p999_us": lat.get("p999"), "abort_rate": None, "abort_causes": "",
            "server_cpu_us_per_txn": summary.get("server_cpu_us_per_op"),
        })
    row.update(reached_columns(row, summary))
    c = summary.get("consistency")
    if c:
        verdict, unchecked = consistency_verdict(c)
        row.update({"consistency": verdict, "consistency_unchecked": unchecked,
                    "consistency_checked": bool(c.get("checked")), "consistency_violations": c.get("violations", 0),
                    "consistency_failed": " ".join(c.get("failed") or [])})
    return row


def table(run_dir: Path) -> pd.DataFrame:
    """Every repetition of every point of the run's index (done, failed or
    pending), in index order; runs without an index entry but with a
    summary are added (a sweep of `harness run`s has no index)."""
    run_dir = Path(run_dir)
    index = read_index(run_dir)
    entries = dict(index.get("points", {}))
    for key, (point, k) in discover(run_dir).items():
        entries.setdefault(key, {"experiment": "", "figure": "", "status": "done", "point": point, "repetition": k})
    rows = []
    for key, e in entries.items():
        row = {"point": e.get("point", key), "repetition": e.get("repetition", 1),
               "experiment": e.get("experiment", ""), "figure": e.get("figure", ""),
               "variant": e.get("variant", ""), "status": e.get("status", ""), "error": e.get("error", ""),
               "attempts": e.get("attempts", 0), "dir": str(run_dir / key)}
        fields = e.get("fields") or {}
        row.update({k: fields.get(k) for k in ("concurrency", "rate", "napi", "cc", "kv_mix", "neighbour", "faults")
                    if k in fields})
        if "faults" in fields:
            row["loss_percent"] = loss_percent(fields["faults"])
        row.update({"system": e.get("system"), "workload": e.get("workload")})
        if e.get("workload"):
            row.update(option_columns(e["workload"], fields))
            row.update(placement_columns(e.get("system"), e["workload"], fields))
        s = read_summary(run_dir / key)
        if s is not None and s.get("status") == "failed":  # failed once started: no figures
            row["status"] = "failed"
            row["error"] = row["error"] or s.get("error", "")
        elif s is not None:
            row.update({k: v for k, v in row_of(s).items() if v is not None or k not in row})
            if row["status"] in ("", "pending"):
                row["status"] = "done"
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    df = df[COLUMNS]
    for col in ("consistency", "consistency_unchecked", "faults", "server_cpu_missing", "stability", "stability_note"):
        df[col] = df[col].astype(object).fillna("").astype(str)
    # the client's own ceiling (echo, concurrency 32, pinned) of each system in this run
    ceil = echo_ceilings(df)
    df["echo_ceiling_per_s"] = df["system"].map(ceil)
    return df


def _ceiling_medians(df: pd.DataFrame) -> pd.Series:
    """Median echo throughput of each calibration point, by (system, point)."""
    d = df[(df["workload"] == "echo") & (df["figure"] == "calibration") & (df["status"] == "done")]
    return pd.to_numeric(d["throughput_per_s"], errors="coerce").groupby(
        [d["system"], d["point"]], sort=False).median().dropna()


def echo_ceilings(df: pd.DataFrame) -> dict:
    """Each system's echo ceiling: its calibration point of the highest
    median throughput over the repetitions."""
    return {s: float(v) for s, v in _ceiling_medians(df).groupby(level=0).max().items()}


def echo_ceiling_points(df: pd.DataFrame) -> dict:
    """The point of each system's echo ceiling (whose repetitions are its samples)."""
    return {s: idx[1] for s, idx in _ceiling_medians(df).groupby(level=0).idxmax().items()}


def samples(df: pd.DataFrame, point: str, column: str) -> list[float]:
    """A column's values over a point's measured repetitions."""
    d = df[(df["point"] == point) & (df["status"] == "done")]
    return [float(v) for v in pd.to_numeric(d[column], errors="coerce").dropna()]


SUMMARY_ID = ("experiment", "figure", "point", "system", "workload", "variant", "cc", "kv_mix", "lock_protocol",
              "key_dist", "slowpath_cpus", "kv_value_size", "concurrency", "rate", "faults", "napi")
# per point: the median over its measured repetitions; any; the largest
MEDIAN_COLUMNS = ("goodput_per_s", "throughput_per_s", "request_throughput_per_s", "lock_ops_per_s", "lat_mean_us", "lat_p50_us",
                  "lat_p99_us", "lat_p999_us", "abort_rate", "server_cpu_us_per_op", "server_cpu_us_per_txn",
                  "client_cpu_util", "neighbour_share", "neighbour_idle_units_per_s", "neighbour_window_units_per_s",
                  "loss_percent", "rate_trend", "rate_cv", "server_cores", "server_cores_packet",
                  "server_cores_process", "server_cores_user", "server_cores_kernel", "offered_per_s",
                  "achieved_share")
ANY_COLUMNS = ("client_saturated", "oversubscribed", "rate_not_reached")
# per point, besides the headline metrics': the interval of the median (<column>_low, _high)
INTERVAL_COLUMNS = ("server_cores",)
MAX_COLUMNS = ("errors", "consistency_violations")
# a point shows its worst repetition's consistency verdict
VERDICT_RANK = {"": 0, "ok": 1, "partly unchecked": 2, "unchecked": 3, "violations": 4}


def stability_counts(g: pd.DataFrame) -> tuple[int, int]:
    """(unstable, not judged): how many of a point's measured repetitions
    had a window judged unstable, and how many one too short to judge."""
    if "stability" not in g:
        return 0, 0
    v = g.loc[g["status"] == "done", "stability"].astype(object).fillna("").astype(str)
    return int((v == "unstable").sum()), int((v == "not judged").sum())


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """points-summary.csv: per point and headline metric (stats.HEADLINE;
    goodput for transactional points only) the number of measured
    repetitions with a value, their median and its confidence interval
    (stats.median_ci: ci_level is the interval's exact level; ci_note says
    why there is none, or why its level is below 95%); and on each of a
    point's rows, how many of its measured repetitions were unstable and
    how many not judged (stability_counts)."""
    rows = []
    for point, g in df.groupby("point", sort=False):
        done = g[g["status"] == "done"]
        unstable, unjudged = stability_counts(g)
        first = (done if len(done) else g).iloc[0]
        transactional = "transactional" in g and bool(
            done["transactional"].astype(object).fillna(False).astype(bool).any())
        for m in stats.HEADLINE:
            if m.column == "goodput_per_s" and not transactional:
                continue
            est = stats.median_ci(samples(g, point, m.column))
            note = "no value in its measured repetitions" if len(done) and not est.n else est.note
            rows.append({**{c: first.get(c) for c in SUMMARY_ID}, "metric": m.column, "n": est.n,
                         "median": est.median, "ci_low": est.low, "ci_high": est.high, "ci_level": est.level,
                         "ci_note": note, "unstable": unstable, "stability_not_judged": unjudged})
    return pd.DataFrame(rows, columns=[*SUMMARY_ID, "metric", "n", "median", "ci_low", "ci_high", "ci_level",
                                       "ci_note", "unstable", "stability_not_judged"])


def per_point(df: pd.DataFrame) -> pd.DataFrame:
    """One row per point, for the figures and the report: its measured
    repetitions' medians (MEDIAN_COLUMNS), whether any was client-saturated
    or oversubscribed, its worst consistency verdict, n (measured
    repetitions), unstable (how many of them had an unstable window),
    status done when any repetition is, and each headline
    metric's interval as <column>_low and <column>_high (null where
    summary_table has none)."""
    if df.empty:
        return df.assign(n=pd.Series(dtype=int))
    order = list(dict.fromkeys(df["point"]))
    done = df[df["status"] == "done"]
    rank = done["consistency"].astype(object).fillna("").map(VERDICT_RANK).fillna(0) if "consistency" in df else 0
    worst = done.assign(_rank=rank).sort_values("_rank", ascending=False, kind="stable").drop(columns="_rank")
    out = pd.concat([worst, df]).drop_duplicates("point").set_index("point").loc[order]
    g = done.groupby("point", sort=False)
    if len(done):
        cols = [c for c in MEDIAN_COLUMNS if c in df]
        med = done[cols].apply(pd.to_numeric, errors="coerce").groupby(done["point"]).median()
        out.loc[med.index, cols] = med
        for c in (c for c in ANY_COLUMNS if c in df):
            out.loc[med.index, c] = g[c].agg(lambda v: bool(v.astype(object).fillna(False).astype(bool).any()))
        for c in (c for c in MAX_COLUMNS if c in df):
            out.loc[med.index, c] = pd.to_numeric(done[c], errors="coerce").groupby(done["point"]).max()
        out.loc[med.index, "status"] = "done"
    out["n"] = g.size().reindex(out.index).fillna(0).astype(int)
    out["unstable"] = [stability_counts(df[df["point"] == p])[0] for p in out.index]
    summary = summary_table(df)
    for col in stats.HEADLINE_COLUMNS:
        s = summary[summary["metric"] == col].set_index("point")
        out[f"{col}_low"] = s["ci_low"].reindex(out.index)
        out[f"{col}_high"] = s["ci_high"].reindex(out.index)
    # the cores used (the cpu figure's): the same interval, beside the headline metrics
    for col in INTERVAL_COLUMNS:
        if col not in df:
            continue
        est = {p: stats.median_ci(samples(df, p, col)) for p in out.index}
        out[f"{col}_low"] = [est[p].low for p in out.index]
        out[f"{col}_high"] = [est[p].high for p in out.index]
    # a flat workload's goodput is its throughput (row_of): so is its interval
    flat = ~out.get("transactional", pd.Series(False, index=out.index)).astype(object).fillna(False).astype(bool)
    for end in ("low", "high"):
        out[f"goodput_per_s_{end}"] = out[f"goodput_per_s_{end}"].where(~flat, out[f"throughput_per_s_{end}"])
    return out.drop(columns=["repetition"], errors="ignore").reset_index()


def theta(spec) -> float:
    """A key distribution's skew on the x axis: zipf's theta, 0 for
    uniform; nan for another kind (NURand has no theta)."""
    if not isinstance(spec, str):
        return math.nan
    if spec == "uniform":
        return 0.0
    kind, _, param = spec.partition(":")
    try:
        return float(param) if kind == "zipf" else math.nan
    except ValueError:
        return math.nan


# The settings a sweep figure (plots/sweep.py) and REPORT.md's section of
# it may run along: (column of points.csv, axis label, the column's value
# as a number); the first that varies within an experiment is its x axis.
SWEPT = (("kv_value_size", "value size (bytes)", lambda v: float(v)),
         ("key_dist", "key skew: zipf theta (uniform = 0)", theta))


def swept_axis(d: pd.DataFrame) -> tuple[str, str, object] | None:
    """The setting an experiment's points sweep, or None."""
    for col, label, conv in SWEPT:
        if col in d and d[col].dropna().astype(str).nunique() > 1:
            return col, label, conv
    return None


def fmt(v: float) -> str:
    """A figure for a line of text: 65,890; 191.1; 0.70."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def summary_lines(summary: pd.DataFrame) -> list[str]:
    """points-summary.csv's rows as lines: "throughput_per_s: 65,890 (median
    of 6) [58,721-77,432] at 96.9%", or with the note of an interval below
    95%, or of none."""
    out = []
    for r in summary.itertuples():
        if not r.n:
            out.append(f"{r.metric}: - ({r.ci_note})")
            continue
        head = f"{r.metric}: {fmt(r.median)} (median of {r.n})"
        if pd.isna(r.ci_low):
            out.append(f"{head}, interval unknown: {r.ci_note}")
        else:
            out.append(f"{head} [{fmt(r.ci_low)}-{fmt(r.ci_high)}]"
                       + (f": {r.ci_note}" if r.ci_note else f" at {r.ci_level:.1%}"))
    return out


def write_table(run_dir: Path) -> pd.DataFrame:
    """points.csv (one row per repetition) and points-summary.csv; returns the first."""
    df = table(run_dir)
    df.to_csv(Path(run_dir) / TABLE, index=False)
    summary_table(df).to_csv(Path(run_dir) / SUMMARY, index=False)
    return df


def load_table(run_dir: Path) -> pd.DataFrame:
    """points.csv if the run has one, else built from its summaries."""
    path = Path(run_dir) / TABLE
    if path.exists():
        df = pd.read_csv(path, keep_default_na=True)
        for col in COLUMNS:  # a table written before a column was added
            if col not in df.columns:
                df[col] = None
        for col in TEXT_COLUMNS:
            df[col] = df[col].astype(object).fillna("").astype(str)
        df["repetition"] = df["repetition"].fillna(1).astype(int)
        for col in ("client_saturated", "oversubscribed", "rate_not_reached"):
            df[col] = df[col].astype(object).fillna(False).astype(bool)
        return df
    return table(run_dir)
