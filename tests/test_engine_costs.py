"""The `dint_engine` section of summary.json (harness/engine_costs.py): the
latch's RETRY answers, the bloom filter's answers and the slow path's
passes, fills, evictions and CPU over the measured window, from the
servers' counters; null figures with the reason for a system without them;
and its REPORT.md table. Then one tiny real run of dint with a small cache
(passes and fills seen) and one of kernel (the section null, with why)."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from harness import ROOT, cost, engine_costs

S = 10**9


def dint_lines(rx_rate: int, pass_rate: int, n: int = 30, **rates) -> list[dict]:
    """A dint server's stats lines every 0.1 s from t = 100 s."""
    out = []
    for i in range(n):
        t = 100 * S + i * S // 10
        k = i / 10
        line = {"t_ns": t, "mono_ns": t, "rx": int(rx_rate * k), "pass": int(pass_rate * k), "bpf_run_ns": int(k * 1e6),
                "bpf_run_cnt": int(rx_rate * k), "cpu_ns": int(k * 2e8), "slow_cpu_ns": int(k * 1e8),
                "slow_loaded": 1000, "clean": True}
        line.update({name: int(r * k) for name, r in rates.items()})
        out.append(line)
    return out


WINDOW = (int(100.5 * S), int(102.0 * S))


def section_of(lines: dict, config: dict | None = None, p50: float = 50.0) -> dict:
    sc = cost.per_op("dint", lines, WINDOW)
    return engine_costs.section("dint", sc, config or {"cache_fraction": 0.1, "cache_bloom": True},
                                {"p50": p50}, {"busy_retries": 7})


def test_the_counters_over_the_window_give_each_figure():
    lines = {h: dint_lines(10_000, 4_000, busy=10, bloom_out=300, bloom_fp=100, slow_fill=3_000, slow_evict=2_000,
                           slow_writeback=500) for h in ("s0", "s1")}
    d = section_of(lines)
    assert d["why_null"] is None and d["span_s"] == pytest.approx(1.5)  # lines at 100.5 and 102.0
    n = 2 * 15_000  # rx over 1.5 s on two servers
    assert d["requests"] == n
    assert d["latch"]["busy"] == 30 and d["latch"]["busy_per_request"] == pytest.approx(30 / n, rel=1e-4)
    assert d["latch"]["added_latency_us_per_request_est"] == pytest.approx(30 / n * 50.0, rel=1e-3)
    assert d["latch"]["client_retry_answers_whole_run"] == 7
    assert d["bloom"]["false_positive_rate"] == pytest.approx(0.25)
    sp = d["slow_path"]
    assert sp["pass_share"] == pytest.approx(0.4) and sp["fills"] == 2 * 4_500
    assert sp["fills_per_s"] == pytest.approx(6_000, rel=1e-3) and sp["evictions_per_s"] == pytest.approx(4_000, rel=1e-3)
    assert sp["cpu_cores"] == pytest.approx(0.2, rel=1e-3)  # 0.1 of a core on each server
    assert sp["cpu_us_per_pass"] == pytest.approx(0.3 / 12_000 * 1e6, rel=1e-3)


def test_a_rate_without_its_denominator_is_null_with_the_reason():
    lines = {"s0": dint_lines(1_000, 0, busy=0, bloom_out=0, bloom_fp=0, slow_fill=0, slow_evict=0)}
    b = section_of(lines)["bloom"]
    assert b["false_positive_rate"] is None and "exists nowhere" in b["why_null"]
    b = section_of(lines, {"cache_bloom": False})["bloom"]
    assert b["false_positive_rate"] is None and "--no-bloom" in b["why_null"]
    assert section_of(lines)["latch"]["busy_per_request"] == 0.0  # measured: none


@pytest.mark.parametrize("system", ["kernel", "bypass"])
def test_a_system_without_the_engine_has_null_figures_and_why(system):
    d = engine_costs.section(system, {"server_cpu_us_per_op": 1.0}, {}, {"p50": 1.0}, {})
    assert d["latch"] is None and d["bloom"] is None and d["slow_path"] is None and system in d["why_null"]


def test_dint_without_counters_over_the_window_is_null_with_the_cost_reason():
    sc = cost.per_op("dint", {"s0": dint_lines(1_000, 0, n=5)}, WINDOW)  # lines end before the window does
    d = engine_costs.section("dint", sc, {}, {}, {})
    assert d["slow_path"] is None and "window end" in d["why_null"]


def test_the_report_table_sums_a_points_repetitions(tmp_path):
    lines = {"s0": dint_lines(10_000, 5_000, busy=0, bloom_out=90, bloom_fp=10, slow_fill=5_000, slow_evict=5_000)}
    rows = []
    for k in (1, 2):
        d = tmp_path / "kv-dint" / f"r{k}"
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"dint_engine": section_of(lines)}))
        rows.append({"point": "kv-dint", "experiment": "micro-kv", "system": "dint", "status": "done",
                     "workload": "kv", "cache_fraction": 0.1, "concurrency": 8, "dir": str(d)})
    rows.append({"point": "kv-kernel", "experiment": "micro-kv", "system": "kernel", "status": "done",
                 "workload": "kv", "dir": str(tmp_path / "none")})
    out = "\n".join(engine_costs.report_section(tmp_path, pd.DataFrame(rows)))
    row = next(ln for ln in out.splitlines() if ln.startswith("| micro-kv"))
    assert "cache=0.1 c=8" in row and "| 2 |" in row and "50.00%" in row and "10.0% (30/300)" in row
    assert "kv-kernel" not in out
    assert engine_costs.report_section(tmp_path, pd.DataFrame(rows[2:])) == []


def harness(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("system", ["dint", "kernel"])
def test_a_run_records_the_engine_section(testbed, test_inventory_path, tmp_path, system):
    """A cache for a tenth of 2,000 keys: most reads pass up and fill."""
    out = tmp_path / "run"
    p = harness("run", "--system", system, "--workload", "kv", "--keys", "2000", "--cache-fraction", "0.1",
                "--concurrency", "8", "--duration", "0.8", "--warmup", "0.2",
                "--inventory", str(test_inventory_path), "--out", str(out))
    assert p.returncode == 0, p.stderr
    d = json.loads((out / "summary.json").read_text())["dint_engine"]
    if system == "kernel":
        assert d["slow_path"] is None and d["latch"] is None and "kernel" in d["why_null"]
        return
    assert d["why_null"] is None, d
    sp = d["slow_path"]
    assert sp["passed"] > 0 and sp["fills"] > 0 and sp["evictions"] > 0 and 0.3 < sp["pass_share"] <= 1
    assert sp["cpu_s"] > 0 and sp["fills_per_s"] > 0
    assert d["latch"]["busy_per_request"] is not None
    assert d["bloom"]["why_null"]  # kv reads ask for loaded keys only
