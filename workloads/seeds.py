"""The generator a workload draws its inputs from: numpy's (PCG64), seeded
from the client's seed and the name of what is drawn, so that one seed gives
the same inputs in every process and to every system, and two things drawn
from one seed (a workload's parameters and its check's sample, say) are
unrelated. numpy is pinned (pyproject.toml): a Generator's draws for a seed
may change between numpy versions, never between processes of one."""
from __future__ import annotations

import zlib

import numpy as np


def generator(seed: int, name: str) -> np.random.Generator:
    """numpy's Generator for this seed (any whole number) and name."""
    return np.random.default_rng([zlib.crc32(name.encode()), int(seed < 0), abs(seed)])
