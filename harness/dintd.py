"""The dint server process of one server host: compiles bpf/dint_xdp.c with
bcc for the run's schema, loads the initial data into the store map in bulk,
attaches the program in native mode to the host's interfaces and prints
`ready`. While it runs it drains the per-CPU log rings into memory. On
SIGTERM/SIGINT (or any error) it detaches the program, writes the log and a
dump of the store if asked, and prints its counters.

    python -m harness.dintd --ifaces IF[,IF...] [--port P] [--cpus LIST] [--schema 8,40,0]
                            [--load SNAP] [--dump SNAP] [--log FILE] [--print-source]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import signal
import sys
import threading

from . import BPF_DIR, HarnessError, snapshot
from .schema import Schema

SOURCE = BPF_DIR / "dint_xdp.c"
STAT_NAMES = ("rx", "tx", "drop", "err")  # enum dint_stat order
DRAIN_INTERVAL_S = 0.05


def possible_cpus() -> int:
    """CPUs the kernel may run XDP on (ids 0..n-1), from /sys."""
    from bcc.utils import get_possible_cpus
    return max(get_possible_cpus()) + 1


DEFAULT_CAPACITY = 4096


def cflags(port: int, schema: Schema, capacity: int = DEFAULT_CAPACITY) -> list[str]:
    """Build flags of the data plane; recorded with the results."""
    return [f"-I{BPF_DIR}", f"-DDINT_PORT={port}", f"-DDINT_NCPUS={possible_cpus()}",
            f"-DDINT_STORE_CAPACITY={capacity}", *schema.cflags()]


def compile_program(port: int, schema: Schema, debug: int = 0, capacity: int = DEFAULT_CAPACITY):
    from bcc import BPF
    return BPF(src_file=str(SOURCE).encode(), cflags=cflags(port, schema, capacity), debug=debug)


def read_stats(bpf) -> dict:
    table = bpf[b"dint_stats"]
    return {name: int(sum(table[table.Key(i)])) for i, name in enumerate(STAT_NAMES)}


def load_store(bpf, path: str, schema: Schema) -> int:
    """Initial data, with one batched map update (not one syscall per key)."""
    snap_schema, records = snapshot.read_snapshot(path)
    if snap_schema != schema:
        raise HarnessError(f"{path} has schema {snap_schema}, the program was built for {schema}")
    records = [r for r in records if r.live]
    if not records:
        return 0
    store = bpf[b"dint_store"]
    keys, vals = (store.Key * len(records))(), (store.Leaf * len(records))()
    for i, r in enumerate(records):
        keys[i].key, keys[i].table = r.key, r.table
        vals[i].live, vals[i].ver = 1, r.ver
        ctypes.memmove(vals[i].value, r.value, len(r.value))
    store.items_update_batch(keys, vals)
    return len(records)


def dump_store(bpf, path: str, schema: Schema) -> int:
    store = bpf[b"dint_store"]
    records = []
    for k, v in store.items_lookup_batch():
        size = schema.sizes[k.table]
        records.append(snapshot.Record(
            table=k.table, key=k.key, ver=v.ver, value=bytes(v.value)[:size], live=bool(v.live),
            owner=v.owner, nshared=sum(1 for s in v.shared if s)))
    records.sort(key=lambda r: (r.table, r.key))
    return snapshot.write_snapshot(path, schema, records)


class LogDrain:
    """Moves log records from the per-CPU rings (a memory-mapped array) to
    memory, freeing ring space: the program answers FULL when a CPU's ring
    is full. Records are kept raw and converted when the log is written."""

    def __init__(self, bpf, schema: Schema):
        ring = bpf[b"dint_log_ring"]
        self.head, self.tail, self.schema = bpf[b"dint_log_head"], bpf[b"dint_log_tail"], schema
        self.ncpus = possible_cpus()
        self.capacity = ring.max_entries // self.ncpus
        self.stride = (ctypes.sizeof(ring.Leaf) + 7) & ~7
        self.mem = mmap.mmap(ring.get_fd(), ring.max_entries * self.stride, mmap.MAP_SHARED, mmap.PROT_READ)
        self.chunks: list[bytes] = []

    def drain(self) -> None:
        zero = self.head.Key(0)
        heads, tails = self.head[zero], self.tail[zero]
        new_tails = self.tail.Leaf()
        moved = False
        for cpu in range(self.ncpus):
            tail, head = tails[cpu], heads[cpu]
            new_tails[cpu] = max(head, tail)
            while tail < head:  # at most two runs: up to the ring's end, then from its start
                slot = tail % self.capacity
                run = min(head - tail, self.capacity - slot)
                base = (cpu * self.capacity + slot) * self.stride
                self.chunks.append(self.mem[base:base + run * self.stride])
                tail += run
                moved = True
        if moved:  # only this process writes tails
            self.tail[zero] = new_tails

    def records(self) -> list[snapshot.LogRecord]:
        out, sizes, stride = [], self.schema.sizes, self.stride
        for chunk in self.chunks:
            for pos in range(0, len(chunk), stride):
                txn, key, ver, table = snapshot.LOGREC.unpack_from(chunk, pos)
                start = pos + snapshot.LOGREC.size
                out.append(snapshot.LogRecord(txn, table, key, ver, chunk[start:start + sizes[table]]))
        return out

    def write(self, path: str) -> None:
        snapshot.write_log(path, self.schema, self.records())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.dintd", description=__doc__.splitlines()[0])
    ap.add_argument("--ifaces", required=True, help="comma-separated interfaces to serve")
    ap.add_argument("--port", type=int, default=7777)
    ap.add_argument("--cpus", default="", help="pin this process to these CPUs once loaded")
    ap.add_argument("--schema", default=str(Schema()), help="table value sizes, e.g. 8,40,0")
    ap.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY,
                    help="records the store map holds (preallocated: size it to the data)")
    ap.add_argument("--load", help="snapshot to load into the store before serving")
    ap.add_argument("--dump", help="write a snapshot of the store here on stop")
    ap.add_argument("--log", help="write the log here on stop")
    ap.add_argument("--print-source", action="store_true", help="print the preprocessed BPF source and exit")
    args = ap.parse_args(argv)
    try:
        schema = Schema.parse(args.schema)
        if args.print_source:
            from bcc import DEBUG_PREPROCESSOR
            compile_program(args.port, schema, DEBUG_PREPROCESSOR, args.capacity)
            return 0
        return serve(args, schema)
    except HarnessError as e:
        print(f"dintd: error: {e}", file=sys.stderr)
        return 1


def serve(args, schema: Schema) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    from bcc import BPF
    bpf = compile_program(args.port, schema, capacity=args.capacity)
    fn = bpf.load_func(b"dint_xdp", BPF.XDP)
    if args.load:
        print(f"loaded {load_store(bpf, args.load, schema)} records from {args.load}", flush=True)
    drain = LogDrain(bpf, schema)
    attached = []
    try:
        for iface in args.ifaces.split(","):
            bpf.attach_xdp(iface.encode(), fn, BPF.XDP_FLAGS_DRV_MODE)
            attached.append(iface)
        if args.cpus:
            os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
        print("ready", flush=True)
        while not stop.wait(DRAIN_INTERVAL_S):
            drain.drain()
    finally:
        for iface in attached:
            try:
                bpf.remove_xdp(iface.encode(), BPF.XDP_FLAGS_DRV_MODE)
            except Exception as e:  # keep detaching the others
                print(f"dintd: could not detach XDP from {iface}: {e}", file=sys.stderr)
        drain.drain()
        if args.log:
            drain.write(args.log)
        if args.dump:
            dump_store(bpf, args.dump, schema)
        print("stats " + json.dumps(read_stats(bpf)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
