"""The consistency check after every run of a replicated workload, from the
servers' dumps: the replicas of every row agree, no lock is left held, and
the workload's own invariants hold (each workload's check()). The verdict
goes into summary.json as `consistency`; a violation fails the run."""
from __future__ import annotations

from workloads import CheckSpec, Workload

from .placement import Placement
from .snapshot import Record

EXAMPLES = 5


def _copy(r: Record | None):
    """What must agree between replicas: absent and deleted are alike."""
    if r is None or not r.live:
        return None
    return (r.ver, r.value)


def replicas_agree(dumps: list[list[Record]]) -> dict:
    """Every row's copies on its replicas (harness/placement.py) are equal:
    the same version and value, or all absent."""
    place = Placement(len(dumps))
    by_server = [{(r.table, r.key): r for r in d} for d in dumps]
    keys = set().union(*by_server)
    differ = []
    for table, key in keys:
        holders = place.holders(key)
        copies = [_copy(by_server[s].get((table, key))) for s in holders]
        if any(c != copies[0] for c in copies[1:]):
            differ.append({"table": table, "key": key,
                           "copies": {f"server {s}": (None if c is None else {"ver": c[0], "value": c[1].hex()})
                                      for s, c in zip(holders, copies)}})
    return {"name": "replicas_agree", "ok": not differ,
            "detail": {"rows": len(keys), "differing": len(differ), "examples": differ[:EXAMPLES]}}


def no_locks_held(dumps: list[list[Record]]) -> dict:
    held = [{"server": s, "table": r.table, "key": r.key, "owner": r.owner, "shared": r.nshared}
            for s, d in enumerate(dumps) for r in d if r.owner or r.nshared]
    return {"name": "no_locks_held", "ok": not held, "detail": {"held": len(held), "examples": held[:EXAMPLES]}}


def primaries(dumps: list[list[Record]]) -> dict:
    """{(table, key): Record}: the live rows, each from its primary."""
    primary = Placement(len(dumps)).primary
    return {(r.table, r.key): r for s, d in enumerate(dumps) for r in d if r.live and primary(r.key) == s}


def check(workload: Workload, dumps: list[list[Record]], committed: dict, spec: CheckSpec,
          unfinished: int = 0) -> dict:
    """The `consistency` section: {checked, violations, failed, unchecked,
    details}. committed is {type: {"committed": n, "outcomes": {...}}} over
    the whole run; unfinished counts transactions still in flight when the
    clients stopped (their effects are unknown, so an invariant may not
    hold). `unchecked` lists the parts of checks that drew no verdict
    ({check, reason}, from a result's own `unchecked`): they pass, so a run
    without violations but with unchecked parts was not checked in full."""
    results = ([replicas_agree(dumps)] if workload.replicated else []) + [no_locks_held(dumps)]
    results += workload.check(primaries(dumps), committed, spec)
    failed = [r["name"] for r in results if not r["ok"]]
    unchecked = [u for r in results for u in r.get("unchecked", ())]
    return {"checked": True, "violations": len(failed), "failed": failed, "unchecked": unchecked,
            "unfinished_transactions": unfinished,
            "details": {r["name"]: {"ok": r["ok"], **r["detail"]} for r in results}}
