"""TATP's transaction parameters, drawn from a seed apart from their
execution: [(type index, args)] (spec 1.0, sections 3 and 4)."""
from __future__ import annotations

import numpy as np

from .. import seeds
from ..contract import LoadSpec, TxnType
from .schema import END_SPAN, QUERY_END_TIMES, START_TIMES, TYPES, nonuniform_a, sub_nbr

NUMBERX_DIGITS = 15


def subscriber_ids(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """size subscribers in 1..n, non-uniform (spec 4.1):
    ((rand(0, A) | rand(1, n)) % n) + 1, A = 2^k - 1 by the table size."""
    return ((rng.integers(0, nonuniform_a(n), size, endpoint=True) | rng.integers(1, n, size, endpoint=True))
            % n) + 1


def _arguments(name: str, s_ids: np.ndarray, rng: np.random.Generator) -> list[list]:
    """The arguments of len(s_ids) transactions named name, column by
    column (generate's list), the first column from s_ids."""
    m = len(s_ids)

    def types():
        return rng.integers(TYPES[0], TYPES[-1], m, endpoint=True).tolist()

    def start_times():
        return np.take(START_TIMES, rng.integers(0, len(START_TIMES), m))

    def numbers():
        return list(map(sub_nbr, s_ids.tolist()))

    if name == "GetSubscriberData":
        return [s_ids.tolist()]
    if name == "GetNewDestination":
        return [s_ids.tolist(), types(), start_times().tolist(),
                rng.integers(1, QUERY_END_TIMES, m, endpoint=True).tolist()]
    if name == "GetAccessData":
        return [s_ids.tolist(), types()]
    if name == "UpdateSubscriberData":
        return [s_ids.tolist(), types(), rng.integers(0, 1, m, endpoint=True).tolist(),
                rng.integers(0, 255, m, endpoint=True).tolist()]
    if name == "UpdateLocation":
        return [numbers(), rng.integers(0, 2**32, m).tolist()]
    if name == "InsertCallForwarding":
        start = start_times()
        digits = (rng.integers(0, 10, (m, NUMBERX_DIGITS), dtype=np.uint8) + ord("0")).tobytes().decode()
        return [numbers(), types(), start.tolist(), (start + rng.integers(1, END_SPAN, m, endpoint=True)).tolist(),
                [digits[i:i + NUMBERX_DIGITS] for i in range(0, len(digits), NUMBERX_DIGITS)]]
    if name == "DeleteCallForwarding":
        return [numbers(), types(), start_times().tolist()]
    raise ValueError(f"no parameters for a TATP transaction named {name!r}")


def generate(n: int, subscribers: int, seed: int, types: tuple[TxnType, ...]) -> list[tuple[int, tuple]]:
    """n transactions of the mix `types` over subscribers 1..subscribers,
    as (index into types, args). Arguments:

      GetSubscriberData     (s_id,)
      GetNewDestination     (s_id, sf_type, start_time, end_time)
      GetAccessData         (s_id, ai_type)
      UpdateSubscriberData  (s_id, sf_type, bit_1, data_a)
      UpdateLocation        (sub_nbr, vlr_location)
      InsertCallForwarding  (sub_nbr, sf_type, start_time, end_time, numberx)
      DeleteCallForwarding  (sub_nbr, sf_type, start_time)

    sub_nbr is the chosen s_id as a 15-digit string; types are 1..4,
    start_time one of 0, 8, 16; GetNewDestination's end_time is 1..24, an
    inserted row's start_time + 1..8 (as the loader's); data_a is 0..255,
    vlr_location 0..2^32 - 1, numberx 15 digits. Drawn type by type: the
    transactions' types, then their subscribers, then each type's other
    arguments."""
    if subscribers < 1:
        raise ValueError("TATP needs at least 1 subscriber")
    rng = seeds.generator(seed, "tatp-params")
    weights = np.array([t.weight for t in types], dtype=np.float64)
    kinds = rng.choice(len(types), size=n, p=weights / weights.sum())
    s_ids = subscriber_ids(rng, subscribers, n)
    out: list = [None] * n
    for kind, t in enumerate(types):
        at = np.flatnonzero(kinds == kind)
        for i, args in zip(at.tolist(), zip(*_arguments(t.name, s_ids[at], rng))):
            out[i] = (kind, args)
    return out


def draw(load: LoadSpec, types: tuple[TxnType, ...]) -> list[tuple[int, tuple]]:
    return generate(load.requests, load.data.scale, load.seed, types)
