"""The consistency check after every run of a replicated workload, from the
servers' dumps: the replicas of every row agree, no lock is left held, and
the workload's own invariants hold (each workload's check()). The verdict
goes into summary.json as `consistency`; a violation fails the run."""
from __future__ import annotations

from collections.abc import Sequence
from itertools import islice

import numpy as np

from workloads import CheckSpec, Workload

from .placement import Placement
from .snapshot import Columns, Record, columns_of, no_collection

EXAMPLES = 5

# A server's dump: its snapshot's Columns (snapshot.read_columns, as the
# harness reads it) or its Records (as the tests make them up)
Dump = Columns | Sequence[Record]


def _columns(dumps: list[Dump]) -> list[Columns]:
    return [d if isinstance(d, Columns) else columns_of(d) for d in dumps]


def _final(c: Columns, table: int) -> np.ndarray:
    """The indices of a dump's rows of a table, sorted by key: each key's
    last record, which overrides any earlier one of the same key."""
    at = np.flatnonzero(c.table == table)
    order = np.argsort(c.key[at], kind="stable")   # O(n) on keys loaded in order
    keys = c.key[at[order]]
    last = np.ones(len(keys), bool)
    last[:-1] = keys[1:] != keys[:-1]
    return at[order[last]]


def _values(c: Columns, table: int, idx: np.ndarray) -> np.ndarray:
    return c.values[table][c.row[idx]] if len(idx) else np.zeros((0, 0), np.uint8)


def _differing(copies: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """The keys whose live copies (keys sorted, versions, values; one triple
    per holder) are not all equal: a key live on some holder only, or at
    another version or value on one. Absent and deleted are alike."""
    (k0, v0, x0), rest = copies[0], copies[1:]
    if all(len(k) == len(k0) and np.array_equal(k, k0) and np.array_equal(v, v0) and np.array_equal(x, x0)
           for k, v, x in rest):
        return k0[:0]
    keys = np.unique(np.concatenate([k for k, _, _ in copies]))

    def find(k):
        at = np.minimum(np.searchsorted(k, keys), max(len(k) - 1, 0))
        return at, (k[at] == keys) if len(k) else np.zeros(len(keys), bool)
    a0, agree = find(k0)
    for k, v, x in rest:
        a, there = find(k)
        agree &= there
        if agree.any():
            same = v[a] == v0[a0]
            same &= (x[a] == x0[a0]).all(axis=1) if x.shape[1] == x0.shape[1] else False
            agree &= same
    return keys[~agree]


def _copy(c: Columns, table: int, key: int):
    """A row's copy on a dump, as the examples show it: None if absent or
    deleted."""
    at = np.flatnonzero((c.table == table) & (c.key == key))
    if not len(at) or not c.live[at[-1]]:
        return None
    return {"ver": int(c.ver[at[-1]]), "value": c.value(at[-1]).hex()}


def _first_in_set_order(cols: list[Columns], rows: set) -> list:
    """The first EXAMPLES of rows in the order the examples have always
    had: that of a set of every (table, key) of the dumps, built as a dict
    per dump and their union (a set's order, fixed for ints)."""
    every = set().union(*(dict.fromkeys(zip(c.table.tolist(), c.key.tolist())) for c in cols))
    return list(islice((tk for tk in every if tk in rows), EXAMPLES))


def replicas_agree(dumps: list[Dump]) -> dict:
    """Every row's copies on its replicas (harness/placement.py) are equal:
    the same version and value, or all absent. Per table and per primary,
    each holder's live rows sorted by key are compared as whole arrays;
    rows are looked at one by one only where these differ."""
    place = Placement(len(dumps))
    cols = _columns(dumps)
    servers = len(cols)
    rows, differ = 0, []
    for table in range(max(len(c.values) for c in cols)):
        final = [_final(c, table) for c in cols]
        keys = [c.key[f] for c, f in zip(cols, final)]
        same = all(len(k) == len(keys[0]) and np.array_equal(k, keys[0]) for k in keys[1:])
        rows += len(keys[0]) if same else len(np.unique(np.concatenate(keys)))
        live = [f[c.live[f]] for c, f in zip(cols, final)]
        primary = [c.key[f] % servers for c, f in zip(cols, live)]
        for p, holders in enumerate(place.holders_of):
            if len(holders) < 2:
                continue
            copies = []
            for s in holders:
                idx = live[s][primary[s] == p]
                copies.append((cols[s].key[idx], cols[s].ver[idx], _values(cols[s], table, idx)))
            differ += [(table, k) for k in _differing(copies).tolist()]
    examples = []
    if differ:
        for table, key in _first_in_set_order(cols, set(differ)):
            holders = place.holders(key)
            examples.append({"table": table, "key": key,
                             "copies": {f"server {s}": _copy(cols[s], table, key) for s in holders}})
    return {"name": "replicas_agree", "ok": not differ,
            "detail": {"rows": rows, "differing": len(differ), "examples": examples}}


def no_locks_held(dumps: list[Dump]) -> dict:
    held, examples = 0, []
    for s, c in enumerate(_columns(dumps)):
        at = np.flatnonzero((c.owner != 0) | (c.nshared != 0))
        held += len(at)
        examples += [{"server": s, "table": int(c.table[i]), "key": int(c.key[i]), "owner": int(c.owner[i]),
                      "shared": int(c.nshared[i])} for i in at[:EXAMPLES - len(examples)].tolist()]
    return {"name": "no_locks_held", "ok": not held, "detail": {"held": held, "examples": examples}}


def primaries(dumps: list[Dump]) -> dict:
    """{(table, key): Record}: the live rows, each from its primary; a
    Record is made for these rows only."""
    cols = _columns(dumps)
    state = {}
    with no_collection():
        for s, c in enumerate(cols):
            idx = np.flatnonzero(c.live & (c.key % len(cols) == s))
            state.update(zip(zip(c.table[idx].tolist(), c.key[idx].tolist()), c.records(idx)))
    return state


def check(workload: Workload, dumps: list[Dump], committed: dict, spec: CheckSpec,
          unfinished: int = 0) -> dict:
    """The `consistency` section: {checked, violations, failed, unchecked,
    details}. committed is {type: {"committed": n, "outcomes": {...}}} over
    the whole run; unfinished counts transactions still in flight when the
    clients stopped (their effects are unknown, so an invariant may not
    hold). `unchecked` lists the parts of checks that drew no verdict
    ({check, reason}, from a result's own `unchecked`): they pass, so a run
    without violations but with unchecked parts was not checked in full."""
    dumps = _columns(dumps)
    results = ([replicas_agree(dumps)] if workload.replicated else []) + [no_locks_held(dumps)]
    results += workload.check(primaries(dumps), committed, spec)
    failed = [r["name"] for r in results if not r["ok"]]
    unchecked = [u for r in results for u in r.get("unchecked", ())]
    return {"checked": True, "violations": len(failed), "failed": failed, "unchecked": unchecked,
            "unfinished_transactions": unfinished,
            "details": {r["name"]: {"ok": r["ok"], **r["detail"]} for r in results}}
