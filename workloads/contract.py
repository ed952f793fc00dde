"""What a workload provides: the whole contract between a workload and the
harness, in one place. Every workload module defines one `Workload` named
WORKLOAD and is listed in workloads/__init__.py (REGISTRY); the harness
reads nothing else of it.

A new workload provides:

- `name`, `schema` (its tables' value sizes, harness/schema.py) and
  `initial(data)`: the records every server loads, from a `DataSpec` (an
  empty list: servers start empty).
- How a client drives it, one or both of:
  - `stream`: a flat stream of requests for the native request loop
    (echo, kv reads, log appends), generated from a client's `LoadSpec`;
  - `transactions`: transaction types (name, generator function, share of
    the mix), the parameter generator, the round trips of the longest
    transaction and the concurrency controls it supports, for the
    transaction executor (harness/txn.py).
  A workload with both (kv) runs its transactions under the mixes listed
  in `Transactions.mixes` (`--kv-mix`) and its stream otherwise.
- Optionally: `scaling` (what `--scale` counts, its profiles, bounds and,
  for TPC-C, the cardinality divisors), or `keyed` for a workload over
  `--keys` keys (with `min_keys`, the fewest it runs with); `key_dist`
  for one that draws its keys from the run's key distribution
  (`LoadSpec.key_dist`, `--key-dist`, workloads/keydist.py), or
  `key_rule` saying by which rule of its own it draws them instead (the
  benchmarks whose specifications fix it); `check` (the
  consistency check after every run, with `replicated` saying whether
  every row's copies must agree); `rows_per_s` (rows a client process
  may insert per second, for sizing the servers' stores); and `rows`
  (how many records `initial` makes, per table, without making them: what
  harness/limits.py checks a run's memory against before anything starts).

Parameters are generated apart from execution, from the seeds in the
specs, so every system sees the same inputs. A request is the tuple
(op, table, key, value, ver, dest): dest, the server it goes to, comes from
the spec's placement (harness/placement.py)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from harness.placement import Placement
from harness.schema import Schema

from .stream import RequestStream

# The concurrency controls a transactional workload may support: no-wait
# two-phase locking and FaSST-style optimistic (harness/coord.py implements
# both for the replicated workloads; the lock microbenchmark its own).
CC_MODES = ("2pl", "occ")
# How a transaction takes its locks (the lock microbenchmark, --lock-protocol):
# all in one parallel batch (the default), or DINT's lock client's way, one
# per round trip in key order, retrying the same transaction on a rejection.
LOCK_PROTOCOLS = ("parallel", "sequential")


@dataclass(frozen=True)
class DataSpec:
    """What a workload's initial data is made from (the same for every
    server, every system and every client of a run)."""
    keys: int = 100_000     # kv, log, lock: keys per table
    scale: int = 0          # a scaled workload's size (Scaling.unit); 0: none
    divisor: int = 1        # TPC-C: its cardinalities divided by this (1: the specification's)
    seed: int = 1
    # a workload whose records' value size is a parameter (Workload.value_sized:
    # kv): their bytes; 0: the size of its schema
    value_size: int = 0


@dataclass(frozen=True)
class LoadSpec:
    """What one client process generates its requests or transactions
    from: the run's data, the client's own seed, how many to draw, the
    servers they go to and the run's options."""
    data: DataSpec
    seed: int               # the client's (differs between clients)
    requests: int           # how many requests or transactions to draw (cycled through)
    servers: int
    cc: str = ""            # concurrency control (Transactions.cc)
    mix: str = ""           # kv: parallel or contention
    value_size: int = 24    # echo: value bytes
    key_dist: str = "uniform"     # how keys are drawn (Workload.key_dist; workloads/keydist.py)
    lock_protocol: str = "parallel"  # lock: how a transaction takes its locks (Transactions.protocols)

    @property
    def placement(self) -> Placement:
        return Placement(self.servers)


@dataclass(frozen=True)
class CheckSpec:
    """What the consistency check is given beside the servers' state."""
    data: DataSpec
    servers: int
    params_wrapped: int = 0  # times a client started its parameter list over (inputs were reused)


@dataclass(frozen=True)
class Stream:
    """Flat requests for the native request loop (harness/native/loop.c)."""
    generate: Callable[[LoadSpec], RequestStream]
    stamp_txn: bool = False  # every request is a transaction of its own: the loop stamps its id


