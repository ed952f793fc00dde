"""Server CPU per operation, from what each server reports on its own host.

Every server prints `stats {json}` lines (every 100 ms, on SIGUSR1 and at
stop; userspace/server_common.h, harness/dintd.py) carrying its request
counters and what it has cost so far, stamped with its host's
CLOCK_REALTIME (t_ns):
- dint: the XDP program's run time and runs from the kernel's BPF
  statistics (bpf_run_ns, bpf_run_cnt; dintd keeps them on while it runs)
  plus the CPU time of dintd and its slow path process (cpu_ns: log drain;
  misses: fills, evictions, write-backs, the slow path's own runs of the
  program and its socket calls). Its lines also carry the CPU time of the
  threaded-NAPI threads of its interfaces (napi_cpu_ns), which run the XDP
  program, the driver's work around it (XDP_TX included) and the kernel
  stack's receive work for what is passed up to the slow path: counted in
  place of the runs alone when they hold them (with --napi pinned), as the
  other servers' NAPI threads are;
- kernel and bypass: the server process's CPU time (cpu_ns: user and
  system, its syscalls) plus that of the threaded-NAPI kernel threads of the
  server's interfaces (napi_cpu_ns), the kernel work the server causes. In
  `inline` mode that kernel work runs on the client's CPU instead and is not
  counted here.

Cores used (`cores`, as DINT reports its CPU efficiency: the server
cores busy at a fixed offered rate): each server's CPU time between its
two lines over their span, summed over the servers, in two splits:
- by where the work runs: `packet` (the kernel's packet work for the
  server: dint's XDP program, or the NAPI threads of the server's
  interfaces when a server's lines carry napi_cpu_ns, which holds the XDP
  runs too; the others' NAPI threads) and `process` (the server
  processes, user and system time);
- by mode, as /proc/stat splits a core's time: `user` (the processes'
  user time) and `kernel` (the packet work and the processes' system
  time), when every line carries cpu_user_ns and cpu_sys_ns (the
  processes' user and system time apart); else null, with the reason.

The rule (per_op): for each server, the last of its lines stamped at or
before the start of the clients' measured window and the first stamped at
or after its end (so the span covers the window, and overhangs it by at
most one interval on each side); the CPU between those two lines, summed
over the servers, divided by the requests those servers counted between
the same two lines (their own rx). The window is the union of the clients'
windows on CLOCK_REALTIME; the division never mixes two hosts' clocks, so
they only need to agree to well within an interval. The servers' logs are
local on the testbed and fetched into the run's directory on a cluster:
the same computation for both. Where a figure cannot be had (a server with
no line before or after the window: it died or printed none; a field
missing; no request counted), server_cpu_us_per_op is null and the reason
says why.
"""
from __future__ import annotations

# The counters each system's lines must carry, and what they add up to.
CPU_FIELDS = {"dint": ("bpf_run_ns", "cpu_ns"), "kernel": ("cpu_ns", "napi_cpu_ns"),
              "bypass": ("cpu_ns", "napi_cpu_ns")}
EXTRA_FIELDS = {"dint": ("bpf_run_cnt",)}
# Of those, the kernel's packet work (the rest is the server processes');
# dint's NAPI threads hold its XDP runs: counted in their place when its
# lines carry them.
PACKET_FIELD = {"dint": "bpf_run_ns", "kernel": "napi_cpu_ns", "bypass": "napi_cpu_ns"}
NAPI_FIELD = "napi_cpu_ns"
# The server processes' CPU time (cpu_ns) apart: user and system.
MODE_FIELDS = ("cpu_user_ns", "cpu_sys_ns")

_SPAN = ("from each server's last stats line at or before the clients' window start to its first at or after "
         "the window end, per request the servers counted (their rx) between those lines")
RULE = {
    "dint": "XDP run time (kernel BPF statistics, read by dintd), or the threaded-NAPI thread CPU of the server's "
            "interfaces when it holds them (read by the slow path on its host), + CPU time of dintd and its slow path, "
            + _SPAN,
    "kernel": "server process CPU + threaded-NAPI thread CPU of the server's interfaces (both read by the server on "
              "its host; NAPI 0 with --napi inline, where that work runs on the client's CPU), " + _SPAN,
}
RULE["bypass"] = RULE["kernel"]


