"""What every figure shares: system order and colours, markers for
client-saturated points, for points whose consistency was not checked and
for points with an unstable window (curves), error bars for the interval of a point's median over its repetitions, the
experiment titles of a run, saving as PNG+PDF."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402,F401
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

SYSTEM_ORDER = ["dint", "kernel", "bypass"]
COLORS = {"dint": "#1b9e77", "kernel": "#d95f02", "bypass": "#7570b3"}
MARKERS = {"dint": "o", "kernel": "s", "bypass": "^"}
SATURATED_NOTE = "hollow marker / hatched bar: the client was saturated (>= 90% CPU), so the system may do more"
UNCHECKED_NOTE = ("red x: consistency not checked (measured, but no verdict could be drawn from the servers' "
                  "dumps; see REPORT.md)")
UNCHECKED_GID = "consistency-unchecked"  # the artists marking such points
UNSTABLE_NOTE = ("† beside a point: the rate of (one of) its windows was not steady (drift or spread over "
                 "10%; see REPORT.md and summary.json's stability)")
UNSTABLE_GID = "unstable-window"  # the artists marking such points
INTERVAL_NOTE = ("error bars: the interval of the median over a point's repetitions (points-summary.csv: 95%, or "
                 "their range below 6 repetitions); none where a point ran once")
INTERVAL_GID = "median-interval"  # the error bars


def systems_in(df: pd.DataFrame) -> list[str]:
    present = set(df["system"].dropna())
    return [s for s in SYSTEM_ORDER if s in present]


def done(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "done"]


def variant_grid(d: pd.DataFrame, rows: tuple, width: float = 4.6, extra: float = 1.6):
    """A figure of one row of panels per (column, label) of rows and one
    column per variant of d; returns the figure and, for each panel, (ax,
    d's rows of that variant, column, label, row index, variant)."""
    variants = list(dict.fromkeys(d["variant"].fillna("")))
    fig, axes = plt.subplots(len(rows), len(variants), figsize=(width * len(variants) + extra, 6.4), squeeze=False,
                             sharex="col")
    return fig, [(axes[i][j], d[d["variant"].fillna("") == v], col, what, i, v)
                 for j, v in enumerate(variants) for i, (col, what) in enumerate(rows)]


def titles(run_dir: Path) -> dict[str, str]:
    """Experiment name -> title, from the run's resolved experiment file."""
    path = Path(run_dir) / "experiments.yml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return {e.get("name"): e.get("title", e.get("name")) for e in (data.get("file") or {}).get("experiments", [])}


def kfmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.0f}k" if v >= 1e4 else f"{v / 1e3:.1f}k"
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def marker_kw(system: str, saturated: bool, size: float = 6) -> dict:
    c = COLORS.get(system, "gray")
    return {"marker": MARKERS.get(system, "o"), "markersize": size, "markeredgecolor": c,
            "markerfacecolor": "white" if saturated else c, "color": c}


def unchecked(rows: pd.DataFrame) -> bool:
    """Whether the (first) row's consistency drew no verdict at all."""
    return bool(len(rows)) and "consistency" in rows and rows["consistency"].iloc[0] == "unchecked"


def mark_unchecked(ax, x, y) -> None:
    """A red x over a point (or a bar's top) whose consistency was not checked."""
    ax.plot([x], [y], linestyle="none", marker="x", markersize=9, markeredgewidth=1.8, color="#d00000", zorder=4,
            gid=UNCHECKED_GID)


def is_unstable(v) -> bool:
    """Whether a results.per_point row's `unstable` count (NaN or absent
    in a frame without it) says a repetition's window was unstable."""
    try:
        return int(v or 0) > 0
    except (TypeError, ValueError):
        return False


def mark_unstable(ax, x, y) -> None:
    """A dagger beside a point whose window's rate was not steady (as REPORT.md marks it)."""
    ax.annotate("†", (x, y), textcoords="offset points", xytext=(-7, 2), fontsize=9, color="#d00000",
                fontweight="bold", gid=UNSTABLE_GID)


