"""Latency histograms: the native loop's bucketing, HdrHistogram merging."""
from __future__ import annotations

import random

import pytest

from harness import metrics
from harness._netloop import hist_roundtrip


def test_native_bucketing_is_exact_below_2us_and_within_1_in_2048_above():
    for v in range(0, 2048):
        assert hist_roundtrip(v) == v
    rng = random.Random(3)
    for v in [2048, 4095, 4096, 10**6, 10**9, 2**40 - 1] + [rng.randrange(2048, 2**40) for _ in range(5000)]:
        assert abs(hist_roundtrip(v) - v) / v <= 1 / 2048


def test_merge_equals_histogram_of_all_values():
    rng = random.Random(7)
    a = [rng.randrange(1_000, 50_000) for _ in range(5000)]
    b = [rng.randrange(20_000, 900_000) for _ in range(3000)]
    ha, hb, hall = metrics.new_histogram(), metrics.new_histogram(), metrics.new_histogram()
    for v in a:
        ha.record_value(v)
        hall.record_value(v)
    for v in b:
        hb.record_value(v)
        hall.record_value(v)
    merged = metrics.merge([ha, hb])
    assert merged.get_total_count() == 8000
    for p in (50, 90, 99, 99.9):
        assert merged.get_value_at_percentile(p) == hall.get_value_at_percentile(p)
    # and merging is not averaging percentiles
    avg = (ha.get_value_at_percentile(50) + hb.get_value_at_percentile(50)) / 2
    assert merged.get_value_at_percentile(50) != pytest.approx(avg, rel=0.01)


def test_encode_decode_roundtrip():
    h = metrics.from_pairs([(1500, 10), (25_000, 3), (10**7, 1)])
    back = metrics.decode(metrics.encode(h))
    assert back.get_total_count() == 14
    assert metrics.latency_us(back) == metrics.latency_us(h)


def test_latency_summary_in_microseconds():
    h = metrics.from_pairs([(10_000, 50), (20_000, 49), (1_000_000, 1)])
    s = metrics.latency_us(h)
    assert s["p50"] == pytest.approx(10.0, rel=1e-3)
    assert s["p99"] == pytest.approx(20.0, rel=1e-3)
    assert s["p999"] == pytest.approx(1000.0, rel=1e-3)
    assert metrics.latency_us(metrics.new_histogram())["p50"] is None


@pytest.mark.parametrize("seed", range(5))
def test_the_mean_is_the_library_s_own(seed):
    """metrics.mean_ns walks the recorded buckets only, to the same figure
    HdrHistogram.get_mean_value() gives (each value at its bucket's middle)."""
    rng = random.Random(seed)
    h = metrics.new_histogram()
    for _ in range(rng.randint(1, 3000)):
        h.record_value(int(rng.lognormvariate(11, 2)) + 1, rng.randint(1, 50))
    assert metrics.mean_ns(h) == pytest.approx(h.get_mean_value(), rel=1e-12)
    assert metrics.mean_ns(metrics.new_histogram()) == 0.0
