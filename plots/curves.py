"""Throughput-latency curves of a closed-loop sweep: x = goodput (committed
transactions, or requests, per second), y = median and 99th-percentile
latency (log scale), one line per system, one panel per variant; points
labelled with their concurrency; client-saturated points hollow, points
whose consistency was not checked crossed out, points with an unstable
window (a repetition's) marked with a dagger; error bars (both ways) where
a point has repetitions."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import (variant_grid, COLORS, done, error_bars, interval, is_unstable, mark_unchecked, mark_unstable,
                     marker_kw, note, plain_log_ticks, plt, save, saturation_legend_handles, systems_in,
                     unchecked_legend_handle)
from matplotlib.lines import Line2D


def unit(sub: pd.DataFrame) -> str:
    return "txn/s" if sub["transactional"].fillna(False).astype(bool).any() else "requests/s"


def plot(df: pd.DataFrame, experiment: str, title: str, out_dir: Path) -> list[Path]:
    d = done(df[df["experiment"] == experiment])
    d = d[d["goodput_per_s"].notna()]
    if d.empty:
        return []
    rows = (("lat_p50_us", "median (p50)"), ("lat_p99_us", "99th percentile"))
    fig, panels = variant_grid(d, rows)
    any_sat = any_unchecked = any_err = any_unstable = False
    for ax, sub, col, what, i, v in panels:
        for system in systems_in(sub):
            s = sub[sub["system"] == system].sort_values("concurrency")
            x = s["goodput_per_s"] / 1e3
            ax.plot(x, s[col], color=COLORS[system], linewidth=1.3, zorder=1)
            any_err |= error_bars(ax, x, s[col], *interval(s, col), color=COLORS[system])
            any_err |= error_bars(ax, x, s[col], *interval(s, "goodput_per_s", 1e3), color=COLORS[system], axis="x")
            unstable = s["unstable"] if "unstable" in s else [0] * len(s)
            for xi, yi, sat, c, verdict, un in zip(x, s[col], s["client_saturated"], s["concurrency"],
                                                   s["consistency"], unstable):
                any_sat |= bool(sat)
                ax.plot([xi], [yi], linestyle="none", zorder=2, **marker_kw(system, bool(sat)))
                if verdict == "unchecked":
                    any_unchecked = True
                    mark_unchecked(ax, xi, yi)
                if is_unstable(un):
                    any_unstable = True
                    mark_unstable(ax, xi, yi)
                ax.annotate(f"{int(c)}", (xi, yi), textcoords="offset points", xytext=(5, 2), fontsize=6,
                            color=COLORS[system])
        ax.set_yscale("log")
        plain_log_ticks(ax)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3, which="both")
        ax.set_ylabel(f"{what} latency (us, log)")
        if i == 0:
            ax.set_title(v or "", fontsize=10)
        else:
            ax.set_xlabel(f"goodput (k {unit(sub)})")
    handles = [Line2D([], [], color=COLORS[s], marker=marker_kw(s, False)["marker"], label=s)
               for s in systems_in(d)]
    if any_sat:
        handles += saturation_legend_handles()
    if any_unchecked:
        handles.append(unchecked_legend_handle())
    handles.append(Line2D([], [], linestyle="none", label="labels: concurrency"))
    fig.legend(handles=handles, fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save(fig, out_dir, f"curve-{experiment}", note(any_sat, any_unchecked, any_err, any_unstable))
