"""One typed configuration of a run, with defaults; resolved and recorded
with every result so two runs can always be told apart."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import workloads

from . import HarnessError
from .inventory import DEFAULT_INVENTORY, SLOWPATH_PLACES
from .protocol import MAX_VALUE
from .testbed import NAPI_MODES
from .txn import MAX_INFLIGHT

SYSTEMS = ("dint", "kernel", "bypass")
KV_VALUE_SIZE = 40  # workloads/kv.py: DINT's KV records
CLIENT_GSO = ("auto", "on", "off")


@dataclass
class RunConfig:
    system: str
    workload: str = "echo"
    concurrency: int = 1          # requests in flight per client process
    duration_s: float = 10.0      # measured window
    warmup_s: float = 2.0         # before it, not recorded
    napi: str = "pinned"          # where server-side packet work runs (testbed)
    inventory: str = str(DEFAULT_INVENTORY)
    seed: int = 1
    value_size: int = 24          # echo: 40-byte header + 24 = a 64-byte payload
    keys: int = 100_000           # kv, log, lock: keys per table (every server holds every key)
    store_capacity: int = 0       # records per server store; 0: twice the keys (kv, log, lock), at least 4096
    requests: int = 65536         # generated in advance, then cycled through
    # retransmission (same request id): after each server's measured timeout
    # (smoothed round trip + 4 deviations, at least rto_min_ms), doubling per
    # retransmission up to timeout_ms, which is also the timeout before any
    # round trip is measured; a read or echo is given up after max_retries
    # (counted lost), a request that may change state never
    timeout_ms: float = 50.0
    rto_min_ms: float = 0.25
    max_retries: int = 5
    # requests a client keeps on the wire to one server at most, the rest
    # queued until answers make room (0: no limit): a burst larger than a
    # ring on the way is lost (the testbed's veth rings hold 256 datagrams)
    server_window: int = 128
    clients_per_host: int = 1
    # the client sends runs of same-size datagrams to one server as one UDP
    # GSO send (cut into datagrams on the client's side: servers see no
    # difference): on, off (one send per datagram), or auto: on when a client
    # has several servers. With one, datagram-by-datagram sending keeps the
    # server busy while the client sends; sent at once, the client's window
    # goes and comes back in bursts, and the client sleeps in between.
    client_gso: str = "auto"
    kernel_threads: int = 1       # kernel server: SO_REUSEPORT threads per host
    bypass_idle_poll_us: int = 200        # bypass server: poll (yielding) this long when idle,
    bypass_idle_sleep_max_us: int = 200   # then sleep up to this between polls (0: busy poll)
    # dint's in-kernel cache (bpf/dint_cache.h): slots for this fraction of
    # the records, its budget (0: harness.dintd's default, one 4-slot bucket
    # per record, so that nearly every key fits; DINT's own was 1.5), and
    # the paper's two ablations
    cache_fraction: float = 0.0
    cache_bloom: bool = True
    cache_write_through: bool = False
    # -- transactional microbenchmarks (the executor, harness/txn.py) --
    cc: str = ""                  # concurrency control of a transactional workload: 2pl (no-wait
                                  # two-phase locking) or occ (FaSST-style); "": the workload's default
    # smallbank, tatp, tpcc: the workload's size (accounts, subscribers,
    # warehouses) and, TPC-C only, the divisor of its cardinalities; each
    # left 0 takes the value of the workload's profile `scale_profile`
    # (local, sized for one 2-core host, or paper, DINT's scale; workloads
    # without a scale have no profiles and ignore it)
    scale: int = 0
    scale_divisor: int = 0
    scale_profile: str = "local"
    kv_mix: str = "parallel"      # kv: parallel (100% reads) or contention (80% reads, 20% writes)
    # kv, log, lock: how each key is drawn (workloads/keydist.py): uniform,
    # nurand:A (TATP's NURand, as DINT's KV client draws) or zipf:THETA;
    # recorded in its canonical form
    key_dist: str = "uniform"
    # lock: how a transaction takes its locks: parallel (one batch) or
    # sequential (DINT's lock client: one per round trip in key order,
    # retrying the same transaction on a rejection; 2pl only)
    lock_protocol: str = "parallel"
    # open loop: each client process starts this many transactions (requests,
    # for echo/kv/log) per second on a schedule fixed in advance, latency
    # counted from when each was due; concurrency caps those in flight.
    # 0: closed loop (concurrency in flight, each started when one finishes)
    rate: float = 0.0
    # colocation: a CPU-bound neighbour application on every server host's
    # cores during the run, its progress measured (harness/neighbour.py)
    neighbour: bool = False
    # dint: where its user space (dintd and the slow path) runs: xdp, on the
    # server host's cores, where its XDP program runs and the NIC's
    # interrupts go (as DINT's colocation experiment places it); own, on
    # cores of its own (the inventory's slowpath_cpus: harness/inventory.py)
    slowpath_cpus: str = "xdp"
    # kv: the records' value bytes (DINT's are 40); dint's XDP program loads
    # up to about 949 on Debian 12's toolchain (`harness verifier --schema N`)
    kv_value_size: int = KV_VALUE_SIZE
    # fault injection on every client host's ends (harness/faults.py):
    # e.g. "reply-loss=1%,dup=5%,late-dup=5%,reorder=2%"; "": none
    faults: str = ""

    def validate(self) -> "RunConfig":
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise HarnessError(msg)
        need(self.system in SYSTEMS, f"--system must be one of {', '.join(SYSTEMS)}, not {self.system!r}")
        need(self.workload in workloads.NAMES,
             f"--workload must be one of {', '.join(workloads.NAMES)}, not {self.workload!r}")
        need(self.napi in NAPI_MODES, f"--napi must be one of {', '.join(NAPI_MODES)}, not {self.napi!r}")
        need(1 <= self.concurrency <= MAX_INFLIGHT, f"--concurrency must be between 1 and {MAX_INFLIGHT}")
        need(0 <= self.rate <= 10_000_000, "--rate must be between 0 (closed loop) and 10,000,000 per second")
        need(self.duration_s > 0, "--duration must be positive")
        need(self.warmup_s >= 0, "--warmup must not be negative")
        need(0 <= self.value_size <= MAX_VALUE, f"--value-size must be between 0 and {MAX_VALUE} bytes")
        need(self.requests >= 1, "requests must be at least 1")
        need(1 <= self.keys <= 2**40, "--keys must be between 1 and 2^40")
        need(self.store_capacity >= 0, "--store-capacity must not be negative")
        need(self.timeout_ms > 0 and self.max_retries >= 0, "timeout must be positive, retries not negative")
        need(0 < self.rto_min_ms <= self.timeout_ms, "rto_min_ms must be positive and at most timeout_ms")
        need(0 <= self.server_window <= MAX_INFLIGHT, f"--server-window must be between 0 and {MAX_INFLIGHT}")
        need(1 <= self.clients_per_host <= 64, "--clients-per-host must be between 1 and 64")
        need(self.client_gso in CLIENT_GSO, f"--client-gso must be one of {', '.join(CLIENT_GSO)}, "
                                            f"not {self.client_gso!r}")
        need(1 <= self.kernel_threads <= 256, "--kernel-threads must be between 1 and 256")
        need(0 <= self.cache_fraction <= 4, "--cache-fraction must be between 0 (the default budget) and 4")
        need(self.slowpath_cpus in SLOWPATH_PLACES, f"--slowpath-cpus must be one of {', '.join(SLOWPATH_PLACES)}, "
                                                    f"not {self.slowpath_cpus!r}")
        need(self.slowpath_cpus == SLOWPATH_PLACES[0] or self.system == "dint",
             "--slowpath-cpus applies to --system dint only (its user-space slow path)")
        need(1 <= self.kv_value_size <= MAX_VALUE, f"--kv-value-size must be between 1 and {MAX_VALUE} bytes")
        need(self.kv_value_size == KV_VALUE_SIZE or self.workload == "kv",
             f"--kv-value-size applies to --workload kv only (its records' value bytes; default {KV_VALUE_SIZE})")
        need(self.bypass_idle_poll_us >= 0 and self.bypass_idle_sleep_max_us >= 0,
             "bypass idle settings must not be negative")
        self._validate_workload(need)
        self._validate_faults(need)
        return self

    def _validate_faults(self, need) -> None:
        """A request sent as one UDP GSO batch is one packet where the
        request faults act: with them, the client sends datagram by
        datagram (auto resolves to off; on is refused)."""
        from . import faults
        spec = faults.parse(self.faults)
        if spec.on_requests:
            need(self.client_gso != "on", "--client-gso on cannot be used with request faults (a GSO batch is one "
                                          "packet where they act): use --client-gso off or auto")
            self.client_gso = "off"

    def _validate_workload(self, need) -> None:
        """What the workload's contract (workloads/contract.py) allows."""
        wl = workloads.get(self.workload)
        need(bool(wl.cc) or not self.cc, "--cc applies to the transactional workloads "
                                         f"({', '.join(workloads.with_feature(lambda w: bool(w.cc)))}) only")
        self.cc = self.cc or wl.default_cc
        need(not self.cc or self.cc in wl.cc, f"--cc must be one of {', '.join(wl.cc)}, not {self.cc!r}")
        need(self.scale >= 0 and self.scale_divisor >= 0, "--scale and --scale-divisor must not be negative")
        scaled = workloads.with_feature(lambda w: w.scaling is not None)
        profiles = sorted({p for n in scaled for p in workloads.get(n).scaling.profiles})
        need(self.scale_profile in profiles, f"--scale-profile must be one of {', '.join(profiles)}, "
                                             f"not {self.scale_profile!r}")
        if wl.scaling is None:
            need(not self.scale and not self.scale_divisor, f"--scale applies to {', '.join(scaled)} only")
        else:
            profiles = wl.scaling.profiles
            need(self.scale_profile in profiles, f"--scale-profile: {wl.name} has no profile {self.scale_profile!r}")
            self.scale = self.scale or profiles[self.scale_profile].scale
            self.scale_divisor = self.scale_divisor or profiles[self.scale_profile].divisor
            problem = wl.scaling.problem(workloads.Size(self.scale, self.scale_divisor))
            need(problem is None, f"--scale: {problem}")
        if len(wl.mixes) > 1:
            need(self.kv_mix in wl.mixes, f"--kv-mix must be one of {', '.join(wl.mixes)}, not {self.kv_mix!r}")
        else:
            need(self.kv_mix == wl.mixes[0], "--kv-mix applies to --workload "
                                             f"{', '.join(workloads.with_feature(lambda w: len(w.mixes) > 1))} only")
        self._validate_keys_and_locks(need, wl)
        if wl.min_keys > 1:
            need(self.keys >= wl.min_keys, f"--keys must be at least {wl.min_keys} for --workload {wl.name} "
                                           f"(a transaction uses up to {wl.min_keys} distinct keys)")

    def _validate_keys_and_locks(self, need, wl) -> None:
        """--key-dist: a spec (canonical from here on), for the workloads
        that draw from it; --lock-protocol: one the workload offers for
        its concurrency control."""
        from workloads import keydist
        try:
            self.key_dist = keydist.canonical(self.key_dist)
        except ValueError as e:
            need(False, str(e))
        if self.key_dist != keydist.DEFAULT and not wl.key_dist:
            which = ", ".join(workloads.with_feature(lambda w: w.key_dist))
            need(False, f"--key-dist applies to {which} only" +
                 (f": {wl.name} draws its keys {wl.key_rule}" if wl.key_rule else f" ({wl.name} draws no keys)"))
        protocols = workloads.LOCK_PROTOCOLS
        need(self.lock_protocol in protocols, f"--lock-protocol must be one of {', '.join(protocols)}, "
                                              f"not {self.lock_protocol!r}")
        if self.lock_protocol != protocols[0]:
            offered = workloads.with_feature(lambda w: bool(w.transactions and self.lock_protocol in
                                                            w.transactions.protocols))
            need(wl.name in offered, f"--lock-protocol {self.lock_protocol} applies to --workload "
                                     f"{', '.join(offered)} only")
            ccs = wl.transactions.protocol_ccs(self.lock_protocol)
            need(self.cc in ccs, f"--lock-protocol {self.lock_protocol} applies to --cc {', '.join(ccs)} only, "
                                 f"not {self.cc}")

    @property
    def data(self) -> workloads.DataSpec:
        """What the run's initial data is made from (once validated)."""
        sized = self.workload == "kv" and self.kv_value_size != KV_VALUE_SIZE
        return workloads.DataSpec(keys=self.keys, scale=self.scale, divisor=self.scale_divisor or 1, seed=self.seed,
                                  value_size=self.kv_value_size if sized else 0)

    @property
    def capacity(self) -> int:
        """Records each server's store holds (the dint map is preallocated,
        so it is sized to the data: a bigger one costs cache and TLB misses)."""
        return self.store_capacity or max(4096, 2 * self.keys if workloads.get(self.workload).keyed else 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise HarnessError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        return cls(**data).validate()