@dataclass(frozen=True)
class TxnType:
    """One transaction type: its name (as the benchmark names it), its
    generator function and its share of the mix, in percent. A coordinated
    workload's function takes the coordinator's Tx first (harness/coord.py);
    another yields batches of requests itself (harness/txn.py)."""
    name: str
    func: Callable
    weight: float


def mix_of(weights: Mapping[str, float], *funcs: Callable) -> tuple[TxnType, ...]:
    """The transaction types of a mix, in the mix's order: each function
    paired by its name (as the benchmark names the transaction) with its
    share."""
    by_name = {f.__name__: f for f in funcs}
    if set(by_name) != set(weights):
        raise ValueError(f"the mix names {sorted(weights)}, the functions {sorted(by_name)}")
    return tuple(TxnType(name, by_name[name], w) for name, w in weights.items())


@dataclass(frozen=True)
class Transactions:
    """Transactions for the executor (harness/txn.py). `params(load, types)`
    draws [(index into types, args)]; the index is the only link between a
    parameter and its function. `types_by_cc` replaces `types` for a
    concurrency control that has transactions of its own (the lock
    microbenchmark: one type per control). `protocols` names the lock
    protocols (LOCK_PROTOCOLS) offered beside the default, parallel one,
    each with the types of the controls it applies to."""
    types: tuple[TxnType, ...]
    params: Callable[[LoadSpec, tuple[TxnType, ...]], list]
    rounds: int                       # round trips of the longest transaction
    coordinated: bool = False         # functions take a Tx (harness/coord.py), bound per client
    cc: tuple[str, ...] = ()          # concurrency controls supported, the default first; (): none
    types_by_cc: Mapping[str, tuple[TxnType, ...]] = field(default_factory=dict)
    mixes: tuple[str, ...] = ()       # a workload with a stream too: the mixes that run these
    # Parameters a client draws per second of its run, at least: more than
    # a client starts, for a workload whose outcomes change when inputs
    # repeat (TATP: a repeated insert finds its row). 0: `requests` only.
    params_per_s: int = 0
    protocols: Mapping[str, Mapping[str, tuple[TxnType, ...]]] = field(default_factory=dict)

    def types_for(self, cc: str, protocol: str = "") -> tuple[TxnType, ...]:
        if protocol in self.protocols:
            return self.protocols[protocol][cc]
        return self.types_by_cc.get(cc, self.types)

    @property
    def default_cc(self) -> str:
        return self.cc[0] if self.cc else ""

    def __post_init__(self):
        unknown = (set(self.cc) - set(CC_MODES) or set(self.types_by_cc) - set(self.cc)
                   or {cc for types in self.protocols.values() for cc in types} - set(self.cc))
        if unknown:
            raise ValueError(f"unknown concurrency control {sorted(unknown)} (known: {', '.join(CC_MODES)})")
        if set(self.protocols) - set(LOCK_PROTOCOLS[1:]):
            raise ValueError(f"unknown lock protocol {sorted(set(self.protocols) - set(LOCK_PROTOCOLS[1:]))} "
                             f"(known beside the default {LOCK_PROTOCOLS[0]}: {', '.join(LOCK_PROTOCOLS[1:])})")

    def protocol_ccs(self, protocol: str) -> tuple[str, ...]:
        """The concurrency controls a lock protocol applies to (the
        default, parallel one: every control)."""
        return self.cc if protocol == LOCK_PROTOCOLS[0] else tuple(self.protocols.get(protocol, {}))


@dataclass(frozen=True)
class Size:
    """A point of a scaled workload: its scale and cardinality divisor."""
    scale: int
    divisor: int = 1


