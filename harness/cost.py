"""Server CPU per operation. Sampled when the clients start and when they
finish, divided by the requests they sent in between:
- dint: the XDP program's run time from the kernel's BPF statistics
  (kernel.bpf_stats_enabled, on for the run) plus the CPU time of dintd and
  its slow path process (log drain; misses: fills, evictions, write-backs,
  the slow path's own runs of the program and its socket calls). The kernel
  stack's receive work for the datagrams passed up to the slow path runs in
  the NAPI context and is not counted;
- kernel and bypass: the server processes' CPU time (user and system: their
  syscalls) plus that of the threaded-NAPI kernel threads of the server
  interfaces, the kernel work the servers cause. In `inline` mode that
  kernel work runs on the client's CPU instead and is not counted here.
"""
from __future__ import annotations

import json
import os

from .sh import run
from .testbed import napi_threads, xdp_prog_id

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process (all its threads) or thread."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * TICK_S
    except (OSError, IndexError, ValueError):
        return 0.0


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and all its descendants (dint's slow path is
    a child of dintd)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += _cpu_s(p)
        todo.extend(children.get(p, ()))
    return total


def _bpf_run(prog_id: int) -> tuple[int, int]:
    p = run(["bpftool", "prog", "show", "id", str(prog_id), "--json"], check=False)
    try:
        info = json.loads(p.stdout)
    except ValueError:
        return 0, 0
    return int(info.get("run_time_ns", 0)), int(info.get("run_cnt", 0))


RULE = {
    "dint": "XDP run time (kernel BPF statistics) + CPU time of dintd and its slow path, from the clients' "
            "start to their end, per request sent",
    "kernel": "server process CPU + threaded-NAPI thread CPU of the server interfaces (0 with --napi inline, "
              "where that work runs on the client's CPU), per request sent",
}
RULE["bypass"] = RULE["kernel"]


class ServerCost:
    def __init__(self, system, inv):
        self.system, self.inv = system, inv
        self._stats_before: str | None = None

    def __enter__(self) -> "ServerCost":
        if self.system.name == "dint":
            with open(STATS_SYSCTL) as f:
                self._stats_before = f.read().strip()
            with open(STATS_SYSCTL, "w") as f:
                f.write("1")
        return self

    def __exit__(self, *exc) -> None:
        if self._stats_before is not None:
            with open(STATS_SYSCTL, "w") as f:
                f.write(self._stats_before)

    def sample(self) -> dict:
        procs = sum(_tree_cpu_s(pid) for pid in self.system.pids())
        out = {"process_cpu_s": procs}
        if self.system.name == "dint":
            ns = cnt = 0
            for host in self.inv.servers:
                for iface in host.interfaces:
                    pid = xdp_prog_id(host.netns, iface.name)
                    if pid:
                        a, b = _bpf_run(pid)
                        ns, cnt = ns + a, cnt + b
            out.update(bpf_run_ns=ns, bpf_run_cnt=cnt)
        else:
            out["napi_cpu_s"] = sum(_cpu_s(t) for h in self.inv.servers for i in h.interfaces
                                    for t in napi_threads(i.name))
        return out

    @staticmethod
    def per_op(system: str, before: dict, after: dict, ops: int) -> dict:
        d = {k: after[k] - before[k] for k in after}
        if "bpf_run_ns" in d:
            total_s = d["bpf_run_ns"] / 1e9 + d["process_cpu_s"]
            detail = {"bpf_run_ns_per_op": d["bpf_run_ns"] / max(1, d["bpf_run_cnt"]),
                      "bpf_runs": d["bpf_run_cnt"], "user_space_cpu_s": round(d["process_cpu_s"], 3)}
        else:
            total_s = d["process_cpu_s"] + d["napi_cpu_s"]
            detail = {"process_cpu_s": round(d["process_cpu_s"], 3), "napi_cpu_s": round(d["napi_cpu_s"], 3)}
        return {"server_cpu_us_per_op": round(total_s * 1e6 / max(1, ops), 4), "ops": ops,
                "server_cpu_s": round(total_s, 3), **detail, "rule": RULE[system]}

