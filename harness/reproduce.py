"""`make reproduce` / `python -m harness reproduce`: every point of an
experiment file (experiments/<profile>.yml) into results/<run-id>/<point>/,
then the table (points.csv), the figures and REPORT.md.

- One testbed for the whole run.
- The points of a sweep over concurrency or offered rate are served by
  one start of the system's servers (a series, harness/run.py): each point
  still gets its own server counters and consistency verdict, from a
  checkpoint of the servers after it. Their files are under _servers/.
- A point with `repeat: N` runs N times, each run a full measurement in
  <point>/r1 .. rN (a point run once: <point>/ itself, results.py). The
  repetitions are interleaved across systems (schedule()): per curve,
  repetition 1 of every system runs (a series of its levels), then
  repetition 2, and so on. A curve is every point, of any experiment,
  that one start of a system's servers can serve (curve()): a sweep's
  levels, and then the points of other experiments on the same servers
  (say, TATP's fixed rates after its concurrency sweep). Resume, retries and the index work per
  repetition; a point run once before and now repeated keeps that run as
  its r1.
- Resumable: a point is done when it has a measured summary.json (a run that
  failed once started writes one marked "status": "failed"); running again
  with the same --run-id skips those. A point that failed is recorded in the
  run's point index (index.json) with its error, and retried once on the
  next resume (its partial directory is kept under _failed/).
- A point measured without a consistency verdict (a server did not stop
  cleanly, so its dump was not trusted) is done, with its error, and
  marked unchecked in points.csv, the figures and the report; it is also
  retried once on the next resume (its first measurement kept under
  _failed/), and after that left as it is.
- A failing point does not stop the run.
- Every point of the file runs: experiments.load has already refused a
  file with a point this checkout cannot run (an unknown workload or
  field, a value RunConfig rejects). A point's status in the index is
  one of results.STATUSES."""
from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import RESULTS_DIR, HarnessError, envinfo, experiments, inventory, limits, results
from .deploy import own_stops_trusted
from .run import SERIES_FIELDS, check_can_run, execute_series, series_key, series_span_s
from .summary import one_line
from .testbed import Testbed

MAX_ATTEMPTS = 2  # the first run and one retry on resume
# Rough seconds of a series' start and stop (its first and last points'
# time beyond their warm-up and window), for the time estimate shown before
# the run (measured on the 2-core local testbed: dint compiles its XDP
# program with bcc, three times, one per server host).
STARTUP_S = {"dint": 12.0, "kernel": 7.0, "bypass": 7.5}
# ... and per point beyond its warm-up and window when its servers served
# the point before (the in-band checkpoint, its summary and check; a median
# of 0.33-0.38 s in runs of the local profile)
POINT_S = 0.5


@dataclass(frozen=True)
class Rep:
    """One repetition of a point: what run_points runs, into run_dir/key."""
    point: experiments.Point
    k: int    # 1 .. point.repeat
    key: str  # its index key and directory under the run (results.rep_key)


def estimate_s(groups: list[list[Rep]]) -> float:
    """Seconds the series of repetitions take, roughly."""
    return sum(STARTUP_S.get(g[0].point.system, 5.0) + POINT_S * (len(g) - 1)
               + sum(r.point.fields.get("duration_s", 10.0) + r.point.fields.get("warmup_s", 2.0) for r in g)
               for g in groups)


def curve(p: experiments.Point) -> tuple:
    """Points one start of the servers may serve in turn, but their system:
    those whose configurations differ only in what a series may change
    (run.py, SERIES_FIELDS), whichever experiment they belong to: a sweep's
    levels, variants that differ in load only, and the points of other
    experiments on the same servers (TATP's CPU rates after its curve, the
    KV store's skews after its curve). A point whose configuration is
    invalid is a curve of its own (it fails alone)."""
    try:
        cfg = p.config().to_dict()
    except HarnessError:
        return ("invalid", p.name)
    rest = {k: v for k, v in cfg.items() if k not in SERIES_FIELDS and k != "system"}
    return p.workload, json.dumps(rest, sort_keys=True, default=str)