@dataclass(frozen=True)
class Scaling:
    """What `--scale` counts and its bounds; `--scale-divisor` divides the
    workload's cardinalities (TPC-C's items, customers and orders) by one
    of `divisors`. Profiles: `local` (the default, sized for one 2-core
    host) and `paper` (DINT's scale, for a cluster)."""
    title: str                      # the workload as its specification names it
    unit: str                       # what one unit of scale is: "account", "subscriber", "warehouse"
    profiles: Mapping[str, Size]
    minimum: int = 1
    maximum: int = 2**40
    divisors: tuple[int, ...] = (1,)

    @property
    def default(self) -> Size:
        return self.profiles["local"]

    def problem(self, size: Size) -> str | None:
        """What is wrong with size, or None."""
        if size.scale < self.minimum:
            return f"{self.title} needs at least {self._units(self.minimum)}"
        if size.scale > self.maximum:
            return f"{self.title} takes at most {self._units(self.maximum)}"
        if size.divisor not in self.divisors:
            return (f"{self.title} divides its cardinalities by {' or '.join(map(str, self.divisors))}, "
                    f"not by {size.divisor}")
        return None

    def _units(self, n: int) -> str:
        return f"{n:,} {self.unit}{'' if n == 1 else 's'}"


Checker = Callable[[dict, dict, CheckSpec], list]


@dataclass(frozen=True)
class Workload:
    name: str
    schema: Schema
    initial: Callable[[DataSpec], list]
    stream: Stream | None = None
    transactions: Transactions | None = None
    scaling: Scaling | None = None
    # check(state, committed, spec) -> [{"name", "ok", "detail"}]: state is
    # {(table, key): Record} of the live rows, each from its primary;
    # committed is {type: {"committed": n, "outcomes": {label: n}}} over the run
    check: Checker | None = None
    replicated: bool = False        # every row's copies must agree (harness/consistency.py)
    keyed: bool = False             # its data and requests are over `keys` keys per table (--keys)
    min_keys: int = 1
    key_dist: bool = False          # it draws its keys from LoadSpec.key_dist (--key-dist)
    # how a workload that draws keys by a rule of its own (its
    # specification's) draws them, for the refusal of --key-dist: "" none
    key_rule: str = ""
    rows_per_s: int = 0
    # rows(data) -> {table: records}: how many records initial(data) makes
    # in each table, computed from the DataSpec alone (arithmetic, never a
    # generation, so it is instant at any size): exact where the loader is
    # deterministic, the expected count where it draws (TATP's 1-4
    # ACCESS_INFO rows per subscriber). None: not known (harness/limits.py
    # then sizes the run as if it loaded nothing).
    rows: Callable[[DataSpec], Mapping[int, int]] | None = None
    # its tables' value size follows DataSpec.value_size (where given):
    # schema is then the default's, and for_data(data) the run's
    value_sized: bool = False

    def __post_init__(self):
        if self.stream is None and self.transactions is None:
            raise ValueError(f"workload {self.name}: needs a stream, transactions or both")
        if self.stream and self.transactions and not self.transactions.mixes:
            raise ValueError(f"workload {self.name}: with both, Transactions.mixes says which mixes run them")
        if self.key_dist and (self.key_rule or not self.keyed):
            raise ValueError(f"workload {self.name}: key_dist is for a keyed workload without a key rule of its own")

    def for_data(self, data: DataSpec) -> "Workload":
        """The workload as a run with this data serves it: a value-sized
        workload's schema of data.value_size-byte values (when given); the
        others as they are."""
        if not (self.value_sized and data.value_size) or set(self.schema.sizes) == {data.value_size}:
            return self
        return replace(self, schema=Schema((data.value_size,) * len(self.schema.sizes)))

    def initial_rows(self, data: DataSpec) -> int:
        """Records initial(data) makes (Workload.rows; 0 if not known)."""
        return sum(self.rows(data).values()) if self.rows else 0

    def initial_value_bytes(self, data: DataSpec) -> int:
        """Value bytes of those records: each table's count times its value
        size in the schema."""
        return sum(n * self.schema.sizes[t] for t, n in self.rows(data).items()) if self.rows else 0

    @property
    def mixes(self) -> tuple[str, ...]:
        """The values `--kv-mix` may take (the first is the default)."""
        if self.stream and self.transactions:
            return ("parallel", *self.transactions.mixes)
        return ("parallel",)

    def transactional(self, mix: str = "") -> bool:
        """Whether a run with this mix drives transactions (the executor)
        rather than a flat stream (the native request loop)."""
        if self.transactions is None:
            return False
        return self.stream is None or mix in self.transactions.mixes

    @property
    def default_cc(self) -> str:
        return self.transactions.default_cc if self.transactions else ""

    @property
    def cc(self) -> tuple[str, ...]:
        return self.transactions.cc if self.transactions else ()
