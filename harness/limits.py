"""How much memory and disk a run needs, estimated from its configuration
before anything starts (arithmetic only: instant at any size), so that a
size this machine cannot hold is refused with one line naming the parameter
behind it, instead of failing minutes later.

Per place:
- the controller (this machine): the harness process and the initial data,
  which the harness makes as Python objects before writing the snapshot
  (Workload.rows counts the records without making them; PY_BYTES_PER_ROW
  is what one costs); on its disk, the snapshot and the servers' dumps
  (written there on a local testbed, fetched back there from a cluster);
- each server host: its store (System.capacity records, at the size
  userspace/store.h gives a record), and for dint the in-kernel cache
  (DintSystem.buckets buckets of bpf/dint_cache.h) with its log ring and
  exactly-once maps (the slow path writes the cache's image in place, through
  the map's memory mapping), and the dintd process that compiles the
  program; for bypass, DPDK's
  memory (-m 512, or hugepages on a cluster);
- each client host: its client processes (clients_per_host), each the
  harness's client and the parameters it draws before it starts
  (RunConfig.requests of them, or for TATP its bound per second of the
  run: PARAM_BYTES is what one costs).

On a local testbed every host is this machine: check_memory adds them all up
and compares the sum, plus MARGIN, with MemAvailable (or the room under the
cgroup's limit). The sum is on the safe side: the controller's records are
freed before the servers start, and a store's pages are touched only as records reach them. On a cluster
the controller's part is checked against this machine, and each host's
(Need.local False) against the memory its inventory states (`memory_gb`
or `memory`, harness/inventory.py); a host that states none is not
checked. Either way the controller's disk need is compared with the free
space of the results directory's filesystem. `reproduce --plan`
(harness/plan.py) shows every host's largest need over a profile.

Not counted: the servers' logs (they grow with the throughput: at most
16M records of a kernel or bypass server's lazily mapped log), and the
end-of-run consistency check, which reads every server's dump back into
Python objects (about 400 bytes a row per server) after the servers have
stopped."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import workloads

from . import HarnessError
from .config import RunConfig
from .dintd import CACHE_SLOTS
from .inventory import Host, Inventory
from .schema import Schema
from .snapshot import REC
from .systems import SYSTEM_CLASSES

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# A run is refused when its estimate plus this share of it exceeds what the
# machine has: the figures below are measured peaks, but Python's allocator,
# page tables and the processes beside the run (playbooks, clients) are not
# all in them.
MARGIN = 0.10

# -- the controller --------------------------------------------------------
# Peak bytes per record of generating a workload's initial data
# (Workload.initial: snapshot.Record objects, their values and keys, the
# list, and what the loader holds on the way). Measured as the growth of
# ru_maxrss across `WORKLOAD.initial(data)` in a fresh `.venv/bin/python`
# (CPython 3.11, Debian 12) at kv and lock 4,000,000 keys (233 and 201),
# smallbank 2,000,000 accounts (250), TATP 1,000,000 subscribers (231) and
# TPC-C 1 warehouse at the specification's cardinalities (255), rounded up
# to a multiple of 8; tracemalloc's peak at small sizes is 5-15% lower (tests/test_limits.py
# checks each figure against it).
PY_BYTES_PER_ROW = {"kv": 240, "lock": 208, "smallbank": 256, "tatp": 232, "tpcc": 256}
PY_BYTES_PER_ROW_DEFAULT = max(PY_BYTES_PER_ROW.values())  # a workload not measured yet
# The harness process itself: ru_maxrss 25 MiB after the imports of
# `harness run`, 72 MiB after those of `harness reproduce`; rounded up.
HARNESS_BYTES = 96 * MiB

# -- the servers -----------------------------------------------------------
# Mirrors of the C (tests/test_limits.py checks them, and the sizes below,
# against a program built from the headers).
SHARED_MAX = 4              # DINT_SHARED_MAX (engine/dint_engine.h): shared holders a record keeps
WINDOW = 65536              # DINT_WINDOW (engine/dint_proto.h): completion records per client slot
XDP_LOG_CAPACITY = 16384    # DINT_LOG_CAPACITY (bpf/dint_xdp.c): log ring records per CPU
# dintd compiling bpf/dint_xdp.c with bcc: ru_maxrss 144 MB (compile_program
# for the default schema), rounded up.
DINTD_BYTES = 160 * MiB
# bypass: DPDK's memory, `-m 512` on the local testbed (BypassSystem), from
# hugepages on a cluster host.
DPDK_BYTES = 512 * MiB

# -- the clients -------------------------------------------------------------
# Peak bytes per parameter a client process draws before it starts
# (Stream.generate, or Transactions.params of the workload's types): the
# peak of tracemalloc while drawing 200,000 (CPython 3.11, Debian 12; the
# default data; for kv the larger of its stream and its contention mix),
# plus 10% for what tracemalloc does not see, rounded up to a multiple of
# 8 (tests/test_limits.py checks each figure against tracemalloc).
PARAM_BYTES = {"echo": 360, "kv": 384, "log": 384, "lock": 1656, "smallbank": 184, "tatp": 200, "tpcc": 712}
PARAM_BYTES_DEFAULT = max(PARAM_BYTES.values())  # a workload not measured yet
# A client process beside its parameters: ru_maxrss 22 MiB after the
# imports of harness.loadgen, plus its histograms and the socket buffers it
# asks for (4 MiB each way per server), rounded up.
CLIENT_PROCESS_BYTES = 64 * MiB
# Seconds of parameters a client draws beyond its warm-up and window, for a
# workload with Transactions.params_per_s (as harness/loadgen.py does).
PARAM_SLACK_S = 2

# What check_memory names, per RunConfig field.
FLAGS = {"scale": "--scale", "keys": "--keys", "store_capacity": "--store-capacity", "duration_s": "--duration",
         "cache_fraction": "--cache-fraction", "system": "--system", "clients_per_host": "--clients-per-host"}


def _up(n: int, to: int) -> int:
    return -(-n // to) * to


@dataclass(frozen=True)
class Layout:
    """The sizes of the C structures of a build for one schema (its largest
    value is DINT_VAL_MAX)."""
    schema: Schema

    @property
    def rec(self) -> int:
        """struct dint_rec: 24 bytes of header, the shared holders, the
        value and two transaction ids."""
        return 24 + _up(self.schema.val_max, 8) + 8 * SHARED_MAX + 16

    @property
    def entry(self) -> int:
        return 8 + self.rec  # struct store_entry: a latch and the record

    ident = 16              # struct store_id: key, table (padded)
    index_slot = 16         # struct store_slot: the hash index's
    done = 24               # struct dint_done: a completion record
    session = 8             # struct dint_session

    @property
    def log_rec(self) -> int:
        return 24 + _up(self.schema.val_max, 8)  # struct dint_log_rec

    @property
    def bucket(self) -> int:
        """struct dint_bucket: 64 bytes of header and keys, then the slots'
        records, packed, the whole a multiple of 64 bytes."""
        return _up(64 + CACHE_SLOTS * self.rec, 64)

    def store(self, capacity: int, clients: int) -> int:
        """store_init (userspace/store.h) for a store of this capacity: the
        records, their ids, the index (a power of two, at least twice the
        capacity) and the exactly-once state. Mapped lazily: the index is
        touched all over as keys hash into it, the records up to those
        loaded and inserted. The log is not counted."""
        slots = 1 << (2 * capacity - 1).bit_length() if capacity else 1
        return capacity * (self.entry + self.ident) + slots * self.index_slot + self.once(clients)

    def xdp_maps(self, buckets: int, clients: int, cpus: int) -> int:
        """dint's BPF maps (bpf/dint_xdp.c), allocated whole when loaded:
        the cache, the per-CPU log rings, the exactly-once state."""
        return buckets * self.bucket + cpus * XDP_LOG_CAPACITY * self.log_rec + self.once(clients)

    def once(self, clients: int) -> int:
        """The exactly-once state: a session and WINDOW completion records
        per client slot."""
        return clients * (self.session + WINDOW * self.done)


@dataclass(frozen=True)
class Part:
    what: str     # e.g. "initial data", "stores"
    bytes: int
    driver: str   # the RunConfig field its size grows with (FLAGS)


@dataclass(frozen=True)
class Need:
    """What one place needs of one resource: the controller (this machine)
    or a host of the inventory; memory or disk. local: whether it is this
    machine's (every host of a local testbed); a cluster host's need is for
    that host to check."""
    place: str
    resource: str   # "memory" or "disk"
    parts: tuple[Part, ...]
    local: bool

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.parts)


def _sized_system(cfg: RunConfig, inv: Inventory, records: int):
    """The run's System, told the records it would load (System.records
    otherwise counts them in the snapshot, which does not exist yet), so
    that its own capacity, growth and buckets size the estimate."""
    cls = SYSTEM_CLASSES[cfg.system]
    sized = type(f"Sized{cls.__name__}", (cls,), {"records": records})
    return sized(inv, cfg, Path(os.devnull))


def possible_cpus(host: Host, local: bool) -> int:
    """CPUs dint's log has a ring for: this machine's possible CPUs, or on a
    cluster host at least those the host's server runs on."""
    if local:
        try:
            text = Path("/sys/devices/system/cpu/possible").read_text().strip()
            return max(int(r.split("-")[-1]) for r in text.split(",")) + 1
        except (OSError, ValueError):
            return os.cpu_count() or 1
    return max(host.cpus) + 1


