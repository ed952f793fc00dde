"""Stability within a window: the client's per-slice series, the drift
rule on synthetic series (harness/stability.py), and the verdict in the
summary's one line."""
from __future__ import annotations

import numpy as np
import pytest

from harness import stability
from workloads import DataSpec, LoadSpec

from conftest import EchoServer


def client(rates: list[float], slice_s: float = 0.25, client_id: int = 1, jitter_ns: int = 0) -> dict:
    """A client result whose series runs at rates[i] per s in its i-th slice."""
    t, ok = [jitter_ns], [0]
    for r in rates:
        t.append(t[-1] + int(slice_s * 1e9))
        ok.append(ok[-1] + round(r * slice_s))
    return {"client_id": client_id, "series": {"slice_s": slice_s, "t_ns": t, "ok": ok}}


def per_slice(per_second: list[float]) -> list[float]:
    return [r for r in per_second for _ in range(4)]


# -- the rule on synthetic series -----------------------------------------
def test_a_flat_rate_is_stable():
    s = stability.section([client(per_slice([10_000] * 10))])
    assert s["stable"] is True and "reason" not in s and "why_null" not in s
    assert s["bin_s"] == 1.0 and s["binned_by"] == "1 s bins" and s["rates_per_s"] == [10_000.0] * 10
    assert (s["trend_change"], s["cv"], s["halves_change"]) == (0.0, 0.0, 0.0)


def test_noise_without_a_trend_is_stable():
    rng = np.random.default_rng(7)
    v = stability.judge(10_000 * (1 + 0.03 * rng.standard_normal(30)), 1.0)
    assert v["stable"] is True, v


def test_a_ramp_is_unstable_as_a_drift():
    """A warm-up not over: the rate climbs 20% over the window."""
    s = stability.section([client(per_slice(list(np.linspace(9_000, 11_000, 20))))])
    assert s["stable"] is False and s["reason"].startswith("drift: the rate rose 2"), s
    assert s["trend_change"] > 0.1 and s["trend_p"] < 0.05 and s["halves_change"] > 0.05


def test_a_step_down_late_in_the_window_is_unstable():
    """A neighbour arriving for the last quarter of the window."""
    v = stability.judge([10_000] * 15 + [7_000] * 5, 1.0)
    assert v["stable"] is False and "fell" in v["reason"], v


def test_a_dip_in_the_middle_is_unstable_as_a_spread():
    """A neighbour that came and went: no trend, but the rate swings."""
    v = stability.judge([10_000] * 8 + [5_000] * 4 + [10_000] * 8, 1.0)
    assert v["stable"] is False and v["reason"].startswith("spread:") and "drift" not in v["reason"], v


def test_too_short_or_too_little_to_judge_is_null_with_a_reason():
    v = stability.judge([10_000] * 3, 1.0)
    assert v["stable"] is None and "fewer than the 4" in v["why_null"]
    v = stability.judge([200] * 10, 0.25)  # 50 completions a bin
    assert v["stable"] is None and "completions per bin" in v["why_null"]
    s = stability.section([client([10_000] * 3)])  # 0.75 s: three slices
    assert s["stable"] is None and "3 bin(s) of 0.25 s" in s["why_null"] and s["rates_per_s"] == [10_000.0] * 3
    s = stability.section([{"client_id": 3, "stats": {}}])
    assert s["stable"] is None and "client 3 recorded no series" in s["why_null"]
    s = stability.section([{"client_id": 4, "series": {"slice_s": 0.25, "t_ns": [0, 5, 3], "ok": [0, 1, 2]}}])
    assert s["stable"] is None and "malformed" in s["why_null"]


def test_a_short_window_is_judged_on_four_bins_and_says_so():
    s = stability.section([client([10_000] * 8)])  # 2 s: four bins of 0.5 s
    assert s["stable"] is True and s["bin_s"] == pytest.approx(0.5, abs=1e-3) and "4 bins" in s["binned_by"]
    s = stability.section([client([10_000] * 4)])  # 1 s: its four slices
    assert s["stable"] is True and s["bin_s"] == pytest.approx(0.25, abs=1e-3) and "0.25 s slices" in s["binned_by"]


