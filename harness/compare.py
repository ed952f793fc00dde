"""`python -m harness compare RUN_A RUN_B`: for every point both results
directories have, the change of each headline metric from A to B (the
ratio B/A of the medians over their repetitions) with its 95% bootstrap
interval and a verdict: faster or slower (cheaper or costlier for server
CPU) when the interval excludes 1, "~" when it does not (no significant
change), "?" without an interval (one repetition on a side). Points only
one side has are listed as such. Like Go's benchstat.

A results directory is a reproduce run's (results/<run-id>), a directory
of `harness run` outputs (a sweep: one point per subdirectory, named after
it), or one `harness run` output (one point; two of those are compared
with each other whatever their names). The table is printed and written as
CSV: into RUN_B as compare-<RUN_A's name>.csv, or to --out."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import HarnessError, results, stats

COLUMNS = ["point", "metric", "a_n", "a_median", "b_n", "b_median", "ratio", "ci_low", "ci_high", "verdict", "note"]


def load(path: Path, side: str) -> pd.DataFrame:
    """A results directory's table (one row per repetition), or one line saying why there is none."""
    path = Path(path)
    if not path.exists():
        raise HarnessError(f"{side} {path}: no such directory")
    if not path.is_dir():
        raise HarnessError(f"{side} {path}: not a directory")
    if (path / results.INDEX).exists() or results.discover(path):
        df = results.table(path)
    elif (path / results.TABLE).exists():
        df = results.load_table(path)
    else:
        raise HarnessError(f"{side} {path}: no results in it (no index.json, points.csv or <point>/summary.json): "
                           "give a directory of `harness reproduce` or of `harness run`")
    if not (df["status"] == "done").any():
        raise HarnessError(f"{side} {path}: no measured point in it")
    return df


def compare(run_a: Path, run_b: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The table (COLUMNS, one row per common point and headline metric
    either side has), and the points only A has and only B has."""
    a, b = load(run_a, "RUN_A"), load(run_b, "RUN_B")
    if results.is_point_dir(run_a) and results.is_point_dir(run_b):
        label = f"{Path(run_a).resolve().name} vs {Path(run_b).resolve().name}"
        a, b = a.assign(point=label), b.assign(point=label)
    pa, pb = list(dict.fromkeys(a["point"])), list(dict.fromkeys(b["point"]))
    only_a, only_b = [p for p in pa if p not in set(pb)], [p for p in pb if p not in set(pa)]
    sa, sb = results.summary_table(a), results.summary_table(b)
    both = sa.merge(sb, on=["point", "metric"], how="outer", suffixes=("_a", "_b"))
    order = {m.column: i for i, m in enumerate(stats.HEADLINE)}
    rows = []
    for point in (p for p in pa if p in set(pb)):
        mine = both[both["point"] == point]
        for r in sorted(mine.itertuples(), key=lambda r: order[r.metric]):
            metric = next(m for m in stats.HEADLINE if m.column == r.metric)
            xa, xb = results.samples(a, point, r.metric), results.samples(b, point, r.metric)
            if not xa and not xb:
                continue
            ratio = stats.ratio_ci(xb, xa)
            rows.append({"point": point, "metric": r.metric, "a_n": len(xa), "a_median": r.median_a,
                         "b_n": len(xb), "b_median": r.median_b, "ratio": ratio.value, "ci_low": ratio.low,
                         "ci_high": ratio.high, "verdict": ratio.verdict(metric) if ratio.value is not None else "?",
                         "note": ratio.note if ratio.low is None else ""})
    return pd.DataFrame(rows, columns=COLUMNS), only_a, only_b


def _median(v, n) -> str:
    return "-" if pd.isna(v) else f"{results.fmt(v)} (n={n})"


def render(table: pd.DataFrame, only_a: list[str], only_b: list[str]) -> str:
    lines = []
    if len(table):
        shown = pd.DataFrame({
            "point": table["point"], "metric": table["metric"],
            "A": [_median(v, n) for v, n in zip(table["a_median"], table["a_n"])],
            "B": [_median(v, n) for v, n in zip(table["b_median"], table["b_n"])],
            "B/A [95% interval]": [stats.Ratio(None if pd.isna(v) else v, None if pd.isna(lo) else lo,
                                               None if pd.isna(hi) else hi, 0, 0, note).text()
                                   for v, lo, hi, note in zip(table["ratio"], table["ci_low"], table["ci_high"],
                                                              table["note"])],
            "verdict": table["verdict"]})
        # names to the left, the figures to the right
        left = {c: (lambda w: lambda v: str(v).ljust(w))(shown[c].str.len().max()) for c in ("point", "metric")}
        lines += [x.rstrip() for x in shown.to_string(index=False, formatters=left, justify="left").splitlines()]
    else:
        lines.append("no point in common")
    for side, names in (("A", only_a), ("B", only_b)):
        if names:
            lines.append(f"only in {side} ({len(names)}): " + ", ".join(names))
    return "\n".join(lines)


def write(table: pd.DataFrame, only_a: list[str], only_b: list[str], path: Path) -> Path:
    """The table as CSV, with a row per point only one side has (verdict "only in A" or "only in B")."""
    extra = [{"point": p, "verdict": f"only in {side}"} for side, names in (("A", only_a), ("B", only_b))
             for p in names]
    pd.concat([table, pd.DataFrame(extra, columns=COLUMNS)], ignore_index=True).to_csv(path, index=False)
    return Path(path)


def main(run_a: str, run_b: str, out: str | None = None, log=print) -> Path:
    table, only_a, only_b = compare(Path(run_a), Path(run_b))
    log(f"A: {run_a}\nB: {run_b}")
    log(render(table, only_a, only_b))
    path = Path(out) if out else Path(run_b) / f"compare-{Path(run_a).resolve().name}.csv"
    write(table, only_a, only_b, path)
    log(f"table: {path}")
    return path
