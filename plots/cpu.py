"""CPU efficiency: server CPU time per request at fixed offered rates (open
loop), grouped bars per rate, one bar per system; the achieved rate is
written under each bar group when it falls short of the offered one. A
point measured without a server cost (none could be had: points.csv's
server_cpu_missing says why) shows "n/a" instead of a bar. Error bars: the
interval of a point's median over its repetitions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .bars import _bars
from .common import COLORS, done, error_bars, interval, kfmt, note, plt, save, systems_in, unchecked


def plot(df: pd.DataFrame, experiment: str, title: str, out_dir: Path) -> list[Path]:
    d = done(df[df["experiment"] == experiment])
    d = d[d["rate"].notna()]
    if d.empty:
        return []
    rates = sorted(d["rate"].unique())
    systems = systems_in(d)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    width = 0.8 / len(systems)
    any_sat = any_nc = any_err = False
    for i, s in enumerate(systems):
        hs, sats, ncs, missing, lows, highs = [], [], [], [], [], []
        for r in rates:
            row = d[(d["system"] == s) & (d["rate"] == r)]
            v = row["server_cpu_us_per_op"].iloc[0] if len(row) else None
            hs.append(float(v) if v is not None and pd.notna(v) else np.nan)
            lo, hi = interval(row.head(1), "server_cpu_us_per_op")
            lows.append(lo[0] if len(lo) else np.nan)
            highs.append(hi[0] if len(hi) else np.nan)
            # measured, but without a server cost (its reason: points.csv's server_cpu_missing)
            missing.append(bool(len(row)) and hs[-1] != hs[-1])
            sats.append(bool(row["client_saturated"].iloc[0]) if len(row) else False)
            ncs.append(unchecked(row))
        any_sat |= any(sats)
        any_nc |= any(ncs)
        xs = np.arange(len(rates)) + (i - (len(systems) - 1) / 2) * width
        _bars(ax, xs, hs, width, COLORS[s], sats, s, fmt=lambda v: f"{v:.2f}", not_checked=ncs, missing=missing)
        any_err |= error_bars(ax, xs, hs, lows, highs)
    ax.set_xticks(range(len(rates)), [f"{kfmt(r)}/s" for r in rates])
    ax.set_xlabel("offered rate per client process (transactions or requests/s)")
    ax.set_ylabel("server CPU per request (us)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return save(fig, out_dir, f"cpu-{experiment}", note(any_sat, any_nc, any_err))