def test_clients_are_summed_bin_by_bin_from_their_own_window_starts():
    """Two clients, one falling and one rising by as much: their sum is
    flat; bins stretched to tile the shortest window hold every count."""
    a = client(per_slice(list(np.linspace(6_000, 4_000, 12))), client_id=1)
    b = client(per_slice(list(np.linspace(4_000, 6_000, 12))), client_id=2, jitter_ns=3_000_000)
    s = stability.section([a, b])
    assert s["stable"] is True and abs(s["trend_change"]) < 0.01, s
    assert len(s["rates_per_s"]) == 12 and s["bin_s"] == pytest.approx(1.0, abs=1e-3)
    assert sum(s["rates_per_s"]) * s["bin_s"] == pytest.approx(a["series"]["ok"][-1] + b["series"]["ok"][-1],
                                                               rel=1e-3)
    assert stability.section([a])["stable"] is False  # alone, each drifts


# -- the summary's one line ---------------------------------------------------
def test_the_one_line_marks_an_unstable_window_only():
    from harness.summary import one_line
    s = {"system": "dint", "workload": "echo", "concurrency": 4, "napi": "inline", "throughput_per_s": 1e5,
         "latency_us": {"p50": 10, "p99": 20}, "errors": 0, "client_cpu_util": 0.5, "client_saturated": False}
    assert "UNSTABLE" not in one_line({**s, "stability": {"stable": True}})
    assert "UNSTABLE" not in one_line({**s, "stability": {"stable": None, "why_null": "short"}})
    assert "UNSTABLE" not in one_line(s)
    line = one_line({**s, "stability": {"stable": False, "reason": "drift: the rate fell 30% over the window"}})
    assert line.endswith("  UNSTABLE (drift: the rate fell 30% over the window)")


# -- a real client's series -----------------------------------------------------
def test_a_client_result_carries_its_window_s_series():
    """The real client (harness.loadgen.drive) against a loopback echo
    server: a sample at the window's start and at every slice's end, the
    counts never going back, and the last one the window's count but for
    what was still in flight at its end."""
    from harness.loadgen import SLICE_NS, ClientSpec, drive
    with EchoServer() as srv:
        spec = ClientSpec(client_id=77, host="local", address="127.0.0.1", dests=(srv.addr,), workload="echo",
                          load=LoadSpec(data=DataSpec(), seed=1, requests=1000, servers=1), concurrency=4,
                          warmup_s=0.3, duration_s=1.1, timeout_ms=200, max_retries=3, rto_min_ms=200,
                          server_window=0, client_gso="off")
        r = drive(spec, progress=lambda line: None)
    s = r["series"]
    assert s["slice_s"] == SLICE_NS / 1e9 and "committed" not in s
    t, ok = np.array(s["t_ns"]), np.array(s["ok"])
    assert len(t) == len(ok) == len(s["not_ok"]) >= 5
    assert 0 <= t[0] < SLICE_NS and t[-1] >= spec.duration_s * 1e9
    assert t[-1] / 1e9 == pytest.approx(r["window_s"], abs=0.05)
    assert np.all(np.diff(t) > 0) and np.all(np.diff(t) < 2 * SLICE_NS) and np.all(np.diff(ok) >= 0)
    assert ok[0] <= spec.concurrency and ok[-1] > 0
    assert 0 <= r["stats"]["ok"] - ok[-1] <= spec.concurrency  # answered after the window's end
    assert s["not_ok"][-1] == r["stats"]["err_status"] + r["stats"]["lost"] == 0
    st = stability.section([r])
    assert st["binned_by"].startswith("4 bins") and len(st["rates_per_s"]) == 4
    assert sum(st["rates_per_s"]) * st["bin_s"] == pytest.approx(np.interp(st["bin_s"] * 4 * 1e9, t, ok), abs=1)
    assert st["stable"] in (True, False, None)  # a Python server's pace on a shared host: anything


# -- points.csv, points-summary.csv, REPORT.md and the curves -------------------
UNSTABLE_REASON = "drift: the rate fell 25% over the window (linear trend, p=0.001; limit 10%)"


