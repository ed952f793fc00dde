"""The dint server process of one server host: compiles bpf/dint_xdp.c with
bcc, attaches it in native mode to the host's interfaces, prints `ready`,
and on SIGTERM/SIGINT (or any error) detaches it and prints its counters.

    python -m harness.dintd --ifaces IF[,IF...] [--port P] [--cpus LIST] [--print-source]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from . import BPF_DIR

SOURCE = BPF_DIR / "dint_xdp.c"
STAT_NAMES = ("rx", "tx", "drop", "err")  # enum dint_stat order


def cflags(port: int) -> list[str]:
    """Build flags of the data plane; recorded with the results."""
    return [f"-I{BPF_DIR}", f"-DDINT_PORT={port}"]


def print_source(port: int) -> None:
    """The final BPF source, as bcc compiles it (after the preprocessor)."""
    from bcc import BPF, DEBUG_PREPROCESSOR
    BPF(src_file=str(SOURCE).encode(), cflags=cflags(port), debug=DEBUG_PREPROCESSOR)


def read_stats(bpf) -> dict:
    table = bpf["dint_stats"]
    out = {}
    for i, name in enumerate(STAT_NAMES):
        out[name] = int(sum(table[table.Key(i)]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.dintd", description=__doc__.splitlines()[0])
    ap.add_argument("--ifaces", required=True, help="comma-separated interfaces to serve")
    ap.add_argument("--port", type=int, default=7777)
    ap.add_argument("--cpus", default="", help="pin this process to these CPUs once loaded")
    ap.add_argument("--print-source", action="store_true", help="print the preprocessed BPF source and exit")
    args = ap.parse_args(argv)
    if args.print_source:
        print_source(args.port)
        return 0

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    from bcc import BPF
    bpf = BPF(src_file=str(SOURCE).encode(), cflags=cflags(args.port))
    fn = bpf.load_func(b"dint_xdp", BPF.XDP)
    attached = []
    try:
        for iface in args.ifaces.split(","):
            bpf.attach_xdp(iface.encode(), fn, BPF.XDP_FLAGS_DRV_MODE)
            attached.append(iface)
        if args.cpus:
            os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
        print("ready", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for iface in attached:
            try:
                bpf.remove_xdp(iface.encode(), BPF.XDP_FLAGS_DRV_MODE)
            except Exception as e:  # keep detaching the others
                print(f"dintd: could not detach XDP from {iface}: {e}", file=sys.stderr)
        print("stats " + json.dumps(read_stats(bpf)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
