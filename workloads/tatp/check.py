"""TATP's consistency check: the rows keep their references, the tables
that no transaction inserts into or deletes from keep their rows,
CALL_FORWARDING changed by exactly the committed inserts and deletes, and
each type's success rate is near the rate the population rules imply,
given the rows loaded."""
from __future__ import annotations

import functools
import math
from collections import Counter
from fractions import Fraction

from .. import seeds
from ..contract import CheckSpec
from . import loader
from .params import subscriber_ids
from .schema import (ACCESS_INFO, CALL_FORWARDING, END_SPAN, MIX, P_ACTIVE, P_CALL_FORWARDING, QUERY_END_TIMES,
                     SPECIAL_FACILITY, START_TIMES, SUB_NBR, SUBSCRIBER, SUCCESS, TYPES, call_forwarding, index,
                     special_facility, split_cf, subscriber)

EXAMPLES = 5
MIN_SAMPLE = 200       # committed transactions of a type before its rate is checked
STANDARD_ERRORS = 5.0  # how far a rate may stray from the expected one
CHOOSER_DRAWS = 200_000


def _p_present() -> Fraction:
    """A given ai_type (sf_type) has a row: 1-4 of the 4 types, uniformly."""
    return Fraction(sum(range(1, len(TYPES) + 1)), len(TYPES) ** 2)


def _p_new_destination() -> Fraction:
    """GetNewDestination finds a number: the SPECIAL_FACILITY row exists and
    is active, and some CALL_FORWARDING row (each start time present with
    probability 1/2, end_time = start_time + 1..8) has cf.start_time <=
    start_time (0, 8 or 16) and end_time (1..24) < cf.end_time."""
    p_cf = Fraction(P_CALL_FORWARDING).limit_denominator(1000)
    total = Fraction(0)
    for start in START_TIMES:
        for end in range(1, QUERY_END_TIMES + 1):
            none = Fraction(1)
            for cf_start in START_TIMES:
                if cf_start <= start:
                    later = sum(1 for d in range(1, END_SPAN + 1) if end < cf_start + d)
                    none *= 1 - p_cf * Fraction(later, END_SPAN)
            total += 1 - none
    return _p_present() * Fraction(P_ACTIVE).limit_denominator(1000) * total / (len(START_TIMES) * QUERY_END_TIMES)


def expected_success() -> dict[str, float]:
    """The success rate of each type, from the population rules and the
    parameters' distributions (no contention). The spec quotes "about
    23.9%" for GetNewDestination; these rules give 15.8%."""
    present = _p_present()
    return {
        "GetSubscriberData": 1.0,
        "GetNewDestination": float(_p_new_destination()),
        "GetAccessData": float(present),
        "UpdateSubscriberData": float(present),
        "UpdateLocation": 1.0,
        # the SPECIAL_FACILITY row exists and the CALL_FORWARDING row does
        # not; the inserts and deletes keep each other's rates (the share
        # of present rows stays 1/2 when both succeed at the same rate)
        "InsertCallForwarding": float(present * (1 - Fraction(P_CALL_FORWARDING))),
        "DeleteCallForwarding": float(present * Fraction(P_CALL_FORWARDING)),
    }


@functools.lru_cache(maxsize=4)
def chooser_sample(n: int, draws: int = CHOOSER_DRAWS) -> Counter:
    """How often each subscriber comes up in a fixed sample of draws of the
    non-uniform choice (params.subscriber_ids)."""
    return Counter(subscriber_ids(seeds.generator(0, "tatp-check-chooser"), n, draws).tolist())


def concentration(n: int, draws: int = CHOOSER_DRAWS) -> float:
    """n times the probability that two draws of the non-uniform subscriber
    choice pick the same subscriber (1 for a uniform choice), estimated from
    a fixed sample: the rows of a subscriber are shared by all its draws, so
    the effective number of subscribers is n / this."""
    if n <= 1:
        return 1.0
    counts = chooser_sample(n, draws)
    same = sum(c * (c - 1) for c in counts.values()) / (draws * (draws - 1))
    return max(1.0, n * same)


