"""The dint server process of one server host: compiles bpf/dint_xdp.c with
bcc for the run's schema and cache, starts the user-space slow path
(bpf/dint_slowpath.c, given the cache map and the programs), which loads the
initial data into its store and the cache image into the map in place,
then attaches the program in native mode to the host's interfaces and prints
`ready`. While it runs it drains the per-CPU log rings into memory and
watches the slow path. On SIGTERM/SIGINT (or any error) it detaches the
program, stops the slow path (which writes the cached records back and
dumps the store if asked), writes the log if asked, and prints its counters.
On SIGUSR2 it writes the same files while it keeps serving (a checkpoint,
checkpoint()) and prints `checkpoint {json}` when they are in place; the
slow path sends it SIGUSR2 when the clients' checkpoint barrier completes
(DINT_OP_CHECKPOINT, which the XDP program passes up to it uncounted), and
that checkpoint's files are <dump>.<epoch> and <log>.<epoch>.

Its `stats {json}` lines (every --stats-interval-ms, on SIGUSR1 and at stop)
carry what the host's dint has cost so far, as the other servers' do
(userspace/server_common.h): t_ns (CLOCK_REALTIME), mono_ns, cpu_ns (this
process's CPU time plus the slow path's, which it reports in its own lines;
cpu_user_ns and cpu_sys_ns, the same apart by mode),
and bpf_run_ns and bpf_run_cnt, the kernel's run-time statistics of the XDP
program (from /proc/self/fdinfo of its fd), and napi_cpu_ns, the CPU time of
the threaded-NAPI kernel threads of its interfaces, which run the XDP
program and the driver's work around it (read by the slow path, as the
other servers read theirs: --napi-ifaces; 0 while NAPI is not threaded). Those statistics are on while
dintd runs: it holds the fd of the BPF_ENABLE_STATS command, or, if the
kernel refuses that, sets kernel.bpf_stats_enabled and restores it at exit.

    python -m harness.dintd --ifaces IF[,IF...] --slowpath BIN [--port P] [--cpus LIST]
                            [--schema 8,40,0] [--buckets N] [--no-bloom] [--write-through]
                            [--capacity N] [--clients N] [--load SNAP] [--dump SNAP] [--log FILE]
                            [--stats-interval-ms N] [--print-source]
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import json
import math
import mmap
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import NamedTuple

from . import BPF_DIR, ENGINE_DIR, HarnessError, snapshot
from .protocol import DEFAULT_PORT
from .schema import Schema
from .sh import run

SOURCE = BPF_DIR / "dint_xdp.c"
# Mirrors of bpf/dint_cache.h, checked against it by tests/test_constants.py:
# the map dint_stats, indexed by enum dint_stat then enum dint_xdp_stat
# (name i is DINT_STAT_<NAME>), and DINT_CACHE_SLOTS.
STAT_NAMES = ("rx", "tx", "drop", "err", "stale", "pass", "write_through", "write_through_failed", "fill", "evict", "busy",
              "kernel", "bloom_out", "bloom_fp")
CACHE_SLOTS = 4
DRAIN_INTERVAL_S = 0.05
STATS_INTERVAL_MS = 100  # userspace/server_common.h: STATS_DEFAULT_INTERVAL_MS
DEFAULT_BUCKETS = 1024
SLOWPATH_READY_S = 120.0

# The cache's budget: slots for cache_fraction times the records (RunConfig
# cache_fraction; 0 takes DEFAULT_CACHE_FRACTION), as DINT sizes its cache
# (it budgeted 9M four-slot buckets, slots for 1.5 times its 24M records).
# Keys land in buckets at random, and a key whose bucket is full lives in
# the slow path's store: with one 4-slot bucket per record, the default,
# about 0.4% of the keys do (Poisson tails); with DINT's 1.5, about 8%.
DEFAULT_CACHE_FRACTION = 4.0
MIN_BUCKETS = 64  # the default budget's floor (a fraction asked for has none)


def cache_buckets(records: int, fraction: float = 0.0) -> int:
    """Buckets of CACHE_SLOTS slots for fraction times the records (0: the
    default budget, DEFAULT_CACHE_FRACTION, never under MIN_BUCKETS)."""
    if fraction:
        return max(1, math.ceil(fraction * records / CACHE_SLOTS))
    return max(MIN_BUCKETS, math.ceil(DEFAULT_CACHE_FRACTION * records / CACHE_SLOTS))


def possible_cpus() -> int:
    """CPUs the kernel may run XDP on (ids 0..n-1), from /sys."""
    from bcc.utils import get_possible_cpus
    return max(get_possible_cpus()) + 1


DEFAULT_CLIENTS = 16


class Iface(NamedTuple):
    """A served interface as the XDP program checks frames against it."""
    ifindex: int
    mac: str
    addrs: tuple[str, ...]  # its IPv4 addresses


def host_addresses(names: list[str], strict: bool = True) -> tuple[list[Iface], list[str]]:
    """The interfaces named (index, MAC, IPv4 addresses) and every IPv4
    address of this host (its network namespace), as the kernel has them.
    strict=False leaves out interfaces that do not exist."""
    try:
        links = json.loads(run(["ip", "-j", "addr", "show"]).stdout)
    except ValueError as e:
        raise HarnessError(f"cannot read this host's addresses: {e}") from None
    by_name = {link["ifname"]: link for link in links}
    local = [a["local"] for link in links for a in link.get("addr_info", []) if a.get("family") == "inet"]
    ifaces = []
    for name in names:
        link = by_name.get(name)
        if link is None:
            if not strict:
                continue
            raise HarnessError(f"no interface {name} on this host")
        ifaces.append(Iface(int(link["ifindex"]), link.get("address", ""),
                            tuple(a["local"] for a in link.get("addr_info", []) if a.get("family") == "inet")))
    return ifaces, local


def _addr_word(addr: str) -> int:
    """An IPv4 address as the program loads it from a packet (memory order)."""
    return struct.unpack("=I", socket.inet_aton(addr))[0]


def address_cflags(ifaces: list[Iface], local: list[str]) -> list[str]:
    """DINT_IFACES and DINT_LOCAL_ADDRS (bpf/dint_xdp.c) for these addresses."""
    entries = []
    for i in ifaces:
        try:
            mac = bytes.fromhex(i.mac.replace(":", ""))
        except ValueError:
            mac = b""
        if len(mac) != 6:
            raise HarnessError(f"interface {i.ifindex} has no Ethernet address ({i.mac!r})")
        m16, m32 = struct.unpack("=H", mac[:2])[0], struct.unpack("=I", mac[2:])[0]
        entries += [f"DINT_IFACE({i.ifindex},{m16:#x},{m32:#x},{_addr_word(a):#x})" for a in i.addrs]
    return [f"-DDINT_IFACES={' '.join(entries)}",
            f"-DDINT_LOCAL_ADDRS={' '.join(f'DINT_ADDR({_addr_word(a):#x})' for a in dict.fromkeys(local))}"]


def cflags(port: int, schema: Schema, buckets: int = DEFAULT_BUCKETS, bloom: bool = True,
           write_through: bool = False, clients: int = DEFAULT_CLIENTS, ifaces: list[Iface] = (),
           local: list[str] = (), source_dirs: tuple = (ENGINE_DIR, BPF_DIR)) -> list[str]:
    """Build flags of the data plane; recorded with the results. ifaces and
    local: the addresses it answers for (host_addresses)."""
    return [*(f"-I{d}" for d in source_dirs), f"-DDINT_PORT={port}", f"-DDINT_NCPUS={possible_cpus()}",
            f"-DDINT_CACHE_BUCKETS={buckets}", f"-DDINT_CACHE_BLOOM={int(bloom)}",
            f"-DDINT_CACHE_WRITE_THROUGH={int(write_through)}", f"-DDINT_CLIENTS={clients}",
            # x86's total store order: the latch is freed by a plain store
            f"-DDINT_TSO={int(os.uname().machine == 'x86_64')}", *schema.cflags(),
            *address_cflags(list(ifaces), list(local))]


# clang's BPF backend turns the clearing of a new record (__builtin_memset in
# bpf/dint_xdp.c) into stores up to this many bytes, and into a call to
# memset, which BPF lacks, beyond (found by building for growing values).
BPF_MEMSET_MAX = 1024


def compile_program(port: int, schema: Schema, debug: int = 0, source=SOURCE, **cache):
    """The data plane compiled with bcc (source: bpf/dint_xdp.c of this tree,
    or of another, whose engine/ and bpf/ are then included)."""
    from bcc import BPF
    from .limits import Layout
    rec = Layout(schema).rec
    if rec > BPF_MEMSET_MAX:  # clang would stop the process with its fatal error, not raise
        raise HarnessError(f"schema {schema}: a record of {rec} bytes (for {schema.val_max}-byte values) is more than "
                           f"the {BPF_MEMSET_MAX} bytes the BPF backend clears without a memset call, which BPF does "
                           f"not have: dint's XDP program holds values of at most "
                           f"{BPF_MEMSET_MAX - (Layout(Schema((8,))).rec - 8)} bytes")
    source = os.fspath(source)
    if source != os.fspath(SOURCE):
        tree = os.path.dirname(os.path.dirname(os.path.abspath(source)))
        cache["source_dirs"] = (os.path.join(tree, "engine"), os.path.join(tree, "bpf"))
    try:
        return BPF(src_file=source.encode(), cflags=cflags(port, schema, **cache), debug=debug)
    except Exception as e:  # bcc's, after clang's messages on stderr
        raise HarnessError(f"bcc could not compile {os.path.basename(source)} for schema {schema}: {e}") from None


def load_xdp(bpf, name: bytes, schema: Schema):
    """The compiled module's XDP program name, loaded; the kernel's refusal
    (a schema of values too large for the program to verify, see
    harness/verifier.py) said in one line."""
    from bcc import BPF
    try:
        return bpf.load_func(name, BPF.XDP)
    except Exception as e:  # bcc's, after the verifier's log on stderr
        raise HarnessError(f"the kernel refused {name.decode()} built for schema {schema} ({e}); "
                           f"python -m harness verifier --schema {schema} gives the reason and the figures") from None


def read_stats(bpf) -> dict:
    table = bpf[b"dint_stats"]
    return {name: int(sum(table[table.Key(i)])) for i, name in enumerate(STAT_NAMES)}


BPF_ENABLE_STATS = 32  # enum bpf_cmd
BPF_STATS_RUN_TIME = 0  # enum bpf_stats_type
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
# __NR_bpf, for when libbpf is not there
NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}


def _enable_stats_fd() -> int:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): an fd that keeps the kernel's
    BPF run-time statistics on while it is open. Through libbpf if it is
    there, else the bpf() system call. OSError if the kernel refuses."""
    libbpf = ctypes.util.find_library("bpf")
    if libbpf:
        lib = ctypes.CDLL(libbpf, use_errno=True)
        if hasattr(lib, "bpf_enable_stats"):
            lib.bpf_enable_stats.argtypes = [ctypes.c_int]
            fd = lib.bpf_enable_stats(BPF_STATS_RUN_TIME)
            if fd >= 0:
                return fd
            err = -fd if fd < -1 else ctypes.get_errno()
            raise OSError(err, f"bpf_enable_stats: {os.strerror(err)}")
    nr = NR_BPF.get(os.uname().machine)
    if nr is None:
        raise OSError(errno.ENOSYS, "no libbpf, and the bpf() system call's number on this machine is not known")
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint32 * 4)(BPF_STATS_RUN_TIME)
    fd = libc.syscall(ctypes.c_long(nr), ctypes.c_int(BPF_ENABLE_STATS), ctypes.byref(attr),
                      ctypes.c_uint(ctypes.sizeof(attr)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_ENABLE_STATS: {os.strerror(err)}")
    return fd


class RunStats:
    """The kernel's BPF run-time statistics, on for as long as this is open:
    the BPF_ENABLE_STATS fd, or else the sysctl set (and restored at close)."""

    def __init__(self):
        self.fd: int | None = None
        self.sysctl_before: str | None = None
        self.how = ""
        try:
            self.fd = _enable_stats_fd()
            self.how = "BPF_ENABLE_STATS"
        except OSError as e:
            try:
                with open(STATS_SYSCTL) as f:
                    before = f.read().strip()
                with open(STATS_SYSCTL, "w") as f:
                    f.write("1")
            except OSError as e2:
                raise HarnessError(f"cannot enable BPF run-time statistics ({e}; {STATS_SYSCTL}: {e2})") from None
            self.sysctl_before = before
            self.how = "kernel.bpf_stats_enabled"
            print(f"dintd: BPF_ENABLE_STATS failed ({e}): kernel.bpf_stats_enabled set for the run", file=sys.stderr)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.sysctl_before is not None:
            try:
                with open(STATS_SYSCTL, "w") as f:
                    f.write(self.sysctl_before)
            except OSError as e:
                print(f"dintd: could not restore {STATS_SYSCTL}: {e}", file=sys.stderr)
            self.sysctl_before = None


def prog_run_stats(prog_fd: int) -> tuple[int, int]:
    """run_time_ns and run_cnt of the program behind this process's fd."""
    ns = cnt = 0
    with open(f"/proc/self/fdinfo/{prog_fd}") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "run_time_ns":
                ns = int(value)
            elif key == "run_cnt":
                cnt = int(value)
    return ns, cnt


def sample_fields(prog_fd: int) -> dict:
    """What the host's dint has cost so far, but the slow path's part
    (with_slow_path adds it)."""
    run_ns, run_cnt = prog_run_stats(prog_fd)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"t_ns": time.time_ns(), "mono_ns": time.monotonic_ns(), "bpf_run_ns": run_ns, "bpf_run_cnt": run_cnt,
            "dintd_cpu_ns": time.process_time_ns(), "dintd_cpu_user_ns": round(ru.ru_utime * 1e9),
            "dintd_cpu_sys_ns": round(ru.ru_stime * 1e9)}


def with_slow_path(sample: dict, slow: dict) -> dict:
    """sample_fields() with the slow path's cost from its stats line (the
    module's docstring): cpu_ns (and apart by mode) dintd's plus the slow
    path's, none without the slow path's (it did not answer); napi_cpu_ns,
    which the slow path reads for dintd's interfaces."""
    out = dict(sample)
    for key in ("cpu_ns", "cpu_user_ns", "cpu_sys_ns"):
        if key in slow:
            out[key] = sample[f"dintd_{key}"] + slow[key]
    if "napi_cpu_ns" in slow:
        out["napi_cpu_ns"] = slow["napi_cpu_ns"]
    return out


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
    ap.add_argument("--slowpath", help="the slow path binary built for this schema (required to serve)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--cpus", default="", help="pin this process and the slow path to these CPUs once loaded")
    ap.add_argument("--schema", default=str(Schema()), help="table value sizes, e.g. 8,40,0")
    ap.add_argument("--buckets", type=int, default=DEFAULT_BUCKETS,
                    help=f"cache buckets of {CACHE_SLOTS} slots (preallocated)")
    ap.add_argument("--no-bloom", action="store_true", help="ablation: every cache miss goes to the slow path")
    ap.add_argument("--write-through", action="store_true",
                    help="ablation: every writing operation goes up to the slow path")
    ap.add_argument("--capacity", type=int, default=4096, help="records the slow path's store holds")
    ap.add_argument("--clients", type=int, default=DEFAULT_CLIENTS,
                    help="client slots of the exactly-once state (each keeps a window of completion records)")
    ap.add_argument("--load", help="snapshot to load before serving")
    ap.add_argument("--dump", help="write a snapshot of the store here on stop")
    ap.add_argument("--log", help="write the log here on stop")
    ap.add_argument("--stats-interval-ms", type=int, default=STATS_INTERVAL_MS,
                    help="print a stats line this often (0: only on SIGUSR1 and at stop)")
    ap.add_argument("--print-source", action="store_true", help="print the preprocessed BPF source and exit")
    args = ap.parse_args(argv)
    try:
        schema = Schema.parse(args.schema)
        if not 1 <= args.buckets <= 1 << 26:
            raise HarnessError(f"--buckets must be between 1 and {1 << 26}, not {args.buckets}")
        if not 0 <= args.stats_interval_ms <= 3_600_000:
            raise HarnessError(f"--stats-interval-ms must be between 0 and 3600000, not {args.stats_interval_ms}")
        if not 1 <= args.clients <= 4096:
            raise HarnessError(f"--clients must be between 1 and 4096, not {args.clients}")
        ifaces, local = host_addresses(args.ifaces.split(","), strict=not args.print_source)
        cache = dict(buckets=args.buckets, bloom=not args.no_bloom, write_through=args.write_through,
                     clients=args.clients, ifaces=ifaces, local=local)
        if args.print_source:
            from bcc import DEBUG_PREPROCESSOR
            compile_program(args.port, schema, DEBUG_PREPROCESSOR, **cache)
            return 0
        if not args.slowpath:
            raise HarnessError("--slowpath is required")
        return serve(args, schema, cache)
    except HarnessError as e:
        print(f"dintd: error: {e}", file=sys.stderr)
        return 1


def combine_stats(xdp: dict, slow: dict) -> dict:
    """The host's counters, counting each datagram once, as the kernel
    server would: datagrams from the wire are answered in XDP (tx), dropped
    there, or passed up (pass, write_through) to the slow path's socket;
    the kernel's stack also hands that socket the valid datagrams XDP leaves
    to it (IP options, fragments, broadcasts: the slow path's rx beyond what
    XDP passed). Frames the kernel drops are counted nowhere, as for the
    kernel server. The slow path's own counters follow as slow_*; without
    them (it died) the counts are XDP's."""
    out = dict(xdp)
    if "rx" in slow:
        out["rx"] = xdp["rx"] - xdp["pass"] - xdp["write_through"] + slow["rx"]
    for k in ("tx", "drop", "err", "stale"):
        out[k] = xdp[k] + slow.get(k, 0)
    out.update({f"slow_{k}": v for k, v in slow.items()})
    return out


class SlowPath:
    """The slow path process: started with the cache map and the programs,
    ready once the cache image is in; asked for its counters with SIGUSR1;
    stopped with SIGTERM."""

    def __init__(self, args, bpf, fds: list[int]):
        cache, xdp, fill = fds
        cmd = [args.slowpath, "--port", str(args.port), "--cache-fd", str(cache), "--xdp-fd", str(xdp),
               "--fill-fd", str(fill), "--capacity", str(args.capacity), "--napi-ifaces", args.ifaces,
               *(["--cpus", args.cpus] if args.cpus else []),
               *(["--load", args.load] if args.load else []), *(["--dump", args.dump] if args.dump else [])]
        # A process group of its own: a stop signalled to dintd's group (as
        # deploy's process module does) must not reach the slow path before
        # dintd has detached XDP; the slow path stops itself if dintd dies.
        self.proc = subprocess.Popen(cmd, pass_fds=fds, stdout=subprocess.PIPE, text=True, process_group=0)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.wait()
            raise HarnessError(f"the slow path did not start (exit {self.proc.returncode}); see above")
        self.stats_lines: list[dict] = []
        self.checkpoints: list[dict] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            kind, _, rest = line.partition(" ")
            if kind not in ("stats", "checkpoint"):
                continue
            try:
                got = json.loads(rest)
            except ValueError:
                continue
            with self.changed:
                (self.stats_lines if kind == "stats" else self.checkpoints).append(got)
                self.changed.notify_all()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def live_stats(self, timeout_s: float = 2.0) -> dict:
        """The slow path's counters so far ({} if it does not answer)."""
        with self.changed:
            seen = len(self.stats_lines)
            if not self.alive():
                return {}
            self.proc.send_signal(signal.SIGUSR1)
            self.changed.wait_for(lambda: len(self.stats_lines) > seen, timeout_s)
            return self.stats_lines[-1] if len(self.stats_lines) > seen else {}

    def checkpoint(self, timeout_s: float = 120.0) -> tuple[dict, dict]:
        """SIGUSR2: the slow path writes the cached records back and its
        dump (server_common.h). Returns its checkpoint line ({"ok": false,
        "error": ...} if it did not answer) and its stats line printed
        with it."""
        with self.changed:
            seen = len(self.checkpoints)
            if not self.alive():
                return {"ok": False, "error": "the slow path is not running"}, {}
            self.proc.send_signal(signal.SIGUSR2)
            if not self.changed.wait_for(lambda: len(self.checkpoints) > seen or not self.alive(), timeout_s) \
                    or len(self.checkpoints) <= seen:
                return {"ok": False, "error": f"the slow path did not answer within {timeout_s:g} s"}, {}
            return self.checkpoints[-1], self.stats_lines[-1] if self.stats_lines else {}

    def stop(self) -> dict:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()
        self.reader.join()
        return self.stats_lines[-1] if self.stats_lines else {}  # the one printed at stop


class Signals:
    """What the signals asked for, counted by their handlers, and a wait
    that a signal ends at once (signal.set_wakeup_fd: a byte down a pipe
    that the wait selects on). A handler only counts: it runs in the main
    thread between two bytecodes, maybe while that holds a lock it would
    want (an Event's), and a count is never lost the way a flag cleared
    after it was set again is. SIGTERM and SIGINT stop; SIGUSR1 asks for
    the counters so far; SIGUSR2 for a checkpoint (checkpoint()), from the
    harness or from the slow path when the clients' barrier completed."""
    NAMES = {signal.SIGTERM: "stop", signal.SIGINT: "stop", signal.SIGUSR1: "live", signal.SIGUSR2: "ckpt"}

    def __init__(self):
        self.counts = dict.fromkeys(self.NAMES.values(), 0)
        self.seen = dict(self.counts)
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)
        signal.set_wakeup_fd(self.w, warn_on_full_buffer=False)
        for sig, name in self.NAMES.items():
            signal.signal(sig, lambda *_, name=name: self.counts.__setitem__(name, self.counts[name] + 1))

    @property
    def stopping(self) -> bool:
        return self.counts["stop"] > 0

    def take(self, name: str) -> bool:
        """Whether name was asked for since the last take."""
        n = self.counts[name]
        if n == self.seen[name]:
            return False
        self.seen[name] = n
        return True

    def wait(self, timeout: float) -> None:
        """Until a signal comes or timeout s pass."""
        select.select([self.r], [], [], max(0.0, timeout))
        try:
            while os.read(self.r, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        os.close(self.r)
        os.close(self.w)


def serve(args, schema: Schema, cache: dict) -> int:
    signals = Signals()
    run_stats = RunStats()
    try:
        return _serve(args, schema, cache, signals)
    finally:
        run_stats.close()
        signals.close()


def checkpoint(args, slow: SlowPath, drain: LogDrain, line, xdp_now) -> None:
    """Between two measured points served by the same servers (no request
    in flight): what a stop writes, written with XDP still attached and the
    servers serving on: the slow path's dump with every cached record in
    it, and the log drained from the rings. Prints the stats line of that
    moment, then `checkpoint {json}` once both files are in place.

    Asked for by the harness (SIGUSR2), or by the slow path once the
    clients' checkpoint barrier completed (userspace/barrier.h; the slow
    path then takes that epoch's checkpoint, its line says which, and the
    log goes to <log>.<epoch>). The XDP program's counters are read and the
    rings drained before the slow path is asked for its part: once it has
    written its dump it answers the clients OK, and they start their next
    point."""
    t0 = time.monotonic()
    drain.drain()
    at = xdp_now()
    done, slow_stats = slow.checkpoint()
    epoch = done.get("epoch", 0)
    if args.log:
        path = f"{args.log}.{epoch}" if epoch else args.log
        try:
            drain.write(path)
        except OSError as e:
            done = {**done, "ok": False, "error": f"writing the log {path} failed: {e}"}
    print("stats " + json.dumps(line(slow_stats, at)), flush=True)
    print("checkpoint " + json.dumps({**done, "write_ms": round((time.monotonic() - t0) * 1e3, 1), "epoch": epoch}),
          flush=True)


def _serve(args, schema: Schema, cache: dict, signals: Signals) -> int:
    from bcc import BPF
    bpf = compile_program(args.port, schema, **cache)
    fn = load_xdp(bpf, b"dint_xdp", schema)
    fill = load_xdp(bpf, b"dint_fill", schema)
    slow = SlowPath(args, bpf, [bpf[b"dint_cache"].get_fd(), fn.fd, fill.fd])
    drain = LogDrain(bpf, schema)
    attached = []
    failed = False

    def xdp_now() -> tuple[dict, dict]:
        return read_stats(bpf), sample_fields(fn.fd)

    def line(slow_stats: dict, at: tuple[dict, dict] | None = None) -> dict:
        # the slow path's first: what XDP passed it before is in them; or,
        # at a checkpoint, XDP's read before (at), with nothing in flight
        xdp, sample = at or xdp_now()
        return {**combine_stats(xdp, slow_stats), **with_slow_path(sample, slow_stats)}
    try:
        for iface in args.ifaces.split(","):
            bpf.attach_xdp(iface.encode(), fn, BPF.XDP_FLAGS_DRV_MODE)
            attached.append(iface)
        if args.cpus:
            os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
        print("ready", flush=True)
        every = args.stats_interval_ms / 1000
        next_stats = time.monotonic() + every
        next_drain = time.monotonic() + DRAIN_INTERVAL_S
        while not signals.stopping:
            signals.wait(min(next_drain, next_stats if every else next_drain) - time.monotonic())
            if signals.stopping:
                break
            now = time.monotonic()
            if now >= next_drain:
                drain.drain()
                next_drain = now + DRAIN_INTERVAL_S
            due = every and now >= next_stats
            if due:
                next_stats = max(next_stats + every, now)
            if signals.take("ckpt"):
                checkpoint(args, slow, drain, line, xdp_now)
            if signals.take("live") or due:
                print("stats " + json.dumps(line(slow.live_stats())), flush=True)
            if not slow.alive():
                print("dintd: error: the slow path died", file=sys.stderr, flush=True)
                failed = True
                break
    finally:
        for iface in attached:
            try:
                bpf.remove_xdp(iface.encode(), BPF.XDP_FLAGS_DRV_MODE)
            except Exception as e:  # keep detaching the others
                print(f"dintd: could not detach XDP from {iface}: {e}", file=sys.stderr)
        # XDP is off: the slow path writes the cached records back and dumps
        slow_stats = slow.stop()
        failed = failed or slow.proc.returncode != 0
        drain.drain()
        if args.log:
            drain.write(args.log)
        stats = line(slow_stats)
        # false when the slow path failed, e.g. could not write the cache
        # back at stop (its store full): the dump then misses records
        stats["clean"] = not failed
        print("stats " + json.dumps(stats), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
