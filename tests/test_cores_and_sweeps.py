"""CPU efficiency as DINT measures it (server cores used at fixed offered
rates, and whether each rate was reached), dint's slow path beside XDP or
on a core of its own, and the sweeps beyond DINT's evaluation (the KV
store's value size, its keys' skew): the options, the points table, the
figures and the report, from fabricated summaries (no root)."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

import workloads
from harness import HarnessError, experiments, fidelity, inventory, report, reproduce, results
from harness import run as harness_run
from harness.config import RunConfig
from plots import cpu, sweep
from plots.__main__ import plot_run
from tests.test_eval import point_series

SYSTEMS = ("dint", "kernel", "bypass")
CORES = {"dint": 0.05, "kernel": 0.3, "bypass": 0.6}
CEILING = {"dint": 30_000, "kernel": 12_000, "bypass": 6_000}  # offered per second each system finishes at most

TINY = {
    "version": 1, "profile": "tiny-hf", "defaults": {"duration_s": 0.3, "warmup_s": 0.2},
    "experiments": [
        {"name": "cpu-tatp", "figure": "cpu", "workload": "tatp", "config": {"concurrency": 16},
         "sweep": {"rate": [2000.0, 4000.0, 8000.0]}},
        {"name": "colocation-tatp", "figure": "colocation", "workload": "tatp", "systems": ["dint"],
         "config": {"concurrency": 16},
         "variants": [{"name": "slowpath-xdp", "slowpath_cpus": "xdp"},
                      {"name": "slowpath-own", "slowpath_cpus": "own"}]},
        {"name": "kv-value-size", "figure": "sweep", "workload": "kv", "config": {"concurrency": 8, "keys": 1000},
         "variants": [{"name": "parallel", "kv_mix": "parallel"}, {"name": "contention", "kv_mix": "contention"}],
         "sweep": {"kv_value_size": [8, 40, 512]}},
        {"name": "kv-skew", "figure": "sweep", "workload": "kv",
         "config": {"concurrency": 8, "keys": 1000, "kv_mix": "contention"},
         "sweep": {"key_dist": ["uniform", "zipf:0.5", "zipf:0.99"]}},
    ],
}


def fake_summary(cfg: RunConfig, split: bool) -> dict:
    """A summary.json as harness/run.py writes it, with made-up figures:
    an open-loop point finishes its rate up to its system's ceiling."""
    rate = cfg.rate
    offered = rate  # one client process
    tput = min(rate, CEILING[cfg.system]) if rate else CEILING[cfg.system] / (1 + cfg.kv_value_size / 400)
    if cfg.key_dist != "uniform":
        tput *= 0.8
    lat = 50.0 + cfg.kv_value_size / 10
    cores = CORES[cfg.system] * (1 + tput / 10_000)
    s = {"system": cfg.system, "workload": cfg.workload, "concurrency": cfg.concurrency, "napi": cfg.napi,
         "duration_s": cfg.duration_s, "completed": int(tput), "errors": 0, "throughput_per_s": tput,
         "latency_us": {"mean": lat, "p50": lat, "p90": lat * 2, "p99": lat * 4, "p999": lat * 8, "max": lat * 9},
         "client_cpu_util": 0.5, "client_saturated": False, "placement": {"oversubscribed": True},
         "instrument_check": {"client_sent": int(tput * 3), "match": True},
         "server_cpu_us_per_op": cores / tput * 1e6,
         "server_cost": {"cores": {"total": cores, "packet": cores * 0.3, "process": cores * 0.7,
                                   "user": cores * 0.4 if split else None, "kernel": cores * 0.6 if split else None}},
         "config": cfg.to_dict()}
    if rate:
        s["open_loop"] = {"rate_per_client": rate, "offered_per_s": offered}
    if cfg.workload == "tatp" or cfg.kv_mix == "contention":
        s["transactions"] = {"total": {
            "committed": int(tput * 0.9), "aborted": int(tput * 0.1), "throughput_per_s": tput,
            "goodput_per_s": tput * 0.9, "abort_rate": 0.1, "abort_rate_by_cause": {"lock": 0.1},
            "aborts": {"lock": int(tput * 0.1)},
            "latency_us": {"mean": lat * 3, "p50": lat * 3, "p99": lat * 12, "p999": lat * 20},
            "run_total": {"committed": int(tput * 0.9), "aborted": int(tput * 0.1)}}}
    return s


