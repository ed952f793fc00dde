"""What dint's ways around eBPF's constraints cost in a run: the latch
answered RETRY, the bloom filter's answers, and the slow path's passes,
fills, evictions and CPU. The `dint_engine` section of summary.json, and
the REPORT.md section of `make reproduce` ("How dint lives within eBPF's
constraints"). See DESIGN.md for what each counter stands for.

Every figure comes from the servers' own counters over the same span as
the server cost (harness/cost.py: for each server, its last stats line at
or before the clients' window start and its first at or after its end),
summed over the servers:
- `busy` (bpf/dint_xdp.c): a bucket's or a completion record's latch still
  busy after DINT_LATCH_TRIES compare-and-swaps. The request is answered
  RETRY and the client sends it again with the same id: one more round trip
  each (but in the slow path's fills, which try again themselves);
- `bloom_out`: a miss in its bucket whose bloom bits were clear, answered
  (or created) in XDP; `bloom_fp`: the slow path's run of a key its store
  does not hold whose bloom bits were set: passed up for nothing. The false
  positive rate is bloom_fp / (bloom_fp + bloom_out): of the lookups of
  keys that exist nowhere, the share the filter let through;
- `pass`: requests from the wire passed up (XDP_PASS) to the slow path;
  `slow_fill`, `slow_evict`, `slow_writeback`: records taken into the cache,
  the victims evicted for them and those stored back; `slow_cpu_ns`: the
  slow path process's CPU time (user and system: its fills, its runs of the
  program, its socket calls; not the kernel's receive work for the passed
  datagrams, which runs in the NAPI context).
A system without these (kernel, bypass) gets the section with null figures
and `why_null`, never zeros."""
from __future__ import annotations

import math
from pathlib import Path

RULE = ("the servers' counters between each server's stats lines that bracket the clients' window (the span of "
        "server_cost), summed over the servers; rates per second over their mean span")
LATENCY_RULE = ("each RETRY answer costs its request one more round trip; estimated as RETRY answers per request "
                "times the run's median request latency (p50)")
NOT_DINT = "{system} has no in-kernel cache: no latch answered RETRY, no bloom filter, no slow path"


def _ratio(num: float, den: float, digits: int = 6) -> float | None:
    return round(num / den, digits) if den else None


def _null(why: str) -> dict:
    return {"latch": None, "bloom": None, "slow_path": None, "why_null": why}


def section(system: str, server_cost: dict | None, config: dict, latency_us: dict | None,
            error_detail: dict | None) -> dict:
    """The `dint_engine` section of a run's summary (the module's
    docstring), from its server_cost (with the counters over its span)."""
    if system != "dint":
        return _null(NOT_DINT.format(system=system))
    sc = server_cost or {}
    c = sc.get("counters")
    spans = [s.get("span_s") for s in (sc.get("servers") or {}).values() if s.get("span_s")]
    if not c or not spans:
        return _null("no counters over the clients' window: " + (sc.get("reason") or "no server cost recorded"))
    missing = [k for k in ("rx", "pass", "busy", "bloom_out", "bloom_fp") if k not in c]
    if missing:
        return _null(f"the servers' stats lines have no {', '.join(missing)} (an older build of the XDP program)")
    span = sum(spans) / len(spans)
    rx = c["rx"]
    busy = c["busy"]
    per_req = _ratio(busy, rx)
    p50 = (latency_us or {}).get("p50")
    latch = {"busy": busy, "busy_per_request": per_req, "extra_round_trips_per_request": per_req,
             "added_latency_us_per_request_est": (round(per_req * p50, 4) if per_req is not None and p50 else
                                                  (0.0 if per_req == 0 else None)),
             "added_latency_rule": LATENCY_RULE,
             "client_retry_answers_whole_run": (error_detail or {}).get("busy_retries")}
    bloom: dict = {"enabled": bool(config.get("cache_bloom", True)), "ruled_out": c["bloom_out"],
                   "false_positives": c["bloom_fp"]}
    looked = c["bloom_out"] + c["bloom_fp"]
    if not bloom["enabled"]:
        bloom.update(false_positive_rate=None, why_null="no bloom filter in this run (--no-bloom): every miss "
                                                        "passes up")
    elif not looked:
        bloom.update(false_positive_rate=None, why_null="no request asked for a key that exists nowhere (every key "
                                                        "asked for was loaded or written), so the filter had no "
                                                        "negative to answer")
    else:
        bloom["false_positive_rate"] = _ratio(c["bloom_fp"], looked)
    slow = {k: c.get(f"slow_{k}", c.get(k)) for k in ("fill", "evict", "writeback", "repass", "full")}
    cpu_ns = c.get("slow_cpu_ns")
    slow_path = {
        "passed": c["pass"], "pass_share": _ratio(c["pass"], rx), "fills": slow["fill"], "evictions": slow["evict"],
        "writebacks": slow["writeback"], "repasses": slow["repass"], "refused_full": slow["full"],
        "fills_per_s": round(slow["fill"] / span, 1) if slow["fill"] is not None else None,
        "evictions_per_s": round(slow["evict"] / span, 1) if slow["evict"] is not None else None,
        "cpu_s": round(cpu_ns / 1e9, 4) if cpu_ns is not None else None,
        "cpu_cores": round(cpu_ns / 1e9 / span, 4) if cpu_ns is not None else None,
        "cpu_us_per_pass": _ratio(cpu_ns / 1e3, c["pass"], 3) if cpu_ns is not None else None,
    }
    return {"requests": rx, "span_s": round(span, 3), "cache_fraction": config.get("cache_fraction"),
            "latch": latch, "bloom": bloom, "slow_path": slow_path, "why_null": None, "rule": RULE}


