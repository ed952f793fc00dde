"""`make plots RUN=results/<run-id>`: the figures of a run directory, as PNG
and PDF beside its data. For now: the echo calibration (throughput and
median latency of each system, both NAPI placements)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

SYSTEM_ORDER = ["dint", "kernel", "bypass"]
COLORS = {"dint": "#1b9e77", "kernel": "#d95f02", "bypass": "#7570b3"}


def echo_calibration(csv: Path, out_dir: Path) -> list[Path]:
    df = pd.read_csv(csv)
    if df.empty:
        raise ValueError(f"{csv} has no points")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    panels = [(axes[0], "throughput_per_s", 1e3, "throughput (k requests/s)", "concurrency 32", 32),
              (axes[1], "p50_us", 1, "median round trip (us)", "concurrency 1", 1)]
    for ax, col, scale, label, title, conc in panels:
        sub = df[df["concurrency"] == conc]
        modes = [m for m in ("inline", "pinned") if m in set(sub["napi"])]
        width = 0.8 / max(1, len(SYSTEM_ORDER))
        for i, system in enumerate(SYSTEM_ORDER):
            vals = [sub[(sub["system"] == system) & (sub["napi"] == m)][col] for m in modes]
            heights = [v.iloc[0] / scale if len(v) else 0 for v in vals]
            xs = [j + (i - 1) * width for j in range(len(modes))]
            bars = ax.bar(xs, heights, width, label=system, color=COLORS[system])
            for b, h in zip(bars, heights):
                ax.annotate(f"{h:.0f}" if h >= 10 else f"{h:.1f}", (b.get_x() + b.get_width() / 2, h),
                            ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(modes)), [f"napi={m}" for m in modes])
        ax.set_ylabel(label)
        ax.set_title(f"echo, {title}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(frameon=False)
    sat = df[df["client_saturated"]]
    if not sat.empty:
        fig.text(0.01, 0.01, "client saturated at: " + ", ".join(
            f"{r.system}/{r.napi}/c={r.concurrency}" for r in sat.itertuples()), fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    paths = [out_dir / "echo_calibration.png", out_dir / "echo_calibration.pdf"]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m plots", description=__doc__.splitlines()[0])
    ap.add_argument("run", nargs="?", help="a results/<run-id> directory (default: the newest)")
    args = ap.parse_args(argv)
    if args.run:
        run = Path(args.run)
    else:
        runs = sorted(p for p in Path("results").glob("*") if p.is_dir())
        if not runs:
            print("error: no run in results/; give RUN=results/<run-id>", file=sys.stderr)
            return 1
        run = runs[-1]
    csv = run / "echo_calibration.csv"
    if not csv.exists():
        print(f"error: {csv} not found (is {run} a finished `make reproduce` run?)", file=sys.stderr)
        return 1
    try:
        for p in echo_calibration(csv, run):
            print(p)
    except (ValueError, KeyError) as e:
        print(f"error: cannot plot {csv}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
