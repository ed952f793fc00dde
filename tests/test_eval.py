"""The evaluation layer: experiment files, the resumable runner, the points
table, the figures and the report, from fabricated summaries (no root), and
one short end-to-end reproduce on the test testbed."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml

import workloads
from harness import HarnessError, experiments, report, reproduce, results
from harness import run as harness_run
from plots.__main__ import main as plots_main, plot_run

TINY = {
    "version": 1, "profile": "tiny", "defaults": {"duration_s": 0.3, "warmup_s": 0.2},
    "systems": ["dint", "kernel", "bypass"],
    "experiments": [
        {"name": "calibration", "figure": "calibration", "workload": "echo",
         "variants": [{"name": "unloaded", "concurrency": 1, "napi": "inline"},
                      {"name": "loaded", "concurrency": 32, "napi": "pinned"}]},
        {"name": "micro-lock", "figure": "curve", "workload": "lock", "config": {"keys": 1000},
         "variants": [{"name": "2pl", "cc": "2pl"}, {"name": "occ", "cc": "occ"}],
         "sweep": {"concurrency": [1, 8]}},
        {"name": "tatp", "figure": "curve", "workload": "tatp", "sweep": {"concurrency": [1, 8]}},
        {"name": "cpu-kv", "figure": "cpu", "workload": "kv", "config": {"concurrency": 16},
         "sweep": {"rate": [1000.0, 2000.0]}},
        {"name": "ablation", "figure": "ablation", "workloads": ["kv", "smallbank"], "systems": ["dint"],
         "config": {"concurrency": 8, "by_workload": {"kv": {"kv_mix": "contention"}}},
         "variants": [{"name": "base"}, {"name": "write-through", "cache_write_through": True},
                      {"name": "no-bloom", "cache_bloom": False}]},
        {"name": "colocation", "figure": "colocation", "workload": "kv", "config": {"concurrency": 8},
         "variants": [{"name": "alone", "neighbour": False}, {"name": "neighbour", "neighbour": True}]},
        {"name": "unloaded", "figure": "latency", "workloads": ["echo", "kv", "lock"],
         "config": {"concurrency": 1, "napi": "inline"}},
    ],
}


# -- experiment files -----------------------------------------------------
@pytest.mark.parametrize("profile", ["local", "local-all", "paper"])
def test_shipped_profiles_parse_and_expand(profile):
    ef = experiments.load(profile)
    pts = ef.points()
    assert len({p.name for p in pts}) == len(pts)
    for p in pts:
        assert p.config().system == p.system
    if profile == "local":
        # the 20-minute profile: the calibration, four curves of five levels,
        # TATP's cores at five offered rates, the KV store at three value
        # sizes and three key skews, and dint's slow path placed two ways
        assert {p.figure for p in pts} == {"calibration", "curve", "cpu", "sweep", "colocation"}
        assert {p.workload for p in pts} == {"echo", "lock", "kv", "smallbank", "tatp"}
    else:  # the whole evaluation
        assert {p.figure for p in pts} == set(experiments.FIGURES)
        assert {p.workload for p in pts} >= {"smallbank", "tatp", "tpcc", "lock", "kv", "log", "echo"}
    if profile == "paper":
        assert all(p.fields["duration_s"] == 10.0 and p.fields["warmup_s"] == 5.0 for p in pts)
    else:  # what the issue of the local profiles asks: 3 runs, 2 s windows, 5 levels a curve; the local
        # profile's fixed-rate and value-size points run once, to fit its 20 minutes
        once = {"cpu-tatp", "kv-value-size", "kv-skew", "colocation-tatp"} if profile == "local" else set()
        assert all((p.repeat >= 3 or p.experiment in once) and p.fields["duration_s"] >= 2.0 for p in pts)
        assert sum(p.repeat for p in pts if p.experiment in once) <= 35
        curves: dict = {}
        for p in pts:
            if p.figure == "curve":
                curves.setdefault((p.experiment, p.variant, p.system), set()).add(p.sweep_value)
        assert curves and all(len(levels) >= 5 for levels in curves.values()), curves


def _readme() -> str:
    from harness import ROOT
    return " ".join((ROOT / "README.md").read_text().split())


def test_readme_gives_the_local_profile_s_point_count():
    stated = re.search(r"defined in `experiments/local\.yml` \((\d+) points", _readme())
    assert stated, "README no longer says how many points `make reproduce` runs"
    assert int(stated.group(1)) == len(experiments.load("local").points())


def test_readme_gives_the_local_profile_s_window_and_warmup():
    stated = re.search(r"`local` \(the default\): ([0-9.]+) s measured after ([0-9.]+) s warm-up", _readme())
    assert stated, "README no longer states the local profile's window and warm-up"
    pts = experiments.load("local").points()
    assert {(p.fields["duration_s"], p.fields["warmup_s"]) for p in pts} == \
        {(float(stated.group(1)), float(stated.group(2)))}


def test_point_names_carry_variant_system_and_sweep():
    names = [p.name for p in experiments.parse(TINY).points()]
    assert "micro-lock__occ__kernel__c8" in names
    assert "calibration__loaded__bypass" in names
    assert "ablation__smallbank__no-bloom__dint" in names
    assert "unloaded__kv__dint" in names


def _bad(mutate):
    raw = json.loads(json.dumps(TINY))
    mutate(raw)
    return raw


BAD = [
    (lambda r: r.update(version=2), "version must be 1"),
    (lambda r: r.update(extra=1), "unknown top-level key 'extra'"),
    (lambda r: r["experiments"][1].update(concurency=[1]), "unknown key 'concurency'"),
    (lambda r: r["experiments"][1]["config"].update(keyz=5), "unknown configuration field 'keyz'"),
    (lambda r: r["experiments"][1]["config"].update(kv_mix=3), "kv_mix must be str"),
    (lambda r: r["experiments"][1].update(figure="pie"), "'figure' must be one of"),
    (lambda r: r["experiments"][1].update(workload="tpce"), "unknown workload 'tpce'"),
    (lambda r: r["experiments"][1].update(systems=["xdp"]), "unknown system 'xdp'"),
    (lambda r: r["experiments"][1].update(sweep={"concurrency": []}), "must be a non-empty list"),
    (lambda r: r["experiments"][1].update(sweep={"concurrency": [1], "rate": [1.0]}), "exactly one field"),
    (lambda r: r["experiments"][2].update(name="micro-lock"), "duplicate experiment name"),
    (lambda r: r["experiments"][1]["variants"][1].pop("name"), "needs a 'name'"),
    (lambda r: r["experiments"][1]["config"].update(system="dint"), "'system' is set by the experiment"),
    # a value RunConfig itself rejects names the point
    (lambda r: r["experiments"][1]["config"].update(keys=3), "micro-lock__2pl__dint__c1: --keys must be"),
    (lambda r: r["experiments"][1]["variants"][0].update(cc="mvcc"), "--cc must be one of"),
]


@pytest.mark.parametrize("mutate,expected", BAD, ids=[e for _, e in BAD])
def test_bad_experiment_files_give_one_clear_line(mutate, expected):
    with pytest.raises(HarnessError) as info:
        experiments.parse(_bad(mutate), "exp.yml")
    msg = str(info.value)
    assert expected in msg and "\n" not in msg and msg.startswith("exp.yml")


def test_bad_yaml_and_missing_profile(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("version: 1\nexperiments: [\n")
    with pytest.raises(HarnessError, match=r"bad.yml: line \d+ not valid YAML"):
        experiments.load(str(bad))
    with pytest.raises(HarnessError, match="no profile 'nosuch'.*profiles: local, local-all, paper"):
        experiments.load("nosuch")


# -- fabricated runs ------------------------------------------------------
BASE = {"dint": 400e3, "kernel": 150e3, "bypass": 200e3}


def fake_summary(cfg, violation: bool = False, unchecked: tuple = ()) -> dict:
    """A summary.json shaped as harness/run.py writes it, with made-up
    figures; `unchecked`: (check, reason) pairs that drew no verdict."""
    base = BASE[cfg.system] / (1 if cfg.workload == "echo" else 8)
    rate = getattr(cfg, "rate", 0) or 0
    tput = min(base * cfg.concurrency / (cfg.concurrency + 4), rate or 1e12)
    lat = 20 + cfg.concurrency * 1e6 / base / 10
    sat = cfg.system == "dint" and cfg.concurrency >= 8
    s = {"system": cfg.system, "workload": cfg.workload, "concurrency": cfg.concurrency, "napi": cfg.napi,
         "duration_s": cfg.duration_s, "completed": int(tput), "errors": 0, "throughput_per_s": tput,
         "latency_us": {"mean": lat * 1.2, "p50": lat, "p90": lat * 2, "p99": lat * 4, "p999": lat * 8,
                        "max": lat * 20},
         "client_cpu_util": 0.95 if sat else 0.5, "client_saturated": sat,
         "placement": {"oversubscribed": True}, "instrument_check": {"client_sent": int(tput * 10), "match": True},
         "server_cpu_us_per_op": {"dint": 0.5, "kernel": 4.0, "bypass": 3.0}[cfg.system],
         "config": cfg.to_dict()}
    if cfg.workload != "echo" and not (cfg.workload == "kv" and cfg.kv_mix == "parallel") and cfg.workload != "log":
        t = tput / 3
        s["transactions"] = {"total": {
            "committed": int(t * 0.9), "aborted": int(t * 0.1), "throughput_per_s": t, "goodput_per_s": t * 0.9,
            "abort_rate": 0.1, "abort_rate_by_cause": {"lock": 0.1, "validation": 0.0},
            "aborts": {"lock": int(t * 0.1), "validation": 0},
            "latency_us": {"mean": lat * 3.6, "p50": lat * 3, "p99": lat * 12, "p999": lat * 20},
            "run_total": {"committed": int(t * 0.9 * 1.5), "aborted": int(t * 0.1 * 1.5)}}}
        s["consistency"] = {"checked": True, "violations": 1 if violation else 0,
                            "failed": ["conservation"] if violation else [],
                            "unchecked": [{"check": c, "reason": r} for c, r in unchecked], "details": {}}
    return s


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(TINY))
    return experiments.load(str(path))


SMALL_SAMPLE = (("success_rates.UpdateSubscriberData", "40 committed, fewer than the 200 a rate is judged from"),
                ("success_rates.DeleteCallForwarding", "38 committed, fewer than the 200 a rate is judged from"))


UNCLEAN = "server(s) s1 did not stop cleanly: their dumps are not trusted"


def point_series(execute):
    """A stand-in for run.Series that runs each point through execute(cfg,
    out, show_progress=, testbed=, data_cache=) (a fake of run.execute), so
    that reproduce's real order, series and index are tested without
    servers."""
    class FakeSeries:
        broken = None

        def __init__(self, points, sdir, show_progress, testbed, data_cache):
            self.points = points
            self.kw = {"show_progress": show_progress, "testbed": testbed, "data_cache": data_cache}

        def run(self, concluded):
            # each point concluded as it ends; one that fails is concluded
            # and ends the series (as a server that died does)
            for cfg, out in self.points:
                try:
                    outcome = execute(cfg, out, **self.kw)
                except HarnessError as exc:
                    if len(self.points) == 1:
                        raise  # a run raises its error only
                    concluded(exc, 0.0)
                    continue
                concluded(outcome, 0.0)

        def close(self):
            pass
    return FakeSeries


def fake_execute(calls, fail=(), violate=(), partial=(), unclean=()):
    def execute(cfg, out, show_progress=None, testbed=None, data_cache=None):
        name = out.name
        calls.append(name)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text("{}")
        if name in fail:
            raise HarnessError(f"server on s1 died ({name})")
        s = fake_summary(cfg, violation=name in violate, unchecked=SMALL_SAMPLE if name in partial else ())
        if name in unclean:  # as harness/run.py writes it when a server did not stop cleanly
            s["consistency"] = {"checked": False, "violations": 0, "failed": [], "reason": UNCLEAN}
        (out / "summary.json").write_text(json.dumps(s))
        if name in unclean:
            raise HarnessError(f"server(s) s1 did not stop cleanly: see {out / 'logs' / 'server-s1.log'}")
        if name in violate:
            raise HarnessError("consistency check failed: conservation")
        return s
    return execute


@pytest.fixture
def fake_run(tmp_path, tiny_file, monkeypatch):
    """A run directory as reproduce leaves it, from fabricated summaries:
    one point failed, one with a consistency violation, one whose check
    left two rates unjudged (too few commits)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiments.yml").write_text(yaml.safe_dump(experiments.resolved(tiny_file)))
    calls = []
    monkeypatch.setattr(harness_run, "Series", point_series(fake_execute(
        calls, fail={"micro-lock__occ__bypass__c8"}, violate={"ablation__smallbank__no-bloom__dint"},
        partial={"tatp__kernel__c1"})))
    reproduce.run_points(run, tiny_file.points(), progress=False, log=lambda m: None)
    return run


