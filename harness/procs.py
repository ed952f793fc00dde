"""Server and client processes: started with their output in a log file kept
with the results, declared ready by what they print (never a fixed sleep),
and always stopped, with SIGTERM first so they can clean up."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from . import HarnessError

READY = "ready"


class Proc:
    def __init__(self, name: str, cmd: list[str], log: Path):
        self.name, self.cmd, self.log = name, cmd, log
        self.popen: subprocess.Popen | None = None

    def start(self, stdout=None) -> "Proc":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log, "ab")
        logf.write(f"# {' '.join(self.cmd)}\n".encode())
        logf.flush()
        try:
            # Own session: a Ctrl-C at the terminal reaches the harness, which
            # stops its children in order.
            self.popen = subprocess.Popen(self.cmd, stdout=stdout or logf, stderr=logf,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        except FileNotFoundError:
            raise HarnessError(f"{self.name}: {self.cmd[0]} not found (run 'make setup')") from None
        finally:
            logf.close()
        return self

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:] if line.strip())

    def wait_ready(self, deadline: float) -> None:
        """Waits until the process prints the ready line."""
        while True:
            try:
                if any(line.strip() == READY for line in self.log.read_text(errors="replace").splitlines()):
                    return
            except OSError:
                pass
            code = self.popen.poll()
            if code is not None:
                raise HarnessError(f"{self.name} exited with code {code} before it was ready "
                                   f"(log {self.log}): {self.tail()}")
            if time.monotonic() > deadline:
                raise HarnessError(f"{self.name} was not ready in time (log {self.log}): {self.tail()}")
            time.sleep(0.05)

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after grace seconds; returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode

    def final_stats(self) -> dict | None:
        """The `stats {json}` line a server prints when it stops."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return None
        for line in reversed(lines):
            if line.startswith("stats "):
                try:
                    return json.loads(line[6:])
                except ValueError:
                    return None
        return None
