"""Bar figures: dint's ablations (goodput and p99 latency of each variant,
per workload) and colocation (each system alone and beside a CPU-bound
neighbour). Hatched bars: the client was saturated; a red x on a bar: the
point's consistency was not checked; error bars: the interval of a point's
median over its repetitions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import (COLORS, done, error_bars, interval, kfmt, mark_missing, mark_unchecked, note, plt, save,
                     systems_in, unchecked)

VARIANT_COLORS = ["#1b9e77", "#e6ab02", "#e7298a", "#66a61e", "#a6761d", "#666666"]


def _bars(ax, xs, heights, width, color, sats, label, fmt=kfmt, not_checked=None, missing=None):
    """Bars, hatched where the client was saturated (sats), crossed out
    where the point's consistency was not checked (not_checked), and "n/a"
    where a measured point has no figure (missing)."""
    bars = ax.bar(xs, heights, width, color=color, label=label, edgecolor="black", linewidth=0.4)
    for x, m in zip(xs, missing or ()):
        if m:
            mark_missing(ax, x)
    for b, h, sat, nc in zip(bars, heights, sats, not_checked or [False] * len(bars)):
        if sat:  # over the bar's own colour, which still tells the variant
            b.set_hatch("///")
        if h == h and h > 0:
            ax.annotate(fmt(h), (b.get_x() + b.get_width() / 2, h), ha="center", va="bottom", fontsize=6)
        if nc:
            mark_unchecked(ax, b.get_x() + b.get_width() / 2, h if h == h else 0)
    return bars


PANELS = (("goodput_per_s", 1e3, "goodput (k txn or requests/s)"), ("lat_p99_us", 1, "p99 latency (us)"),
          ("server_cpu_us_per_op", 1, "server CPU per request (us)"))


def _grouped(axes, d: pd.DataFrame, by: str, groups: list, variants: list, draw) -> tuple[bool, bool, bool]:
    """The panels of a grouped bar figure: for each variant, one bar per
    group (rows where column `by` is the group), drawn by draw(ax, xs,
    heights, width, saturated, not checked, variant index, variant), with
    its error bar. Returns whether a point was client-saturated, whether
    one's consistency was not checked, and whether an error bar was drawn."""
    width = 0.8 / len(variants)
    any_sat = any_nc = any_err = False
    for ax, (col, scale, label) in zip(axes, PANELS):
        for i, v in enumerate(variants):
            hs, sats, ncs, lows, highs = [], [], [], [], []
            for g in groups:
                r = d[(d[by] == g) & (d["variant"].fillna("") == v)]
                hs.append(float(r[col].iloc[0]) / scale if len(r) and pd.notna(r[col].iloc[0]) else np.nan)
                lo, hi = interval(r.head(1), col, scale)
                lows.append(lo[0] if len(lo) else np.nan)
                highs.append(hi[0] if len(hi) else np.nan)
                sats.append(bool(r["client_saturated"].iloc[0]) if len(r) else False)
                ncs.append(unchecked(r))
            any_sat |= any(sats)
            any_nc |= any(ncs)
            xs = np.arange(len(groups)) + (i - (len(variants) - 1) / 2) * width
            draw(ax, xs, hs, width, sats, ncs, i, v)
            any_err |= error_bars(ax, xs, hs, lows, highs)
            # a point measured without this figure (e.g. no server cost)
            for x, g, h in zip(xs, groups, hs):
                if h != h and len(d[(d[by] == g) & (d["variant"].fillna("") == v)]):
                    mark_missing(ax, x)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    return any_sat, any_nc, any_err


