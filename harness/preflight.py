"""Checks, for real, that this host can run the testbed: root, the BPF
syscall and native XDP on a veth pair (attached in a scratch namespace).
Each failure is one line naming what is missing and how to fix it."""
from __future__ import annotations

import os
import uuid

from . import HarnessError
from .sh import ip
from .testbed import PASS_OBJ


def check() -> None:
    if os.geteuid() != 0:
        raise HarnessError("not root: the testbed creates namespaces and loads XDP programs; run as root (sudo)")
    if not PASS_OBJ.exists():
        raise HarnessError(f"{PASS_OBJ} is missing: run 'make setup'")
    if not os.path.exists("/sys/fs/bpf") or not os.path.ismount("/sys/fs/bpf"):
        raise HarnessError("bpffs is not mounted: run 'mount -t bpf bpf /sys/fs/bpf' (make setup does)")
    ns = f"dint-check-{uuid.uuid4().hex[:6]}"
    try:
        ip("netns", "add", ns)
        try:
            ip("link", "add", "chk0", "type", "veth", "peer", "name", "chk1", netns=ns)
        except HarnessError as e:
            raise HarnessError(f"cannot create a veth pair ({e}): the kernel needs CONFIG_VETH") from None
        try:
            ip("link", "set", "dev", "chk0", "xdpdrv", "obj", str(PASS_OBJ), "sec", "xdp", netns=ns)
        except HarnessError as e:
            raise HarnessError(f"cannot attach a native XDP program to a veth ({e}): needs a kernel with "
                               "CONFIG_BPF_SYSCALL (5.x or later) and iproute2 built with libbpf") from None
    finally:
        ip("netns", "del", ns, check=False)
