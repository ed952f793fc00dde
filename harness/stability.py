"""Whether a run's rate held steady over its measured window: the
`stability` section of summary.json, from the series each client records
(harness/loadgen.py, Series: cumulative counts at the end of every slice,
in ns since its window began).

The window is cut into bins of 1 s (a window too short for MIN_BINS of them,
under 4 s: into MIN_BINS bins, none narrower than the clients' 0.25 s
slices), as many as fit, stretched to tile it exactly so that
every completion lands in one; each client's count at a bin's edge is read
off its series by linear interpolation (its samples are a slice apart, or
closer), and the clients' rates are summed bin by bin, each from its own
window's start. Two things make a window unstable (the rule, STABILITY_RULE):

- drift: the rate's least-squares line (scipy.stats.linregress over the
  bins) changes by more than DRIFT_LIMIT of the mean rate from the
  window's start to its end, and its slope is significant (p below
  DRIFT_P): a warm-up not over, a cache still filling, a neighbour that
  came or left. The test keeps a few noisy bins from reading as a trend;
- spread: the bins' coefficient of variation is above SPREAD_LIMIT: the
  rate went up and down (a neighbour that came and went, stalls), with a
  trend or without.

Why 10%: a rate that moves by more than that within one window has no one
rate for the window's mean to stand for, and its error is then as large as
the differences between repetitions the report's intervals resolve; below
it, the window's mean is within about 5% of any part of the window. On a
quiet host a closed loop's 1 s bins vary by a few percent. The half-to-half
change (second half's mean rate over the first's) is given beside them, as
the plainest view of a drift, and is not judged on its own: the line sees
the same drifts and is the more sensitive to a step late in the window.

Too little to judge gives `stable: null` with `why_null`, never a made-up
true: a client without a series, fewer than MIN_BINS bins, or fewer than
MIN_PER_BIN completions per bin (the count's own granularity then moves
the rate by a percent or more)."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

BIN_S = 1.0          # bins of this width (stretched to tile the window) ...
MIN_WINDOW_S = 4.0   # ... in a window at least this long (MIN_BINS of them); a shorter one: the clients' slices
DRIFT_LIMIT = 0.10   # the line's change over the window, relative to the mean rate
DRIFT_P = 0.05       # ... when its slope is significant at this level
SPREAD_LIMIT = 0.10  # the bins' coefficient of variation
MIN_BINS = 4         # fewer bins: no verdict
MIN_PER_BIN = 100    # fewer completions per bin on average: no verdict
STABILITY_RULE = (f"the window's rate (requests answered OK per second, summed over the clients) in bins of "
                  f"{BIN_S:g} s ({MIN_BINS} bins, at least a client's slice wide, in a window under {MIN_WINDOW_S:g} s): unstable when its least-squares line "
                  f"changes by more than {DRIFT_LIMIT:.0%} of the mean rate over the window with a slope "
                  f"significant at p < {DRIFT_P:g} (drift), or when the bins' coefficient of variation is above "
                  f"{SPREAD_LIMIT:.0%} (spread); not judged with fewer than {MIN_BINS} bins or {MIN_PER_BIN} "
                  "completions per bin")


def _series_of(r: dict) -> tuple[np.ndarray, np.ndarray] | str:
    """A client result's (t in s since its window began, cumulative ok), or
    why it has none usable."""
    s = r.get("series")
    if not s or not s.get("t_ns"):
        return f"client {r.get('client_id', '?')} recorded no series (a client older than the series)"
    t, ok = np.asarray(s["t_ns"], dtype=float) / 1e9, np.asarray(s["ok"], dtype=float)
    if len(t) != len(ok) or np.any(np.diff(t) < 0) or np.any(np.diff(ok) < 0):
        return f"client {r.get('client_id', '?')}'s series is malformed (times or counts going back, or lengths differ)"
    if t[0] > 0:  # nothing started in the window is counted before it begins
        t, ok = np.concatenate(([0.0], t)), np.concatenate(([0.0], ok))
    return t, ok


def bins(results: list[dict]) -> dict:
    """The clients' summed rate per bin: {"bin_s", "binned_by", "span_s",
    "rates_per_s"}, or {"why_null"} when a client has no usable series.
    The span is the shortest of the clients' recorded windows."""
    series = []
    for r in results:
        s = _series_of(r)
        if isinstance(s, str):
            return {"why_null": s}
        series.append(s)
    if not series:
        return {"why_null": "no client results"}
    span = min(float(t[-1]) for t, _ in series)
    slice_s = min(float(r["series"].get("slice_s") or 0.25) for r in results)
    # MIN_BINS bins at least, as wide as the window allows up to BIN_S, and
    # never narrower than the clients' slices
    width = BIN_S if span >= MIN_WINDOW_S else max(slice_s, span / MIN_BINS)
    n = int(math.floor(span / width + 1e-9))
    if n < 1:
        return {"why_null": f"a window of {span:.3f} s holds no bin of {width:g} s", "span_s": round(span, 4)}
    edges = np.linspace(0.0, span, n + 1)
    counts = sum(np.diff(np.interp(edges, t, ok)) for t, ok in series)
    bin_s = span / n
    return {"bin_s": round(bin_s, 6),
            "binned_by": (f"{BIN_S:g} s bins" if width == BIN_S else
                          f"{MIN_BINS} bins of a window under {MIN_WINDOW_S:g} s" if width > slice_s else
                          f"the clients' {slice_s:g} s slices (a window under {MIN_WINDOW_S:g} s)"),
            "span_s": round(span, 4), "rates_per_s": [round(float(c) / bin_s, 1) for c in counts]}


