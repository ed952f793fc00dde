#!/usr/bin/python
"""Ansible module of dint-bench: one long-running process on a host (a
server, a client, a neighbour), started detached with its output in a log
file and its identity in a pid file, so that later plays can stop it,
signal it or wait for it.

state=started   starts cmd (in its own session) unless the pid file names a
                live process; with `ready`, waits until the log holds that
                line, failing if the process exits first or `timeout` passes.
                With `rc_file`, the exit code is written there when it ends.
state=stopped   SIGTERM to the process group, SIGKILL after `grace` seconds.
                With `clean` (a server host's last process of a stop:
                {netns, ifaces, allowed_xdp, paths}), what a server that
                died left on the host is then removed, in this module run
                (deploy/module_utils/dint_leftovers.py); `removed` says what.
state=signalled sends `signal` (e.g. USR1) to the process; with `wait_prefix`, waits until the log
                holds one more line starting with it.
state=waited    waits until the process has exited (at most `timeout` s).

With `stage` (a cluster host's first process of a play, state=started),
its directories and small inputs are unpacked first and an earlier run's
outputs in `absent` removed (deploy/module_utils/dint_stage.py): one module
run for what would take a task per directory and file.

With `pack` (a cluster host's last process of a play), the files in
`outputs` are then packed into that tar archive (absolute names; a file not
written is left out), for the play to fetch at once.

The pid file holds "PID STARTTIME" (the start time from /proc/PID/stat),
so a recycled pid is never mistaken for the process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import shlex
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dint_leftovers import clean
from ansible.module_utils.dint_stage import StageError, unpack

DOCUMENTATION = r"""
module: dint_proc
short_description: start, stop, signal or wait for a dint-bench process
options:
  name: {type: str, required: true, description: what the process is, for messages}
  state: {type: str, required: true, choices: [started, stopped, signalled, waited]}
  cmd: {type: list, elements: str, description: the command line (state=started)}
  log: {type: path, required: true, description: file receiving stdout and stderr}
  pidfile: {type: path, required: true}
  chdir: {type: path}
  ready: {type: str, description: line the process prints once it is ready}
  rc_file: {type: path, description: where the exit code is written when the process ends}
  timeout: {type: float, default: 90}
  grace: {type: float, default: 5}
  signal: {type: str, default: USR1}
  wait_prefix: {type: str}
  pack: {type: path, description: tar archive to pack outputs into afterwards}
  outputs: {type: list, elements: path, default: [], description: the files packed into pack}
  stage: {type: str, description: a tar archive (base64) of directories and inputs to unpack at / first}
  absent: {type: list, elements: path, default: [], description: files removed first (with stage)}
  clean: {type: dict, description: "state=stopped: then remove what a dead server left (netns, ifaces, allowed_xdp, paths)"}