def _validated(cfg: RunConfig) -> RunConfig:
    cfg = dataclasses.replace(cfg).validate()
    if not math.isfinite(cfg.duration_s + cfg.warmup_s):
        raise HarnessError("--duration and --warmup must be finite")
    return cfg


def memory_need(cfg: RunConfig, inv: Inventory, span_s: float | None = None) -> list[Need]:
    """What a run of cfg on inv needs, per place: the controller's memory
    and disk (local), and every server host's memory (local on a local
    testbed) and, on a cluster, its disk (the snapshot it is sent and its
    dump). With span_s, cfg is a point of a series whose servers serve
    that long (harness/run.py, series_span_s): their stores grow over all
    of it. Bytes, as Python ints."""
    cfg = _validated(cfg)
    data = cfg.data
    wl = workloads.get(cfg.workload).for_data(data)
    per_table = wl.rows(data) if wl.rows else {}
    rows = sum(per_table.values())
    system = _sized_system(cfg, inv, rows)
    system.span_s = span_s
    growth, capacity = system.growth(), system.capacity
    layout = Layout(wl.schema)
    data_driver = "scale" if wl.scaling else "keys" if wl.keyed else "system"

    def driver(records: int, floor: int, override: str) -> str:
        """What drives a size made from the records loaded (or the keys'
        floor) and the rows the run inserts, unless a setting overrides it."""
        if override:
            return override
        return "duration_s" if growth > max(records, floor) else data_driver

    # the files: the snapshot (none without records) and a dump per server
    header = len(b"DINTSNAP") + 8 + 2 * len(wl.schema.sizes)
    snap = header + rows * REC.size + wl.initial_value_bytes(data) if rows else 0
    dump = header + rows * REC.size + wl.initial_value_bytes(data) + growth * (REC.size + max(wl.schema.sizes))
    dump_driver = driver(rows, 0, "")
    python = rows * PY_BYTES_PER_ROW.get(wl.name, PY_BYTES_PER_ROW_DEFAULT)
    needs = [
        Need("controller", "memory", (Part("the harness", HARNESS_BYTES, "system"),
                                      Part("initial data", python, data_driver)), True),
        Need("controller", "disk", (Part("snapshot", snap, data_driver),
                                    Part("server dumps", len(inv.servers) * dump, dump_driver)), True),
    ]
    store = Part("stores", layout.store(capacity, system.clients),
                 driver(2 * rows, cfg.capacity, "store_capacity" if cfg.store_capacity else ""))
    if cfg.system == "dint":
        buckets = system.buckets()
        cache = driver(rows, cfg.keys if wl.keyed else 0, "cache_fraction" if cfg.cache_fraction else "")
    for host in inv.servers:
        parts = [store]
        if cfg.system == "dint":
            maps = layout.xdp_maps(buckets, system.clients, possible_cpus(host, inv.local))
            parts += [Part("BPF maps", maps, cache), Part("dintd", DINTD_BYTES, "system")]
        elif cfg.system == "bypass":
            parts.append(Part("DPDK", DPDK_BYTES, "system"))
        needs.append(Need(host.name, "memory", tuple(parts), inv.local))
        if not inv.local:
            needs.append(Need(host.name, "disk", (Part("snapshot", snap, data_driver), Part("dump", dump, dump_driver)),
                              False))
    client = client_parts(cfg, wl)
    for host in inv.clients:
        needs.append(Need(host.name, "memory", client, inv.local))
    return needs