# -- REPORT.md ------------------------------------------------------------------
COMMANDS = ("`python -m harness run --system dint ...`: every dint run's summary.json carries its `dint_engine` "
            "section")


def _fmt(v, pct: bool = False, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if v == 0:
        return "0"
    if pct:
        return f"{100 * v:.{digits + 1}f}%" if v < 0.01 and v else f"{100 * v:.{digits}f}%"
    return f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"


def point_figures(summaries: list[dict]) -> dict | None:
    """One point's figures over its measured repetitions: counts summed,
    shares and rates from the sums (None if no repetition has them)."""
    secs = [s.get("dint_engine") for s in summaries]
    secs = [d for d in secs if d and not d.get("why_null")]
    if not secs:
        return None
    tot = lambda part, k: sum((d[part] or {}).get(k) or 0 for d in secs)  # noqa: E731
    rx = sum(d["requests"] for d in secs)
    span = sum(d["span_s"] for d in secs)
    busy = tot("latch", "busy")
    est = [d["latch"]["added_latency_us_per_request_est"] for d in secs]
    out = {"runs": len(secs), "requests": rx, "busy_per_request": _ratio(busy, rx), "busy": busy,
           "added_latency_us_est": (sum(e for e in est if e is not None) / len(est)) if None not in est else None,
           "pass_share": _ratio(tot("slow_path", "passed"), rx),
           "bloom_out": tot("bloom", "ruled_out"), "bloom_fp": tot("bloom", "false_positives"),
           "bloom_enabled": all(d["bloom"]["enabled"] for d in secs),
           "fills_per_s": tot("slow_path", "fills") / span if span else None,
           "evictions_per_s": tot("slow_path", "evictions") / span if span else None,
           "cpu_cores": tot("slow_path", "cpu_s") / span if span else None,
           "cpu_us_per_pass": _ratio(tot("slow_path", "cpu_s") * 1e6, tot("slow_path", "passed"), 3)}
    looked = out["bloom_out"] + out["bloom_fp"]
    out["bloom_fp_rate"] = _ratio(out["bloom_fp"], looked) if out["bloom_enabled"] and looked else None
    return out


def _setting(row) -> str:
    bits = []
    for col, name in (("key_dist", "keys"), ("cache_fraction", "cache"), ("concurrency", "c")):
        v = row.get(col)
        if v is None or (isinstance(v, float) and math.isnan(v)) or v in ("", "uniform") or \
                (col == "cache_fraction" and not v):
            continue
        bits.append(f"{name}={v:g}" if isinstance(v, float) else f"{name}={v}")
    if row.get("cache_bloom") is False:
        bits.append("no bloom")
    if row.get("cache_write_through") is True:
        bits.append("write-through")
    return " ".join(bits)


def report_section(run_dir: Path, df) -> list[str]:
    """REPORT.md's lines: per dint point of the run, its figures (point_figures),
    or [] if the run has no dint point with them."""
    import json
    rows = []
    d = df[(df["system"] == "dint") & (df["status"] == "done")]
    for point, g in d.groupby("point", sort=False):
        sums = []
        for p in g["dir"].dropna():  # (a point that never ran has no directory)
            f = Path(p) / "summary.json"
            if f.exists():
                sums.append(json.loads(f.read_text()))
        fig = point_figures(sums)
        if fig is None:
            continue
        r = g.iloc[0].to_dict()
        rows.append([f"{r.get('experiment') or point}", r.get("workload"), _setting(r), fig["runs"],
                     _fmt(fig["busy_per_request"], pct=True, digits=3),
                     _fmt(fig["added_latency_us_est"], digits=3),
                     _fmt(fig["pass_share"], pct=True, digits=2),
                     (_fmt(fig["bloom_fp_rate"], pct=True) + f" ({fig['bloom_fp']:,}/{fig['bloom_fp'] + fig['bloom_out']:,})"
                      if fig["bloom_fp_rate"] is not None else ("no filter" if not fig["bloom_enabled"] else
                                                                "no absent key")),
                     _fmt(fig["fills_per_s"], digits=0), _fmt(fig["evictions_per_s"], digits=0),
                     _fmt(fig["cpu_cores"], pct=True), _fmt(fig["cpu_us_per_pass"], digits=1)])
    if not rows:
        return []
    from .report import md_table
    head = ["point", "workload", "setting", "runs", "RETRY / request", "est. added us / request",
            "passed to slow path", "bloom false positives", "fills/s", "evictions/s", "slow path CPU (of a core)",
            "slow path CPU us / pass"]
    return [
        "dint's answers to eBPF's constraints, as its servers counted them over each dint point's measured window "
        "(`dint_engine` in each summary.json; counts summed over a point's repetitions, shares and rates from the "
        "sums; DESIGN.md says what each one is). RETRY: a bucket's latch still busy after 64 compare-and-swaps "
        "(the client sends the request again: one round trip more; the added latency is that count times the "
        "median request latency). Passed: requests XDP handed to the user-space slow path (a key that may live "
        "there). Bloom false positives: of the lookups of keys that exist nowhere, those the filter let through "
        "(n/total). Slow path CPU: its process's CPU time over the window (the three servers' together), not "
        "the kernel's receive work for what it was passed. Figures of this run on this machine, not constants.",
        "", md_table(head, rows), ""]
