"""The client-side transaction executor: transactions are generator functions
that yield batches of requests and receive their replies; many run at once
(the concurrency). The loop that starts them, sends their batches, resumes
them with the replies and counts how they end is native
(harness._netloop.TxnIO, harness/native/executor.c), so the client's Python
time goes to the transactions and the coordinator only; the rules below are
its.

    def transfer(a, b):                                  # one transaction type
        r = yield [(Op.LOCK_EXCL, T, a, PH, 0, a % N), (Op.LOCK_EXCL, T, b, PH, 0, b % N)]
        yield [(Op.COMMIT_PRIMARY, T, a, val, r[0][1] + 1, a % N), ...]

A request is a tuple (op, table, key, value, ver, dest): value is bytes of
the table's value size (a placeholder for reads and locks), dest the index of
the server it goes to. The workload places its requests (above, on the key's
primary of N servers); the executor has no placement rule of its own, and
refuses a request without dest. The executor stamps every request with the
transaction's id (client id << 32 | a counter). A reply is (status, ver,
value), value being bytes for an answered READ or a granted lock and None
otherwise.

Retransmission (harness/native/reqtable.h): a request unanswered after its
server's retransmission timeout (measured round trips, RFC 6298's
estimator) is sent again with the same request id, its timeout doubling
each time. A request that may change state (a lock, a log record, a
commit, a release, an insert, a delete) is never given up: the servers
apply it once and answer its copies as the first (engine/dint_engine.h,
"Exactly once"), so it is sent until answered and its outcome is always
known; a server that leaves one unanswered for dead_ns fails the run (the
executor raises TimeoutError). A READ or VALIDATE is given up after
max_retries (status TIMEOUT): the transaction aborts with cause "timeout".

A transaction may yield a Batch instead of a list: its `tolerate` statuses
(engine statuses, e.g. NOT_FOUND for a row that may be absent) are handed to
the transaction instead of aborting it. A transaction's return value, if a
string, is counted as its outcome (e.g. SmallBank's WriteCheck with or
without overdraft), per type.

A reply whose status is not OK aborts the transaction (the generator is
closed, not resumed); so does `raise Abort(cause)` inside it. Aborting sends
ABORT for every key the transaction may hold, not since released by a
commit or an abort: a lock granted, and one whose request was sent more
than once, whatever the answer taken (the servers answer every copy as the
first, so such a copy cannot be granted later; the ABORT keeps that true
of a server that would not). ABORT releases only the sender's own lock, so
an unneeded one is harmless. A transaction that commits still holding such
a lock releases it the same way before its place goes to the next one
(counted committed, with its latency, when it returns). An ABORT refused is
counted in release_failures: it may leave a lock held. The cause is
recorded per type: "lock" (LOCKED, or no room for another shared holder),
"validation" (VALIDATE not OK, or STALE), "timeout", "error" (any other
status: a bug, counted with its status).

Only transactions that start inside the measured window are counted;
latency is from the first batch sent to the last reply, committed ones only.
"""
from __future__ import annotations

from . import metrics
# from the native executor, its only copy: CAUSES, the causes it gives; TXN_KINDS,
# the transaction types it keeps apart (a latency histogram each); MAX_STATUS, a
# Batch tolerates engine statuses below it (the bits of its mask); cause_of, the
# abort rule, for callers and tests
from ._netloop import CAUSES, MAX_STATUS, TXN_KINDS, WINDOW, BatchTooLarge, TxnIO, cause_of  # noqa: F401
from .protocol import Op, Status

MAX_BATCH = 64       # requests in one batch, for sizing the in-flight table
# At most this many requests in flight: the request ids a client has out
# stay within the servers' window of completion records.
MAX_INFLIGHT = WINDOW // 2


def _mask(tolerate) -> int:
    statuses = {int(s) for s in tolerate}
    if any(not 0 <= s < MAX_STATUS for s in statuses):
        raise ValueError(f"a batch tolerates engine statuses (0..{MAX_STATUS - 1}), not {sorted(statuses)}")
    return sum(1 << s for s in statuses)


class Batch(list):
    """A batch of requests with how its replies are taken (see above). The
    native executor reads `mask` (bit s: status s is tolerated)."""
    __slots__ = ("mask",)

    def __init__(self, requests=(), tolerate=()):
        super().__init__(requests)
        self.mask = _mask(tolerate)

    @property
    def tolerate(self) -> frozenset:
        return frozenset(s for s in range(MAX_STATUS) if self.mask >> s & 1)

    @classmethod
    def kind(cls, tolerate=()) -> type:
        """A Batch class whose batches all take their replies the same way,
        made as cheaply as a plain list: kind(...)(requests)."""
        return type(cls.__name__, (cls,), {"__slots__": (), "mask": _mask(tolerate), "__init__": list.__init__})


