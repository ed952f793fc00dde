"""A run's results as one tidy table (results/<run-id>/points.csv): one row
per point of its point index (index.json), with the figures of its
summary.json when it has one, and the run's echo ceilings beside each row."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

INDEX = "index.json"
TABLE = "points.csv"
# A point's status in the index: measured (done; a consistency violation
# or an unclean stop leaves it done, with its error), failed (no
# measurement), or not run yet (pending).
STATUSES = ("done", "failed", "pending")
SYSTEM_ORDER = ["dint", "kernel", "bypass"]

COLUMNS = [
    "experiment", "figure", "point", "status", "system", "workload", "variant", "cc", "kv_mix", "scale", "scale_divisor", "keys",
    "cache_fraction", "cache_bloom", "cache_write_through", "neighbour", "napi", "concurrency", "rate",
    "faults", "loss_percent",
    "transactional", "goodput_per_s", "throughput_per_s", "request_throughput_per_s",
    "lat_mean_us", "lat_p50_us", "lat_p99_us", "lat_p999_us", "abort_rate", "abort_causes",
    "server_cpu_us_per_op", "server_cpu_us_per_txn", "server_cpu_missing", "client_cpu_util", "client_saturated", "oversubscribed",
    "consistency", "consistency_unchecked", "consistency_checked", "consistency_violations", "consistency_failed",
    "errors", "instrument_match",
    "neighbour_share", "neighbour_idle_units_per_s", "neighbour_window_units_per_s",
    "echo_ceiling_per_s", "error", "attempts", "dir",
]
# columns of text, empty (not NaN) where a point has none
TEXT_COLUMNS = ("variant", "cc", "kv_mix", "faults", "error", "abort_causes", "consistency", "consistency_unchecked",
                "consistency_failed", "server_cpu_missing")


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


def row_of(summary: dict) -> dict:
    """The table's figures of one summary.json."""
    cfg = summary.get("config", {})
    lat = summary.get("latency_us", {})
    row = {
        "system": summary.get("system"), "workload": summary.get("workload"),
        "concurrency": summary.get("concurrency"), "napi": summary.get("napi", cfg.get("napi")),
        "cc": cfg.get("cc", ""), "kv_mix": cfg.get("kv_mix") if summary.get("workload") == "kv" else "",
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
            "throughput_per_s": tot.get("throughput_per_s"),
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
    c = summary.get("consistency")
    if c:
        verdict, unchecked = consistency_verdict(c)
        row.update({"consistency": verdict, "consistency_unchecked": unchecked,
                    "consistency_checked": bool(c.get("checked")), "consistency_violations": c.get("violations", 0),
                    "consistency_failed": " ".join(c.get("failed") or [])})
    return row


def table(run_dir: Path) -> pd.DataFrame:
    """Every point of the run's index (done, failed or pending), in index
    order; points without an index entry but with a summary are added."""
    run_dir = Path(run_dir)
    index = read_index(run_dir)
    entries = dict(index.get("points", {}))
    for path in sorted(run_dir.glob("*/summary.json")):
        entries.setdefault(path.parent.name, {"experiment": "", "figure": "", "status": "done"})
    rows = []
    for name, e in entries.items():
        row = {"point": name, "experiment": e.get("experiment", ""), "figure": e.get("figure", ""),
               "variant": e.get("variant", ""), "status": e.get("status", ""), "error": e.get("error", ""),
               "attempts": e.get("attempts", 0), "dir": str(run_dir / name)}
        fields = e.get("fields") or {}
        row.update({k: fields.get(k) for k in ("concurrency", "rate", "napi", "cc", "kv_mix", "neighbour", "faults")
                    if k in fields})
        if "faults" in fields:
            row["loss_percent"] = loss_percent(fields["faults"])
        row.update({"system": e.get("system"), "workload": e.get("workload")})
        s = read_summary(run_dir / name)
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
    for col in ("consistency", "consistency_unchecked", "faults", "server_cpu_missing"):
        df[col] = df[col].astype(object).fillna("").astype(str)
    # the client's own ceiling (echo, concurrency 32, pinned) of each system in this run
    ceil = echo_ceilings(df)
    df["echo_ceiling_per_s"] = df["system"].map(ceil)
    return df


def echo_ceilings(df: pd.DataFrame) -> dict:
    d = df[(df["workload"] == "echo") & (df["figure"] == "calibration") & (df["status"] == "done")]
    if d.empty:
        return {}
    d = d.sort_values("concurrency")
    return {s: float(g["throughput_per_s"].max()) for s, g in d.groupby("system")}


def write_table(run_dir: Path) -> pd.DataFrame:
    df = table(run_dir)
    df.to_csv(Path(run_dir) / TABLE, index=False)
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
        for col in ("client_saturated", "oversubscribed"):
            df[col] = df[col].fillna(False).astype(bool)
        return df
    return table(run_dir)
