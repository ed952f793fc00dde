#!/usr/bin/python
"""Ansible module of dint-bench: what a run leaves on a host that it should
not (a server that died keeps its XDP program attached; DPDK keeps its
runtime files), found before a run starts and removed after its servers
stop.

state=checked  fails, naming each one, if the host has a process the
               harness did not start (local testbed host: any process in
               its network namespace; cluster host: any dint-bench server,
               client or neighbour process in the host's network namespace), a BPF program on one of its
               interfaces other than `allowed_xdp` (XDP, or TC filters on
               clsact), or a live DPDK runtime directory of ours.
               With `checkout` (a cluster host), it also fails if the
               project the host runs is not the controller's: the id
               `deploy setup` wrote into `checkout_file` differs.
state=cleaned  detaches every XDP program but `allowed_xdp` from the
               interfaces, removes TC filters (clsact) and the DPDK runtime
               directories in `paths`; returns what it removed.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: dint_residue
short_description: find or remove what dead dint-bench processes left on a host
options:
  state: {type: str, required: true, choices: [checked, cleaned]}
  netns: {type: str, default: "", description: the host's network namespace (a local testbed host)}
  ifaces: {type: list, elements: str, default: [], description: the host's testbed interfaces}
  allowed_xdp: {type: list, elements: str, default: [], description: XDP program names that belong there}
  paths: {type: list, elements: str, default: [], description: runtime directories (globs) of the host's servers}
  tc: {type: bool, default: true, description: whether TC filters on the interfaces count}
  checkout: {type: str, default: "", description: the controller's checkout id (checked only)}
  checkout_file: {type: str, default: "", description: where deploy setup wrote the host's checkout id}
"""

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


def main() -> None:
    m = AnsibleModule(argument_spec=dict(
        state=dict(type="str", required=True, choices=["checked", "cleaned"]),
        netns=dict(type="str", default=""),
        ifaces=dict(type="list", elements="str", default=[]),
        allowed_xdp=dict(type="list", elements="str", default=[]),
        paths=dict(type="list", elements="str", default=[]),
        tc=dict(type="bool", default=True),
        checkout=dict(type="str", default=""),
        checkout_file=dict(type="str", default=""),
    ))
    p = m.params
    netns = p["netns"]
    if p["state"] == "checked" and p["checkout"]:
        try:
            with open(p["checkout_file"]) as f:
                have = f.read().strip()
        except OSError:
            have = ""
        if have != p["checkout"]:
            m.fail_json(msg=f"the project here is {'checkout ' + have if have else 'not set up by deploy setup'}, "
                            f"not the controller's {p['checkout']}", checkout={"host": have or None,
                                                                               "controller": p["checkout"]})
    if p["state"] == "checked":
        found = processes(netns)
        for iface in p["ifaces"]:
            found += [f"{iface}: XDP program {name} (id {i})" for i, name in xdp_programs(netns, iface)
                      if name not in p["allowed_xdp"]]
            if p["tc"]:
                found += [f"{iface}: {f}" for f in tc_filters(netns, iface)]
        live, _ = live_dirs(p["paths"])
        found += [f"DPDK runtime directory {d} in use" for d in live]
        if found:
            m.fail_json(msg="left by something the harness did not start: " + "; ".join(found), found=found)
        m.exit_json(changed=False, found=[])
    removed = []
    for iface in p["ifaces"]:
        for i, name in xdp_programs(netns, iface):
            if name in p["allowed_xdp"]:
                continue
            for mode in ("xdpdrv", "xdpgeneric", "xdpoffload"):
                _run(_ns(netns, ["ip", "link", "set", "dev", iface, mode, "off"]))
            removed.append(f"{iface}: XDP program {name} (id {i})")
        if p["tc"]:
            filters = tc_filters(netns, iface)
            if filters:
                _run(_ns(netns, ["tc", "qdisc", "del", "dev", iface, "clsact"]))
                removed += [f"{iface}: {f}" for f in filters]
    left = [f"{iface}: XDP program {name} (id {i})" for iface in p["ifaces"]
            for i, name in xdp_programs(netns, iface) if name not in p["allowed_xdp"]]
    _, stale = live_dirs(p["paths"])
    for d in stale:
        shutil.rmtree(d, ignore_errors=True)
    if left:
        m.fail_json(msg="could not remove " + "; ".join(left), removed=removed)
    # runtime files are left by every DPDK process, not only a dead one
    m.exit_json(changed=bool(removed or stale), removed=removed, runtime_dirs=stale)


if __name__ == "__main__":
    main()