def schedule(reps: list[Rep]) -> list[Rep]:
    """The order repetitions run in: per curve (in the order they first
    appear), repetition 1 of every system, then repetition 2, ... (A B C A
    B C, not A A A B B B), so that a drift of a shared host falls on every
    system alike; within one system's repetition, a sweep's levels in
    their order, served by one start of the servers (series())."""
    curves: dict[tuple, list[Rep]] = {}
    for r in reps:
        curves.setdefault(curve(r.point), []).append(r)
    out = []
    for group in curves.values():
        systems = list(dict.fromkeys(r.point.system for r in group))
        for k in sorted({r.k for r in group}):
            out += [r for s in systems for r in group if r.k == k and r.point.system == s]
    return out


def series(todo: list[Rep], inventory_path: str | None) -> list[list[Rep]]:
    """schedule()'s order cut into series: runs of consecutive repetitions
    one start of the servers may serve in turn (run.series_key), each of one
    repetition number. A point whose configuration is invalid is a series
    of its own (it fails alone)."""
    out: list[list[Rep]] = []
    last = None
    for r in todo:
        try:
            key = (r.k, series_key(r.point.config(inventory_path)))
        except HarnessError:
            key = None
        if key is not None and key == last:
            out[-1].append(r)
        else:
            out.append([r])
        last = key
    return out


def nested(run_dir: Path, p: experiments.Point) -> bool:
    """Whether a point's repetitions are run directories of their own
    (r1 .. rN): when it repeats, or repeated before in this run."""
    return p.repeat > 1 or (run_dir / p.name / "r1").is_dir()


def unnest(run_dir: Path, p: experiments.Point, entries: dict) -> None:
    """A point run once before, and now repeated, keeps that run as its
    repetition 1: the point's directory moves into its r1, and the index
    entry with it."""
    d = run_dir / p.name
    if not nested(run_dir, p) or not d.is_dir() or (d / "r1").exists():
        return
    if not [c for c in d.iterdir() if not results.REP_RE.match(c.name)]:
        return
    tmp = run_dir / f"{p.name}.r1.moving"
    d.rename(tmp)
    d.mkdir()
    tmp.rename(d / "r1")
    if p.name in entries:
        entries[results.rep_key(p.name, 1, True)] = entries.pop(p.name)


def _entry(r: Rep, old: dict | None) -> dict:
    p = r.point
    e = {"point": p.name, "repetition": r.k, "repeat": p.repeat, "experiment": p.experiment, "figure": p.figure,
         "workload": p.workload, "system": p.system, "variant": p.variant, "sweep_field": p.sweep_field,
         "sweep_value": p.sweep_value, "fields": p.fields, "status": "pending", "attempts": 0, "error": ""}
    if old:
        e.update({k: old[k] for k in ("status", "attempts", "error", "elapsed_s") if k in old})
    return e


