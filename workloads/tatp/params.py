"""TATP's transaction parameters, drawn from a seed apart from their
execution: [(type index, args)] (spec 1.0, sections 3 and 4)."""
from __future__ import annotations

import random

from ..contract import LoadSpec, TxnType
from .schema import END_SPAN, QUERY_END_TIMES, START_TIMES, nonuniform_a, sub_nbr


def subscriber_chooser(rng: random.Random, n: int):
    """s_id() -> a subscriber in 1..n, non-uniform (spec 4.1):
    ((rand(0, A) | rand(1, n)) % n) + 1, A = 2^k - 1 by the table size."""
    k = nonuniform_a(n).bit_length()
    bits, randrange = rng.getrandbits, rng.randrange
    return lambda: ((bits(k) | randrange(1, n + 1)) % n) + 1


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
    inserted row's start_time + 1..8 (as the loader's)."""
    if subscribers < 1:
        raise ValueError("TATP needs at least 1 subscriber")
    rng = random.Random(f"tatp-params-{seed}")
    s_id = subscriber_chooser(rng, subscribers)
    randrange, bits = rng.randrange, rng.getrandbits
    kinds = rng.choices(range(len(types)), weights=[t.weight for t in types], k=n)
    out = []
    for kind in kinds:
        name = types[kind].name
        if name == "GetSubscriberData":
            args = (s_id(),)
        elif name == "GetNewDestination":
            args = (s_id(), 1 + bits(2), START_TIMES[randrange(3)], 1 + randrange(QUERY_END_TIMES))
        elif name == "GetAccessData":
            args = (s_id(), 1 + bits(2))
        elif name == "UpdateSubscriberData":
            args = (s_id(), 1 + bits(2), bits(1), bits(8))
        elif name == "UpdateLocation":
            args = (sub_nbr(s_id()), bits(32))
        elif name == "InsertCallForwarding":
            start = START_TIMES[randrange(3)]
            args = (sub_nbr(s_id()), 1 + bits(2), start, start + 1 + randrange(END_SPAN),
                    "".join(rng.choices("0123456789", k=15)))
        elif name == "DeleteCallForwarding":
            args = (sub_nbr(s_id()), 1 + bits(2), START_TIMES[randrange(3)])
        else:
            raise ValueError(f"no parameters for a TATP transaction named {name!r}")
        out.append((kind, args))
    return out


def draw(load: LoadSpec, types: tuple[TxnType, ...]) -> list[tuple[int, tuple]]:
    return generate(load.requests, load.data.scale, load.seed, types)
