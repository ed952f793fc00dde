"""dint-bench: reproduces the DINT (NSDI'24) evaluation on a local namespace
testbed or a cluster, comparing an XDP data plane with a kernel-socket and a
DPDK server that serve the same protocol."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE_DIR = ROOT / "engine"        # the protocol and the engine, shared by all three systems
USERSPACE_DIR = ROOT / "userspace"  # the user-space store and what the user-space servers share
BPF_DIR = ROOT / "bpf"              # dint: the XDP program, its cache and its slow path
BUILD_DIR = ROOT / "build"
RESULTS_DIR = ROOT / "results"
INVENTORY_DIR = ROOT / "inventory"


class HarnessError(Exception):
    """A failure with a message for the user (printed as one line, no traceback)."""
