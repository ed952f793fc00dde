"""Repetitions: `repeat` in experiment files and `harness run --repeat`, the
order reproduce runs them in, resume per repetition, the statistics
(harness/stats.py) against known values, points-summary.csv, the report's
ratios with their intervals, error bars in the figures and `harness
compare`; from fabricated summaries (no root), plus one real `harness run
--repeat 2` on the test testbed."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from harness import ROOT, HarnessError, compare, experiments, report, reproduce, results, stats
from harness import run as harness_run
from harness.__main__ import main as harness_main
from plots.__main__ import plot_run
from plots.common import INTERVAL_GID
from test_eval import TINY, fake_execute, fake_summary, point_series


def tiny(tmp_path, only=(), **top) -> experiments.ExperimentFile:
    """test_eval's TINY file (only: just these experiments), with top-level keys set."""
    raw = {**json.loads(json.dumps(TINY)), **top}
    if only:
        raw["experiments"] = [e for e in raw["experiments"] if e["name"] in only]
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(raw))
    return experiments.load(str(path))


# -- experiment files ---------------------------------------------------------
def test_repeat_is_a_default_and_an_experiment_s_own():
    raw = json.loads(json.dumps(TINY))
    raw["repeat"] = 3
    raw["experiments"][1]["repeat"] = 5  # micro-lock
    pts = experiments.parse(raw, "exp.yml").points()
    assert {p.repeat for p in pts if p.experiment == "micro-lock"} == {5}
    assert {p.repeat for p in pts if p.experiment != "micro-lock"} == {3}
    assert {p.repeat for p in experiments.parse(TINY, "exp.yml").points()} == {1}  # the default
    resolved = experiments.resolved(experiments.parse(raw, "exp.yml"))
    assert {p["repeat"] for p in resolved["points"] if p["experiment"] == "micro-lock"} == {5}


def test_the_shipped_profiles_repeat():
    # but the local profile's fixed-rate, value-size, skew and colocation
    # points, run once to fit its 20 minutes
    once = ("cpu-tatp", "kv-value-size", "kv-skew", "colocation-tatp")
    local = experiments.load("local").points()
    assert {p.repeat for p in local if p.experiment not in once} == {3}
    assert {p.repeat for p in local if p.experiment in once} == {1}
    assert {p.repeat for p in experiments.load("local-all").points()} == {3}
    assert {p.repeat for p in experiments.load("paper").points()} == {5}


@pytest.mark.parametrize("value", [0, -2, 101, 2.5, "3", True, None])
@pytest.mark.parametrize("where", ["top", "experiment"])
def test_a_bad_repeat_is_one_clear_line(value, where):
    raw = json.loads(json.dumps(TINY))
    (raw if where == "top" else raw["experiments"][1])["repeat"] = value
    with pytest.raises(HarnessError) as info:
        experiments.parse(raw, "exp.yml")
    msg = str(info.value)
    prefix = "exp.yml: " if where == "top" else "exp.yml: experiments[1] (micro-lock): "
    assert msg == f"{prefix}repeat must be a whole number from 1 to 100, not {value!r}"


