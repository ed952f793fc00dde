"""Running system commands with errors that say what failed and why."""
from __future__ import annotations

import os
import shlex
import subprocess

from . import HarnessError


def run(cmd: list[str], check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """Runs cmd, capturing its output; a failure raises HarnessError with stderr."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, input=input)
    except FileNotFoundError:
        raise HarnessError(f"command not found: {cmd[0]} (run 'make setup')") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise HarnessError(f"'{shlex.join(cmd)}' failed: {detail[-1] if detail else f'exit {proc.returncode}'}")
    return proc


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip", *(["-n", netns] if netns else []), *args], check=check)


def in_netns(netns: str | None, cmd: list[str]) -> list[str]:
    """The command line that runs cmd inside netns (unchanged without one)."""
    return ["ip", "netns", "exec", netns, *cmd] if netns else cmd


def alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