def conditional_success(n: int, ais: dict, sfs: dict) -> dict[str, float]:
    """The expected rates given the rows loaded rather than the rules alone:
    each subscriber weighted by how often the choice picks it (a sample,
    chooser_sample), with its ACCESS_INFO and SPECIAL_FACILITY rows (which
    no transaction adds or removes; CALL_FORWARDING rows, which change
    during a run, count with the rules' probabilities)."""
    n_ai, n_sf, n_active = Counter(), Counter(), Counter()
    for k in ais:
        n_ai[k // 4] += 1
    for k, v in sfs.items():
        n_sf[k // 4] += 1
        n_active[k // 4] += special_facility(v).is_active
    counts = chooser_sample(n)
    draws = sum(counts.values())

    def mean(per):
        return sum(c * per[s] for s, c in counts.items()) / (draws * len(TYPES))
    p_cf = float(P_CALL_FORWARDING)
    # GetNewDestination's chance given an active SPECIAL_FACILITY row
    match = float(_p_new_destination() / (_p_present() * Fraction(P_ACTIVE).limit_denominator(1000)))
    return {"GetNewDestination": mean(n_active) * match, "GetAccessData": mean(n_ai),
            "UpdateSubscriberData": mean(n_sf), "InsertCallForwarding": mean(n_sf) * (1 - p_cf),
            "DeleteCallForwarding": mean(n_sf) * p_cf}


# types whose outcome depends on CALL_FORWARDING rows, which change in a run
_ON_CALL_FORWARDING = ("GetNewDestination", "InsertCallForwarding", "DeleteCallForwarding")


def success_rates(committed: dict, subscribers: int, ais: dict | None = None, sfs: dict | None = None,
                  reused: bool = False) -> dict:
    """Each type's rate of "success" among its committed transactions against
    the expected rate: a type that always succeeds must never fail; another
    is checked from MIN_SAMPLE transactions on, within STANDARD_ERRORS of
    the rate expected given the loaded rows (conditional_success; the
    rules' rate without them). The standard error counts the run's sample
    (n transactions), the choice's sample, and, for the types that depend
    on CALL_FORWARDING rows (or without the rows), the population's: a
    rate over the rows differs from the expected by about
    sqrt(p (1 - p) c / subscribers), c the choice's concentration. With
    reused parameters (a client started its list over), the types that
    depend on CALL_FORWARDING rows are not judged: an insert repeated finds
    the row it made. A rate not judged passes, and is named with the reason
    in the result's `unchecked` list."""
    rules = expected_success()
    given = conditional_success(subscribers, ais, sfs) if ais is not None and sfs is not None else {}
    conc = None
    rates, bad, unchecked = {}, [], []
    for kind in MIX:
        c = committed.get(kind, {})
        n, ok = c.get("committed", 0), c.get("outcomes", {}).get(SUCCESS, 0)
        p = given.get(kind, rules[kind])
        entry = {"committed": n, "success": ok, "rate": round(ok / n, 4) if n else None, "expected": round(p, 4),
                 "rules": round(rules[kind], 4)}
        if rules[kind] == 1.0:
            entry.update(checked=True, tolerance=0.0)
            good = ok == n
        elif reused and kind in _ON_CALL_FORWARDING:
            entry.update(checked=False, why="parameters reused")
            good = True
        elif n >= MIN_SAMPLE:
            if conc is None:
                conc = concentration(subscribers)
            var = 1 / n + 1 / CHOOSER_DRAWS
            if kind not in given or kind in _ON_CALL_FORWARDING:
                var += conc / subscribers
            tol = STANDARD_ERRORS * math.sqrt(p * (1 - p) * var)
            entry.update(checked=True, tolerance=round(tol, 4))
            good = abs(ok / n - p) <= tol
        else:
            entry.update(checked=False, why=f"{n} committed, fewer than the {MIN_SAMPLE} a rate is judged from")
            good = True
        rates[kind] = entry
        if not entry["checked"]:
            unchecked.append({"check": f"success_rates.{kind}", "reason": entry["why"]})
        if not good:
            bad.append(kind)
    return {"name": "success_rates", "ok": not bad, "unchecked": unchecked,
            "detail": {"off": bad, "concentration": None if conc is None else round(conc, 2), "types": rates}}


@functools.lru_cache(maxsize=2)
def loaded_keys(n: int, seed: int) -> dict[int, frozenset]:
    """The keys population(n, seed) loads, per table: drawn once for every
    point checked against the same data (a series' points, a run's
    repetitions)."""
    keys: dict[int, set] = {}
    for r in loader.population(n, seed):
        keys.setdefault(r.table, set()).add(r.key)
    return {t: frozenset(k) for t, k in keys.items()}


def check(state: dict, committed: dict, spec: CheckSpec) -> list[dict]:
    """state: {(table, key): Record} (the primaries' live rows); committed:
    {type: {"committed": n, "outcomes": {"success": n, "fail": n}}} over the
    whole run."""
    n = spec.data.scale
    tables: dict[int, dict] = {t: {} for t in (SUBSCRIBER, ACCESS_INFO, SPECIAL_FACILITY, CALL_FORWARDING, SUB_NBR)}
    for (t, k), r in state.items():
        tables.setdefault(t, {})[k] = r.value
    subs, ais, sfs, cfs, nbrs = (tables[t] for t in (SUBSCRIBER, ACCESS_INFO, SPECIAL_FACILITY, CALL_FORWARDING,
                                                     SUB_NBR))
    loaded: dict[int, frozenset] = {t: frozenset() for t in tables}
    loaded.update(loaded_keys(n, spec.data.seed))

    # references: ACCESS_INFO, SPECIAL_FACILITY and CALL_FORWARDING rows
    # have their subscriber; CALL_FORWARDING rows their SPECIAL_FACILITY row
    orphans = [f"ACCESS_INFO {k}" for k in ais if k // 4 not in subs]
    orphans += [f"SPECIAL_FACILITY {k}" for k in sfs if k // 4 not in subs]
    orphans += [f"CALL_FORWARDING {k}: no SPECIAL_FACILITY {k // 3}" for k in cfs if k // 3 not in sfs]
    orphans += [f"CALL_FORWARDING {k}: no SUBSCRIBER {k // 12}" for k in cfs if k // 12 not in subs]
    # the index: one SUB_NBR row per subscriber, pointing at it, and no other
    index_bad = [f"SUBSCRIBER {s} has no SUB_NBR row" for s in subs if s not in nbrs]
    index_bad += [f"SUB_NBR {k} -> {index(v)}" for k, v in nbrs.items() if index(v) != k or k not in subs]
    # no transaction inserts or deletes SUBSCRIBER, SUB_NBR, ACCESS_INFO or
    # SPECIAL_FACILITY rows
    changed = {}
    for t, name in ((SUBSCRIBER, "SUBSCRIBER"), (SUB_NBR, "SUB_NBR"), (ACCESS_INFO, "ACCESS_INFO"),
                    (SPECIAL_FACILITY, "SPECIAL_FACILITY")):
        now = set(tables[t])
        if now != loaded[t]:
            changed[name] = {"missing": sorted(loaded[t] - now)[:EXAMPLES], "extra": sorted(now - loaded[t])[:EXAMPLES],
                             "rows": len(now), "loaded": len(loaded[t])}
    # CALL_FORWARDING: the loaded rows plus the successful inserts, minus
    # the successful deletes
    def successes(kind):
        return committed.get(kind, {}).get("outcomes", {}).get(SUCCESS, 0)
    inserted, deleted = successes("InsertCallForwarding"), successes("DeleteCallForwarding")
    expected_cf = len(loaded[CALL_FORWARDING]) + inserted - deleted
    # values: what the keys say the rows hold
    malformed = [f"SUBSCRIBER {k} holds s_id {subscriber(v).s_id}" for k, v in subs.items() if subscriber(v).s_id != k]
    malformed += [f"SPECIAL_FACILITY {k}: is_active {special_facility(v).is_active}" for k, v in sfs.items()
                  if special_facility(v).is_active not in (0, 1)]
    malformed += [f"CALL_FORWARDING {k}: start_time {split_cf(k)[2]}, end_time {call_forwarding(v).end_time}"
                  for k, v in cfs.items() if not 1 <= call_forwarding(v).end_time - split_cf(k)[2] <= END_SPAN]
    return [
        {"name": "references", "ok": not orphans, "detail": {"orphans": len(orphans), "examples": orphans[:EXAMPLES]}},
        {"name": "sub_nbr_index", "ok": not index_bad,
         "detail": {"rows": len(nbrs), "bad": len(index_bad), "examples": index_bad[:EXAMPLES]}},
        {"name": "fixed_tables_unchanged", "ok": not changed, "detail": changed},
        {"name": "call_forwarding_count", "ok": len(cfs) == expected_cf,
         "detail": {"rows": len(cfs), "expected": expected_cf, "loaded": len(loaded[CALL_FORWARDING]),
                    "inserted": inserted, "deleted": deleted}},
        {"name": "values_well_formed", "ok": not malformed,
         "detail": {"bad": len(malformed), "examples": malformed[:EXAMPLES]}},
        success_rates(committed, n, ais, sfs, reused=bool(spec.params_wrapped)),
    ]