def run_points(run_dir: Path, points: list[experiments.Point], testbed=None, inventory_path: str | None = None,
               progress: bool = True, log=print) -> dict:
    """Runs the repetitions of the points not done yet, in schedule()'s
    order; returns the index (also in run_dir/index.json, rewritten after
    every run), one entry per repetition."""
    index = results.read_index(run_dir)
    old = index.get("points", {})
    for p in points:
        unnest(run_dir, p, old)
    reps = [Rep(p, k, results.rep_key(p.name, k, nested(run_dir, p))) for p in points for k in range(1, p.repeat + 1)]
    # entries of points outside this selection (--only) are kept as they are
    index["points"] = {**old, **{r.key: _entry(r, old.get(r.key)) for r in reps}}
    entries = index["points"]
    todo, recheck = [], []
    for r in reps:
        e = entries[r.key]
        if results.measured(run_dir / r.key):
            if results.unchecked_reason(run_dir / r.key) and e["attempts"] < MAX_ATTEMPTS:
                todo.append(r)  # measured without a consistency verdict: once more
                recheck.append(r.key)
            elif e["status"] != "done":
                e["status"] = "done"
        elif e["status"] == "failed" and e["attempts"] >= MAX_ATTEMPTS:
            pass  # failed twice: left as it is
        else:
            todo.append(r)
    todo = schedule(todo)
    todo_keys = {r.key for r in todo}
    mine = [r.key for r in reps]
    done = sum(1 for k in mine if entries[k]["status"] == "done" and k not in todo_keys)
    failed_for_good = [k for k in mine if entries[k]["status"] == "failed" and k not in todo_keys]
    what = "run(s)" if len(reps) > len(points) else "point(s)"
    if failed_for_good:
        log(f"not retrying {len(failed_for_good)} {what} that failed {MAX_ATTEMPTS} times: "
            + ", ".join(failed_for_good[:5]) + (" ..." if len(failed_for_good) > 5 else ""))
    if recheck:
        log(f"running again {len(recheck)} {what} measured without a consistency verdict: "
            + ", ".join(recheck[:5]) + (" ..." if len(recheck) > 5 else ""))
    if done:
        log(f"{done} {what} done before, not run again")
    groups = series(todo, inventory_path)
    log(f"{len(todo)} {what} to run, about {estimate_s(groups) / 60:.1f} min")
    results.write_index(run_dir, index)

    bar = None
    if progress and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="run", file=sys.stderr, dynamic_ncols=True,
                   bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")
        log = bar.write
    def set_aside(r: Rep) -> None:
        """A partial directory of an interrupted or failed attempt, or an
        unchecked one, is kept under _failed/."""
        out = run_dir / r.key
        if out.exists():
            keep = run_dir / "_failed" / f"{r.key.replace('/', '__')}.attempt{entries[r.key]['attempts']}"
            keep.parent.mkdir(exist_ok=True)
            if keep.exists():
                shutil.rmtree(keep)
            out.rename(keep)

    def record(r: Rep, outcome, elapsed: float) -> None:
        e = entries[r.key]
        out = run_dir / r.key
        e["elapsed_s"] = round(elapsed, 2)
        # the wall time of the point beyond its warm-up and window
        e["overhead_s"] = round(elapsed - r.point.fields.get("warmup_s", 2.0) - r.point.fields.get("duration_s", 10.0),
                                2)
        if isinstance(outcome, dict):
            e.update(status="done", error="")
            log(one_line(outcome))
        else:
            exc = outcome
            msg = str(exc) if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {exc}"
            # a consistency violation, or a server that did not stop cleanly, is raised after the
            # summary is written: the point is measured
            e.update(status="done" if results.measured(out) else "failed", error=msg)
            if results.unchecked_reason(out):
                log(f"UNCHECKED {r.key} (measured, consistency not checked): {msg}"
                    + (" [run again with this --run-id to retry it once]" if e["attempts"] < MAX_ATTEMPTS
                       else f" [after {e['attempts']} attempts]"))
            else:
                log(f"FAILED {r.key}: {msg}")
        results.write_index(run_dir, index)
        if bar is not None:
            bar.update(1)

    # a series' start does not check the hosts again right after the one
    # before stopped clean (deploy.own_stops_trusted)
    trusted = contextlib.ExitStack()
    if todo:
        trusted.enter_context(own_stops_trusted(inventory.load(inventory_path)))
    try:
        for group in groups:
            for r in group:
                set_aside(r)
                entries[r.key]["attempts"] += 1
            if bar is not None:
                bar.set_description(group[0].key[-48:])
            t0 = time.monotonic()
            recorded: list[int] = []

            def on_point(i: int, outcome, elapsed_s: float) -> None:
                recorded.append(i)
                record(group[i], outcome, elapsed_s)
                if i + 1 < len(group) and bar is not None:
                    bar.set_description(group[i + 1].key[-48:])
            try:
                execute_series([(r.point.config(inventory_path), run_dir / r.key) for r in group],
                               run_dir / "_servers" / group[0].key.replace("/", "__") if len(group) > 1
                               else run_dir / group[0].key, show_progress=False, testbed=testbed,
                               data_cache=run_dir / "_data", on_point=on_point)
            except KeyboardInterrupt:
                for r in group[len(recorded):]:
                    entries[r.key]["attempts"] -= 1
                    entries[r.key]["status"] = "pending"
                raise
            except Exception as exc:  # noqa: BLE001 - a series of one raises its point's error
                if len(group) > 1:
                    raise
                record(group[0], exc, time.monotonic() - t0)
    finally:
        trusted.close()
        if bar is not None:
            bar.close()
        results.write_index(run_dir, index)
    return index


