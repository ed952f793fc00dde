"""One typed configuration of a run, with defaults; resolved and recorded
with every result so two runs can always be told apart."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import workloads

from . import HarnessError
from .inventory import DEFAULT_INVENTORY
from .protocol import MAX_VALUE
from .testbed import NAPI_MODES

SYSTEMS = ("dint", "kernel", "bypass")
CLIENT_GSO = ("auto", "on", "off")
WORKLOADS = workloads.NAMES


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
    value_size: int = 28          # echo: 36-byte header + 28 = a 64-byte payload
    keys: int = 100_000           # kv, log: keys per table (every server holds every key)
    store_capacity: int = 0       # records per server store; 0: twice the keys, at least 4096
    requests: int = 65536         # generated in advance, then cycled through
    timeout_ms: float = 50.0      # retransmit (same request id) after
    max_retries: int = 5          # then count the request as lost
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
    # the records (0: two 4-slot buckets per record, so that every key fits),
    # and the paper's two ablations
    cache_fraction: float = 0.0
    cache_bloom: bool = True
    cache_write_through: bool = False
    # -- transactional microbenchmarks (the executor, harness/txn.py) --
    cc: str = ""                  # concurrency control of a transactional workload: 2pl (no-wait
                                  # two-phase locking) or occ (FaSST-style); "": the workload's default
    scale: int = 0                # smallbank, tatp, tpcc: the workload's size (0: its local default)
    kv_mix: str = "parallel"      # kv: parallel (100% reads) or contention (80% reads, 20% writes)
    # open loop: each client process starts this many transactions (requests,
    # for echo/kv/log) per second on a schedule fixed in advance, latency
    # counted from when each was due; concurrency caps those in flight.
    # 0: closed loop (concurrency in flight, each started when one finishes)
    rate: float = 0.0
    # colocation: a CPU-bound neighbour application on every server host's
    # cores during the run, its progress measured (harness/neighbour.py)
    neighbour: bool = False

    def validate(self) -> "RunConfig":
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise HarnessError(msg)
        need(self.system in SYSTEMS, f"--system must be one of {', '.join(SYSTEMS)}, not {self.system!r}")
        need(self.workload in WORKLOADS, f"--workload must be one of {', '.join(WORKLOADS)}, not {self.workload!r}")
        need(self.napi in NAPI_MODES, f"--napi must be one of {', '.join(NAPI_MODES)}, not {self.napi!r}")
        need(1 <= self.concurrency <= 65536, "--concurrency must be between 1 and 65536")
        need(0 <= self.rate <= 10_000_000, "--rate must be between 0 (closed loop) and 10,000,000 per second")
        need(self.duration_s > 0, "--duration must be positive")
        need(self.warmup_s >= 0, "--warmup must not be negative")
        need(0 <= self.value_size <= MAX_VALUE, f"--value-size must be between 0 and {MAX_VALUE} bytes")
        need(self.requests >= 1, "requests must be at least 1")
        need(1 <= self.keys <= 2**40, "--keys must be between 1 and 2^40")
        need(self.store_capacity >= 0, "--store-capacity must not be negative")
        need(self.timeout_ms > 0 and self.max_retries >= 0, "timeout must be positive, retries not negative")
        need(1 <= self.clients_per_host <= 64, "--clients-per-host must be between 1 and 64")
        need(self.client_gso in CLIENT_GSO, f"--client-gso must be one of {', '.join(CLIENT_GSO)}, "
                                            f"not {self.client_gso!r}")
        need(1 <= self.kernel_threads <= 256, "--kernel-threads must be between 1 and 256")
        need(0 <= self.cache_fraction <= 4, "--cache-fraction must be between 0 (every key fits) and 4")
        need(self.bypass_idle_poll_us >= 0 and self.bypass_idle_sleep_max_us >= 0,
             "bypass idle settings must not be negative")
        self._validate_transactional(need)
        return self

    def _validate_transactional(self, need) -> None:
        from workloads import kv, lock
        mod = workloads.load(self.workload)
        default_cc = getattr(mod, "DEFAULT_CC", None)
        need(bool(default_cc) or not self.cc,
             f"--cc applies to the transactional workloads ({', '.join(workloads.TRANSACTIONAL)}) only")
        if default_cc and not self.cc:
            self.cc = default_cc
        need(not self.cc or self.cc in lock.MODES, f"--cc must be one of {', '.join(lock.MODES)}, not {self.cc!r}")
        need(self.scale >= 0, "--scale must not be negative")
        need(not self.scale or hasattr(mod, "DEFAULT_SCALE"),
             f"--scale applies to {', '.join(workloads.SCALED)} only")
        if hasattr(mod, "DEFAULT_SCALE") and not self.scale:
            self.scale = mod.DEFAULT_SCALE
        if hasattr(mod, "check_scale") and self.scale:
            problem = mod.check_scale(self.scale)
            need(problem is None, f"--scale: {problem}")
        need(self.kv_mix in kv.MIXES, f"--kv-mix must be one of {', '.join(kv.MIXES)}, not {self.kv_mix!r}")
        need(self.kv_mix == "parallel" or self.workload == "kv", "--kv-mix applies to --workload kv only")
        need(self.workload != "lock" or self.keys >= lock.KEYS_PER_TXN[1],
             f"--keys must be at least {lock.KEYS_PER_TXN[1]} for --workload lock "
             f"(a transaction locks up to {lock.KEYS_PER_TXN[1]} distinct keys)")

    @property
    def capacity(self) -> int:
        """Records each server's store holds (the dint map is preallocated,
        so it is sized to the data: a bigger one costs cache and TLB misses)."""
        return self.store_capacity or max(4096, 2 * self.keys if self.workload != "echo" else 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise HarnessError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        return cls(**data).validate()