def judge(rates: list[float] | np.ndarray, bin_s: float) -> dict:
    """The verdict on a series of bin rates (per s, bins of bin_s): the
    drift and spread figures, `stable` true or false (with `reason`), or
    null with `why_null` when there is too little to judge."""
    r = np.asarray(rates, dtype=float)
    n = len(r)
    mean = float(r.mean()) if n else 0.0
    out: dict = {"stable": None, "trend_change": None, "trend_p": None, "halves_change": None, "cv": None}
    if n < MIN_BINS:
        out["why_null"] = f"{n} bin(s) of {bin_s:.3g} s, fewer than the {MIN_BINS} a rate's drift is judged from"
        return out
    if mean * bin_s < MIN_PER_BIN:
        out["why_null"] = (f"{mean * bin_s:.0f} completions per bin of {bin_s:.3g} s on average, fewer than the "
                           f"{MIN_PER_BIN} a rate is judged from")
        return out
    x = (np.arange(n) + 0.5) * bin_s
    if np.ptp(r) == 0:  # a flat line (linregress has no p-value for it)
        change, p = 0.0, 1.0
    else:
        fit = sps.linregress(x, r)
        change, p = float(fit.slope) * n * bin_s / mean, float(fit.pvalue)
    half = n // 2
    first, second = r[:half].mean(), r[n - half:].mean()  # an odd count leaves the middle bin out
    cv = float(r.std(ddof=1) / mean)
    out.update(trend_change=round(change, 4), trend_p=float(f"{p:.3g}"),
               halves_change=round(float(second / first - 1), 4) if first else None, cv=round(cv, 4))
    reasons = []
    if abs(change) > DRIFT_LIMIT and p < DRIFT_P:
        reasons.append(f"drift: the rate {'rose' if change > 0 else 'fell'} {abs(change):.0%} over the window "
                       f"(linear trend, p={p:.2g}; limit {DRIFT_LIMIT:.0%})")
    if cv > SPREAD_LIMIT:
        reasons.append(f"spread: the {bin_s:.3g} s rates varied by {cv:.0%} (coefficient of variation; limit "
                       f"{SPREAD_LIMIT:.0%})")
    out["stable"] = not reasons
    if reasons:
        out["reason"] = "; ".join(reasons)
    return out


def section(results: list[dict]) -> dict:
    """summary.json's `stability`: the binned rates, the figures and the
    verdict, and the rule."""
    b = bins(results)
    if "why_null" in b:
        return {"stable": None, "why_null": b["why_null"], "rule": STABILITY_RULE}
    v = judge(b["rates_per_s"], b["bin_s"])
    return {"stable": v.pop("stable"), **{k: v.pop(k) for k in ("reason", "why_null") if k in v},
            "bin_s": b["bin_s"], "binned_by": b["binned_by"], "rates_per_s": b["rates_per_s"], **v,
            "rule": STABILITY_RULE}


def note(st: dict | None) -> str:
    """A short mark for one-line reports: '' unless the window was judged unstable."""
    if not st or st.get("stable") is not False:
        return ""
    return f"  UNSTABLE ({st.get('reason', 'no reason recorded')})"
