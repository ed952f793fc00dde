"""What dint-bench processes leave on a host that they should not (a server
that died keeps its XDP program attached; DPDK keeps its runtime files):
found before a start (deploy/library/dint_residue.py, state=checked) and
removed once a host's servers have stopped (the same module's
state=cleaned, or deploy/library/dint_proc.py's stop with `clean`, in the
same module run as the stop)."""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess

# What a dint-bench process's command line contains, to find them on a
# cluster host (where other processes are the host's own business).
OURS = ("harness.dintd", "dint_slowpath", "kernel_server", "bypass_server", "harness.loadgen",
        "harness.neighbour")


def _ns(netns: str, cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *cmd] if netns else cmd


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _netns_of(pid) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return ""


def processes(netns: str) -> list[str]:
    """'pid N: command' of every process the harness did not start."""
    me = {os.getpid(), os.getppid()}
    if netns:
        out = _run(["ip", "netns", "pids", netns]).stdout
        pids = [int(p) for p in out.split()]
    else:
        # a cluster host: ours, in this host's network namespace (a
        # simulated cluster's hosts share one machine's processes)
        here = _netns_of("self")
        pids = [int(e) for e in os.listdir("/proc") if e.isdigit()]
        pids = [p for p in pids if any(o in _cmdline(p) for o in OURS) and _netns_of(p) == here]
    found = []
    for pid in pids:
        if pid in me:
            continue
        cmd = _cmdline(pid)
        if cmd:
            found.append(f"pid {pid}: {cmd[:100]}")
    return found


def _prog_name(prog_id: int) -> str:
    out = _run(["bpftool", "prog", "show", "id", str(prog_id), "--json"]).stdout
    try:
        return json.loads(out).get("name", "?")
    except ValueError:
        return "?"


def xdp_programs(netns: str, iface: str) -> list[tuple[int, str]]:
    """(id, name) of the XDP programs attached to an interface."""
    out = _run(_ns(netns, ["ip", "-j", "link", "show", "dev", iface])).stdout
    try:
        xdp = json.loads(out)[0].get("xdp") or {}
    except (ValueError, IndexError):
        return []
    ids = []
    if xdp.get("prog", {}).get("id"):
        ids.append(xdp["prog"]["id"])
    ids += [a["prog"]["id"] for a in xdp.get("attached", []) if a.get("prog", {}).get("id")]
    return [(i, _prog_name(i)) for i in dict.fromkeys(ids)]


def tc_filters(netns: str, iface: str) -> list[str]:
    found = []
    for direction in ("ingress", "egress"):
        out = _run(_ns(netns, ["tc", "-j", "filter", "show", "dev", iface, direction])).stdout
        try:
            rules = json.loads(out) if out.strip() else []
        except ValueError:
            rules = []
        names = {r.get("options", {}).get("bpf_name") or r.get("kind", "?") for r in rules if r.get("options")}
        found += [f"TC {direction} filter {n}" for n in sorted(names)]
    return found


def _open_under(dirs: list[str]) -> set[str]:
    """Which of dirs some process has a file open in (DPDK keeps its runtime
    config open, locked, while it runs)."""
    held = set()
    for pid in (e for e in os.listdir("/proc") if e.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            for d in dirs:
                if target.startswith(d + "/"):
                    held.add(d)
    return held


def live_dirs(paths: list[str]) -> tuple[list[str], list[str]]:
    """DPDK runtime directories matching paths: (in use by a process, stale)."""
    dirs = sorted({d for pattern in paths for d in glob.glob(pattern) if os.path.isdir(d)})
    held = _open_under(dirs) if dirs else set()
    return [d for d in dirs if d in held], [d for d in dirs if d not in held]



def found(netns: str, ifaces: list[str], allowed_xdp: list[str], paths: list[str], tc: bool = True) -> list[str]:
    """Everything on the host the harness did not start: processes, BPF
    programs on its interfaces but allowed_xdp, live DPDK runtime directories."""
    out = processes(netns)
    for iface in ifaces:
        out += [f"{iface}: XDP program {name} (id {i})" for i, name in xdp_programs(netns, iface)
                if name not in allowed_xdp]
        if tc:
            out += [f"{iface}: {f}" for f in tc_filters(netns, iface)]
    live, _ = live_dirs(paths)
    return out + [f"DPDK runtime directory {d} in use" for d in live]


def clean(netns: str, ifaces: list[str], allowed_xdp: list[str], paths: list[str],
          tc: bool = True) -> tuple[list[str], list[str], list[str]]:
    """Detaches every XDP program but allowed_xdp, removes TC filters
    (clsact) and the DPDK runtime directories no process holds; returns
    (what was removed, the runtime directories removed, the programs that
    could not be detached)."""
    removed = []
    for iface in ifaces:
        for i, name in xdp_programs(netns, iface):
            if name in allowed_xdp:
                continue
            for mode in ("xdpdrv", "xdpgeneric", "xdpoffload"):
                _run(_ns(netns, ["ip", "link", "set", "dev", iface, mode, "off"]))
            removed.append(f"{iface}: XDP program {name} (id {i})")
        if tc:
            filters = tc_filters(netns, iface)
            if filters:
                _run(_ns(netns, ["tc", "qdisc", "del", "dev", iface, "clsact"]))
                removed += [f"{iface}: {f}" for f in filters]
    left = [f"{iface}: XDP program {name} (id {i})" for iface in ifaces
            for i, name in xdp_programs(netns, iface) if name not in allowed_xdp]
    _, stale = live_dirs(paths)
    for d in stale:
        shutil.rmtree(d, ignore_errors=True)
    return removed, stale, left