def client_params(cfg: RunConfig, wl) -> int:
    """Parameters one client process draws (harness/loadgen.py)."""
    per_s = wl.transactions.params_per_s if wl.transactions else 0
    if per_s:
        return max(cfg.requests, int((cfg.warmup_s + cfg.duration_s + PARAM_SLACK_S) * per_s))
    return cfg.requests


def client_parts(cfg: RunConfig, wl) -> tuple[Part, ...]:
    """A client host's memory: its client processes and their parameters."""
    n = cfg.clients_per_host
    params = n * client_params(cfg, wl) * PARAM_BYTES.get(wl.name, PARAM_BYTES_DEFAULT)
    per_s = wl.transactions.params_per_s if wl.transactions else 0
    return (Part("client processes", n * CLIENT_PROCESS_BYTES, "clients_per_host"),
            Part("client parameters", params,
                 "duration_s" if per_s and client_params(cfg, wl) > cfg.requests else "clients_per_host"))


# -- what this machine has ---------------------------------------------------
def _meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[name] = int(fields[0]) * (KiB if fields[1:] == ["kB"] else 1)
    return out


def _cgroup_room() -> int | None:
    """Room left under this process's cgroup memory limit (v2 or v1), its
    reclaimable file pages counted as room; None without a limit."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            base, files = Path("/sys/fs/cgroup"), ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):
            base, files = Path("/sys/fs/cgroup/memory"), ("memory.limit_in_bytes", "memory.usage_in_bytes",
                                                          "total_inactive_file")
        else:
            continue
        for d in (base / path.lstrip("/"), base):
            try:
                limit = (d / files[0]).read_text().strip()
                used = int((d / files[1]).read_text())
                stat = dict(ln.split() for ln in (d / "memory.stat").read_text().splitlines() if ln.count(" ") == 1)
            except (OSError, ValueError):
                continue
            if limit == "max" or int(limit) >= 1 << 60:
                break
            return max(0, int(limit) - used + int(stat.get(files[2], 0)))
    return None


def available_memory() -> int | None:
    """Memory this machine can give a run: MemAvailable, or the room under
    this process's cgroup limit if less; None if unknown."""
    try:
        avail = _meminfo()["MemAvailable"]
    except (OSError, KeyError):
        return None
    room = _cgroup_room()
    return avail if room is None else min(avail, room)


