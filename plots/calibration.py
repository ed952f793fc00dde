"""The echo calibration: each system's echo throughput at concurrency 32
(the client's ceiling on this testbed) and its median and p99 round trip at
concurrency 1; error bars: the interval of a point's median over its
repetitions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .bars import _bars
from .common import COLORS, done, error_bars, interval, note, plt, save, systems_in


def plot(df: pd.DataFrame, experiment: str, title: str, out_dir: Path) -> list[Path]:
    d = done(df[(df["experiment"] == experiment)])
    if d.empty:
        return []
    systems = systems_in(d)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    any_sat = any_err = False
    loaded = d[d["concurrency"] == d["concurrency"].max()]
    # each system's point: the fastest loaded one, the quickest unloaded one
    top = [loaded[loaded["system"] == s].sort_values("throughput_per_s").tail(1) for s in systems]
    hs = [float(t["throughput_per_s"].iloc[0]) / 1e3 for t in top]
    sats = [bool(loaded[loaded["system"] == s]["client_saturated"].any()) for s in systems]
    any_sat |= any(sats)
    for i, s in enumerate(systems):
        _bars(axes[0], [i], [hs[i]], 0.6, COLORS[s], [sats[i]], s)
        any_err |= error_bars(axes[0], [i], [hs[i]], *interval(top[i], "throughput_per_s", 1e3))
    r = loaded.iloc[0]
    axes[0].set_xticks(range(len(systems)), systems)
    axes[0].set_ylabel("echo throughput (k requests/s)")
    axes[0].set_title(f"concurrency {int(r['concurrency'])}, napi {r['napi']}", fontsize=9)
    unloaded = d[d["concurrency"] == d["concurrency"].min()]
    width = 0.38
    for j, (col, lab) in enumerate((("lat_p50_us", "p50"), ("lat_p99_us", "p99"))):
        low = [unloaded[unloaded["system"] == s].sort_values(col).head(1) for s in systems]
        vals = [float(r[col].iloc[0]) for r in low]
        xs = np.arange(len(systems)) + (j - 0.5) * width
        bars = _bars(axes[1], xs, vals, width, "#888888", [False] * len(systems), lab, fmt=lambda v: f"{v:.0f}")
        for x, v, r in zip(xs, vals, low):
            any_err |= error_bars(axes[1], [x], [v], *interval(r, col))
        for b, s in zip(bars, systems):
            b.set_facecolor(COLORS[s])
            b.set_alpha(1.0 if j == 0 else 0.5)
    u = unloaded.iloc[0]
    axes[1].set_xticks(range(len(systems)), systems)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("round trip (us, log scale)")
    axes[1].set_title(f"concurrency {int(u['concurrency'])}, napi {u['napi']}: p50 solid, p99 light", fontsize=9)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save(fig, out_dir, f"calibration-{experiment}", note(any_sat, intervals=any_err))
