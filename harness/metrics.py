"""Latency histograms (HdrHistogram, in nanoseconds) and their summaries;
histograms are merged across clients, never their percentiles averaged."""
from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_NS = 1
HIGHEST_NS = 3600 * 10**9
SIG_FIGS = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_NS, HIGHEST_NS, SIG_FIGS)


def from_pairs(pairs: Iterable[tuple[int, int]]) -> HdrHistogram:
    """A histogram from (latency_ns, count) pairs, as the native loop reports them."""
    h = new_histogram()
    for value, count in pairs:
        h.record_value(max(LOWEST_NS, min(value, HIGHEST_NS)), count)
    return h


def encode(h: HdrHistogram) -> str:
    return h.encode().decode("ascii")


def decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode("ascii"))


def merge(hists: Iterable[HdrHistogram]) -> HdrHistogram:
    out = new_histogram()
    for h in hists:
        out.add(h)
    return out


def mean_ns(h: HdrHistogram) -> float:
    """The mean as HdrHistogram.get_mean_value() gives it (each recorded
    value at the middle of its bucket's range), over the buckets that hold
    a count only: the library's own walks every bucket in Python, tens of
    milliseconds per histogram, and a summary takes several."""
    import numpy as np  # here: a client process (harness/loadgen.py) starts without it
    if not h.get_total_count():
        return 0.0
    counts = np.ctypeslib.as_array(h.counts)[:h.counts_len]
    total = 0
    for i in np.flatnonzero(counts).tolist():
        low = h.get_value_from_index(i)
        total += int(counts[i]) * (low + ((h.get_highest_equivalent_value(low) - low + 1) >> 1))
    return total / h.get_total_count()


def latency_us(h: HdrHistogram) -> dict:
    """mean and percentiles in microseconds (None without samples)."""
    keys = ("p50", "p90", "p99", "p999")
    if h.get_total_count() == 0:
        return {"mean": None, **{k: None for k in keys}, "max": None}
    pct = dict(zip(keys, (50.0, 90.0, 99.0, 99.9)))
    out = {"mean": round(mean_ns(h) / 1000, 3)}
    # the four in one walk of the buckets (each of get_value_at_percentile's is one)
    at = h.get_percentile_to_value_dict(list(pct.values()))
    out.update({k: round(at[p] / 1000, 3) for k, p in pct.items()})
    out["max"] = round(h.get_max_value() / 1000, 3)
    return out
