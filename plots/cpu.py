"""CPU efficiency as DINT reports it: the server cores used at fixed offered
rates (open loop), one line per system, against the offered rate of all
client processes together. Three panels: the cores used; the same apart,
user (dashed) and kernel (solid) time where the servers' stats lines carry
their processes' time apart, else the kernel's packet work (solid) and the
server processes (dashed) (harness/cost.py, cores); and server CPU per
request. A point whose offered rate was not reached (it finished less than
results.REACHED_SHARE of it) carries the share it finished, in red; hollow
markers: the client was saturated; "n/a": a point measured without a
server cost (points.csv's server_cpu_missing says why); error bars: the
interval of a point's median over its repetitions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from .common import (COLORS, done, error_bars, interval, kfmt, legend_and_title, mark_missing, mark_unchecked,
                     marker_kw, note, plt, save, systems_in)

NOT_REACHED_GID = "rate-not-reached"  # the artists marking such points
NOT_REACHED_NOTE = ("red percentage under a point: its offered rate was not reached; the share of it the system "
                    "finished over the window (points.csv: achieved_share, rate_not_reached)")


def _x(d: pd.DataFrame) -> tuple[pd.Series, str]:
    """Each point's offered rate: every client process's together when the
    summaries say it (open_loop.offered_per_s), else the rate per process."""
    if "offered_per_s" in d and d["offered_per_s"].notna().all():
        return pd.to_numeric(d["offered_per_s"]), "offered rate, all client processes"
    return pd.to_numeric(d["rate"]), "offered rate per client process"


def _num(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return np.nan
    return v


def _true(v) -> bool:
    """A boolean of points.csv as read back (True, "True", NaN)."""
    return v is True or (isinstance(v, (bool, np.bool_)) and bool(v)) or (isinstance(v, str) and v.lower() == "true")


def mark_not_reached(ax, x, y, share) -> None:
    """The share of its offered rate a point finished, under it, in red."""
    label = f"{share:.0%}" if share == share else "short"
    ax.annotate(label, (x, y if y == y else 0), textcoords="offset points", xytext=(0, -10), ha="center",
                fontsize=6, color="#d00000", fontweight="bold", gid=NOT_REACHED_GID)


def _line(ax, s: pd.DataFrame, xs, col: str, system: str, style: str = "-", marks: bool = True,
          label: str | None = None, short: bool = False) -> tuple[bool, bool]:
    """One system's line of column col (with marks: error bars, n/a and
    unchecked consistency; with short: the share of a rate not reached);
    returns whether an error bar was drawn and whether a measured point had
    no value (n/a)."""
    ys = np.array([_num(v) for v in s[col]]) if col in s else np.full(len(s), np.nan)
    ok = np.isfinite(ys)
    ax.plot(np.asarray(xs)[ok], ys[ok], linestyle=style, color=COLORS.get(system, "gray"), linewidth=1.3,
            zorder=1, label=label)
    err = error_bars(ax, xs, ys, *interval(s, col), color=COLORS.get(system, "gray")) if marks else False
    missing = False
    for x, y, sat, ok_, verdict, missed, share in zip(
            xs, ys, s["client_saturated"].fillna(False), ok, s.get("consistency", pd.Series([""] * len(s))),
            s["rate_not_reached"] if "rate_not_reached" in s else [False] * len(s),
            s["achieved_share"] if "achieved_share" in s else [np.nan] * len(s)):
        if not ok_:
            if marks:
                missing = True
                mark_missing(ax, x)
            continue
        kw = marker_kw(system, bool(sat), size=5 if marks else 3)
        ax.plot([x], [y], linestyle="none", zorder=2, **kw)
        if marks and verdict == "unchecked":
            mark_unchecked(ax, x, y)
        if short and _true(missed):
            mark_not_reached(ax, x, y, _num(share))
    return err, missing


def plot(df: pd.DataFrame, experiment: str, title: str, out_dir: Path) -> list[Path]:
    d = done(df[df["experiment"] == experiment])
    d = d[d["rate"].notna()]
    if d.empty:
        return []
    systems = systems_in(d)
    split = any(d[c].notna().any() for c in ("server_cores_user", "server_cores_kernel") if c in d)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    any_sat = any_nc = any_err = any_short = False
    xlabel = ""
    for s in systems:
        rows = d[d["system"] == s].copy()
        xs, xlabel = _x(rows)
        rows = rows.assign(_x=xs.to_numpy()).sort_values("_x")
        xs = rows["_x"].to_numpy(float)
        any_sat |= bool(rows["client_saturated"].fillna(False).astype(bool).any())
        any_nc |= bool((rows.get("consistency", pd.Series(dtype=str)) == "unchecked").any())
        if "rate_not_reached" in rows:
            any_short |= any(_true(v) for v in rows["rate_not_reached"])
        err, _ = _line(axes[0], rows, xs, "server_cores", s, label=s, short=True)
        any_err |= err
        if split:
            _line(axes[1], rows, xs, "server_cores_kernel", s, "-", marks=False)
            _line(axes[1], rows, xs, "server_cores_user", s, "--", marks=False)
        else:
            _line(axes[1], rows, xs, "server_cores_packet", s, "-", marks=False)
            _line(axes[1], rows, xs, "server_cores_process", s, "--", marks=False)
        err, _ = _line(axes[2], rows, xs, "server_cpu_us_per_op", s)
        any_err |= err
    unit = "txn or requests/s"
    for ax in axes:
        ax.set_xlabel(f"{xlabel} ({unit})")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: kfmt(v) if v > 0 else "0"))
    axes[0].set_ylabel("server cores used")
    axes[0].set_title("cores used (CPU seconds per second, all servers)", fontsize=9)
    if split:
        axes[1].set_ylabel("server cores used: kernel (solid), user (dashed)")
        axes[1].set_title("kernel and user time apart", fontsize=9)
    else:
        axes[1].set_ylabel("cores: packet work (solid), processes (dashed)")
        axes[1].set_title("kernel packet work (XDP / NAPI) and server processes\n(user and system not apart in "
                          "these servers' stats lines)", fontsize=8)
    axes[2].set_ylabel("server CPU per request (us)")
    axes[2].set_title("server CPU per request", fontsize=9)
    legend_and_title(fig, systems, title, any_sat, any_nc,
                     extra=[Line2D([], [], color="gray", linestyle="-", label="kernel" if split else "packet work"),
                            Line2D([], [], color="gray", linestyle="--", label="user" if split else "processes")])
    foot = note(any_sat, any_nc, any_err)
    if any_short:
        foot = NOT_REACHED_NOTE + ("\n" + foot if foot else "")
    return save(fig, out_dir, f"cpu-{experiment}", foot)