MISSING_GID = "missing-figure"


def mark_missing(ax, x) -> None:
    """"n/a" where a measured point has no figure (e.g. no server cost:
    its summary's server_cost.reason says why), so it does not read as 0."""
    ax.annotate("n/a", (x, 0), ha="center", va="bottom", fontsize=6, color="#d00000", gid=MISSING_GID)


def unchecked_legend_handle():
    return Line2D([], [], linestyle="none", marker="x", markersize=7, markeredgewidth=1.8, color="#d00000",
                  label="consistency not checked")


def note(saturated: bool, not_checked: bool = False, intervals: bool = False, unstable: bool = False) -> str | None:
    """The figure's footnote for the marks it carries."""
    parts = [n for n, on in ((SATURATED_NOTE, saturated), (UNCHECKED_NOTE, not_checked), (UNSTABLE_NOTE, unstable),
                             (INTERVAL_NOTE, intervals)) if on]
    return "\n".join(parts) or None


def interval(rows: pd.DataFrame, col: str, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Each row's interval of its median of col (results.per_point's
    <col>_low and <col>_high), divided by scale; nan where it has none."""
    if f"{col}_low" not in rows:
        nan = np.full(len(rows), np.nan)
        return nan, nan
    return tuple(pd.to_numeric(rows[f"{col}_{end}"], errors="coerce").to_numpy(float) / scale
                 for end in ("low", "high"))


def error_bars(ax, xs, ys, lows, highs, color: str = "black", axis: str = "y") -> bool:
    """Error bars from each point (x, y) to its interval [low, high] on
    axis y (or x), where it has one; returns whether any was drawn."""
    keep = [(x, y, lo, hi) for x, y, lo, hi in zip(xs, ys, lows, highs)
            if np.isfinite([x, y, lo, hi]).all()]
    if not keep:
        return False
    x, y, lo, hi = (np.array(v, dtype=float) for v in zip(*keep))
    mid = y if axis == "y" else x
    err = [np.maximum(mid - lo, 0), np.maximum(hi - mid, 0)]
    bars = ax.errorbar(x, y, **{f"{axis}err": err}, fmt="none", ecolor=color, elinewidth=0.9, capsize=2.5, zorder=3)
    for c in bars.lines[2]:
        c.set_gid(INTERVAL_GID)
    return True


def saturation_legend_handles() -> list:
    return [Line2D([], [], linestyle="none", marker="o", markerfacecolor="gray", markeredgecolor="gray",
                   label="client not saturated"),
            Line2D([], [], linestyle="none", marker="o", markerfacecolor="white", markeredgecolor="gray",
                   label="client saturated")]


def legend_and_title(fig, systems, title: str, saturated: bool, not_checked: bool, extra=()) -> None:
    """A figure's legend at its right (a line per system, then `extra`
    handles, then the marks it carries) and its title, laid out."""
    handles = [Line2D([], [], color=COLORS[s], marker=marker_kw(s, False)["marker"], label=s) for s in systems]
    handles += list(extra)
    if saturated:
        handles += saturation_legend_handles()
    if not_checked:
        handles.append(unchecked_legend_handle())
    fig.legend(handles=handles, fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()


def save(fig, out_dir: Path, stem: str, note: str | None = None) -> list[Path]:
    if note:
        # below the axes (the saved area grows to hold it), so that a note of
        # several lines does not run into the x label
        fig.text(0.005, 0.0, note, fontsize=7, color="#444444", ha="left", va="top")
    paths = [Path(out_dir) / f"{stem}.png", Path(out_dir) / f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def plain_log_ticks(ax) -> None:
    """Log-scale y ticks as plain numbers (200, 1000, 5000), not 2x10^2."""
    from matplotlib.ticker import FuncFormatter, LogLocator
    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_locator(LogLocator(subs=(2, 5)))
    ax.yaxis.set_minor_formatter(fmt)
    ax.tick_params(axis="y", which="minor", labelsize=7)
