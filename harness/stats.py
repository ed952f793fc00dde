"""Statistics over a point's repetitions (scipy.stats).

- `median_ci`: the median of a point's repetitions and a distribution-free
  confidence interval for it from order statistics. With n values sorted,
  [x(k), x(n+1-k)] holds the true median with probability
  1 - 2 P(B <= k-1), B ~ Binomial(n, 1/2), whatever the distribution
  (scipy.stats.binom gives it exactly); the narrowest such interval that
  reaches the confidence asked for is taken. Below 6 values no interval
  reaches 95% (n=5: 93.75% at most): the range [min, max] is given with
  the level it does reach, and a note saying so. One value: no interval
  (never a 0-wide one).
- `ratio_ci`: a ratio of two medians (dint/bypass goodput; B/A in `harness
  compare`) with a percentile bootstrap interval (scipy.stats.bootstrap),
  each side's repetitions resampled on their own, from a fixed seed so the
  same data always gives the same interval. A ratio of medians has no
  exact distribution-free interval; the bootstrap's is approximate (with
  few repetitions a side it is, if anything, narrower than its nominal
  level). A ratio is significant when its interval excludes 1.

The headline metrics (`HEADLINE`) are the columns of points.csv that
points-summary.csv, the report's ratios and `harness compare` speak of."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
SEED = 1  # of the bootstrap's resampling: fixed, so a report and a comparison are reproducible
N_RESAMPLES = 9999


@dataclass(frozen=True)
class Metric:
    column: str  # of points.csv
    name: str
    up: str      # the verdict when B/A is significantly above 1
    down: str    # ... and below 1


HEADLINE = (
    Metric("throughput_per_s", "throughput", "faster", "slower"),
    Metric("goodput_per_s", "goodput", "faster", "slower"),
    Metric("lat_p50_us", "p50 latency", "slower", "faster"),
    Metric("lat_p99_us", "p99 latency", "slower", "faster"),
    Metric("server_cpu_us_per_op", "server CPU per request", "costlier", "cheaper"),
)
HEADLINE_COLUMNS = tuple(m.column for m in HEADLINE)
ONE = "one repetition"
NONE = "no measured repetition"


def _values(values) -> np.ndarray:
    x = np.asarray([float(v) for v in values if v is not None], dtype=float)
    return x[np.isfinite(x)]


def needed(confidence: float = CONFIDENCE) -> int:
    """The fewest values whose range reaches `confidence` (6 for 95%)."""
    return math.ceil(math.log2(2 / (1 - confidence)))


@dataclass(frozen=True)
class Median:
    n: int
    median: float | None
    low: float | None
    high: float | None
    level: float | None  # the interval's exact confidence level
    note: str            # why there is no interval, or why its level is below the one asked for


def median_ci(values, confidence: float = CONFIDENCE) -> Median:
    x = np.sort(_values(values))
    n = len(x)
    if n == 0:
        return Median(0, None, None, None, None, NONE)
    med = float(np.median(x))
    if n == 1:
        return Median(1, med, None, None, None, ONE)
    ks = np.arange(1, n // 2 + 1)
    levels = 1 - 2 * sps.binom.cdf(ks - 1, n, 0.5)
    reach = ks[levels >= confidence]
    k = int(reach[-1]) if len(reach) else 1
    level = float(levels[k - 1])
    note = "" if len(reach) else (f"the range of {n} repetitions, a {level:.1%} interval; "
                                  f"{needed(confidence)} reach {confidence:.0%}")
    return Median(n, med, float(x[k - 1]), float(x[n - k]), level, note)


@dataclass(frozen=True)
class Ratio:
    value: float | None  # median(num) / median(den)
    low: float | None
    high: float | None
    n_num: int
    n_den: int
    note: str            # why there is no interval

    @property
    def significant(self) -> bool | None:
        """Whether the interval excludes 1 (None without an interval)."""
        if self.low is None or self.high is None:
            return None
        return not self.low <= 1 <= self.high

    def text(self, percent: bool = False) -> str:
        """"1.47x [1.39-1.55]"; "~1.02x [0.97-1.08]" (not significant: the
        interval includes 1); "2.67x [? one repetition]" (the interval is
        unknown, and why); "-" without a ratio. As a share with
        percent=True: "85% [80-90%]"."""
        if self.value is None:
            return "-"
        f = (lambda v: f"{v:.0%}") if percent else (lambda v: f"{v:.2f}x")
        if self.low is None:
            return f"{f(self.value)} [? {self.note}]"
        # as many digits as it takes for a significant interval not to read as holding 1 (1.002 is not 1.00)
        d = next((d for d in range(2, 6) if not self.significant or 1 not in (round(self.low, d), round(self.high, d))),
                 6)
        span = (f"[{self.low * 100:.{d - 2}f}-{self.high * 100:.{d - 2}f}%]" if percent else
                f"[{self.low:.{d}f}-{self.high:.{d}f}]")
        return f"{'' if self.significant else '~'}{f(self.value)} {span}"

    def verdict(self, metric: Metric) -> str:
        """metric.up or metric.down when significant, "~" when not, "?"
        without an interval."""
        s = self.significant
        if s is None:
            return "?"
        if not s:
            return "~"
        return metric.up if self.value > 1 else metric.down


def _median_ratio(num, den, axis=-1):
    return np.median(num, axis=axis) / np.median(den, axis=axis)


def ratio_ci(num, den, confidence: float = CONFIDENCE) -> Ratio:
    """median(num) / median(den), with its bootstrap interval."""
    a, b = _values(num), _values(den)
    if not len(a) or not len(b):
        return Ratio(None, None, None, len(a), len(b), NONE)
    mb = float(np.median(b))
    if mb == 0:
        return Ratio(None, None, None, len(a), len(b), "zero denominator")
    value = float(np.median(a)) / mb
    if min(len(a), len(b)) < 2:
        return Ratio(value, None, None, len(a), len(b), ONE)
    if (b <= 0).any():
        return Ratio(value, None, None, len(a), len(b), "a denominator repetition is not positive")
    res = sps.bootstrap((a, b), _median_ratio, vectorized=True, paired=False, method="percentile",
                        confidence_level=confidence, n_resamples=N_RESAMPLES, rng=np.random.default_rng(SEED))
    lo, hi = (float(v) for v in res.confidence_interval)
    return Ratio(value, lo, hi, len(a), len(b), "")
