"""The unloaded latency table as a figure: per workload, each system's p50
and p99 latency at concurrency 1 (log scale); a red x on a bar: the
point's consistency was not checked; error bars: the interval of a point's
median over its repetitions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .bars import _wl_label
from .common import (COLORS, done, error_bars, interval, mark_unchecked, note, plain_log_ticks, plt, save, systems_in,
                     unchecked)


def plot(df: pd.DataFrame, experiment: str, title: str, out_dir: Path) -> list[Path]:
    d = done(df[df["experiment"] == experiment])
    if d.empty:
        return []
    wls = list(dict.fromkeys(d["workload"]))
    systems = systems_in(d)
    fig, axes = plt.subplots(1, 2, figsize=(min(15, 3 + 2.2 * len(wls)), 3.8), sharey=True)
    width = 0.8 / len(systems)
    any_nc = any_err = False
    for ax, col, lab in ((axes[0], "lat_p50_us", "p50"), (axes[1], "lat_p99_us", "p99")):
        for i, s in enumerate(systems):
            vals, ncs, lows, highs = [], [], [], []
            for w in wls:
                r = d[(d["workload"] == w) & (d["system"] == s)].head(1)
                vals.append(float(r[col].iloc[0]) if len(r) else np.nan)
                ncs.append(unchecked(r))
                lo, hi = interval(r, col)
                lows.append(lo[0] if len(lo) else np.nan)
                highs.append(hi[0] if len(hi) else np.nan)
            any_nc |= any(ncs)
            xs = np.arange(len(wls)) + (i - (len(systems) - 1) / 2) * width
            bars = ax.bar(xs, vals, width, color=COLORS[s], label=s)
            any_err |= error_bars(ax, xs, vals, lows, highs)
            for b, v, nc in zip(bars, vals, ncs):
                if v == v:
                    ax.annotate(f"{v:.0f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                                fontsize=6)
                    if nc:
                        mark_unchecked(ax, b.get_x() + b.get_width() / 2, v)
        ax.set_xticks(range(len(wls)), [_wl_label(d, w) for w in wls], fontsize=8)
        ax.set_yscale("log")
        plain_log_ticks(ax)
        ax.set_title(f"{lab} latency", fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
    axes[0].set_ylabel("latency (us, log scale)")
    axes[0].legend(fontsize=7, frameon=False, loc="upper left")
    fig.suptitle(f"{title}\n(flat workloads: per request; transactional: per committed transaction)", fontsize=10)
    fig.tight_layout()
    return save(fig, out_dir, f"latency-{experiment}", note(False, any_nc, any_err))