def fabricated(tmp_path, split: bool = False):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(TINY))
    ef = experiments.load(str(path))
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiments.yml").write_text(yaml.safe_dump(experiments.resolved(ef)))

    def execute(cfg, out, **kw):
        out.mkdir(parents=True, exist_ok=True)
        s = fake_summary(cfg, split)
        (out / "summary.json").write_text(json.dumps(s))
        return s
    mp = pytest.MonkeyPatch()
    mp.setattr(harness_run, "Series", point_series(execute))
    try:
        reproduce.run_points(run, ef.points(), progress=False, log=lambda m: None)
    finally:
        mp.undo()
    (run / "cpu-tatp__dint__r2000" / "inventory.yml").write_text(yaml.safe_dump(inventory.local_inventory()))
    return run


# -- the options ----------------------------------------------------------------
def test_slowpath_cpus_is_dint_s_and_own_takes_the_inventory_s_cores_or_a_testbed_s_spare_ones():
    assert RunConfig(system="dint", slowpath_cpus="own").validate().slowpath_cpus == "own"
    with pytest.raises(HarnessError, match="--slowpath-cpus applies to --system dint only"):
        RunConfig(system="kernel", slowpath_cpus="own").validate()
    with pytest.raises(HarnessError, match="--slowpath-cpus must be one of xdp, own"):
        RunConfig(system="dint", slowpath_cpus="apart").validate()
    local = inventory.parse(inventory.local_inventory(ncpu=2))
    s0 = local.servers[0]
    assert inventory.slowpath_cpus(local, s0, "xdp") == (1,)
    # a 2-core testbed: no core but the client's is free of servers
    assert inventory.slowpath_cpus(local, s0, "own") == (0,)
    cluster = inventory.load(inventory.INVENTORY_DIR / "cluster.example.yml")
    assert inventory.slowpath_cpus(cluster, cluster.servers[0], "own") == (6,)
    raw = yaml.safe_load((inventory.INVENTORY_DIR / "cluster.example.yml").read_text())
    for h in raw["all"]["children"]["servers"]["hosts"].values():
        h.pop("slowpath_cpus")
    bare = inventory.parse(raw, "bare.yml")
    with pytest.raises(HarnessError, match="server s0 has no core of its own for dint's slow path: give it "
                                           "'slowpath_cpus' in the inventory bare.yml"):
        inventory.slowpath_cpus(bare, bare.servers[0], "own")
    h = raw["all"]["children"]["servers"]["hosts"]["s0"]
    h["slowpath_cpus"] = [5]
    with pytest.raises(HarnessError, match="must be cores of their own, outside its 'cpus'"):
        inventory.parse(raw, "overlap.yml")


def test_dint_pins_its_user_space_where_slowpath_cpus_says(tmp_path):
    from harness.systems import DintSystem
    inv = inventory.parse(inventory.local_inventory(ncpu=2))
    for place, cpus in (("xdp", "1"), ("own", "0")):
        cfg = RunConfig(system="dint", workload="kv", keys=1000, slowpath_cpus=place).validate()
        cmd = DintSystem(inv, cfg, tmp_path / "logs").command(inv.servers[0])
        assert cmd[cmd.index("--cpus") + 1] == cpus


def test_a_profile_that_puts_the_slow_path_on_cores_a_cluster_lacks_is_refused_before_it_runs():
    raw = yaml.safe_load((inventory.INVENTORY_DIR / "cluster.example.yml").read_text())
    for h in raw["all"]["children"]["servers"]["hosts"].values():
        h.pop("slowpath_cpus")
    bare = inventory.parse(raw, "bare.yml")
    pts = experiments.load("paper").points()
    with pytest.raises(HarnessError, match=r"point colocation-tatp__slowpath-own__dint: --slowpath-cpus own"):
        reproduce.check_placement(pts, bare)
    reproduce.check_placement(pts, inventory.load(inventory.INVENTORY_DIR / "cluster.example.yml"))