def test_resume_skips_done_points_and_retries_a_failure_once(tmp_path, tiny_file, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    pts = tiny_file.points()
    runnable = [p.name for p in pts]
    bad = "micro-lock__2pl__kernel__c8"
    calls, logs = [], []
    monkeypatch.setattr(harness_run, "Series", point_series(fake_execute(calls, fail={bad})))
    index = reproduce.run_points(run, pts, progress=False, log=logs.append)
    assert sorted(calls) == sorted(runnable)  # in schedule order: test_repeats checks it
    assert index["points"][bad]["status"] == "failed" and "server on s1 died" in index["points"][bad]["error"]
    assert json.loads((run / "index.json").read_text())["points"][bad]["attempts"] == 1
    # resume: only the failed point runs again (its partial directory kept aside)
    calls.clear()
    monkeypatch.setattr(harness_run, "Series", point_series(fake_execute(calls, fail={bad})))
    index = reproduce.run_points(run, pts, progress=False, log=logs.append)
    assert calls == [bad]
    assert index["points"][bad]["attempts"] == 2
    assert (run / "_failed" / f"{bad}.attempt1").is_dir()
    # failed twice: left alone
    calls.clear()
    index = reproduce.run_points(run, pts, progress=False, log=logs.append)
    assert calls == [] and index["points"][bad]["status"] == "failed"
    # a point whose summary appeared (run by hand) counts as done
    assert all(index["points"][n]["status"] == "done" for n in runnable if n != bad)


def test_an_interrupted_point_is_pending_and_runs_on_resume(tmp_path, tiny_file, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    pts = [p for p in tiny_file.points() if p.experiment == "calibration"]

    def interrupted(cfg, out, **kw):
        out.mkdir(parents=True)
        raise KeyboardInterrupt
    monkeypatch.setattr(harness_run, "Series", point_series(interrupted))
    with pytest.raises(KeyboardInterrupt):
        reproduce.run_points(run, pts, progress=False, log=lambda m: None)
    e = results.read_index(run)["points"][pts[0].name]
    assert e["status"] == "pending" and e["attempts"] == 0
    calls = []
    monkeypatch.setattr(harness_run, "Series", point_series(fake_execute(calls)))
    reproduce.run_points(run, pts, progress=False, log=lambda m: None)
    # in schedule order: every system's unloaded point (a curve of its own:
    # its NAPI placement is not the loaded point's), then the loaded ones
    assert calls == [r.key for r in reproduce.schedule([reproduce.Rep(p, 1, p.name) for p in pts])]
    assert calls[:4] == ["calibration__unloaded__dint", "calibration__unloaded__kernel",
                         "calibration__unloaded__bypass", "calibration__loaded__dint"]


def test_table_has_one_row_per_point(fake_run, tiny_file):
    df = results.write_table(fake_run)
    assert list(df.columns) == results.COLUMNS
    assert len(df) == len(tiny_file.points())
    row = df[df.point == "micro-lock__2pl__dint__c8"].iloc[0]
    assert row.status == "done" and row.transactional and row.goodput_per_s == pytest.approx(row.throughput_per_s * 0.9)
    assert row.echo_ceiling_per_s == pytest.approx(400e3 * 32 / 36)
    assert row.server_cpu_us_per_txn == pytest.approx(0.5 * row.request_throughput_per_s * 10 /
                                                      (int(row.throughput_per_s * 0.9 * 1.5) +
                                                       int(row.throughput_per_s * 0.1 * 1.5)), rel=1e-3)
    assert df[df.point == "micro-lock__occ__bypass__c8"].iloc[0].status == "failed"
    v = df[df.point == "ablation__smallbank__no-bloom__dint"].iloc[0]
    assert v.status == "done" and v.consistency_violations == 1 and "consistency" in v.error
    back = results.load_table(fake_run)
    assert len(back) == len(df) and back["client_saturated"].dtype == bool


def test_report_puts_violations_first_and_compares_with_the_paper(fake_run):
    df = results.write_table(fake_run)
    text = report.render(fake_run, df)
    flags_at = text.index("## Flags")
    assert text.index("**CONSISTENCY VIOLATIONS in 1 point(s): ablation__smallbank__no-bloom__dint") < \
        text.index("## Echo calibration") and flags_at < text.index("## Peak goodput")
    assert "**1 point(s) failed:** micro-lock__occ__bypass__c8" in text
    assert "Client saturated" in text and "Oversubscribed" in text
    # one repetition a point: the ratios' intervals are unknown, and say so
    assert re.search(r"\| lock 2pl \| .* \| 2\.67x \[\? one repetition\] \| 2\.00x \[\? one repetition\] \|", text), text
    assert "One repetition per point" in text
    assert "paper <= 1.10x" in text and "paper <= 1.16x" in text and "up to 2.6x" in text
    assert "dint/bypass 2.00x" in text  # the echo ceiling ratio beside


def test_every_point_runs_and_the_report_counts_only_statuses_that_occur(fake_run, tiny_file):
    """A valid file's points all run (a point this checkout cannot run
    fails the file's validation instead): the index holds every point, each
    with a status of results.STATUSES, and the report counts those and no
    other."""
    assert not hasattr(experiments.Point, "skip")
    index = results.read_index(fake_run)["points"]
    assert set(index) == {p.name for p in tiny_file.points()}
    assert {e["status"] for e in index.values()} == {"done", "failed"}
    assert set(results.STATUSES) == {"done", "failed", "pending"}
    text = report.render(fake_run, results.write_table(fake_run))
    counted = re.search(r"^Points: (.*)\. Table", text, re.M).group(1)
    assert [c.split(" ", 1)[1] for c in counted.split(", ")] == list(results.STATUSES)
    assert "skipped" not in text.lower()


def test_checks_that_drew_no_verdict_are_named_not_passed_as_checked(fake_run):
    """TATP's rate of a type with too few commits is not judged: points.csv
    and the report say which checks went unchecked instead of a bare "no
    violation"."""
    df = results.write_table(fake_run)
    row = df[df.point == "tatp__kernel__c1"].iloc[0]
    assert row.consistency == "partly unchecked" and row.consistency_violations == 0
    assert row.consistency_unchecked == ("2 checks unchecked: success_rates.UpdateSubscriberData (40 committed, "
                                         "fewer than the 200 a rate is judged from); success_rates."
                                         "DeleteCallForwarding (38 committed, fewer than the 200 a rate is "
                                         "judged from)")
    full = df[df.point == "tatp__dint__c1"].iloc[0]
    assert full.consistency == "ok" and full.consistency_unchecked == ""
    assert df[df.point == "ablation__smallbank__no-bloom__dint"].iloc[0].consistency == "violations"
    assert set(df[df.workload == "echo"].consistency) == {""}  # no check, no verdict
    back = results.load_table(fake_run)
    assert back[back.point == "tatp__kernel__c1"].iloc[0].consistency_unchecked == row.consistency_unchecked
    text = report.render(fake_run, df)
    line = next(x for x in text.splitlines() if x.startswith("- Consistency: checked after"))
    assert "every check drew a verdict" not in line
    assert "tatp__kernel__c1: 2 checks unchecked: success_rates.UpdateSubscriberData (40 committed" in line
    # without the unjudged rates, the same run reads as checked in full
    summary = fake_run / "tatp__kernel__c1" / "summary.json"
    s = json.loads(summary.read_text())
    s["consistency"]["unchecked"] = []
    summary.write_text(json.dumps(s))
    text = report.render(fake_run, results.write_table(fake_run))
    assert "violations in 1; every check drew a verdict." in text


def test_a_point_measured_without_a_consistency_verdict_is_retried_once_and_shown_unchecked(
        tmp_path, tiny_file, monkeypatch):
    """A server that did not stop cleanly leaves a measured point with no
    consistency verdict: it is not counted as checked, it is marked in
    points.csv, the report's flags and the figures, and it is run once more
    on the next resume; after that it stays, visibly unchecked."""
    from plots import bars, curves, latency
    from plots.common import UNCHECKED_GID
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiments.yml").write_text(yaml.safe_dump(experiments.resolved(tiny_file)))
    pts = tiny_file.points()
    curve, bar, unloaded = "tatp__kernel__c8", "ablation__smallbank__base__dint", "unloaded__lock__bypass"
    calls, logs = [], []
    monkeypatch.setattr(harness_run, "Series", point_series(fake_execute(calls, unclean={curve, bar, unloaded})))
    index = reproduce.run_points(run, pts, progress=False, log=logs.append)
    assert index["points"][curve]["status"] == "done" and "did not stop cleanly" in index["points"][curve]["error"]
    assert any(m.startswith(f"UNCHECKED {curve} (measured, consistency not checked)") for m in logs), logs

    df = results.write_table(run)
    row = df[df.point == curve].iloc[0]
    assert (row.consistency, row.consistency_unchecked, row.consistency_checked) == ("unchecked", UNCLEAN, False)
    assert set(df[df.point.isin([bar, unloaded])].consistency) == {"unchecked"}
    assert df[df.point == "tatp__kernel__c1"].iloc[0].consistency == "ok"
    back = results.load_table(run)
    assert back[back.point == curve].iloc[0].consistency == "unchecked"
    text = report.render(run, df)
    flag = next(x for x in text.splitlines() if "CONSISTENCY NOT CHECKED" in x)
    assert flag.startswith("- **CONSISTENCY NOT CHECKED in 3 measured point(s)")
    assert f"{curve} ({UNCLEAN}; attempts 1)" in flag
    assert "checked after 24 transactional point(s), no violation" in text  # 27 with a check, 3 not checked

    # the figures cross these points out, where they are drawn, and say why
    drawn = {}
    for mod in (curves, bars, latency):
        def keep(fig, out_dir, stem, note=None, _save=mod.save):
            drawn[stem] = (fig, note)
            return _save(fig, out_dir, stem, note)
        monkeypatch.setattr(mod, "save", keep)
    plot_run(run, df)

    def marks(stem):
        fig, note = drawn[stem]
        assert "consistency not checked" in (note or ""), stem
        return [(tuple(a.get_xdata()), tuple(a.get_ydata())) for ax in fig.axes for a in ax.get_lines()
                if a.get_gid() == UNCHECKED_GID]
    assert marks("curve-tatp") == [((row.goodput_per_s / 1e3,), (row.lat_p50_us,)),
                                   ((row.goodput_per_s / 1e3,), (row.lat_p99_us,))]
    assert len(marks("bars-ablation")) == 3  # goodput, p99 and server CPU panels
    assert len(marks("latency-unloaded")) == 2
    assert drawn["curve-micro-lock"][1] is None or "consistency" not in drawn["curve-micro-lock"][1]

    # the next resume runs them once more: two come out checked, one does not
    calls.clear()
    monkeypatch.setattr(harness_run, "Series", point_series(fake_execute(calls, unclean={curve})))
    index = reproduce.run_points(run, pts, progress=False, log=logs.append)
    assert sorted(calls) == sorted([curve, bar, unloaded])
    assert (run / "_failed" / f"{curve}.attempt1" / "summary.json").exists()
    assert index["points"][curve]["attempts"] == 2
    assert index["points"][bar]["error"] == "" and index["points"][bar]["attempts"] == 2
    # and no more: it stays measured and visibly unchecked
    calls.clear()
    index = reproduce.run_points(run, pts, progress=False, log=logs.append)
    assert calls == [] and index["points"][curve]["status"] == "done"
    df = results.write_table(run)
    assert dict(zip(df.point, df.consistency))[curve] == "unchecked"
    assert dict(zip(df.point, df.consistency))[bar] == "ok"
    assert "**CONSISTENCY NOT CHECKED in 1 measured point(s)" in report.render(run, df)


def test_plots_are_png_and_pdf_for_every_figure_type(fake_run):
    df = results.write_table(fake_run)
    paths = plot_run(fake_run, df)
    stems = {p.stem for p in paths}
    assert {"calibration-calibration", "curve-micro-lock", "bars-ablation", "latency-unloaded"} <= stems
    assert "cpu-cpu-kv" in stems
    for p in paths:
        assert p.stat().st_size > 5000
    assert all((fake_run / "plots" / f"{s}.pdf").exists() for s in stems)
    assert (fake_run / "plots" / "curve-micro-lock.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpu_and_colocation_figures(fake_run, monkeypatch):
    """The figures of rate and neighbour points."""
    df = results.write_table(fake_run)
    extra = []
    for exp, fig, key, vals in (("cpu-kv", "cpu", "rate", [1000.0, 2000.0]),
                                ("colocation", "colocation", "variant", ["alone", "neighbour"])):
        for s in ("dint", "kernel", "bypass"):
            for i, v in enumerate(vals):
                extra.append({"experiment": exp, "figure": fig, "point": f"{exp}-{s}-{v}", "status": "done",
                              "system": s, "workload": "kv", key: v, "concurrency": 8,
                              "goodput_per_s": 1000 * (i + 1), "throughput_per_s": 1000 * (i + 1),
                              "lat_p50_us": 50.0, "lat_p99_us": 200.0, "server_cpu_us_per_op": 1.0 + i,
                              "client_saturated": s == "dint" and i == 1})
    df = pd.concat([df[~df.experiment.isin(["cpu-kv", "colocation"])], pd.DataFrame(extra)], ignore_index=True)
    from plots import bars
    figs = {}
    real_save = bars.save
    monkeypatch.setattr(bars, "save", lambda fig, d, stem, note=None: figs.setdefault(stem, (
        [t.get_text() for lg in fig.legends for t in lg.get_texts()],
        [(b.get_hatch(), b.get_facecolor()) for b in fig.axes[0].patches])) and real_save(fig, d, stem, note))
    stems = {p.stem for p in plot_run(fake_run, df)}
    assert {"cpu-cpu-kv", "bars-colocation"} <= stems
    # the legend names the variants and the hatching; a saturated bar keeps
    # its system's colour (so its variant's shade), hatched over it
    texts, patches = figs["bars-colocation"]
    assert texts == ["alone", "neighbour", "client saturated"]
    hatched = [c for h, c in patches if h]
    assert len(hatched) == 1 and hatched[0][:3] != (1.0, 1.0, 1.0)
    assert "server CPU us per request" in report.render(fake_run, df)


def test_a_point_without_a_server_cost_reads_as_missing(fake_run, tmp_path, monkeypatch):
    """A point measured without a server cost (harness/cost.py: null, with
    its reason) is empty in points.csv with the reason beside it, "n/a" in
    the report and in the cpu figures: never 0."""
    name = "micro-lock__2pl__dint__c8"
    path = fake_run / name / "summary.json"
    s = json.loads(path.read_text())
    s["server_cpu_us_per_op"] = None
    s["server_cost"] = {"reason": "server s1 printed no stats line at or after the clients' window end "
                                  "(it died or stopped early)", "rule": "..."}
    path.write_text(json.dumps(s))
    results.write_table(fake_run)
    df = results.load_table(fake_run)  # as read back from points.csv
    row = df[df.point == name].iloc[0]
    assert pd.isna(row.server_cpu_us_per_op) and pd.isna(row.server_cpu_us_per_txn)
    assert "s1 printed no stats line" in row.server_cpu_missing
    assert (df[(df.point != name) & (df.status == "done")]["server_cpu_missing"] == "").all()
    text = report.render(fake_run, df)
    assert "No server CPU figure in 1 measured point(s)" in text and name in text
    assert " n/a" in text or "| n/a" in text
    # the cpu figure: the bar is missing and marked n/a (not drawn at 0)
    from plots import cpu
    figs = []
    monkeypatch.setattr(cpu, "save", lambda fig, *a, **k: figs.append(fig) or [])
    rows = [{"experiment": "cpu-kv", "figure": "cpu", "point": f"cpu-kv-{sys}-{r}", "status": "done", "system": sys,
             "workload": "kv", "rate": r, "concurrency": 8, "throughput_per_s": r, "client_saturated": False,
             "server_cpu_us_per_op": None if (sys, r) == ("kernel", 2000.0) else 1.5,
             "server_cores": None if (sys, r) == ("kernel", 2000.0) else 0.2, "consistency": ""}
            for sys in ("dint", "kernel") for r in (1000.0, 2000.0)]
    cpu.plot(pd.DataFrame(rows), "cpu-kv", "cpu", tmp_path)
    for ax in (figs[0].axes[0], figs[0].axes[2]):  # cores used, and CPU per request
        marks = [t for t in ax.texts if t.get_text() == "n/a"]
        assert len(marks) == 1


def test_plots_command(fake_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert plots_main([str(empty)]) == 1
    assert "no points.csv" in capsys.readouterr().err
    assert plots_main([str(fake_run)]) == 0  # rebuilt from the summaries
    assert "curve-micro-lock.png" in capsys.readouterr().out


# -- end to end -----------------------------------------------------------
def test_reproduce_end_to_end(testbed, test_inventory_path, tmp_path):
    tiny = {"version": 1, "profile": "tiny", "defaults": {"duration_s": 0.3, "warmup_s": 0.2},
            "experiments": [
                {"name": "calibration", "figure": "calibration", "workload": "echo", "systems": ["kernel", "dint"],
                 "variants": [{"name": "loaded", "concurrency": 8}]},
                {"name": "kv", "figure": "curve", "workload": "kv", "systems": ["kernel"],
                 "config": {"keys": 1000}, "sweep": {"concurrency": [4]}}]}
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(tiny))
    run = reproduce.reproduce("e2e", str(test_inventory_path), str(path), results_dir=tmp_path / "results")
    index = results.read_index(run)["points"]
    done = {n for n, e in index.items() if e["status"] == "done"}
    assert done == {"calibration__loaded__kernel", "calibration__loaded__dint", "kv__kernel__c4"}, index
    for f in ("experiments.yml", "env.json", "points.csv", "REPORT.md", "plots/curve-kv.png",
              "plots/calibration-calibration.png"):
        assert (run / f).exists(), f
    df = pd.read_csv(run / "points.csv")
    assert (df[df.status == "done"]["throughput_per_s"] > 0).all()
    # resume: nothing runs again
    mtime = (run / "kv__kernel__c4" / "summary.json").stat().st_mtime
    reproduce.reproduce("e2e", str(test_inventory_path), str(path), results_dir=tmp_path / "results")
    assert (run / "kv__kernel__c4" / "summary.json").stat().st_mtime == mtime


def test_a_selection_keeps_the_other_points_of_the_index(tmp_path, tiny_file, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    pts = tiny_file.points()
    calls = []
    monkeypatch.setattr(harness_run, "Series", point_series(fake_execute(calls)))
    reproduce.run_points(run, pts[:3], progress=False, log=lambda m: None)
    reproduce.run_points(run, pts[3:5], progress=False, log=lambda m: None)
    index = results.read_index(run)["points"]
    assert all(index[p.name]["status"] == "done" for p in pts[:5])
    assert calls == [p.name for p in pts[:5]]


def test_points_of_a_run_share_their_initial_data(tmp_path):
    """reproduce makes each (workload, keys, scale, seed)'s data once and
    links it into every point that loads it."""
    from harness import run as run_mod
    from harness.config import RunConfig
    cfg = RunConfig(system="kernel", workload="smallbank", scale=50).validate()
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    run_mod.prepare_data(cfg, a, tmp_path / "_data")
    run_mod.prepare_data(cfg, b, tmp_path / "_data")
    assert (a / "initial.snap").stat().st_ino == (b / "initial.snap").stat().st_ino
    assert (a / "initial.snap").read_bytes()[:8] == b"DINTSNAP"


# -- the report's fidelity section (harness/fidelity.py) -------------------------
def _fidelity(text: str) -> str:
    start = text.index("## Fidelity to DINT's experiments")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_fidelity_section_sets_each_of_dint_s_experiments_beside_the_run_s(fake_run):
    """From the run's resolved points and the inventory a point ran on:
    every experiment of DINT's in the table, its counterpart or the
    shipped profiles that have it, and each setting that differs with why."""
    from harness import fidelity, inventory
    # the inventory the points ran on, as harness/run.py copies it into a point's directory
    point = fake_run / "micro-lock__2pl__dint__c8"
    (point / "inventory.yml").write_text(yaml.safe_dump(inventory.local_inventory()))
    text = _fidelity(report.render(fake_run, results.write_table(fake_run)))
    rows = {r.split(" | ")[0].lstrip("| "): r for r in text.splitlines() if r.startswith("| ")}
    assert set(rows) >= {e.name for e in fidelity.DINT}
    assert "micro-lock: 6 points (6 measured) on dint, kernel, bypass" in rows["Lock server, 2PL"]
    assert "micro-lock: 6 points (5 measured)" in rows["Lock server, FaSST (OCC)"]  # one failed
    assert "tatp: 6 points (6 measured)" in rows["TATP"]
    assert "ablation: 6 points" in rows["Ablations"]
    # not in this (tiny) profile: the shipped profiles that have it
    assert "not in this profile (in: local-all, paper)" in rows["Log server"]
    assert "not in this profile (in: local-all, local, paper)" in rows["TATP CPU"]
    assert "not in this profile (in: local-all, local, paper)" in rows["TATP colocation"]
    assert re.search(r"\| SmallBank \| .* \| not in this profile \(in: local-all, local, paper\)", text)
    lock = text[text.index("**Lock server, 2PL**"):text.index("**Lock server, FaSST")]
    assert "- **size**: DINT 24M locks" in lock and "here keys 1,000 (why: the profile's size" in lock
    assert "- **lock protocol**: DINT sequential; here parallel (why:" in lock
    assert "- **kernel-bypass stack**: DINT Caladan (its own kernel-bypass runtime); here DPDK with DPDK's AF_XDP " \
           "driver on a veth (why: no Caladan package exists for this system" in lock
    assert "- **network**: DINT a ConnectX NIC (mlx5) per CloudLab machine; here veth pairs between network " \
           "namespaces of one machine" in lock
    assert "- **servers**: DINT 1; here 3" in lock and "- **server cores**: DINT 8" in lock
    assert "- **load**: DINT 10-300 user threads per client machine (kernel: 2-40); here 1, 8 in flight" in lock
    assert "- **warm-up and window**: DINT 5 s warm-up, 10 s window (seconds 5-15 of 20 s runs); here 0.2 s " \
           "warm-up, 0.3 s window" in lock
    assert "- as DINT: key distribution, concurrency control, repetitions." in lock
    ablation = text[text.index("**Ablations**"):]
    assert "- **workloads**: DINT kv; here kv, smallbank" in ablation


def test_fidelity_claims_carry_the_run_s_ratios_or_say_not_measured(fake_run):
    text = _fidelity(report.render(fake_run, results.write_table(fake_run)))
    assert re.search(r"\| up to 2\.6x the throughput of the kernel-bypass stack \| dint/bypass peak goodput: the "
                     r"largest is 6\.67x \[\? one repetition\] \(lock occ;", text), text  # its bypass c8 failed: c1 is its peak
    # echo (the calibration) is not one of DINT's workloads: kv and lock are
    assert re.search(r"\| at most 10% more average unloaded latency than kernel-bypass \| dint/bypass average at "
                     r"concurrency 1: the largest is [\d.]+x \[\? one repetition\] \((within|above)\) \((kv|lock)", text)
    assert "at most 16% more p99 unloaded latency" in text
    # a run without the points: said, never a 0
    df = results.write_table(fake_run)
    df = df[~df.figure.isin(["latency", "curve"])]
    text = _fidelity(report.render(fake_run, df))
    assert text.count("not measured in this run") == 3 and " 0.00x" not in text


def test_fidelity_with_repetitions_gives_intervals_and_the_paper_profile_matches_dint(tmp_path, monkeypatch):
    """The paper profile: DINT's lock protocol, key distribution, window;
    its ratios over repetitions carry intervals."""
    from harness import fidelity
    ef = experiments.load("paper")
    configs = fidelity._configs(ef.points())
    e = next(x for x in fidelity.DINT if x.name == "Lock server, 2PL")
    same = {a for a, _, _, s, _ in fidelity.aspects(e, fidelity.counterpart(e, configs), None) if s}
    assert {"size", "lock protocol", "warm-up and window", "concurrency control"} <= same
    kv = next(x for x in fidelity.DINT if x.name == "KV store")
    same = {a for a, _, _, s, _ in fidelity.aspects(kv, fidelity.counterpart(kv, configs), None) if s}
    assert "key distribution" in same and "size" not in same  # 7M keys, where DINT's store holds 24M records
    # repetitions: a ratio with its interval
    raw = json.loads(json.dumps(TINY))
    raw["repeat"] = 6
    raw["experiments"] = [x for x in raw["experiments"] if x["name"] == "micro-lock"]
    path = tmp_path / "rep.yml"
    path.write_text(yaml.safe_dump(raw))
    ef = experiments.load(str(path))
    run = tmp_path / "rep"
    run.mkdir()
    (run / "experiments.yml").write_text(yaml.safe_dump(experiments.resolved(ef)))
    monkeypatch.setattr(harness_run, "Series", point_series(fake_execute([])))
    reproduce.run_points(run, ef.points(), progress=False, log=lambda m: None)
    text = _fidelity(report.render(run, results.write_table(run)))
    assert re.search(r"the largest is 2\.00x \[2\.00-2\.00\] \(lock", text), text
    assert "| Lock server, 2PL |" in text and "- **repetitions**: DINT 1; here 6" in text