def finish(run_dir: Path, log=print) -> None:
    """The table, the figures and the report of a run directory."""
    df = results.write_table(run_dir)
    log(f"table: {run_dir / results.TABLE} ({df['point'].nunique()} points, {len(df)} runs); "
        f"medians and intervals: {run_dir / results.SUMMARY}")
    from plots.__main__ import plot_run
    try:
        for path in plot_run(run_dir, df, log=log):
            log(f"figure: {path}")
    except Exception as exc:  # noqa: BLE001 - the report is still worth writing
        log(f"figures failed: {type(exc).__name__}: {exc}")
    from . import report
    path = report.write(run_dir, df)
    log(f"report: {path}")


def check_sizes(points: list[experiments.Point], inv, inventory_path: str | None, run_dir: Path) -> None:
    """Every point's sizes against this machine (limits.check_memory), as
    the series it runs in (series()) serve it, before anything is made:
    one line naming the first point that does not fit. A point whose
    configuration is invalid is left to run_points, which records it as
    failed."""
    reps = schedule([Rep(p, k, f"{p.name}/r{k}") for p in points for k in range(1, p.repeat + 1)])
    for group in series(reps, inventory_path):
        try:
            cfgs = [r.point.config(inventory_path) for r in group]
        except HarnessError:
            continue
        span = series_span_s(cfgs)
        for r, cfg in zip(group, cfgs):
            try:
                limits.check_memory(cfg, inv, run_dir, span)
            except HarnessError as exc:
                raise HarnessError(f"point {r.point.name}: {exc}") from None


def check_placement(points: list[experiments.Point], inv) -> None:
    """A point that pins dint's slow path to cores of its own
    (slowpath_cpus: own) needs them on every server host: refused in one
    line before anything runs (inventory.slowpath_cpus)."""
    for p in points:
        place = p.fields.get("slowpath_cpus", "xdp")
        if p.system != "dint" or place == "xdp":
            continue
        for host in inv.servers:
            try:
                inventory.slowpath_cpus(inv, host, place)
            except HarnessError as exc:
                raise HarnessError(f"point {p.name}: {exc}") from None


