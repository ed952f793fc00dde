"""A profile's plan before it runs (`python -m harness reproduce --plan`,
and the same before every `reproduce`): for every point, as the series it
runs in serves it (harness/run.py, series_span_s), each place's memory
need (harness/limits.py, memory_need: the controller, each server host,
each client host), and per place the largest need over the profile, the
point that has it, the memory the place has and the margin left; and the
suite's expected duration (harness/reproduce.py, estimate_s).

What a place has: on a local testbed every host is this machine, so the
need of a point is the sum over its places, against this machine's
MemAvailable (limits.available_memory); on a cluster the controller is
this machine, and each host has what its inventory states (`memory_gb`
or `memory`, harness/inventory.py), or is not checked when it states
nothing. A place fits when its largest need plus limits.MARGIN of it is
within what it has; the margin shown is what is left beyond both.

A place that cannot hold a point refuses the profile in one line, from
limits.check_memory on the largest such point, prefixed with its name."""
from __future__ import annotations

import json
from pathlib import Path

from . import ROOT, HarnessError, limits
from .inventory import Inventory
from .limits import MARGIN, human

PLAN_FILE = "plan.json"
MACHINE = "this machine"  # the place of a local testbed's sum


def _places(inv: Inventory) -> list[tuple[str, str]]:
    """(place, role) in the order the table lists them."""
    head = [(MACHINE, "every host")] if inv.local else []
    return head + [("controller", "controller")] + [(h.name, h.role) for h in inv.servers] + \
        [(h.name, h.role) for h in inv.clients]


def _has(place: str, inv: Inventory, avail: int | None) -> tuple[int | None, str]:
    """What a place has to give a run, and where the figure comes from."""
    if place == MACHINE or (place == "controller" and not inv.local):
        return avail, "MemAvailable"
    if inv.local:
        return None, f"shares {MACHINE}'s"
    host = inv.host(place)
    if host.memory is not None:
        return host.memory, host.memory_var
    return None, "not stated: not checked"


def make(ef, points, inv: Inventory, inventory_path: str | None, out_dir: Path) -> dict:
    """The plan of points (of experiment file ef) on inv: a JSON-ready
    dict. out_dir: where the run would write (for the refusal's disk
    figure, as limits.check_memory takes it)."""
    from .reproduce import Rep, estimate_s, schedule, series
    from .run import series_span_s
    reps = schedule([Rep(p, k, f"{p.name}/r{k}") for p in points for k in range(1, p.repeat + 1)])
    groups = series(reps, inventory_path)
    per_point: list[dict] = []
    seen = set()
    for group in groups:
        if group[0].k != 1:  # every repetition's series is the first's
            continue
        try:
            cfgs = [r.point.config(inventory_path) for r in group]
        except HarnessError:
            continue  # an invalid point is left to the run, which records it as failed
        span = series_span_s(cfgs)
        for r, cfg in zip(group, cfgs):
            if r.point.name in seen:
                continue
            seen.add(r.point.name)
            needs = [n for n in limits.memory_need(cfg, inv, span) if n.resource == "memory"]
            memory = {n.place: n.bytes for n in needs}
            if inv.local:
                memory[MACHINE] = sum(memory.values())
            per_point.append({"point": r.point.name, "series_span_s": span, "memory": memory,
                              "parts": {n.place: {p.what: p.bytes for p in n.parts} for n in needs}})
    avail = limits.available_memory()
    hosts = []
    for place, role in _places(inv):
        has, source = _has(place, inv, avail)
        rows = [p for p in per_point if place in p["memory"]]
        if not rows:
            continue
        top = max(rows, key=lambda p: p["memory"][place])
        need = top["memory"][place]
        over = [p["point"] for p in rows if has is not None and p["memory"][place] * (1 + MARGIN) > has]
        hosts.append({
            "place": place, "role": role, "need_bytes": need, "point": top["point"],
            "parts": top["parts"].get(place) or _summed(top["parts"].values()),
            "memory_bytes": has, "memory_source": source,
            "margin_bytes": None if has is None else int(has - need * (1 + MARGIN)),
            "fits": None if has is None else not over, "points_over": over})
    runs = sum(p.repeat for p in points)
    return {"profile": ef.profile, "source": _shown(ef.path), "inventory": inv.source,
            "testbed": inv.testbed or "cluster", "spare_share": MARGIN,
            "points": len(points), "runs": runs, "series": len(groups),
            "expected_s": round(estimate_s(groups), 1),
            "expected_note": "each start of a system's servers, each point beyond the first of a series, and every "
                             "run's warm-up and window (harness/reproduce.py: STARTUP_S, POINT_S); not the "
                             "xdpbench and verifier steps after the points",
            "fits": all(h["fits"] is not False for h in hosts),
            "hosts": hosts, "per_point": per_point, "out_dir": str(out_dir)}


