"""The client-side transaction executor: transactions are generator functions
that yield batches of requests and receive their replies; many run at once
(the concurrency) over the native batched I/O of harness._netloop.TxnIO.

    def transfer(a, b):                                  # one transaction type
        r = yield [(Op.LOCK_EXCL, T, a, PH, 0), (Op.LOCK_EXCL, T, b, PH, 0)]
        yield [(Op.COMMIT_PRIMARY, T, a, val, r[0][1] + 1), ...]

A request is a tuple (op, table, key, value, ver[, dest]): value is bytes of
the table's value size (a placeholder for reads and locks), dest a server
index (default: key % servers, the key's primary). The executor stamps every
request with the transaction's id (client id << 32 | a counter). A reply is
(status, ver, value), value being bytes for an answered READ or a granted
lock and None otherwise; status TIMEOUT means the request was retransmitted
(same request id) max_retries times and given up.

A transaction may yield a Batch instead of a list: its `tolerate` statuses
(e.g. NOT_FOUND for a row that may be absent) are handed to the transaction
instead of aborting it, and a batch marked `must` (the commit messages sent
after the commit point, harness/coord.py) is sent again, same request ids,
whenever any of its requests times out, until all are answered. A
transaction's return value, if a string, is counted as its outcome (e.g.
SmallBank's WriteCheck with or without overdraft), per type.

A reply whose status is not OK aborts the transaction (the generator is
closed, not resumed); so does `raise Abort(cause)` inside it. Aborting sends
ABORT for every key the transaction may hold (a lock granted, or whose
outcome is unknown after a timeout, and not since released by a commit or
an abort): ABORT releases only the sender's own lock, so an unneeded one is
harmless. The cause is recorded per type: "lock" (LOCKED, or no room for
another shared holder), "validation" (VALIDATE not OK, or STALE), "timeout",
"error" (any other status: a bug, counted with its status).

Only transactions that start inside the measured window are counted;
latency is from the first batch sent to the last reply, committed ones only.
"""
from __future__ import annotations

import time
from collections import deque

from . import metrics
from ._netloop import TIMEOUT, TxnIO
from .protocol import Op, Status

CAUSES = ("lock", "validation", "timeout", "error")
MAX_KINDS = 16       # transaction types per workload (histograms in TxnIO)
MAX_BATCH = 64       # requests in one batch, for sizing the in-flight table
LATE_NS = 100_000    # open loop: a transaction started this much after it was due is late
SLEEP_NS = 200_000   # open loop: nothing in flight and the next due later than this: sleep
_OK = int(Status.OK)
_LOCKS = (int(Op.LOCK_SHARED), int(Op.LOCK_EXCL))
_RELEASES = (int(Op.COMMIT_PRIMARY), int(Op.ABORT))


class Batch(list):
    """A batch of requests with how its replies are taken (see above)."""
    __slots__ = ("tolerate", "must")

    def __init__(self, requests=(), tolerate=frozenset(), must: bool = False):
        super().__init__(requests)
        self.tolerate = frozenset(int(s) for s in tolerate)
        self.must = must


class Abort(Exception):
    """Raised inside a transaction to abort it with a cause (see CAUSES or
    any other name, e.g. "user")."""

    def __init__(self, cause: str = "user"):
        super().__init__(cause)
        self.cause = cause


def cause_of(op: int, status: int) -> str:
    if status == TIMEOUT:
        return "timeout"
    if op == Op.VALIDATE or status == Status.STALE:
        return "validation"
    if status == Status.LOCKED or (status == Status.FULL and op == Op.LOCK_SHARED):
        return "lock"
    return "error"


def held_keys(history: list) -> dict:
    """What a transaction may still hold after the rounds in history
    [(requests, replies)]: {(table, key, dest): value placeholder}. A lock
    whose request timed out may have been granted, so it counts as held."""
    held: dict = {}
    for reqs, reps in history:
        for req, rep in zip(reqs, reps):
            op = req[0]
            if op in _LOCKS:
                if rep is not None and (rep[0] == _OK or rep[0] == TIMEOUT):
                    held[(req[1], req[2], req[5] if len(req) > 5 else None)] = req[3]
            elif op in _RELEASES and rep is not None and rep[0] == _OK:
                held.pop((req[1], req[2], req[5] if len(req) > 5 else None), None)
    return held


class Txn:
    """One transaction in flight (the tag of its batches in TxnIO)."""
    __slots__ = ("gen", "kind", "id", "start", "recorded", "history", "aborting")

    def __init__(self, gen, kind: int, txn_id: int, start: int, recorded: bool):
        self.gen, self.kind, self.id, self.start, self.recorded = gen, kind, txn_id, start, recorded
        self.history: list = []
        self.aborting: str | None = None