def test_harness_run_refuses_a_bad_repeat_in_one_line(tmp_path, capsys):
    assert harness_main(["run", "--system", "kernel", "--repeat", "0", "--out", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err.strip() == "error: --repeat must be a whole number from 1 to 100, not 0"
    assert not (tmp_path / "x").exists()


# -- the order, resume ----------------------------------------------------------
def run_fake(tmp_path, ef, calls):
    """ef's points run into tmp_path/run by test_eval's fake_execute; calls:
    the runs' directories under the run, in the order they ran."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    fake = fake_execute([])

    def execute(cfg, out, **kw):
        calls.append(str(out.relative_to(run)))
        return fake(cfg, out, **kw)
    harness_run.Series = point_series(execute)
    return run, reproduce.run_points(run, ef.points(), progress=False, log=lambda m: None)


@pytest.fixture
def no_real_execute(monkeypatch):
    monkeypatch.setattr(harness_run, "Series", None)


def test_repetitions_are_interleaved_across_systems(tmp_path, no_real_execute):
    """Per curve, repetition 1 of every system runs, then repetition 2: A B
    C A B C, not A A A B B B; one system's repetition of a sweep over the
    load is one series (one start of its servers), its levels in order."""
    ef = tiny(tmp_path, repeat=2)
    calls = []
    run_fake(tmp_path, ef, calls)
    lock = [c for c in calls if c.startswith("micro-lock__2pl")]
    assert lock == [f"micro-lock__2pl__{s}__c{c}/r{k}" for k in (1, 2) for s in ("dint", "kernel", "bypass")
                    for c in (1, 8)]
    # a level with one system (dint's ablations): its repetitions back to back
    abl = [c for c in calls if c.startswith("ablation__kv")]
    assert abl[:2] == ["ablation__kv__base__dint/r1", "ablation__kv__base__dint/r2"]
    assert len(calls) == 2 * len(ef.points()) == len(set(calls))
    # the series: a system's repetition of a sweep over the concurrency
    reps = reproduce.schedule([reproduce.Rep(p, k, f"{p.name}/r{k}") for p in ef.points() for k in (1, 2)])
    groups = [[r.key for r in g] for g in reproduce.series(reps, None)]
    assert ["micro-lock__2pl__kernel__c1/r2", "micro-lock__2pl__kernel__c8/r2"] in groups
    # a variant that changes the servers (a build flag): alone
    assert ["ablation__kv__write-through__dint/r1"] in groups
    # variants that differ in NAPI placement too (the calibration's): apart
    assert ["calibration__loaded__kernel/r1"] in groups
    # points of other experiments on the same servers join the series,
    # after it: the KV store's fixed rates (parallel reads), dint's ablation
    # base (reads and writes at concurrency 8) and the colocation's point
    # alone; the same echo point of two experiments too
    assert ["cpu-kv__dint__r1000/r1", "cpu-kv__dint__r2000/r1", "ablation__kv__base__dint/r1",
            "colocation__alone__dint/r1"] in groups
    assert ["calibration__unloaded__kernel/r2", "unloaded__echo__kernel/r2"] in groups
    # ... but not a point with a neighbour (served alone)
    assert ["colocation__neighbour__dint/r1"] in groups
    assert sorted(k for g in groups for k in g) == sorted(calls)
    # one run a point: still curve by curve, each point in its own directory
    calls.clear()
    (tmp_path / "run").rename(tmp_path / "run-repeated")
    run_fake(tmp_path, tiny(tmp_path), calls)
    assert [c for c in calls if c.startswith("micro-lock__occ")] == [
        f"micro-lock__occ__{s}__c{c}" for s in ("dint", "kernel", "bypass") for c in (1, 8)]


def test_an_interrupted_run_resumes_per_repetition(tmp_path, no_real_execute):
    """Ctrl-C in a repetition leaves it pending and a failed one failed; the
    next run of the same run directory runs just those, in schedule order."""
    ef = tiny(tmp_path, only=["tatp"], repeat=3)
    run = tmp_path / "run"
    run.mkdir()
    calls, stop, bad = [], ["tatp__kernel__c8/r3"], "tatp__dint__c8/r2"
    fake = fake_execute([])

    def execute(cfg, out, **kw):
        key = str(out.relative_to(run))
        calls.append(key)
        if key in stop or key == bad and len(stop):
            out.mkdir(parents=True)
            raise KeyboardInterrupt if key in stop else HarnessError("server on s1 died")
        return fake(cfg, out, **kw)
    harness_run.Series = point_series(execute)
    with pytest.raises(KeyboardInterrupt):
        reproduce.run_points(run, ef.points(), progress=False, log=lambda m: None)
    assert calls == [f"tatp__{s}__c{c}/r{k}" for k in (1, 2, 3) for s in ("dint", "kernel", "bypass")
                     for c in (1, 8)][:-2]
    index = results.read_index(run)["points"]
    assert set(index) == {f"{p.name}/r{k}" for p in ef.points() for k in (1, 2, 3)}
    assert (index[stop[0]]["status"], index[stop[0]]["attempts"]) == ("pending", 0)
    assert (index[bad]["status"], index[bad]["attempts"]) == ("failed", 1)
    e = index["tatp__kernel__c8/r2"]
    assert (e["point"], e["repetition"], e["repeat"], e["status"]) == ("tatp__kernel__c8", 2, 3, "done")
    # the same run again: the failed repetition once more, and those not run
    calls.clear()
    stop.clear()
    index = reproduce.run_points(run, ef.points(), progress=False, log=lambda m: None)["points"]
    assert calls == [bad, "tatp__kernel__c8/r3", "tatp__bypass__c1/r3", "tatp__bypass__c8/r3"]
    assert (run / "_failed" / "tatp__dint__c8__r2.attempt1").is_dir()
    assert (run / "_failed" / "tatp__kernel__c8__r3.attempt0").is_dir()
    assert (index[bad]["status"], index[bad]["attempts"]) == ("done", 2)
    assert {e["status"] for e in index.values()} == {"done"}
    calls.clear()
    reproduce.run_points(run, ef.points(), progress=False, log=lambda m: None)
    assert calls == []
    df = results.write_table(run)
    assert len(df) == 3 * len(ef.points()) and list(df[df.point == "tatp__kernel__c8"].repetition) == [1, 2, 3]


def test_a_point_run_once_and_then_repeated_keeps_its_run_as_r1(tmp_path, no_real_execute):
    calls = []
    run, _ = run_fake(tmp_path, tiny(tmp_path), calls)
    first = (run / "tatp__dint__c1" / "summary.json").read_text()
    calls.clear()
    run, index = run_fake(tmp_path, tiny(tmp_path, repeat=2), calls)
    assert sorted(calls) == sorted(f"{p.name}/r2" for p in tiny(tmp_path).points())
    assert (run / "tatp__dint__c1" / "r1" / "summary.json").read_text() == first
    assert not (run / "tatp__dint__c1" / "summary.json").exists()
    assert "tatp__dint__c1" not in index["points"] and index["points"]["tatp__dint__c1/r1"]["status"] == "done"
    # and back to one repetition: the point keeps what it has
    calls.clear()
    run, index = run_fake(tmp_path, tiny(tmp_path), calls)
    assert calls == [] and index["points"]["tatp__dint__c1/r2"]["status"] == "done"


# -- statistics -------------------------------------------------------------------
def test_the_median_s_interval_from_order_statistics():
    # n=10: [x(2), x(9)] at 1 - 2 P(B <= 1), B ~ Bin(10, 1/2): 1 - 2 * 11/1024
    m = stats.median_ci([7, 1, 3, 10, 2, 9, 5, 4, 8, 6])
    assert (m.n, m.median, m.low, m.high, m.note) == (10, 5.5, 2.0, 9.0, "")
    assert m.level == pytest.approx(1 - 22 / 1024)
    # n=6: the range, at 1 - 2/64
    m = stats.median_ci([3.0, 1.0, 2.0, 6.0, 5.0, 4.0])
    assert (m.low, m.high, m.level, m.note) == (1.0, 6.0, pytest.approx(1 - 2 / 64), "")
    # n=5 reaches 93.75% at most, and says so
    m = stats.median_ci([5, 4, 3, 2, 1])
    assert (m.median, m.low, m.high, m.level) == (3.0, 1.0, 5.0, 0.9375)
    assert m.note == "the range of 5 repetitions, a 93.8% interval; 6 reach 95%"
    # one value: no interval (never a 0-wide one); none: nothing
    assert stats.median_ci([42.0]) == stats.Median(1, 42.0, None, None, None, "one repetition")
    assert stats.median_ci([None, float("nan")]) == stats.Median(0, None, None, None, None, "no measured repetition")


def test_the_ratio_s_bootstrap_interval():
    # resampled medians of [1, 2, 3] are 1, 2, 3 with probabilities 7/27, 13/27, 7/27: the 95% interval is [1, 3]
    r = stats.ratio_ci([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])
    assert (r.value, r.low, r.high, r.significant) == (2.0, 1.0, 3.0, False)
    assert r.text() == "~2.00x [1.00-3.00]"
    rng = np.random.default_rng(7)
    base = 1000 * (1 + 0.02 * rng.standard_normal(5))
    slow = 0.8 * 1000 * (1 + 0.02 * rng.standard_normal(5))
    r = stats.ratio_ci(slow, base)
    assert r.significant and r.high < 0.9 and r.low > 0.7 and r.low <= r.value <= r.high
    assert r.verdict(stats.HEADLINE[0]) == "slower" and r.verdict(stats.HEADLINE[2]) == "faster"
    assert stats.ratio_ci(slow, base) == r  # a fixed seed: the same data, the same interval
    same = stats.ratio_ci(base, base)
    assert same.value == 1.0 and not same.significant and same.verdict(stats.HEADLINE[0]) == "~"
    one = stats.ratio_ci([900.0], base)
    assert (one.low, one.high, one.significant, one.verdict(stats.HEADLINE[0])) == (None, None, None, "?")
    assert one.text() == "0.90x [? one repetition]" and one.text(percent=True) == "90% [? one repetition]"
    # a significant interval never reads as holding 1
    assert stats.Ratio(1.02, 1.0004, 1.07, 3, 3, "").text() == "1.02x [1.0004-1.0700]"


# -- fabricated runs with repetitions --------------------------------------------
# each system's goodput factor per repetition: dint twice kernel's, bypass
# with dint's own noise (so dint/bypass is ~1)
NOISE = [1.0, 1.04, 0.97, 1.02, 0.99]
FACTOR = {"dint": 2.0, "kernel": 1.0, "bypass": 2.0}


def noisy_execute(calls, noise=NOISE, slower=()):
    """fake_summary's figures, each run's goodput and throughput scaled by
    its system's factor and its repetition's noise (latency divided by the
    same); the points in `slower` 20% slower."""
    def execute(cfg, out, **_):
        calls.append(out)
        out.mkdir(parents=True)
        k = int(out.name[1:]) if results.REP_RE.match(out.name) else 1
        f = FACTOR[cfg.system] * noise[(k - 1) % len(noise)] * (0.8 if out.parent.name in slower else 1)
        s = fake_summary(cfg)
        s["throughput_per_s"] = 1000 * f
        s["latency_us"] = {q: v / f for q, v in s["latency_us"].items()}
        if "transactions" in s:
            t = s["transactions"]["total"]
            t.update(goodput_per_s=900 * f, throughput_per_s=1000 * f)
            t["latency_us"] = {q: v / f for q, v in t["latency_us"].items()}
        (out / "summary.json").write_text(json.dumps(s))
        return s
    return execute


def fabricated(tmp_path, name, ef, **kw):
    run = tmp_path / name
    run.mkdir()
    (run / "experiments.yml").write_text(yaml.safe_dump(experiments.resolved(ef)))
    harness_run.Series = point_series(noisy_execute([], **kw))
    reproduce.run_points(run, ef.points(), progress=False, log=lambda m: None)
    return run


def test_the_points_table_has_a_row_per_repetition_and_the_summary_a_row_per_metric(tmp_path, no_real_execute):
    run = fabricated(tmp_path, "run", tiny(tmp_path, repeat=3))
    df = results.write_table(run)
    rows = df[df.point == "micro-lock__2pl__kernel__c8"]
    assert list(rows.repetition) == [1, 2, 3]
    assert [d.split("/")[-1] for d in rows.dir] == ["r1", "r2", "r3"]
    assert list(rows.throughput_per_s) == pytest.approx([1000 * n for n in NOISE[:3]])
    back = pd.read_csv(run / results.SUMMARY)
    s = back[back.point == "micro-lock__2pl__kernel__c8"].set_index("metric")
    assert list(s.index) == ["throughput_per_s", "goodput_per_s", "lat_p50_us", "lat_p99_us", "server_cpu_us_per_op"]
    t = s.loc["throughput_per_s"]
    assert (t.n, t["median"], t.ci_low, t.ci_high, t.ci_level) == (3, pytest.approx(1000), pytest.approx(970),
                                                                     pytest.approx(1040), 0.75)
    assert t.ci_note == "the range of 3 repetitions, a 75.0% interval; 6 reach 95%"
    # a flat workload has no separate goodput
    assert "goodput_per_s" not in set(back[back.point == "calibration__loaded__dint"].metric)
    # one repetition: the median, and no interval, with the reason
    one = fabricated(tmp_path, "one", tiny(tmp_path))
    results.write_table(one)
    s = pd.read_csv(one / results.SUMMARY)
    s = s[s.point == "micro-lock__2pl__kernel__c8"].set_index("metric").loc["throughput_per_s"]
    assert (s.n, s["median"], s.ci_note) == (1, 1000, "one repetition") and pd.isna(s.ci_low) and pd.isna(s.ci_high)


def test_report_ratios_carry_their_interval_and_significance(tmp_path, no_real_execute):
    run = fabricated(tmp_path, "run", tiny(tmp_path, repeat=5))
    text = report.render(run, results.write_table(run))
    row = next(x for x in text.splitlines() if x.startswith("| lock 2pl |"))
    ratios = re.findall(r"(~?)(\d\.\d\d)x \[(\d\.\d\d)-(\d\.\d\d)\]", row)
    (k_sig, k, k_lo, k_hi), (b_sig, b, b_lo, b_hi) = ratios[:2]  # dint/kernel, dint/bypass
    assert (k_sig, k) == ("", "2.00") and 1 < float(k_lo) <= 2 <= float(k_hi)
    assert (b_sig, b) == ("~", "1.00") and float(b_lo) <= 1 <= float(b_hi)
    assert "Repetitions: up to 5 per point" in text and "[?" not in row
    assert "Points: 51 done, 0 failed, 0 pending (255 runs with their repetitions: 255 done" in text
    # the echo ceilings' ratios too
    assert re.search(r"Echo ratios .*: dint/kernel 2\.00x \[[\d.]+-[\d.]+\], dint/bypass ~1\.00x \[", text), text


def test_figures_draw_error_bars_only_where_a_point_has_repetitions(tmp_path, monkeypatch, no_real_execute):
    from plots import curves
    drawn = {}

    def keep(fig, out_dir, stem, note=None):
        drawn[stem] = (sum(c.get_gid() == INTERVAL_GID for ax in fig.axes for c in ax.collections), note or "")
        return []
    monkeypatch.setattr(curves, "save", keep)
    for name, repeat in (("one", 1), ("three", 3)):
        run = fabricated(tmp_path, name, tiny(tmp_path, only=["micro-lock"], repeat=repeat))
        assert [p.stem for p in plot_run(run, results.write_table(run))] == []  # the curve: kept, not saved
        bars, note = drawn.pop("curve-micro-lock")
        # 4 panels (p50 and p99 of 2 variants) x 3 systems, each line with y bars and x bars (goodput)
        assert bars == (0 if repeat == 1 else 4 * 3 * 2), (name, bars)
        assert ("error bars" in note) == (repeat > 1)


# -- compare ------------------------------------------------------------------------
def test_compare_gives_a_verdict_per_point_and_metric(tmp_path, no_real_execute, capsys):
    ef = tiny(tmp_path, only=["micro-lock", "tatp"], repeat=5)
    a = fabricated(tmp_path, "a", ef)
    b = fabricated(tmp_path, "b", ef, slower={"micro-lock__2pl__kernel__c8"})
    # B lacks a point A has
    idx = results.read_index(b)
    idx["points"] = {k: e for k, e in idx["points"].items() if not k.startswith("tatp__bypass__c8/")}
    results.write_index(b, idx)
    for k in range(1, 6):
        (b / "tatp__bypass__c8" / f"r{k}" / "summary.json").unlink()
    assert harness_main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(b / "compare-a.csv")
    v = table[table.point == "micro-lock__2pl__kernel__c8"].set_index("metric")
    assert v.loc["throughput_per_s", "verdict"] == "slower" and v.loc["goodput_per_s", "verdict"] == "slower"
    assert v.loc["lat_p99_us", "verdict"] == "slower"  # 25% more latency
    assert v.loc["throughput_per_s", "ratio"] == pytest.approx(0.8)
    assert v.loc["throughput_per_s", "ci_high"] < 1
    # the same noisy samples on both sides: no significant change
    same = table[table.point == "micro-lock__2pl__dint__c8"]
    assert set(same.verdict) == {"~"} and (same.ci_low <= 1).all() and (same.ci_high >= 1).all()
    t = same.set_index("metric").loc["throughput_per_s"]
    assert t.ratio == 1 and t.ci_low < 0.99 and t.ci_high > 1.01  # noisy, and not significant
    assert list(table[table.verdict == "only in A"].point) == ["tatp__bypass__c8"]
    assert "only in A (1): tatp__bypass__c8" in out
    line = next(x for x in out.splitlines() if "micro-lock__2pl__kernel__c8" in x and "throughput_per_s" in x)
    assert re.search(r"0\.80x \[0\.\d\d-0\.\d\d\] +slower$", line), line


def test_compare_of_single_runs_and_of_one_repetition(tmp_path, no_real_execute):
    """Two `harness run` outputs are one point each, compared whatever
    their names; a side run once has no interval: "?"."""
    ef = tiny(tmp_path, only=["calibration", "tatp"])
    one = fabricated(tmp_path, "one", ef)
    calls = []
    cfg = ef.points()[0].config()
    for k in (1, 2, 3):
        noisy_execute(calls)(cfg, tmp_path / "before" / f"r{k}")
        noisy_execute(calls, slower={"after"})(cfg, tmp_path / "after" / f"r{k}")
    table, only_a, only_b = compare.compare(tmp_path / "before", tmp_path / "after")
    assert (only_a, only_b) == ([], [])
    assert set(table.point) == {"before vs after"}
    assert table.set_index("metric").loc["throughput_per_s", "ratio"] == pytest.approx(0.8)
    # a run and one of its points: matched by the point's name
    table, only_a, only_b = compare.compare(one, one / "calibration__unloaded__dint")
    assert set(table.point) == {"calibration__unloaded__dint"} and only_b == [] and len(only_a) == len(ef.points()) - 1
    table, _, _ = compare.compare(tmp_path / "one", tmp_path / "one")
    assert set(table.verdict) == {"?"} and set(table.note) == {"one repetition"}


@pytest.mark.parametrize("make,expected", [
    (lambda p: p / "nowhere", "RUN_A {a}: no such directory"),
    (lambda p: (p / "file").write_text("x") and p / "file", "RUN_A {a}: not a directory"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "RUN_A {a}: no results in it"),
])
def test_compare_refuses_bad_directories_in_one_line(tmp_path, capsys, make, expected):
    a = make(tmp_path)
    assert harness_main(["compare", str(a), str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: " + expected.format(a=a)) and err.count("\n") == 1, err


# -- a real run ------------------------------------------------------------------------
def test_harness_run_repeat_2(testbed, test_inventory_path, tmp_path):
    out = tmp_path / "lock"
    cmd = [sys.executable, "-m", "harness", "run", "--system", "kernel", "--workload", "lock", "--keys", "1000",
           "--concurrency", "4", "--duration", "1", "--warmup", "0.3", "--repeat", "2",
           "--inventory", str(test_inventory_path), "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    for k in (1, 2):
        s = json.loads((out / f"r{k}" / "summary.json").read_text())
        assert s["transactions"]["total"]["goodput_per_s"] > 0
        assert s["consistency"]["checked"] and s["consistency"]["violations"] == 0  # a verdict of its own
        assert (out / f"r{k}" / "logs" / "server-s0.log").exists()
        assert re.search(rf"^r{k}: +kernel lock", p.stdout, re.M), p.stdout
    df = pd.read_csv(out / results.TABLE)
    assert list(df.repetition) == [1, 2] and set(df.status) == {"done"} and set(df.point) == {"lock"}
    s = pd.read_csv(out / results.SUMMARY).set_index("metric")
    assert s.loc["goodput_per_s", "n"] == 2 and s.loc["goodput_per_s", "ci_level"] == 0.5
    assert "goodput_per_s:" in p.stdout
    # the same --out again is refused, in one line, and keeps what is there
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 1 and p.stderr.strip() == f"error: {out} already holds repetitions (r1, r2); choose " \
        "another --out or remove it"