def test_kv_value_size_sizes_the_records_requests_and_schema():
    cfg = RunConfig(system="kernel", workload="kv", keys=50, kv_value_size=512).validate()
    with pytest.raises(HarnessError, match="--kv-value-size applies to --workload kv only"):
        RunConfig(system="kernel", workload="tatp", kv_value_size=8).validate()
    with pytest.raises(HarnessError, match="--kv-value-size must be between 1 and 1024"):
        RunConfig(system="kernel", workload="kv", kv_value_size=2000).validate()
    kv = workloads.get("kv")
    assert cfg.data.value_size == 512 and RunConfig(system="kernel", workload="kv").validate().data.value_size == 0
    assert kv.for_data(cfg.data).schema.sizes == (512,) and kv.for_data(workloads.DataSpec()) is kv
    assert workloads.get("tatp").for_data(cfg.data) is workloads.get("tatp")
    recs = kv.initial(cfg.data)
    assert len(recs) == 50 and {len(r.value) for r in recs} == {512}
    # DINT's 40 bytes as ever: three copies of key and version, then 4 zeros
    from workloads import kv as kvmod
    assert kvmod.value_of(7) == ((7).to_bytes(8, "big") + (1).to_bytes(4, "big")) * 3 + bytes(4)
    assert kvmod.value_of(7, 2, 8) == (7).to_bytes(8, "big")
    load = workloads.LoadSpec(data=cfg.data, seed=1, requests=20, servers=3, mix="contention")
    params = kv.transactions.params(load, kv.transactions.types_for("2pl"))
    assert {len(req[3]) for _, args in params for batch in args if isinstance(batch, tuple) for req in batch
            if isinstance(req, tuple)} == {512}
    # a write commits a value of the run's size
    write = kvmod.write(3, ((2, 0, 3, bytes(512), 0, 0),))
    next(write)
    (commit,) = write.send([(0, 4)])
    assert len(commit[3]) == 512 and commit[4] == 5


def test_sweep_tags_name_value_sizes_and_key_distributions():
    names = {p.name for p in experiments.parse(TINY).points()}
    assert "kv-value-size__contention__dint__v512" in names
    assert "kv-skew__bypass__zipf-0-99" in names and "kv-skew__kernel__uniform" in names


def test_the_profiles_carry_the_new_experiments():
    local = experiments.load("local").points()
    added = [p for p in local if p.experiment in ("cpu-tatp", "kv-value-size")]
    assert sum(p.repeat for p in added) == 24
    assert max(p.fields["rate"] for p in added if p.experiment == "cpu-tatp") <= 4000
    paper = [p for p in experiments.load("paper").points() if p.experiment == "cpu-tatp"]
    rates = sorted({p.fields["rate"] for p in paper})
    # DINT's 20 steps of 0.5M txn/s over 8 client processes
    assert len(rates) == 20 and rates[0] * 8 == 500_000 and rates[-1] * 8 == 10_000_000
    for profile in ("local-all", "paper"):
        exps = {p.experiment for p in experiments.load(profile).points()}
        assert {"cpu-tatp", "colocation-tatp", "kv-value-size", "kv-skew"} <= exps


# -- table, figures, report -------------------------------------------------------
def test_points_table_has_cores_and_whether_the_offered_rate_was_reached(tmp_path):
    run = fabricated(tmp_path)
    df = results.write_table(run)
    back = results.load_table(run)
    row = lambda d, p: d[d.point == p].iloc[0]  # noqa: E731
    for d in (df, back):
        r = row(d, "cpu-tatp__bypass__r8000")
        assert r.offered_per_s == 8000 and r.achieved_share == pytest.approx(0.75) and bool(r.rate_not_reached)
        r = row(d, "cpu-tatp__kernel__r8000")
        assert not bool(r.rate_not_reached) and r.server_cores == pytest.approx(0.3 * 1.8)
        assert r.server_cores_packet == pytest.approx(0.3 * 1.8 * 0.3) and pd.isna(r.server_cores_user)
        assert row(d, "colocation-tatp__slowpath-own__dint").slowpath_cpus == "own"
        assert row(d, "kv-value-size__parallel__kernel__v512").kv_value_size == 512
        assert row(d, "kv-skew__dint__zipf-0-99").key_dist == "zipf:0.99"
        v = row(d, "kv-skew__dint__uniform").rate_not_reached  # closed loop: never flagged
        assert pd.isna(v) or v is False or v == False  # noqa: E712
    pp = results.per_point(back)
    assert bool(pp.set_index("point").loc["cpu-tatp__bypass__r8000", "rate_not_reached"])


def test_cpu_figure_draws_cores_per_system_and_marks_rates_not_reached(tmp_path, monkeypatch):
    run = fabricated(tmp_path)
    pp = results.per_point(results.write_table(run))
    figs = []
    monkeypatch.setattr(cpu, "save", lambda fig, out, stem, note=None: figs.append((fig, note)) or [])
    cpu.plot(pp, "cpu-tatp", "TATP cores", tmp_path)
    fig, note = figs[0]
    cores, split, per_req = fig.axes[:3]
    assert cores.get_ylabel() == "server cores used"
    lines = [ln for ln in cores.get_lines() if ln.get_label() in SYSTEMS]
    assert [ln.get_label() for ln in lines] == list(SYSTEMS)
    assert list(lines[0].get_xdata()) == [2000, 4000, 8000]
    short = [t.get_text() for t in cores.texts if t.get_gid() == cpu.NOT_REACHED_GID]
    assert short == ["75%"]  # bypass at 8,000/s finished 6,000
    assert cpu.NOT_REACHED_NOTE in note
    assert "packet work" in split.get_ylabel()  # no user and kernel apart in these summaries
    figs.clear()
    run2 = fabricated(tmp_path / "split", split=True)
    cpu.plot(results.per_point(results.write_table(run2)), "cpu-tatp", "TATP cores", tmp_path)
    assert "kernel (solid), user (dashed)" in figs[0][0].axes[1].get_ylabel()