def reproduce(run_id: str | None = None, inventory_path: str | None = None, profile: str | None = None,
              only: str | None = None, results_dir: Path | None = None, plan_only: bool = False) -> Path | None:
    """Runs the profile into results/<run-id>/, after its plan (harness/plan.py:
    printed, refused in one line if a host cannot hold a point, written to
    plan.json); plan_only: the plan alone, nothing made."""
    ef = experiments.load(profile)
    points = ef.points()
    if only:
        points = [p for p in points if only in p.name]
        if not points:
            raise HarnessError(f"--only {only!r} matches no point of {ef.path}")
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S")
    run_dir = (results_dir or RESULTS_DIR) / run_id
    inv = inventory.load(inventory_path)
    from . import plan
    the_plan = plan.make(ef, points, inv, inventory_path, run_dir)
    print(plan.render(the_plan))
    plan.check(the_plan, points, inv, inventory_path)
    if plan_only:
        return None
    check_can_run(inv, run_dir)  # before anything is made
    check_sizes(points, inv, inventory_path, run_dir)
    check_placement(points, inv)
    run_dir.mkdir(parents=True, exist_ok=True)
    plan.write(the_plan, run_dir / plan.PLAN_FILE)
    res_path = run_dir / "experiments.yml"
    resolved = experiments.resolved(ef)
    if res_path.exists():
        before = yaml.safe_load(res_path.read_text()) or {}
        if before.get("file") != resolved["file"]:
            print(f"note: {ef.path} changed since this run started; the run's copy is kept as "
                  "experiments.previous.yml", file=sys.stderr)
            shutil.copy(res_path, run_dir / "experiments.previous.yml")
    res_path.write_text(yaml.safe_dump(resolved, sort_keys=False))
    (run_dir / "env.json").write_text(json.dumps(envinfo.collect(), indent=2))
    runs = sum(p.repeat for p in points)
    print(f"run {run_id}: profile {ef.profile} ({ef.path}), {len(points)} points"
          + (f", {runs} runs with their repetitions" if runs > len(points) else "") + f" -> {run_dir}")
    # a local testbed is brought up (and down again if this made it); a
    # cluster's hosts, simulated or not, are there already (check_can_run)
    with Testbed(inv) if inv.local else contextlib.nullcontext() as tb:
        run_points(run_dir, points, testbed=tb, inventory_path=inventory_path, progress=True)
    if ef.xdpbench and not only:
        run_xdpbench(run_dir, ef.xdpbench)
    if not only:
        run_verifier(run_dir, extra_schemas(points))
    finish(run_dir)
    return run_dir


def run_xdpbench(run_dir: Path, spec: dict, log=print) -> None:
    """The XDP program's cost per operation (harness/xdpbench.py) on the
    controller, once a run (a resumed run keeps the one it has), into
    run_dir/xdpbench for the report. Its failure is said, and the report
    written without it."""
    from . import xdpbench
    out = run_dir / "xdpbench"
    if (out / "xdpbench.json").exists():
        return
    log(f"xdpbench: XDP ns per operation at {', '.join(map(str, spec['keys']))} keys")
    try:
        res = xdpbench.measure(spec["keys"], xdpbench.parse_ops(None), spec["rounds"], spec["calls"], log=lambda m: None,
                               systems=xdpbench.SYSTEMS)
        res["command"] = (f"python -m harness xdpbench --keys {','.join(map(str, spec['keys']))} "
                          f"--rounds {spec['rounds']} --calls {spec['calls']}")
        res["env"] = envinfo.collect()
        xdpbench.write(res, out)
    except Exception as exc:  # noqa: BLE001 - the points' report is still worth writing
        log(f"xdpbench failed: {type(exc).__name__}: {exc}")


def extra_schemas(points: list[experiments.Point]) -> list:
    """The schemas the points load beyond the workloads' own (the KV
    store's at other value sizes, --kv-value-size), for the verifier."""
    import workloads
    out = []
    for p in points:
        try:
            cfg = p.config()
        except HarnessError:
            continue
        wl = workloads.get(cfg.workload)
        sized = wl.for_data(cfg.data)
        if sized is not wl and sized.schema not in out:
            out.append(sized.schema)
    return out


def run_verifier(run_dir: Path, extra: list = (), log=print) -> None:
    """The verifier's figures of every BPF program of this build
    (harness/verifier.py) into run_dir/verifier.json, once a run, as
    run_xdpbench; with extra, those of these schemas' builds too (the
    points' own: extra_schemas)."""
    from . import verifier
    out = run_dir / "verifier.json"
    if out.exists():
        return
    log("verifier: the figures of every BPF program of this build")
    try:
        res = verifier.measure(list(extra), log=lambda m: None)
        verifier.write(res, out)
        for line in res["over"]:
            log(f"verifier: near a limit: {line}")
    except Exception as exc:  # noqa: BLE001 - the points' report is still worth writing
        log(f"verifier failed: {type(exc).__name__}: {exc}")
