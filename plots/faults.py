"""Fault injection: goodput and p99 latency against the injected loss rate
(reply loss plus request loss, in percent: points.csv's loss_percent), one
line per system, one column of panels per variant. Every point carries its
consistency verdict beside it (ok, violations, partly unchecked,
unchecked), in red unless ok; client-saturated points are hollow, points
whose consistency was not checked crossed out; error bars where a point has
repetitions. A point at 0% loss with other faults (duplicates, reordering)
is still drawn at 0."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import (COLORS, done, error_bars, interval, legend_and_title, mark_unchecked, marker_kw, note,
                     plain_log_ticks, save, systems_in, variant_grid)

VERDICT_LABELS = {"ok": "ok", "violations": "VIOLATIONS", "partly unchecked": "partly unchecked",
                  "unchecked": "unchecked", "": "no check"}
VERDICT_NOTE = ("label beside each point: its consistency verdict (ok; VIOLATIONS; partly unchecked: some checks "
                "drew no verdict; no check: the workload has none)")


def _unit(sub: pd.DataFrame) -> str:
    return "txn/s" if sub["transactional"].fillna(False).astype(bool).any() else "requests/s"


def plot(df: pd.DataFrame, experiment: str, title: str, out_dir: Path) -> list[Path]:
    d = done(df[df["experiment"] == experiment])
    d = d[d["goodput_per_s"].notna() & d["loss_percent"].notna()]
    if d.empty:
        return []
    rows = (("goodput_per_s", "goodput"), ("lat_p99_us", "p99 latency (us, log)"))
    fig, panels = variant_grid(d, rows, width=4.8, extra=1.8)
    any_sat = any_unchecked = any_err = False
    for ax, sub, col, what, i, v in panels:
        for k, system in enumerate(systems_in(sub)):
            s = sub[sub["system"] == system].sort_values("loss_percent")
            x = s["loss_percent"].astype(float)
            scale = 1e3 if col == "goodput_per_s" else 1
            y = s[col].astype(float) / scale
            ax.plot(x, y, color=COLORS[system], linewidth=1.3, zorder=1)
            any_err |= error_bars(ax, x, y, *interval(s, col, scale), color=COLORS[system])
            for xi, yi, sat, verdict in zip(x, y, s["client_saturated"], s["consistency"].fillna("")):
                any_sat |= bool(sat)
                ax.plot([xi], [yi], linestyle="none", zorder=2, **marker_kw(system, bool(sat)))
                if verdict == "unchecked":
                    any_unchecked = True
                    mark_unchecked(ax, xi, yi)
                label = VERDICT_LABELS.get(verdict, verdict)
                # staggered by system: points of several systems often coincide
                ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(6, 4 - 8 * k), fontsize=6,
                            color=COLORS[system] if verdict in ("ok", "") else "#d00000",
                            fontweight="normal" if verdict in ("ok", "") else "bold")
        if col == "lat_p99_us":
            ax.set_yscale("log")
            plain_log_ticks(ax)
            ax.set_xlabel("injected loss (% of datagrams: reply + request loss)")
        else:
            ax.set_ylim(bottom=0)
            ax.set_title(v or "", fontsize=10)
        ax.set_ylabel(f"{what} (k {_unit(sub)})" if col == "goodput_per_s" else what)
        ax.grid(alpha=0.3, which="both")
    legend_and_title(fig, systems_in(d), title, any_sat, any_unchecked)
    foot = "\n".join(n for n in (VERDICT_NOTE, note(any_sat, any_unchecked, any_err)) if n)
    return save(fig, out_dir, f"faults-{experiment}", foot)