def free_disk(path: Path) -> tuple[Path, int]:
    """The free bytes of the filesystem path is (or will be) on: its
    nearest existing directory's."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return path, st.f_bavail * st.f_frsize


# -- the check ---------------------------------------------------------------
def human(n: int | float) -> str:
    """Bytes in binary units, e.g. 21.3 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB"):
        if n < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} YiB"


def _number(v) -> str:
    """1,000,000 for an int or a whole float, 0.25 for another."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e18:
        v = int(v)
    return f"{v:,}" if isinstance(v, int) else f"{v:g}" if isinstance(v, float) else str(v)


def _subject(driver: str, cfg: RunConfig, inv: Inventory) -> str:
    """The run as the parameter behind the size sees it."""
    wl = workloads.get(cfg.workload)
    flag = f"{FLAGS[driver]} {_number(getattr(cfg, driver))}"
    if driver == "scale":
        sc = wl.scaling
        what = f"{sc.title} at {cfg.scale:,} {sc.unit}{'' if cfg.scale == 1 else 's'}"
        if cfg.scale_divisor > 1:
            what += f" (cardinalities divided by {cfg.scale_divisor})"
    elif driver == "keys":
        what = f"{wl.name} over {cfg.keys:,} keys"
    elif driver == "store_capacity":
        what = f"{len(inv.servers)} server stores of {cfg.store_capacity:,} records"
    elif driver == "duration_s":
        clients = cfg.clients_per_host * len(inv.clients)
        what = (f"a {_number(cfg.warmup_s + cfg.duration_s)} s {wl.name} run ({clients} client process"
                f"{'' if clients == 1 else 'es'} inserting up to {wl.rows_per_s:,} rows a second each)")
    elif driver == "clients_per_host":
        what = f"{cfg.clients_per_host} {wl.name} client process{'' if cfg.clients_per_host == 1 else 'es'} a host"
    elif driver == "cache_fraction":
        what = f"dint's caches with slots for {cfg.cache_fraction:g} times the records"
    else:
        what = f"{cfg.system} {wl.name} on {len(inv.servers)} servers"
    return f"{flag}: {what}"


def _refusal(needs: list[Need], cfg: RunConfig, inv: Inventory, has: str, where: str) -> str:
    parts = [p for n in needs for p in n.parts]
    by_driver: dict[str, int] = {}
    by_what: dict[str, int] = {}
    for p in parts:
        by_driver[p.driver] = by_driver.get(p.driver, 0) + p.bytes
        by_what[p.what] = by_what.get(p.what, 0) + p.bytes
    driver = max(by_driver, key=by_driver.get)
    total = sum(p.bytes for p in parts)
    # the three largest parts, leaving out those under 1% of the total
    biggest = sorted(((b, w) for w, b in by_what.items() if b >= total / 100), reverse=True)[:3]
    verb = "need" if driver in ("store_capacity", "cache_fraction") else "needs"
    return (f"{_subject(driver, cfg, inv)} {verb} about {human(total)} {where} "
            f"({', '.join(f'{w} {human(b)}' for b, w in biggest)}); {has}")


def check_memory(cfg: RunConfig, inv: Inventory, out_dir: Path, span_s: float | None = None) -> None:
    """Raises HarnessError, one line naming the parameter behind the size,
    if the run cannot fit this machine: its memory (every host's on a local
    testbed, the controller's on a cluster) with MARGIN to spare against
    MemAvailable, a cluster host's against the memory its inventory
    states (if it does), or its files against the free space under out_dir.
    span_s: as for memory_need()."""
    cfg = _validated(cfg)
    every = memory_need(cfg, inv, span_s)
    needs = [n for n in every if n.local]
    memory = [n for n in needs if n.resource == "memory"]
    avail = available_memory()
    if avail is not None and sum(n.bytes for n in memory) * (1 + MARGIN) > avail:
        where = "of memory on this machine" if inv.local else "of memory on the controller, this machine"
        raise HarnessError(_refusal(memory, cfg, inv, f"it has {human(avail)} available "
                                                      f"(and keeps {MARGIN:.0%} of the need spare)", where))
    for n in every:
        if n.local or n.resource != "memory":
            continue
        host = inv.host(n.place)
        if host.memory is not None and n.bytes * (1 + MARGIN) > host.memory:
            raise HarnessError(_refusal([n], cfg, inv, f"the inventory gives {host.name} {human(host.memory)} "
                                                       f"({host.memory_var}), and the check keeps {MARGIN:.0%} "
                                                       "of the need spare", f"of memory on host {host.name}"))
    disk = [n for n in needs if n.resource == "disk"]
    at, free = free_disk(out_dir)
    if sum(n.bytes for n in disk) * (1 + MARGIN) > free:
        raise HarnessError(_refusal(disk, cfg, inv, f"its filesystem has {human(free)} free",
                                    f"of disk under {out_dir}"))