def ablation(df: pd.DataFrame, experiment: str, title: str, out_dir: Path) -> list[Path]:
    d = done(df[df["experiment"] == experiment])
    if d.empty:
        return []
    wls = list(dict.fromkeys(d["workload"]))
    variants = list(dict.fromkeys(d["variant"].fillna("")))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    any_sat, any_nc, any_err = _grouped(
        axes, d, "workload", wls, variants,
        lambda ax, xs, hs, w, sats, ncs, i, v: _bars(ax, xs, hs, w, VARIANT_COLORS[i % len(VARIANT_COLORS)], sats,
                                                     v or "base", not_checked=ncs))
    for ax in axes:
        ax.set_xticks(range(len(wls)), [_wl_label(d, w) for w in wls])
    from matplotlib.patches import Patch
    h = [Patch(facecolor=VARIANT_COLORS[i % len(VARIANT_COLORS)], edgecolor="black", linewidth=0.4,
               label=v or "base") for i, v in enumerate(variants)]
    fig.legend(handles=h, fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5), title="dint variant")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save(fig, out_dir, f"bars-{experiment}", note(any_sat, any_nc, any_err))


def _wl_label(d: pd.DataFrame, w: str) -> str:
    r = d[d["workload"] == w].iloc[0]
    extra = r["kv_mix"] if w == "kv" else (r["cc"] if r.get("cc") else "")
    return f"{w} {extra}".strip() if isinstance(extra, str) else w


def colocation(df: pd.DataFrame, experiment: str, title: str, out_dir: Path) -> list[Path]:
    d = done(df[df["experiment"] == experiment])
    if d.empty:
        return []
    systems = systems_in(d)
    variants = list(dict.fromkeys(d["variant"].fillna("")))
    nb = d[d["neighbour_idle_units_per_s"].notna()] if "neighbour_idle_units_per_s" in d else d.iloc[0:0]
    # the neighbour's panel only where a neighbour ran (not for dint's slow path placements)
    fig, axes = plt.subplots(1, 4 if len(nb) else 3, figsize=(17 if len(nb) else 13, 3.8))

    def draw(ax, xs, hs, width, sats, ncs, i, v):
        for b, s in zip(_bars(ax, xs, hs, width, "#999999", sats, v, not_checked=ncs), systems):
            b.set_facecolor(COLORS[s])
            b.set_alpha(_shade(i))
    any_sat, any_nc, any_err = _grouped(axes[:3], d, "system", systems, variants, draw)
    for ax in axes:
        ax.set_xticks(range(len(systems)), systems)
    # the neighbour's own work: with the servers up but idle, and while they serve
    if len(nb):
        _neighbour_panel(axes[3], nb, systems)
    # a legend of the variants' shades (the colour is the system's), and of
    # the hatching, beside the panels
    from matplotlib.patches import Patch
    h = [Patch(facecolor="#777777", alpha=_shade(i), edgecolor="black", linewidth=0.4, label=v or "-")
         for i, v in enumerate(variants)]
    if any_sat:
        h.append(Patch(facecolor="white", edgecolor="black", linewidth=0.4, hatch="///", label="client saturated"))
    fig.legend(handles=h, fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5), title="variant")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save(fig, out_dir, f"bars-{experiment}", note(any_sat, any_nc, any_err))


def _shade(i: int) -> float:
    """A variant's bars: the first solid, the next ones lighter."""
    return max(1.0 - 0.45 * i, 0.25)


def _neighbour_panel(ax, nb: pd.DataFrame, systems: list[str]) -> None:
    """The neighbour's work rate per system: with the servers idle (solid)
    and loaded (light)."""
    width = 0.38
    for j, (col, label, alpha) in enumerate((("neighbour_idle_units_per_s", "servers idle", 1.0),
                                              ("neighbour_window_units_per_s", "servers loaded", 0.55))):
        hs = [float(nb[nb["system"] == s][col].iloc[0]) if len(nb[nb["system"] == s]) else np.nan for s in systems]
        xs = np.arange(len(systems)) + (j - 0.5) * width
        for b, s in zip(_bars(ax, xs, hs, width, "#999999", [False] * len(systems), label), systems):
            b.set_facecolor(COLORS[s])
            b.set_alpha(alpha)
    ax.set_ylabel("neighbour's work (units/s, all hosts)")
    ax.set_title("neighbour: idle servers solid / loaded light", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
