"""What the processes of a run are doing, seen where they run.

The functions here read a host's pid files and logs: whether a process is
alive, its last log lines, the clients' new `progress {json}` lines. On a
local testbed the harness calls them itself; a cluster host's files are
the host's, so `python -m harness.watch SPEC` runs them there, started by
HostWatch over SSH as Ansible reaches the host, and streams what it sees
back as JSON lines:

    died {"name": ..., "log": ..., "tail": "last | log | lines"}
    progress {"log": ..., <the client's progress fields>}

SPEC (JSON): {"servers": [{"name", "pidfile", "log"}], "progress_dir": DIR,
"progress_glob": "client-*.log"}. The watch ends when its standard input
closes (the controller went, or closed the connection).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

POLL_S = 0.1


# -- on the host ------------------------------------------------------------
def live_pid(pidfile: Path) -> int | None:
    """The live process's pid from its pid file ("pid starttime", written by
    deploy/library/dint_proc.py): None once it exited, or if the pid was
    reused by another process."""
    try:
        pid_s, start = Path(pidfile).read_text().split()
        pid = int(pid_s)
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    return pid if fields[0] not in ("Z", "X") and fields[19] == start else None


def log_tail(log: Path, lines: int = 8) -> str:
    """A log's last lines, joined: the periodic `stats` lines but the last
    left out, so that they do not hide what the process said."""
    try:
        text = [line.strip() for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    last_stats = max((i for i, line in enumerate(text) if line.startswith("stats ")), default=-1)
    kept = [line for i, line in enumerate(text) if not line.startswith("stats ") or i == last_stats]
    return " | ".join(kept[-lines:])


def new_progress(log: Path, offset: int) -> tuple[list[dict], int]:
    """New `progress {json}` lines of a client's log from byte `offset` on
    (whole lines only), and the offset to read from next."""
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return [], offset
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].decode(errors="replace").splitlines():
        if line.startswith("progress "):
            try:
                out.append(json.loads(line[9:]))
            except ValueError:
                pass
    return out, offset + end


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m harness.watch SPEC_JSON", file=sys.stderr)
        return 2
    spec = json.loads(argv[0])
    servers = spec.get("servers", [])
    pdir, pglob = spec.get("progress_dir"), spec.get("progress_glob", "client-*.log")

    def ended() -> None:  # the controller closed the connection
        sys.stdin.read()
        os._exit(0)
    threading.Thread(target=ended, daemon=True).start()
    reported: set[str] = set()
    offsets: dict[str, int] = {}
    out = sys.stdout
    while True:
        for s in servers:
            if s["name"] not in reported and live_pid(s["pidfile"]) is None:
                reported.add(s["name"])
                out.write("died " + json.dumps({"name": s["name"], "log": s["log"], "tail": log_tail(s["log"])})
                          + "\n")
        if pdir:
            for log in sorted(Path(pdir).glob(pglob)):
                lines, offsets[str(log)] = new_progress(log, offsets.get(str(log), 0))
                for p in lines:
                    out.write("progress " + json.dumps({"log": str(log), **p}) + "\n")
        out.flush()
        time.sleep(POLL_S)


# -- on the controller --------------------------------------------------------
def host_vars(inv, host):
    """A cluster host's Ansible variables (all, its group's, its own) as a
    function: val(key) is the value templated as Ansible would, with the
    harness's dint_root, or None when unset."""
    import jinja2
    from . import ROOT
    raw = inv.raw["all"]
    hvars = dict(raw.get("vars") or {})
    for group in ("servers", "clients"):
        g = (raw.get("children") or {}).get(group) or {}
        if host.name in (g.get("hosts") or {}):
            hvars.update(g.get("vars") or {})
            hvars.update(g["hosts"][host.name] or {})
    hvars.setdefault("dint_root", str(ROOT))

    def val(key: str) -> str | None:
        v = hvars.get(key)
        if v is None:
            return None
        return jinja2.Template(str(v)).render(**hvars) if "{{" in str(v) else str(v)
    return val


def ssh_command(inv, host) -> list[str]:
    """ssh to a cluster host as Ansible reaches it: its ansible_host, user,
    port, key and SSH arguments from the inventory (host_vars())."""
    val = host_vars(inv, host)
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=2",
           "-o", "ServerAliveCountMax=3"]
    if val("ansible_port"):
        cmd += ["-p", val("ansible_port")]
    if val("ansible_ssh_private_key_file"):
        cmd += ["-i", val("ansible_ssh_private_key_file")]
    for key in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        if val(key):
            cmd += shlex.split(val(key))
    user = val("ansible_user")
    return cmd + [f"{user + '@' if user else ''}{val('ansible_host') or host.name}"]


class HostWatch:
    """`python -m harness.watch` on every cluster host that has something to
    watch, over SSH, for as long as it is open: which servers died (with
    their last log lines) and the clients' progress lines."""

    def __init__(self, inv, procs, progress_dir: Path | None = None):
        self.inv = inv
        self.procs = procs
        self.progress_dir = progress_dir
        self.watchers: dict[str, subprocess.Popen] = {}
        self.died: list[dict] = []
        self.lost: dict[str, str] = {}
        self._progress: dict[str, list[dict]] = {}
        self._lock = threading.Lock()
        self._closing = False

    def __enter__(self) -> "HostWatch":
        for host in self.inv.hosts:
            servers = [{"name": p.name, "pidfile": str(p.pidfile), "log": str(p.log)}
                       for p in self.procs if p.host == host.name]
            spec = {"servers": servers}
            if host.role == "client" and self.progress_dir:
                spec["progress_dir"] = str(self.progress_dir)
            if not servers and "progress_dir" not in spec:
                continue
            cmd = ssh_command(self.inv, host) + [shlex.join([sys.executable, "-m", "harness.watch",
                                                             json.dumps(spec)])]
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
            self.watchers[host.name] = p
            threading.Thread(target=self._read, args=(host.name, p), daemon=True).start()
        return self

    def _read(self, host: str, p: subprocess.Popen) -> None:
        for line in p.stdout:
            kind, _, body = line.partition(" ")
            try:
                data = json.loads(body)
            except ValueError:
                continue
            with self._lock:
                if kind == "died":
                    self.died.append({"host": host, **data})
                elif kind == "progress":
                    self._progress.setdefault(data.pop("log"), []).append(data)
        rc = p.wait()
        if not self._closing:
            err = p.stderr.read().strip().splitlines()
            with self._lock:
                self.lost[host] = err[-1] if err else f"exit {rc}"

    def check(self) -> dict | None:
        """The first server seen dead, or raises if a host's watch was lost."""
        from . import HarnessError
        with self._lock:
            if self.died:
                return self.died[0]
            if self.lost:
                host, why = next(iter(self.lost.items()))
                raise HarnessError(f"lost the watch of host {host} (ssh): {why}")
        return None

    def progress(self, log: Path) -> list[dict]:
        """A client log's progress lines that came since the last call."""
        with self._lock:
            return self._progress.pop(str(log), [])

    def __exit__(self, *exc) -> None:
        self._closing = True
        for p in self.watchers.values():
            try:
                p.stdin.close()
            except OSError:
                pass
        for p in self.watchers.values():
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
