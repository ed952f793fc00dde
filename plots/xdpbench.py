"""The figure of `python -m harness xdpbench`: the XDP program's ns per
request (less the null program's) against the records in its cache, one
line per operation, log x; bars: the min and max over rounds. The
baselines' store, when measured, in dashed lines of the same colours."""
from __future__ import annotations

from pathlib import Path

from .common import kfmt, plt, save


def plot(res: dict, out_dir: Path) -> list[Path]:
    by_system: dict[str, list] = {}
    for kc in res["key_counts"]:
        by_system.setdefault(kc.get("system", "xdp"), []).append(kc)
    kcs = by_system.get("xdp") or next(iter(by_system.values()))
    xs = [kc["keys"] for kc in kcs]
    fig, ax = plt.subplots(figsize=(9, 5))
    cmap = plt.get_cmap("tab20")
    markers = "os^vD<>phX*P8dH"
    for system, skcs in by_system.items():
        sxs = [kc["keys"] for kc in skcs]
        for i, op in enumerate(res["ops"]):
            s = [kc["ops"][op]["net_ns"] for kc in skcs]
            ys = [v["median"] for v in s]
            err = [[y - v["min"] for y, v in zip(ys, s)], [v["max"] - y for y, v in zip(ys, s)]]
            ax.errorbar(sxs, ys, yerr=err, color=cmap(i % 20), marker=markers[i % len(markers)], markersize=4,
                        linewidth=1.2, elinewidth=0.8, capsize=2, linestyle="--" if system == "store" else "-",
                        label=op if system == "xdp" or len(by_system) == 1 else f"{op} (store)")
    ax.set_xscale("log")
    ax.set_xticks(xs, [kfmt(x) for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("records in the cache (keys)")
    ax.set_ylabel("ns per request, less the null program's")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    floor = ", ".join(f"{kfmt(kc['keys'])}: {kc['null']['raw_ns']['median']:.0f}" for kc in kcs)
    ax.set_title(("XDP program (BPF_PROG_TEST_RUN) and store (dashed)" if len(by_system) > 1 else
                  "XDP program per request (BPF_PROG_TEST_RUN)") + f", median of {res['rounds']} rounds "
                 f"of {res['calls']} calls", fontsize=9)
    fig.tight_layout()
    return save(fig, out_dir, "xdpbench", f"bars: min and max over rounds; null program (raw ns) {floor}; "
                                          f"one sitting on one machine:\n{res.get('command', '')}")