def test_an_unstable_window_reaches_the_tables_the_report_and_the_curves(tmp_path, monkeypatch):
    """Repetition 2 of one curve point drifts, one calibration point's window
    is too short to judge, the rest are stable: points.csv says so per
    repetition, points-summary.csv counts them per point, REPORT.md flags
    them and marks the point (explaining the mark once), the curve marks it."""
    import json

    import pandas as pd
    import yaml

    from harness import experiments, report, reproduce, results
    from harness import run as harness_run
    from plots import curves
    from plots.__main__ import plot_run
    from plots.common import UNSTABLE_GID
    from test_eval import fake_execute, point_series
    from test_repeats import tiny

    drifting, short = "micro-lock__2pl__kernel__c8/r2", "calibration__unloaded__dint/r1"
    inner = fake_execute([])

    def execute(cfg, out, **kw):
        s = inner(cfg, out, **kw)
        key = f"{out.parent.name}/{out.name}"
        s["stability"] = ({"stable": False, "reason": UNSTABLE_REASON, "trend_change": -0.25, "cv": 0.08}
                          if key == drifting else
                          {"stable": None, "why_null": "3 bin(s) of 0.25 s, fewer than the 4"} if key == short else
                          {"stable": True, "trend_change": 0.01, "cv": 0.02})
        (out / "summary.json").write_text(json.dumps(s))
        return s
    monkeypatch.setattr(harness_run, "Series", point_series(execute))
    ef = tiny(tmp_path, repeat=2)
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiments.yml").write_text(yaml.safe_dump(experiments.resolved(ef)))
    reproduce.run_points(run, ef.points(), progress=False, log=lambda m: None)

    df = results.write_table(run)
    back = results.load_table(run)
    for d in (df, back):
        rows = d[d.point == "micro-lock__2pl__kernel__c8"].set_index("repetition")
        assert list(rows.stability) == ["stable", "unstable"] and rows.loc[2, "stability_note"] == UNSTABLE_REASON
        assert rows.loc[1, "stability_note"] == "" and rows.loc[2, "rate_trend"] == -0.25
        assert dict(zip(d.dir, d.stability))[str(run / short)] == "not judged"
    summary = pd.read_csv(run / results.SUMMARY)
    by_point = summary.groupby("point")[["unstable", "stability_not_judged"]].max()
    assert tuple(by_point.loc["micro-lock__2pl__kernel__c8"]) == (1, 0)
    assert tuple(by_point.loc["calibration__unloaded__dint"]) == (0, 1)
    assert by_point["unstable"].sum() == 1
    pp = results.per_point(df).set_index("point")
    assert pp.loc["micro-lock__2pl__kernel__c8", "unstable"] == 1 and pp["unstable"].sum() == 1

    text = report.render(run, df)
    flag = next(x for x in text.splitlines() if "Unstable window" in x)
    assert flag.startswith("- Unstable window in 1 of 101 judged run(s)")
    assert f"micro-lock__2pl__kernel__c8 r2 ({UNSTABLE_REASON})" in flag
    assert "1 measured run(s) not judged (e.g. calibration__unloaded__dint r1: 3 bin(s)" in flag
    # its explanation, and the one point in the peaks and server CPU tables
    assert text.count(report.UNSTABLE_MARK) == 3
    peak, unloaded, cpu = [x for x in text.splitlines() if x.startswith("| lock 2pl |")]
    assert report.UNSTABLE_MARK not in unloaded  # the unloaded point (c=1) was stable
    assert peak.split(" | ")[2] == f"3,750 (c=8){report.UNSTABLE_MARK}" and report.UNSTABLE_MARK not in peak.split(" | ")[1]
    assert cpu.split(" | ")[2] == f"80.00 (4.00){report.UNSTABLE_MARK}"

    drawn = {}

    def keep(fig, out_dir, stem, note=None):
        drawn[stem] = ([a for ax in fig.axes for a in ax.texts if a.get_gid() == UNSTABLE_GID], note or "")
        return []
    monkeypatch.setattr(curves, "save", keep)
    plot_run(run, df)
    marks, note = drawn["curve-micro-lock"]
    assert len(marks) == 2 and "not steady" in note  # p50 and p99 panels
    assert drawn["curve-tatp"] == ([], drawn["curve-tatp"][1]) and "not steady" not in drawn["curve-tatp"][1]


def test_a_run_all_stable_says_so_and_marks_nothing():
    import pandas as pd

    from harness import report
    d = pd.DataFrame({"point": ["a", "b"], "stability": ["stable", "stable"], "stability_note": ["", ""]})
    assert report.stability_flags(d, "point(s)") == [
        "Stability: the rate held steady over the window in all 2 judged point(s) (none had a linear trend of "
        "its rate changing by more than 10% over the window, nor 1 s rates with a coefficient of variation over "
        "10%)."]
    assert report.stability_flags(d.assign(stability=""), "point(s)") == []  # summaries older than the section
