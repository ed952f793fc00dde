"""The environment a result was measured in: kernel, CPU, git revision and
the versions of everything that shapes the numbers."""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import socket

from . import ROOT
from .sh import run

PY_PACKAGES = ("pandas", "matplotlib", "scapy", "ansible-core", "ansible-runner", "hdrhistogram",
               "numpy", "tqdm", "PyYAML", "pytest")


def _first_line(cmd: list[str]) -> str | None:
    try:
        p = run(cmd, check=False)
    except Exception:
        return None
    text = (p.stdout or p.stderr).strip()
    return text.splitlines()[0] if p.returncode == 0 and text else None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


@functools.cache
def collect() -> dict:
    git = ["git", "-C", str(ROOT)]
    rev = _first_line(git + ["rev-parse", "HEAD"])
    dirty = run(git + ["status", "--porcelain", "--untracked-files=no"], check=False).stdout.strip()
    versions = {}
    for pkg in PY_PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        import bcc
        versions["bcc"] = getattr(bcc, "__version__", None) or _first_line(
            ["dpkg-query", "-W", "-f=${Version}", "python3-bpfcc"])
    except ImportError:
        versions["bcc"] = None
    versions["python"] = platform.python_version()
    versions["clang"] = _first_line(["clang", "--version"])
    versions["dpdk"] = _first_line(["pkg-config", "--modversion", "libdpdk"])
    versions["iproute2"] = _first_line(["ip", "-V"])
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "git_revision": rev,
        "git_dirty": bool(dirty) if rev else None,
        "bpf_stats_enabled": _read("/proc/sys/kernel/bpf_stats_enabled"),
        "versions": versions,
    }