def test_sweep_figures_run_along_the_value_size_and_the_skew(tmp_path):
    run = fabricated(tmp_path)
    paths = plot_run(run, results.write_table(run))
    stems = {p.stem for p in paths}
    assert {"sweep-kv-value-size", "sweep-kv-skew", "cpu-cpu-tatp", "bars-colocation-tatp"} <= stems
    for p in paths:
        assert p.stat().st_size > 5000
    d = results.per_point(results.load_table(run))
    assert results.swept_axis(d[d.experiment == "kv-skew"])[0] == "key_dist"
    assert results.swept_axis(d[d.experiment == "kv-value-size"])[0] == "kv_value_size"
    assert [results.theta(x) for x in ("uniform", "zipf:0.9")] == [0.0, 0.9]


def test_sweep_figure_panels(tmp_path, monkeypatch):
    run = fabricated(tmp_path)
    pp = results.per_point(results.write_table(run))
    figs = []
    monkeypatch.setattr(sweep, "save", lambda fig, *a, **k: figs.append(fig) or [])
    sweep.plot(pp, "kv-value-size", "value size", tmp_path)
    fig = figs[0]
    # two variants (rows), goodput, p50, p99, CPU per request and abort rate (columns)
    assert len(fig.axes) == 2 * 5
    goodput = fig.axes[0]
    xs = sorted(goodput.get_lines()[0].get_xdata())
    assert xs == [8, 40, 512] and goodput.get_xscale() == "log"


def test_report_gives_cores_not_reached_slowpath_and_sweeps(tmp_path):
    run = fabricated(tmp_path)
    text = report.render(run, results.write_table(run))
    assert "Offered rate not reached in 1 of 9 open-loop point(s)" in text
    assert "cpu-tatp__bypass__r8000 (75% of 8,000/s)" in text
    row = next(x for x in text.splitlines() if x.startswith("| 8,000 | 8,000 |"))
    assert "0.54 cores (packet work 0.16, processes 0.38)" in row and "**NOT REACHED** (75%)" in row
    # dint's slow path: on this 2-core testbed own is the clients' core
    assert "`own` on cpu 0, which the clients run on too" in text
    sec = text[text.index("## Beyond DINT: value size and key skew"):]
    assert "kv-value-size (parallel), by value size (bytes):" in sec
    assert "kv-skew, by key skew: zipf theta (uniform = 0):" in sec
    assert "| zipf:0.99 |" in sec and "| 512 |" in sec
    fid = text[text.index("## Fidelity to DINT's experiments"):]
    assert "colocation-tatp: 2 points (2 measured) on dint" in fid
    assert "- as DINT: " in fid and "slow path placement" in fid[fid.index("**TATP colocation**"):]
    cpu_part = fid[fid.index("**TATP CPU**"):fid.index("**TATP colocation**")]
    assert "2,000, 4,000, 8,000 offered rates per client process (3 total offered rates over its 1 client " \
           "process, 2,000-8,000/s)" in cpu_part
    # user and kernel apart where the summaries have them
    run2 = fabricated(tmp_path / "split", split=True)
    text = report.render(run2, results.write_table(run2))
    assert "0.54 cores (kernel 0.32, user 0.22)" in text


def test_paper_profile_s_tatp_colocation_places_the_slow_path_as_dint():
    configs = fidelity._configs(experiments.load("paper").points())
    e = next(x for x in fidelity.DINT if x.name == "TATP colocation")
    rows = {a: (m, same) for a, _, m, same, _ in fidelity.aspects(e, fidelity.counterpart(e, configs), None)}
    assert rows["slow path placement"] == ("xdp, own", True)
    assert rows["size"][1]


def test_the_verifier_of_a_run_takes_the_schemas_its_points_load():
    assert [s.sizes for s in reproduce.extra_schemas(experiments.load("local").points())] == [(8,), (128,), (512,)]
    assert reproduce.extra_schemas(experiments.parse(TINY).points()) == [
        workloads.get("kv").for_data(workloads.DataSpec(value_size=v)).schema for v in (8, 512)]
