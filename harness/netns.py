"""Entering a network namespace from this process, for a moment: a socket
keeps the namespace it was made in, so tests can talk from a client host."""
from __future__ import annotations

import contextlib
import ctypes
import os

from . import HarnessError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise HarnessError(f"setns failed: {os.strerror(err)}")


@contextlib.contextmanager
def netns(name: str):
    """Runs the body of the with-statement in network namespace name."""
    path = f"/var/run/netns/{name}"
    try:
        target = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise HarnessError(f"network namespace {name} does not exist (is the testbed up?)") from None
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
