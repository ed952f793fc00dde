"""Beyond DINT's evaluation: goodput and latency against a setting swept
at a fixed load (the KV store's value size, its keys' skew), one line per
system, a row of panels per variant: goodput, p50 and p99 latency (log),
server CPU per request, and for transactional points the abort rate.
Hollow markers: the client was saturated; a red x: consistency not
checked; "n/a": a point measured without that figure; error bars: the
interval of a point's median over its repetitions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.results import swept_axis as axis

from .common import (COLORS, MISSING_GID, done, error_bars, interval, is_unstable, legend_and_title, mark_unchecked,
                     mark_unstable, marker_kw, note, plain_log_ticks, plt, save, systems_in)


def _missing(ax, x) -> None:
    """"n/a" at the foot of a panel (linear or log) where a measured point
    has no figure."""
    ax.annotate("n/a", (x, 0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=6,
                color="#d00000", gid=MISSING_GID)


def panels(d: pd.DataFrame) -> list[tuple[str, float, str, bool]]:
    """(column, scale, label, log) of each panel."""
    out = [("goodput_per_s", 1e3, "goodput (k txn or requests/s)", False),
           ("lat_p50_us", 1, "p50 latency (us, log)", True), ("lat_p99_us", 1, "p99 latency (us, log)", True),
           ("server_cpu_us_per_op", 1, "server CPU per request (us)", False)]
    if "abort_rate" in d and pd.to_numeric(d["abort_rate"], errors="coerce").notna().any():
        out.append(("abort_rate", 0.01, "abort rate (%)", False))
    return out


def plot(df: pd.DataFrame, experiment: str, title: str, out_dir: Path) -> list[Path]:
    d = done(df[df["experiment"] == experiment])
    found = axis(d)
    if d.empty or found is None:
        return []
    col_x, xlabel, conv = found
    d = d.assign(_x=[conv(v) for v in d[col_x]])
    d = d[np.isfinite(d["_x"].astype(float))]
    if d.empty:
        return []
    variants = list(dict.fromkeys(d["variant"].fillna("")))
    cols = panels(d)
    fig, axes = plt.subplots(len(variants), len(cols), figsize=(3.6 * len(cols) + 1.5, 3.4 * len(variants)),
                             squeeze=False)
    any_sat = any_nc = any_err = any_unstable = False
    for i, v in enumerate(variants):
        sub = d[d["variant"].fillna("") == v]
        for j, (col, scale, label, log) in enumerate(cols):
            ax = axes[i][j]
            if col == "abort_rate" and not pd.to_numeric(sub[col], errors="coerce").notna().any():
                # a variant without transactions (kv reads) has no aborts to draw
                ax.text(0.5, 0.5, "no transactions", ha="center", va="center", fontsize=8, color="#666666",
                        transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            for system in systems_in(sub):
                s = sub[sub["system"] == system].sort_values("_x")
                xs = s["_x"].to_numpy(float)
                ys = pd.to_numeric(s[col], errors="coerce").to_numpy(float) / scale
                ok = np.isfinite(ys)
                ax.plot(xs[ok], ys[ok], color=COLORS[system], linewidth=1.3, zorder=1)
                any_err |= error_bars(ax, xs, ys, *interval(s, col, scale), color=COLORS[system])
                unstable = s["unstable"] if "unstable" in s else [0] * len(s)
                for x, y, good, sat, verdict, un in zip(xs, ys, ok, s["client_saturated"].fillna(False),
                                                        s.get("consistency", pd.Series([""] * len(s))), unstable):
                    if not good:
                        _missing(ax, x)
                        continue
                    any_sat |= bool(sat)
                    ax.plot([x], [y], linestyle="none", zorder=2, **marker_kw(system, bool(sat), size=5))
                    if verdict == "unchecked":
                        any_nc = True
                        mark_unchecked(ax, x, y)
                    if j == 0 and is_unstable(un):
                        any_unstable = True
                        mark_unstable(ax, x, y)
            if log:
                ax.set_yscale("log")
                plain_log_ticks(ax)
            else:
                ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3, which="both")
            ax.set_ylabel(label, fontsize=8)
            if i == len(variants) - 1:
                ax.set_xlabel(xlabel, fontsize=8)
            if j == 0 and v:
                ax.set_title(v, fontsize=9, loc="left")
            if col_x == "kv_value_size":
                ax.set_xscale("log", base=2)
                ticks = sorted(set(d["_x"]))
                ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=7)
                ax.minorticks_off()
    legend_and_title(fig, systems_in(d), title, any_sat, any_nc)
    return save(fig, out_dir, f"sweep-{experiment}", note(any_sat, any_nc, any_err, any_unstable))