def client_window(results: list[dict]) -> tuple[int, int] | None:
    """The clients' measured window on CLOCK_REALTIME (the union of
    theirs), or None if a client did not report it."""
    try:
        return (min(r["window_realtime_ns"][0] for r in results), max(r["window_realtime_ns"][1] for r in results))
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def bracket(lines: list[dict], start: int, end: int) -> tuple[dict, dict] | str:
    """The last line stamped at or before start and the first at or after
    end, or why there are none."""
    stamped = [ln for ln in lines if isinstance(ln, dict) and isinstance(ln.get("t_ns"), int)]
    if not stamped:
        return "printed no stats line with a time stamp (t_ns)"
    before = [ln for ln in stamped if ln["t_ns"] <= start]
    after = [ln for ln in stamped if ln["t_ns"] >= end]
    if not before:
        return "printed no stats line at or before the clients' window start"
    if not after:
        return "printed no stats line at or after the clients' window end (it died or stopped early)"
    return before[-1], after[0]


def _null(system: str, reason: str, **more) -> dict:
    return {"server_cpu_us_per_op": None, "reason": reason, **more, "rule": RULE[system]}


def per_op(system: str, lines_by_host: dict[str, list[dict]], window: tuple[int, int] | None) -> dict:
    """server_cpu_us_per_op (null with a reason when it cannot be had) and
    its parts, by the rule in the module's docstring. lines_by_host: every
    stats line of each server's log, in order."""
    if window is None:
        return _null(system, "the clients did not report their window on CLOCK_REALTIME")
    if not lines_by_host:
        return _null(system, "no server logs to read")
    fields = CPU_FIELDS[system] + EXTRA_FIELDS.get(system, ()) + ("rx",)
    delta = dict.fromkeys(fields, 0)
    servers = {}
    counters: dict[str, int] = {}
    brackets = {}
    for host, lines in sorted(lines_by_host.items()):
        got = bracket(lines, *window)
        if isinstance(got, str):
            return _null(system, f"server {host} {got}")
        a, b = got
        brackets[host] = got
        add_counters(counters, a, b)
        for f in fields:
            if not isinstance(a.get(f), int) or not isinstance(b.get(f), int):
                return _null(system, f"server {host}'s stats lines have no {f}")
            d = b[f] - a[f]
            if d < 0:
                return _null(system, f"server {host}'s {f} went down between its lines (a restart?)")
            delta[f] += d
        cpu_ns = sum(b[f] - a[f] for f in CPU_FIELDS[system])
        servers[host] = {"span_s": round((b["t_ns"] - a["t_ns"]) / 1e9, 3), "ops": b["rx"] - a["rx"],
                         "cpu_s": round(cpu_ns / 1e9, 4)}
    ops = delta["rx"]
    total_ns = sum(delta[f] for f in CPU_FIELDS[system])
    if system == "dint":
        detail = {"bpf_run_ns_per_op": round(delta["bpf_run_ns"] / max(1, delta["bpf_run_cnt"]), 1),
                  "bpf_runs": delta["bpf_run_cnt"], "user_space_cpu_s": round(delta["cpu_ns"] / 1e9, 4)}
    else:
        detail = {"process_cpu_s": round(delta["cpu_ns"] / 1e9, 4), "napi_cpu_s": round(delta["napi_cpu_ns"] / 1e9, 4)}
    used = cores(system, brackets)
    if system == "dint" and used["packet_work"] == NAPI_FIELD:
        # its NAPI threads (which hold the XDP runs) in place of the runs alone
        total_ns += delta_of(brackets, NAPI_FIELD) - delta["bpf_run_ns"]
    if not ops:
        return _null(system, "the servers counted no request over the clients' window", ops=0,
                     server_cpu_s=round(total_ns / 1e9, 4), **detail, servers=servers, counters=counters, cores=used)
    return {"server_cpu_us_per_op": round(total_ns / 1e3 / ops, 4), "ops": ops,
            "server_cpu_s": round(total_ns / 1e9, 4), **detail, "servers": servers, "counters": counters,
            "cores": used, "rule": RULE[system]}