"""

POLL_S = 0.05


def _starttime(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):  # exited, not yet reaped
        return None
    return fields[19]


def _read_pidfile(path: str) -> int | None:
    """The pid of the live process the pid file names, or None."""
    try:
        with open(path) as f:
            pid_s, start = f.read().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    return pid if _starttime(pid) == start else None


def _lines(path: str) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []


def _tail(path: str, n: int = 8) -> str:
    return " | ".join(line.strip() for line in _lines(path)[-n:] if line.strip())


def _wait_gone(pid: int, start: str | None, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _starttime(pid) != start:
            return True
        time.sleep(POLL_S)
    return _starttime(pid) != start


def started(m: AnsibleModule, p: dict) -> dict:
    pid = _read_pidfile(p["pidfile"])
    if pid is not None:
        return {"changed": False, "pid": pid, "msg": f"{p['name']} already running"}
    cmd = p["cmd"]
    if not cmd:
        m.fail_json(msg=f"{p['name']}: no command")
    if p["rc_file"]:
        # a shell waits for the command and records its exit code
        try:
            os.unlink(p["rc_file"])
        except FileNotFoundError:
            pass
        cmd = ["sh", "-c", f'"$@"; echo $? > {shlex.quote(p["rc_file"])}', "sh", *cmd]
    for path in (p["log"], p["pidfile"]):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(p["log"], "ab") as logf:
        logf.write(f"# {shlex.join(p['cmd'])}\n".encode())
        logf.flush()
        try:
            # Its own session: nothing of Ansible's (a closing terminal, the
            # end of this module) reaches it; stopped as a process group.
            proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                    cwd=p["chdir"] or None, start_new_session=True, close_fds=True)
        except FileNotFoundError:
            m.fail_json(msg=f"{p['name']}: {cmd[0]} not found (run 'make setup')")
    start = _starttime(proc.pid)
    tmp = p["pidfile"] + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{proc.pid} {start}\n")
    os.replace(tmp, p["pidfile"])
    if p["ready"]:
        deadline = time.monotonic() + p["timeout"]
        while True:
            if any(line.strip() == p["ready"] for line in _lines(p["log"])):
                break
            code = proc.poll()
            if code is not None:
                m.fail_json(msg=f"{p['name']} exited with code {code} before it was ready "
                                f"(log {p['log']}): {_tail(p['log'])}", pid=proc.pid)
            if time.monotonic() > deadline:
                m.fail_json(msg=f"{p['name']} was not ready in time (log {p['log']}): {_tail(p['log'])}",
                            pid=proc.pid)
            time.sleep(POLL_S)
    return {"changed": True, "pid": proc.pid}


def stopped(m: AnsibleModule, p: dict) -> dict:
    pid = _read_pidfile(p["pidfile"])
    if pid is None:
        return {"changed": False, "was_running": False}
    start = _starttime(pid)
    how = "TERM"
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    if not _wait_gone(pid, start, p["grace"]):
        how = "KILL"
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait_gone(pid, start, 5.0)
    return {"changed": True, "was_running": True, "signal": how}


def signalled(m: AnsibleModule, p: dict) -> dict:
    pid = _read_pidfile(p["pidfile"])
    if pid is None:
        m.fail_json(msg=f"{p['name']} is not running (log {p['log']}): {_tail(p['log'])}")
    prefix = p["wait_prefix"]
    before = sum(1 for line in _lines(p["log"]) if prefix and line.startswith(prefix))
    sig = getattr(signal, "SIG" + p["signal"].upper().removeprefix("SIG"))
    os.kill(pid, sig)
    if prefix:
        deadline = time.monotonic() + p["timeout"]
        while sum(1 for line in _lines(p["log"]) if line.startswith(prefix)) <= before:
            if time.monotonic() > deadline or _read_pidfile(p["pidfile"]) is None:
                m.fail_json(msg=f"{p['name']} did not answer SIG{p['signal']} (log {p['log']}): {_tail(p['log'])}")
            time.sleep(POLL_S)
    return {"changed": True, "pid": pid}


def waited(m: AnsibleModule, p: dict) -> dict:
    pid = _read_pidfile(p["pidfile"])
    if pid is not None and not _wait_gone(pid, _starttime(pid), p["timeout"]):
        m.fail_json(msg=f"{p['name']} still running after {p['timeout']:g} s (log {p['log']}): {_tail(p['log'])}")
    rc = None
    if p["rc_file"]:
        try:
            with open(p["rc_file"]) as f:
                rc = int(f.read().strip())
        except (OSError, ValueError):
            pass
    # (not "rc": Ansible would call a nonzero one a failure of the task)
    return {"changed": False, "exit_code": rc}


def main() -> None:
    m = AnsibleModule(argument_spec=dict(
        name=dict(type="str", required=True),
        state=dict(type="str", required=True, choices=["started", "stopped", "signalled", "waited"]),
        cmd=dict(type="list", elements="str", default=[]),
        log=dict(type="path", required=True),
        pidfile=dict(type="path", required=True),
        chdir=dict(type="path"),
        ready=dict(type="str"),
        rc_file=dict(type="path"),
        timeout=dict(type="float", default=90.0),
        grace=dict(type="float", default=5.0),
        signal=dict(type="str", default="USR1"),
        wait_prefix=dict(type="str"),
        pack=dict(type="path"),
        outputs=dict(type="list", elements="path", default=[]),
        stage=dict(type="str", no_log=True),
        absent=dict(type="list", elements="path", default=[]),
        clean=dict(type="dict"),
    ))
    p = m.params
    staged = None
    if p["stage"]:
        try:
            staged = unpack(p["stage"], p["absent"])
        except StageError as e:
            m.fail_json(msg=f"{p['name']}: {e}")
    result = {"started": started, "stopped": stopped, "signalled": signalled, "waited": waited}[p["state"]](m, p)
    if p["clean"] and p["state"] == "stopped":
        c = p["clean"]
        removed, stale, left = clean(c.get("netns") or "", c.get("ifaces") or [], c.get("allowed_xdp") or [],
                                     c.get("paths") or [])
        if left:
            m.fail_json(msg=f"{p['name']}: could not remove " + "; ".join(left), removed=removed)
        # runtime files are left by every DPDK process, not only a dead one
        result.update(removed=removed, runtime_dirs=stale)
    if p["pack"]:
        r = subprocess.run(["tar", "-cPf", p["pack"], "--ignore-failed-read", "--", *p["outputs"]],
                           capture_output=True, text=True)
        if r.returncode:
            m.fail_json(msg=f"{p['name']}: cannot pack the outputs into {p['pack']}: "
                            f"{(r.stderr.strip().splitlines() or [r.returncode])[-1]}")
        result["packed"] = p["pack"]
    if staged:
        result["staged"] = staged
    m.exit_json(**result)


if __name__ == "__main__":
    main()