class Abort(Exception):
    """Raised inside a transaction to abort it with a cause (see CAUSES or
    any other name, e.g. "user")."""

    def __init__(self, cause: str = "user"):
        super().__init__(cause)
        self.cause = cause


def _counts(c: dict) -> dict:
    aborts = {cause: 0 for cause in CAUSES} | c["aborts"]
    return {"started": c["started"], "committed": c["committed"], "aborted": sum(aborts.values()),
            "aborts": aborts, "outcomes": c["outcomes"]}


def _status_name(enum, value: int) -> str:
    return enum(value).name if value in enum._value2member_map_ else str(value)


class Executor:
    """Runs a workload's transactions closed-loop: `concurrency` in flight,
    parameters taken in turn (cycled) from `params`, a list of
    (kind index, args) drawn in advance from a seed. `kinds` names the
    transaction types and `funcs` holds their generator functions. The loop
    itself is native (TxnIO.drive, harness/native/executor.c): Python runs the
    transactions and the coordinator only.

    Same interface as the native request loop (set_window, run, stats,
    histogram), plus transactions() for the transaction-level results."""

    def __init__(self, fds, client_id: int, kinds: list[str], funcs: list, params: list,
                 concurrency: int, timeout_ns: int, max_retries: int, max_value: int = 64,
                 interval_ns: int = 0, gso: bool = True, rto_min_ns: int = 250_000, dead_ns: int = 5 * 10**9,
                 server_window: int = 0):
        if not 1 <= len(kinds) == len(funcs) <= TXN_KINDS:
            raise ValueError(f"1 to {TXN_KINDS} transaction types, each with a function")
        if not params:
            raise ValueError("no transaction parameters")
        if not 1 <= client_id < 2**31:
            raise ValueError("client_id must be in 1..2^31-1")
        if not 1 <= concurrency <= MAX_INFLIGHT:
            raise ValueError(f"concurrency must be between 1 and {MAX_INFLIGHT}")
        # requests in flight at once: room for every transaction's batch
        self.capacity = min(concurrency * MAX_BATCH * 2, MAX_INFLIGHT)
        self.io = TxnIO(fds, client_id, timeout_ns, max_retries, self.capacity, max_value, gso, rto_min_ns, dead_ns,
                        server_window)
        # params as they are when a list: a copy of a million tuples would be
        # one more big object for the collector to walk
        self.io.configure(list(funcs), params if type(params) is list else list(params), concurrency,
                          interval_ns, Abort, Batch)
        self.kinds = list(kinds)
        self.interval = interval_ns

    def set_window(self, from_ns: int, until_ns: int) -> None:
        self.io.set_window(from_ns, until_ns)

    def run(self, until_ns: int, issue_new: bool) -> None:
        """Runs until the clock reaches until_ns; without issuing new
        transactions, also stops when none is left in flight."""
        self.io.drive(until_ns, issue_new)

    def linger(self, quiet_ns: int, max_ns: int) -> None:
        """Once nothing is in flight: reads the replies still coming (to
        copies sent again) until none has come for quiet_ns."""
        self.io.linger(quiet_ns, max_ns)

    # -- results ----------------------------------------------------------
    def stats(self) -> dict:
        """Request-level counters (as the native request loop's)."""
        st = self.io.stats()
        r = self.io.results()
        st["txn_active"] = r["active"]
        st["txn_waiting"] = r["waiting"]
        st["txn_committed"] = sum(window["committed"] for _, window in r["types"])
        if self.interval:
            st["open_loop_late"], st["open_loop_skipped"] = r["open_loop_late"], r["open_loop_skipped"]
        return st

    def histogram(self) -> list:
        """Request round trips, [(ns, count)]."""
        return self.io.histogram()

    def transactions(self) -> dict:
        """Per type: window counts, the encoded latency histogram of committed
        ones (ns), and whole-run totals."""
        r = self.io.results()
        out = {}
        for i, (name, (total, window)) in enumerate(zip(self.kinds, r["types"])):
            out[name] = {**_counts(window), "total": _counts(total),
                         "histogram": metrics.encode(metrics.from_pairs(self.io.histogram(i)))}
        errors = {f"{_status_name(Op, op)}:{_status_name(Status, st)}": n for (op, st), n in r["errors"].items()}
        return {"types": out, "active": r["active"], "release_failures": r["release_failures"],
                "params_wrapped": r["params_wrapped"], "error_statuses": errors}
