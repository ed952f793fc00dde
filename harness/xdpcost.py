"""The XDP program's run time per request, this tree's against another
revision's, in one sitting: both are compiled with bcc, each given the same
cache record, and run on the same frames through BPF_PROG_TEST_RUN, one
request per call (with a repeat count, the kernel would run the program
again on the reply it wrote), in blocks alternated A B B A so that the
machine's drift cancels out. Needs root.

    python -m harness.xdpcost --ref REV [--rounds 20] [--calls 2000] [--cpu N] [--json]

The frames: a READ that hits an 8-byte record (a 90-byte frame), and an
ECHO of the largest value a request may carry (DINT_MAX_VALUE bytes, a
1106-byte frame). The frames are valid, with UDP checksums, and addressed to
the interface the programs are told they serve (the loopback device, which
BPF_PROG_TEST_RUN receives on).
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from . import ROOT, HarnessError, bpf_run
from .dintd import SOURCE, Iface, compile_program
from .protocol import DEFAULT_PORT, MAX_VALUE, Op, pack
from .schema import Schema

SERVER_MAC, SERVER_IP = "02:00:00:00:00:01", "10.0.0.1"
CLIENT_MAC, CLIENT_IP = "02:00:00:00:00:02", "10.0.0.2"
FILL_MAGIC = 0xD17EF111
FILL_HEAD = struct.Struct("<IBB2xQ")  # struct dint_fill up to its record (bpf/dint_cache.h)
SLOT_ID_SIZE = 16


def frames() -> dict[str, bytes]:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    def frame(msg: bytes) -> bytes:
        return bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src=CLIENT_IP, dst=SERVER_IP) /
                     UDP(sport=40000, dport=DEFAULT_PORT) / Raw(msg))
    return {"read_hit": frame(pack(Op.READ, 42, bytes(8))),
            "echo_max_value": frame(pack(Op.ECHO, 1, bytes(range(256)) * (MAX_VALUE // 256)))}


class Program:
    """One tree's data plane, loaded, with key 42 of table 0 in its cache."""

    def __init__(self, name: str, source: Path):
        from bcc import BPF
        self.name = name
        self.bpf = compile_program(DEFAULT_PORT, Schema(), source=source, buckets=64,
                                   ifaces=[Iface(1, SERVER_MAC, (SERVER_IP,))], local=[SERVER_IP])
        self.fd = self.bpf.load_func(b"dint_xdp", BPF.XDP).fd
        fill = self.bpf.load_func(b"dint_fill", BPF.XDP).fd
        leaf = self.bpf[b"dint_cache"].Leaf
        rec = dict(dict(leaf._fields_)["slot"]._type_._fields_)["rec"]()
        rec.live, rec.ver = 1, 5
        ctypes.memmove(rec.value, b"fortytwo", 8)
        body = bytes(rec)
        res = bpf_run.run(fill, FILL_HEAD.pack(FILL_MAGIC, 0, 0, 42) + body + bytes(SLOT_ID_SIZE) + bytes(len(body)))
        if res.verdict != "XDP_TX" or res.packet[5] not in (1, 3):
            raise HarnessError(f"{name}: could not fill the cache ({res.verdict})")

    def time(self, frame: bytes, calls: int) -> list[int]:
        """ns of each of calls single runs; each must answer (XDP_TX)."""
        out = []
        for _ in range(calls):
            res = bpf_run.run(self.fd, frame)
            if res.verdict != "XDP_TX":
                raise HarnessError(f"{self.name}: the program did not answer ({res.verdict})")
            out.append(res.duration_ns)
        return out


def tree_of(ref: str, into: Path) -> Path:
    """The bpf/ and engine/ of revision ref of this repository, under into."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "bpf", "engine"], capture_output=True)
    if archive.returncode:
        raise HarnessError(f"git archive {ref} failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "bpf" / "dint_xdp.c"


def measure(ref: str, rounds: int, calls: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="xdpcost-") as tmp:
        progs = [Program(ref, tree_of(ref, Path(tmp))), Program("this tree", SOURCE)]
    try:
        blocks: dict[tuple[str, str], list[float]] = {}
        kinds = frames()
        for p in progs:  # warm up: caches, branch predictors, the JIT image
            for f in kinds.values():
                p.time(f, calls // 4)
        for r in range(rounds):
            for p in (progs if r % 2 == 0 else progs[::-1]):  # A B, B A, A B, ...
                for kind, f in kinds.items():
                    blocks.setdefault((p.name, kind), []).append(statistics.mean(p.time(f, calls)))
        out = {"rounds": rounds, "calls_per_block": calls, "frames": {k: len(f) for k, f in kinds.items()},
               "ns_per_request": {}}
        for kind in kinds:
            row = {}
            for p in progs:
                b = blocks[(p.name, kind)]
                row[p.name] = {"median": round(statistics.median(b), 1), "mean": round(statistics.mean(b), 1),
                               "stdev": round(statistics.stdev(b), 1) if len(b) > 1 else 0.0}
            a, b = (blocks[(p.name, kind)] for p in progs)
            diffs = [y - x for x, y in zip(a, b)]  # per round: this tree - ref, same moment
            row["difference_median"] = round(statistics.median(diffs), 1)
            out["ns_per_request"][kind] = row
        return out
    finally:
        for p in progs:
            p.bpf.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.xdpcost", description=__doc__.splitlines()[0])
    ap.add_argument("--ref", required=True, help="the revision to compare with (e.g. main)")
    ap.add_argument("--rounds", type=int, default=20, help="A B (or B A) rounds")
    ap.add_argument("--calls", type=int, default=2000, help="single-request runs per block")
    ap.add_argument("--cpu", type=int, help="pin to this CPU")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.rounds < 2 or args.calls < 4:
            raise HarnessError("--rounds must be at least 2 and --calls at least 4")
        if os.geteuid() != 0:
            raise HarnessError("needs root (BPF)")
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        res = measure(args.ref, args.rounds, args.calls)
    except HarnessError as e:
        print(f"xdpcost: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"XDP ns per request, {res['rounds']} rounds A B / B A of {res['calls_per_block']} single runs a block")
    for kind, row in res["ns_per_request"].items():
        names = [k for k in row if k != "difference_median"]
        cells = "   ".join(f"{n}: {row[n]['median']} (mean {row[n]['mean']}, sd {row[n]['stdev']})" for n in names)
        print(f"  {kind} ({res['frames'][kind]} B): {cells}   difference {row['difference_median']:+}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