def delta_of(brackets: dict[str, tuple[dict, dict]], f: str) -> int:
    """What field f grew by between each server's two lines, summed."""
    return sum(b[f] - a[f] for a, b in brackets.values())


def _has(brackets: dict[str, tuple[dict, dict]], *fs: str) -> bool:
    return all(isinstance(ln.get(f), int) and not isinstance(ln.get(f), bool)
               for pair in brackets.values() for ln in pair for f in fs)


CORES_RULE = ("each server's CPU time between its stats lines around the clients' window over their span, summed "
              "over the servers: packet = the kernel's packet work for the servers ({packet}), process = the server "
              "processes (user and system); user and kernel as /proc/stat splits them: user = the processes' user "
              "time, kernel = packet work + the processes' system time")


def cores(system: str, brackets: dict[str, tuple[dict, dict]]) -> dict:
    """The server cores used over the window (the module's docstring),
    from each server's bracketing lines: total, packet and process, and
    user and kernel when the lines carry the processes' time apart (else
    null, with user_kernel_note saying why)."""
    packet_f = PACKET_FIELD[system]
    if system == "dint" and brackets and _has(brackets, NAPI_FIELD) and all(
            b[NAPI_FIELD] - a[NAPI_FIELD] >= b["bpf_run_ns"] - a["bpf_run_ns"] for a, b in brackets.values()):
        # its NAPI threads held its XDP runs (threaded NAPI on the servers'
        # cores): their time in place of the runs'. Less than the runs'
        # (NAPI not threaded, the runs on the senders' cores): the runs'.
        packet_f = NAPI_FIELD
    split = bool(brackets) and _has(brackets, *MODE_FIELDS)
    parts = {"total": 0.0, "packet": 0.0, "process": 0.0, "user": 0.0 if split else None,
             "kernel": 0.0 if split else None}
    for a, b in brackets.values():
        span = (b["t_ns"] - a["t_ns"]) / 1e9
        if span <= 0:
            continue
        packet, process = (b[packet_f] - a[packet_f]) / 1e9 / span, (b["cpu_ns"] - a["cpu_ns"]) / 1e9 / span
        parts["packet"] += packet
        parts["process"] += process
        parts["total"] += packet + process
        if split:
            user, sys_ = ((b[f] - a[f]) / 1e9 / span for f in MODE_FIELDS)
            parts["user"] += user
            parts["kernel"] += packet + sys_
    out = {k: (round(v, 4) if v is not None else None) for k, v in parts.items()}
    what = {"bpf_run_ns": "dint's XDP program's run time (kernel BPF statistics)",
            "napi_cpu_ns": "the threaded-NAPI threads of the servers' interfaces"}[packet_f]
    out.update(packet_work=packet_f, rule=CORES_RULE.format(packet=what))
    if not split:
        out["user_kernel_note"] = ("the servers' stats lines do not carry their processes' user and system time "
                                   f"apart ({', '.join(MODE_FIELDS)}): only packet work and process time are known")
    return out


# Fields of a stats line that are not counters growing over the run.
NOT_COUNTERS = frozenset({"t_ns", "mono_ns", "slow_t_ns", "slow_mono_ns", "clean", "slow_loaded", "slow_cached"})


def add_counters(into: dict[str, int], a: dict, b: dict) -> None:
    """Adds to `into` what each counter of the stats lines a and b (the
    bracket of one server) grew by between them: the servers' counters over
    the same span as the cost (harness/engine_costs.py reads dint's)."""
    for k, v in b.items():
        if k in NOT_COUNTERS or isinstance(v, bool) or not isinstance(v, int) or not isinstance(a.get(k), int):
            continue
        into[k] = into.get(k, 0) + v - a[k]
