"""Key distributions (`--key-dist`): how a workload over `keys` keys (kv,
log, lock) draws each key from its client's seeded generator. The draws
depend on the spec, the key count and the seed only, never on the system,
so every system is given the same keys.

- `uniform` (the default): every key alike.
- `nurand:A`: TATP's non-uniform random NURand(A, 0, keys - 1) =
  (random(0, A) | random(0, keys - 1)) mod keys, with no constant C, as
  DINT's KV client draws its subscriber ids (A = 1048575 there; `nurand`
  alone means that A). The keys whose bits A covers are favoured. DINT
  draws a subscriber this way and then one of its 12 records uniformly;
  here the record's key is drawn directly.
- `zipf:THETA`: zipfian over the key ranks with skew 0 <= THETA < 1 (key k
  has rank k + 1, so key 0 is the hottest), drawn as YCSB's generator
  draws it (Gray et al., "Quickly generating billion-record synthetic
  databases", SIGMOD'94): keys 0 and 1 exactly, the rest by the closed
  form. `zipf` alone means YCSB's default skew 0.99. THETA 0 is uniform.

Keys are drawn many at a time (`draw_many`, and `distinct_many` for
transactions' distinct keys) from a numpy Generator the workload seeds
(workloads/seeds.py), so the same seed gives the same keys; for zipf, the
harmonic number zeta(keys, THETA) is summed in fixed chunks with numpy and
added exactly (math.fsum)."""
from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

KINDS = ("uniform", "nurand", "zipf")
DEFAULT = "uniform"
NURAND_A = 1048575      # DINT's KV client: NURand(1048575, 0, subscribers - 1)
ZIPF_THETA = 0.99       # YCSB's default skew
ZETA_CHUNK = 1 << 20    # keys per numpy chunk of the harmonic sum
SPEC_HELP = "uniform, nurand:A (A a whole number from 1, e.g. nurand:1048575) or zipf:THETA (0 <= THETA < 1, e.g. zipf:0.99)"
_SPEC_RE = re.compile(r"^(uniform|nurand|zipf)(?::(.*))?$")


@dataclass(frozen=True)
class KeyDist:
    """A parsed --key-dist: its kind and parameter (NURand's A, zipf's theta)."""
    kind: str = "uniform"
    param: float = 0

    @property
    def spec(self) -> str:
        """The canonical spec: uniform, nurand:1048575, zipf:0.99."""
        if self.kind == "uniform":
            return "uniform"
        return f"{self.kind}:{int(self.param) if self.kind == 'nurand' else repr(float(self.param))}"

    def draw_many(self, n: int, keys: int, rng: np.random.Generator) -> np.ndarray:
        """n keys in [0, keys) drawn from rng (int64)."""
        if keys < 1:
            raise ValueError(f"a key distribution needs at least one key, not {keys}")
        if self.kind == "uniform":
            return rng.integers(0, keys, n)
        if self.kind == "nurand":
            return (rng.integers(0, int(self.param), n, endpoint=True) | rng.integers(0, keys, n)) % keys
        return _zipf(n, keys, float(self.param), rng)

    def distinct_many(self, n: int, width: int, keys: int, rng: np.random.Generator) -> np.ndarray:
        """n rows of width distinct keys (width <= keys), each row in the
        order drawn: each key drawn from the distribution, a key drawn again
        within its row being drawn over (distinct_rows)."""
        if not 0 <= width <= keys:
            raise ValueError(f"cannot draw {width} distinct keys of {keys}")
        return distinct_rows(lambda size: self.draw_many(size, keys, rng), n, width)


def distinct_rows(draw: Callable[[int], np.ndarray], n: int, width: int) -> np.ndarray:
    """An (n, width) int64 array of draws, distinct within each row: column
    by column, a draw already in its row is drawn over (draw(size): size
    draws) until none is. Each row is what drawing its values one at a
    time, each repeat drawn over, would give: by uniform draws, a uniform
    sample without replacement."""
    out = np.empty((n, width), dtype=np.int64)
    for j in range(width):
        col = draw(n)
        again = np.flatnonzero((out[:, :j] == col[:, None]).any(axis=1))
        while again.size:
            col[again] = draw(again.size)
            again = again[(out[again, :j] == col[again, None]).any(axis=1)]
        out[:, j] = col
    return out


def parse(spec: str) -> KeyDist:
    """A --key-dist spec, or ValueError with one line naming what is wrong."""
    m = _SPEC_RE.match(spec.strip()) if isinstance(spec, str) else None
    if not m:
        raise ValueError(f"--key-dist {spec!r}: must be {SPEC_HELP}")
    kind, arg = m.group(1), m.group(2)
    if kind == "uniform":
        if arg is not None:
            raise ValueError(f"--key-dist {spec!r}: uniform takes no parameter")
        return KeyDist()
    if kind == "nurand":
        if arg is None:
            return KeyDist("nurand", NURAND_A)
        if not re.fullmatch(r"[0-9]+", arg) or not 1 <= int(arg) <= 2**62:
            raise ValueError(f"--key-dist {spec!r}: NURand's A must be a whole number from 1 to 2^62, "
                             "e.g. nurand:1048575")
        return KeyDist("nurand", int(arg))
    if arg is None:
        return KeyDist("zipf", ZIPF_THETA)
    try:
        theta = float(arg)
    except ValueError:
        theta = math.nan
    if not 0 <= theta < 1:
        raise ValueError(f"--key-dist {spec!r}: zipf's THETA must be a number from 0 up to (not including) 1, "
                         "e.g. zipf:0.99")
    return KeyDist("zipf", theta)


def canonical(spec: str) -> str:
    """The spec as recorded: parse(spec).spec."""
    return parse(spec).spec


@functools.lru_cache(maxsize=8)
def zeta(n: int, theta: float) -> float:
    """sum(1 / i**theta for i in 1..n), chunk by chunk in numpy, the chunks'
    sums added exactly (the same value wherever it is computed)."""
    parts = []
    for lo in range(1, n + 1, ZETA_CHUNK):
        i = np.arange(lo, min(n, lo + ZETA_CHUNK - 1) + 1, dtype=np.float64)
        parts.append(float(np.sum(i ** -theta)))
    return math.fsum(parts)


def _zipf(n: int, keys: int, theta: float, rng: np.random.Generator) -> np.ndarray:
    """n draws of YCSB's ZipfianGenerator over ranks 0..keys-1 (Gray et al.)."""
    out = np.zeros(n, dtype=np.int64)
    if keys == 1:
        return out
    zetan = zeta(keys, theta)
    zeta2 = zeta(2, theta)
    alpha = 1.0 / (1.0 - theta)
    # two keys: u * zetan < zeta2 always, so the closed form is never reached
    eta = (1.0 - (2.0 / keys) ** (1.0 - theta)) / (1.0 - zeta2 / zetan) if keys > 2 else 0.0
    u = rng.random(n)
    uz = u * zetan
    out[uz >= 1.0] = 1
    far = uz >= 1.0 + 0.5 ** theta
    out[far] = np.minimum(keys - 1, (keys * (eta * u[far] - eta + 1.0) ** alpha).astype(np.int64))
    return out
