"""`make plots RUN=results/<run-id>` / `python -m plots results/<run-id>`: the
figures of a run directory, as PNG and PDF in <run>/plots/, one per
experiment, drawn by the module of its figure type (curves, bars, cpu,
calibration, latency, faults, sweep), from the run's table (points.csv, rebuilt from the
summaries if missing): one row per point (its medians over its
repetitions, harness/results.per_point), with error bars where a point has
several."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import bars, calibration, cpu, curves, faults, latency, sweep
from .common import titles

DRAW = {
    "curve": curves.plot,
    "ablation": bars.ablation,
    "colocation": bars.colocation,
    "cpu": cpu.plot,
    "calibration": calibration.plot,
    "latency": latency.plot,
    "faults": faults.plot,
    "sweep": sweep.plot,
}


def plot_run(run_dir: Path, df=None, log=None) -> list[Path]:
    """Every figure of a run; returns the files written."""
    from harness import results
    run_dir = Path(run_dir)
    df = results.load_table(run_dir) if df is None else df
    if df.empty:
        raise ValueError(f"{run_dir} has no points")
    df = results.per_point(df)
    out_dir = run_dir / "plots"
    out_dir.mkdir(exist_ok=True)
    names = titles(run_dir)
    paths: list[Path] = []
    for (exp, fig), _ in df.groupby(["experiment", "figure"], sort=False):
        draw = DRAW.get(fig)
        if draw is None:
            continue
        made = draw(df, exp, names.get(exp, exp), out_dir)
        if not made and log:
            log(f"no figure for {exp}: none of its points is done")
        paths += made
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots", description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="a results/<run-id> directory (default: the newest)")
    args = ap.parse_args(argv)
    from harness import results
    if args.run:
        run = Path(args.run)
    else:
        runs = sorted((p for p in Path("results").glob("*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
        if not runs:
            print("error: no run in results/; give RUN=results/<run-id>", file=sys.stderr)
            return 1
        run = runs[-1]
    if not (run / "points.csv").exists() and not (run / "index.json").exists() and not results.discover(run):
        print(f"error: {run}: no points.csv, index.json or */summary.json found "
              "(is it a `make reproduce` run directory?)", file=sys.stderr)
        return 1
    try:
        # the table anew from the points' summaries when they are here, so
        # the figures follow this checkout's code; else the saved points.csv
        df = results.write_table(run) if results.discover(run) else None
        for p in plot_run(run, df, log=lambda m: print(m, file=sys.stderr)):
            print(p)
    except (ValueError, KeyError) as e:
        print(f"error: cannot plot {run}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
