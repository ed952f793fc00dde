"""The figure of `python -m harness xdpbench`: the XDP program's ns per
request (less the null program's) against the records in its cache, one
line per operation, log x; bars: the min and max over rounds."""
from __future__ import annotations

from pathlib import Path

from .common import kfmt, plt, save


def plot(res: dict, out_dir: Path) -> list[Path]:
    kcs = res["key_counts"]
    xs = [kc["keys"] for kc in kcs]
    fig, ax = plt.subplots(figsize=(9, 5))
    cmap = plt.get_cmap("tab20")
    markers = "os^vD<>phX*P8dH"
    for i, op in enumerate(res["ops"]):
        s = [kc["ops"][op]["net_ns"] for kc in kcs]
        ys = [v["median"] for v in s]
        err = [[y - v["min"] for y, v in zip(ys, s)], [v["max"] - y for y, v in zip(ys, s)]]
        ax.errorbar(xs, ys, yerr=err, color=cmap(i % 20), marker=markers[i % len(markers)], markersize=4,
                    linewidth=1.2, elinewidth=0.8, capsize=2, label=op)
    ax.set_xscale("log")
    ax.set_xticks(xs, [kfmt(x) for x in xs])
    ax.minorticks_off()
    ax.set_xlabel("records in the cache (keys)")
    ax.set_ylabel("ns per request, less the null program's")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    floor = ", ".join(f"{kfmt(kc['keys'])}: {kc['null']['raw_ns']['median']:.0f}" for kc in kcs)
    ax.set_title(f"XDP program per request (BPF_PROG_TEST_RUN), median of {res['rounds']} rounds "
                 f"of {res['calls']} calls", fontsize=9)
    fig.tight_layout()
    return save(fig, out_dir, "xdpbench", f"bars: min and max over rounds; null program (raw ns) {floor}; "
                                          f"one sitting on one machine:\n{res.get('command', '')}")