class Counts:
    """Outcomes of one transaction type (or of all)."""
    __slots__ = ("started", "committed", "aborts", "outcomes")

    def __init__(self):
        self.started = self.committed = 0
        self.aborts: dict[str, int] = {c: 0 for c in CAUSES}
        self.outcomes: dict[str, int] = {}   # committed ones, by the label they returned

    def to_dict(self) -> dict:
        return {"started": self.started, "committed": self.committed, "aborted": sum(self.aborts.values()),
                "aborts": dict(self.aborts), "outcomes": dict(self.outcomes)}


class Executor:
    """Runs a workload's transactions closed-loop: `concurrency` in flight,
    parameters taken in turn (cycled) from `params`, a list of
    (kind index, args) drawn in advance from a seed. `kinds` names the
    transaction types and `funcs` holds their generator functions.

    Same interface as the native request loop (set_window, run, stats,
    histogram), plus transactions() for the transaction-level results."""

    def __init__(self, fds, client_id: int, kinds: list[str], funcs: list, params: list,
                 concurrency: int, timeout_ns: int, max_retries: int, max_value: int = 64,
                 interval_ns: int = 0):
        if not 1 <= len(kinds) == len(funcs) <= MAX_KINDS:
            raise ValueError(f"1 to {MAX_KINDS} transaction types, each with a function")
        if not params:
            raise ValueError("no transaction parameters")
        if not 1 <= client_id < 2**31:
            raise ValueError("client_id must be in 1..2^31-1")
        self.capacity = concurrency * MAX_BATCH * 2   # requests in flight at once
        self.io = TxnIO(fds, client_id, timeout_ns, max_retries, self.capacity, max_value)
        self.inflight = 0                         # requests submitted and not yet answered
        self.waiting: deque = deque()             # (txn, batch) held back until there is room
        self.kinds, self.funcs, self.params = list(kinds), list(funcs), params
        self.concurrency = concurrency
        self.txn_base = client_id << 32   # transaction ids: client id in the high bits
        self.next_txn = 0
        self.next_param = 0
        self.params_wrapped = 0                   # times the parameter list was started over
        self.active = 0
        self.win_from = self.win_until = 0
        self.window = [Counts() for _ in kinds]   # started inside the window
        self.total = [Counts() for _ in kinds]    # the whole run, warm-up and drain included
        self.error_statuses: dict[str, int] = {}
        self.release_failures = 0                 # ABORTs left unanswered: a lock may be left held
        self.resends = 0                          # must batches sent again after a timeout
        # open loop (interval_ns > 0): transaction i is due at start + i *
        # interval, however late the replies; concurrency caps those in flight
        self.interval = interval_ns
        self.next_due = 0
        self.late = self.skipped = 0

    # -- the loop ---------------------------------------------------------
    def set_window(self, from_ns: int, until_ns: int) -> None:
        self.win_from, self.win_until = from_ns, until_ns
        self.io.set_window(from_ns, until_ns)

    def run(self, until_ns: int, issue_new: bool) -> None:
        """Runs until the clock reaches until_ns; without issuing new
        transactions, also stops when none is left in flight."""
        io, advance, clock = self.io, self._advance, time.monotonic_ns
        open_loop = issue_new and self.interval
        while True:
            now = clock()
            if open_loop:
                self._issue_due(now)
            elif issue_new:
                while self.active < self.concurrency:
                    self._start(now, now)
            elif not self.active:
                return
            if now >= until_ns:
                return
            wake = until_ns
            if open_loop and self.active < self.concurrency:
                wake = min(until_ns, self.next_due)
                if not self.active and wake - now > SLEEP_NS:  # idle until the next is due
                    time.sleep((wake - now - SLEEP_NS // 2) / 1e9)
                    continue
            for txn, replies, fail in io.run(wake):
                self.inflight -= len(replies)
                advance(txn, replies, fail)
            while self.waiting and self.inflight + len(self.waiting[0][1]) <= self.capacity:
                txn, batch = self.waiting.popleft()
                self.inflight += len(batch)
                io.submit(txn, txn.id, batch)

    def _issue_due(self, now: int) -> None:
        if not self.next_due:
            self.next_due = now
        if self.next_due < self.win_from <= now:  # the warm-up's backlog stays out of the window
            self.skipped += (self.win_from - self.next_due) // self.interval
            self.next_due = self.win_from
        while self.active < self.concurrency and self.next_due <= now:
            due = self.next_due
            self.next_due += self.interval
            if now - due > LATE_NS and self.win_from <= due < self.win_until:
                self.late += 1
            self._start(now, due)

    def _submit(self, txn: Txn, batch) -> None:
        """Sends a batch, or holds it back (in order) while the in-flight
        table has no room for it: big batches (a TPC-C commit logs hundreds
        of rows) wait instead of failing."""
        if len(batch) > self.capacity:
            raise ValueError(f"a batch of {len(batch)} requests is more than the {self.capacity} this client "
                             "can have in flight; raise the concurrency or split the batch")
        if self.waiting or self.inflight + len(batch) > self.capacity:
            self.waiting.append((txn, batch))
            return
        self.inflight += len(batch)
        self.io.submit(txn, txn.id, batch)

    def _start(self, now: int, start: int) -> None:
        """Starts the next transaction now; its latency counts from start
        (when it was due, in an open loop) and start decides whether the
        window records it."""
        kind, args = self.params[self.next_param]
        self.next_param += 1
        if self.next_param == len(self.params):
            self.next_param = 0
            self.params_wrapped += 1
        self.next_txn = (self.next_txn + 1) & 0xFFFFFFFF or 1  # 0 means "no transaction"
        recorded = self.win_from <= start < self.win_until
        txn = Txn(self.funcs[kind](*args), kind, self.txn_base | self.next_txn, start, recorded)
        self.active += 1
        self.total[kind].started += 1
        if recorded:
            self.window[kind].started += 1
        self._step(txn, None)

    def _step(self, txn: Txn, replies) -> None:
        """Resumes the transaction with the replies to its last batch (None
        to start it) and sends what it yields next; it may finish or abort
        instead (an abort before anything is held just finishes it)."""
        try:
            batch = txn.gen.send(replies)
        except StopIteration as e:
            self._finish(txn, None, e.value)
            return
        except Abort as e:
            self._abort(txn, e.cause)
            return
        txn.history.append((batch, None))
        self._submit(txn, batch)

    def _advance(self, txn: Txn, replies: list, fail: int) -> None:
        history = txn.history
        history[-1] = (history[-1][0], replies)
        if txn.aborting is not None:  # the replies to its ABORTs
            if fail >= 0:
                self.release_failures += sum(1 for r in replies if r[0] != _OK)
            self._finish(txn, txn.aborting)
            return
        batch = history[-1][0]
        if fail >= 0 and type(batch) is Batch:
            if batch.must and any(r[0] == TIMEOUT for r in replies):
                self.resends += 1
                self._submit(txn, batch)
                return
            tolerate = batch.tolerate
            fail = next((i for i, r in enumerate(replies) if r[0] != _OK and r[0] not in tolerate), -1)
        if fail >= 0:
            op, status = batch[fail][0], replies[fail][0]
            cause = cause_of(op, status)
            if cause == "error":
                name = Status(status).name if status in Status._value2member_map_ else str(status)
                key = f"{Op(op).name}:{name}"
                self.error_statuses[key] = self.error_statuses.get(key, 0) + 1
            txn.gen.close()
            self._abort(txn, cause)
            return
        self._step(txn, replies)

    def _abort(self, txn: Txn, cause: str) -> None:
        held = held_keys(txn.history)
        if not held:
            self._finish(txn, cause)
            return
        txn.aborting = cause
        batch = [(Op.ABORT, table, key, value, 0) if dest is None else (Op.ABORT, table, key, value, 0, dest)
                 for (table, key, dest), value in held.items()]
        txn.history.append((batch, None))
        self._submit(txn, batch)

    def _finish(self, txn: Txn, cause: str | None, outcome=None) -> None:
        self.active -= 1
        kind = txn.kind
        both = (self.total[kind], self.window[kind]) if txn.recorded else (self.total[kind],)
        if cause is None:
            for counts in both:
                counts.committed += 1
                if outcome is not None and type(outcome) is str:
                    counts.outcomes[outcome] = counts.outcomes.get(outcome, 0) + 1
            if txn.recorded:
                self.io.record(kind, time.monotonic_ns() - txn.start)
        else:
            for counts in both:
                counts.aborts[cause] = counts.aborts.get(cause, 0) + 1

    # -- results ----------------------------------------------------------
    def stats(self) -> dict:
        """Request-level counters (as the native request loop's)."""
        st = self.io.stats()
        st["txn_active"] = self.active
        st["txn_committed"] = sum(c.committed for c in self.window)
        if self.interval:
            st["open_loop_late"], st["open_loop_skipped"] = self.late, self.skipped
        return st

    def histogram(self) -> list:
        """Request round trips, [(ns, count)]."""
        return self.io.histogram()

    def transactions(self) -> dict:
        """Per type: window counts, the encoded latency histogram of committed
        ones (ns), and whole-run totals."""
        out = {}
        for i, name in enumerate(self.kinds):
            out[name] = {**self.window[i].to_dict(), "total": self.total[i].to_dict(),
                         "histogram": metrics.encode(metrics.from_pairs(self.io.histogram(i)))}
        return {"types": out, "active": self.active, "release_failures": self.release_failures,
                "resends": self.resends, "params_wrapped": self.params_wrapped,
                "error_statuses": dict(self.error_statuses)}