def _shown(path) -> str:
    """A path under the project as relative to it, another as it is."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _summed(parts) -> dict:
    """The parts of several places, added up by what they are."""
    out: dict[str, int] = {}
    for d in parts:
        for what, b in d.items():
            out[what] = out.get(what, 0) + b
    return out


def _duration(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min"


def render(plan: dict) -> str:
    """The plan as a table, a line per place, then the expected duration."""
    head = (f"plan: profile {plan['profile']} ({plan['source']}) on {plan['inventory']} ({plan['testbed']}): "
            f"{plan['points']} points, {plan['runs']} runs with their repetitions, {plan['series']} starts of servers")
    rows = [("place", "role", "largest need", "at point", "memory", "margin")]
    for h in plan["hosts"]:
        has = h["memory_source"] if h["memory_bytes"] is None else f"{human(h['memory_bytes'])} ({h['memory_source']})"
        margin = "-" if h["margin_bytes"] is None else (
            ("+" if h["margin_bytes"] >= 0 else "-") + human(abs(h["margin_bytes"])))
        if h["fits"] is False:
            margin += f" TOO SMALL for {len(h['points_over'])} point(s)"
        rows.append((h["place"], h["role"], human(h["need_bytes"]), h["point"], has, margin))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [head] + ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    lines.append(f"margin: the memory less the need and {plan['spare_share']:.0%} of it kept spare")
    lines.append(f"expected duration: about {_duration(plan['expected_s'])} ({plan['expected_note']})")
    return "\n".join(lines)


def refusal(plan: dict, points, inv: Inventory, inventory_path: str | None) -> str | None:
    """One line naming the point, the place and the figures, for the first
    place (in the table's order) that cannot hold its largest point; None
    when every place can."""
    bad = [h for h in plan["hosts"] if h["fits"] is False]
    if not bad:
        return None
    h = bad[0]
    point = next(p for p in points if p.name == h["point"])
    span = next(p["series_span_s"] for p in plan["per_point"] if p["point"] == h["point"])
    also = [b["place"] for b in bad[1:]]
    tail = (f" [{len(h['points_over'])} of {plan['points']} points too big for {h['place']}"
            + (f"; too small too: {', '.join(also)}" if also else "") + "]")
    try:
        limits.check_memory(point.config(inventory_path), inv, Path(plan["out_dir"]), span)
    except HarnessError as exc:
        return f"point {h['point']}: {exc}{tail}"
    # not refused by the check itself (the machine's memory moved since the plan)
    return (f"point {h['point']}: needs about {human(h['need_bytes'])} of memory on {h['place']}, which has "
            f"{human(h['memory_bytes'])} ({h['memory_source']}; {MARGIN:.0%} of the need kept spare){tail}")


def check(plan: dict, points, inv: Inventory, inventory_path: str | None) -> None:
    """Raises the refusal, if any."""
    line = refusal(plan, points, inv, inventory_path)
    if line:
        raise HarnessError(line)


def write(plan: dict, path: Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(plan, indent=1))
    return path
