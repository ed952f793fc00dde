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
(status, ver, value), value being bytes for READ and None otherwise; status
TIMEOUT means the request was retransmitted (same request id) max_retries
times and given up.

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

from . import metrics
from ._netloop import TIMEOUT, TxnIO
from .protocol import Op, Status

CAUSES = ("lock", "validation", "timeout", "error")
MAX_KINDS = 16       # transaction types per workload (histograms in TxnIO)
MAX_BATCH = 64       # requests in one batch, for sizing the in-flight table
_OK = int(Status.OK)
_LOCKS = (int(Op.LOCK_SHARED), int(Op.LOCK_EXCL))
_RELEASES = (int(Op.COMMIT_PRIMARY), int(Op.ABORT))


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
    __slots__ = ("started", "committed", "aborts")

    def __init__(self):
        self.started = self.committed = 0
        self.aborts: dict[str, int] = {c: 0 for c in CAUSES}

    def to_dict(self) -> dict:
        return {"started": self.started, "committed": self.committed, "aborted": sum(self.aborts.values()),
                "aborts": dict(self.aborts)}


class Executor:
    """Runs a workload's transactions closed-loop: `concurrency` in flight,
    parameters taken in turn (cycled) from `params`, a list of
    (kind index, args) drawn in advance from a seed. `kinds` names the
    transaction types and `funcs` holds their generator functions.

    Same interface as the native request loop (set_window, run, stats,
    histogram), plus transactions() for the transaction-level results."""

    def __init__(self, fds, client_id: int, kinds: list[str], funcs: list, params: list,
                 concurrency: int, timeout_ns: int, max_retries: int, max_value: int = 64):
        if not 1 <= len(kinds) == len(funcs) <= MAX_KINDS:
            raise ValueError(f"1 to {MAX_KINDS} transaction types, each with a function")
        if not params:
            raise ValueError("no transaction parameters")
        if not 1 <= client_id < 2**31:
            raise ValueError("client_id must be in 1..2^31-1")
        self.io = TxnIO(fds, client_id, timeout_ns, max_retries, concurrency * MAX_BATCH * 2, max_value)
        self.kinds, self.funcs, self.params = list(kinds), list(funcs), params
        self.concurrency = concurrency
        self.txn_base = client_id << 32   # transaction ids: client id in the high bits
        self.next_txn = 0
        self.next_param = 0
        self.active = 0
        self.win_from = self.win_until = 0
        self.window = [Counts() for _ in kinds]   # started inside the window
        self.total = [Counts() for _ in kinds]    # the whole run, warm-up and drain included
        self.error_statuses: dict[str, int] = {}
        self.release_failures = 0                 # ABORTs left unanswered: a lock may be left held

    # -- the loop ---------------------------------------------------------
    def set_window(self, from_ns: int, until_ns: int) -> None:
        self.win_from, self.win_until = from_ns, until_ns
        self.io.set_window(from_ns, until_ns)

    def run(self, until_ns: int, issue_new: bool) -> None:
        """Runs until the clock reaches until_ns; without issuing new
        transactions, also stops when none is left in flight."""
        io, advance, clock = self.io, self._advance, time.monotonic_ns
        while True:
            now = clock()
            if issue_new:
                while self.active < self.concurrency:
                    self._start(now)
            elif not self.active:
                return
            if now >= until_ns:
                return
            for txn, replies, fail in io.run(until_ns):
                advance(txn, replies, fail)

    def _start(self, now: int) -> None:
        kind, args = self.params[self.next_param]
        self.next_param += 1
        if self.next_param == len(self.params):
            self.next_param = 0
        self.next_txn = (self.next_txn + 1) & 0xFFFFFFFF or 1  # 0 means "no transaction"
        recorded = self.win_from <= now < self.win_until
        txn = Txn(self.funcs[kind](*args), kind, self.txn_base | self.next_txn, now, recorded)
        self.active += 1
        self.total[kind].started += 1
        if recorded:
            self.window[kind].started += 1
        try:
            batch = next(txn.gen)
        except StopIteration:
            self._finish(txn, None)
            return
        except Abort as e:
            self._finish(txn, e.cause)
            return
        txn.history.append((batch, None))
        self.io.submit(txn, txn.id, batch)

    def _advance(self, txn: Txn, replies: list, fail: int) -> None:
        history = txn.history
        history[-1] = (history[-1][0], replies)
        if txn.aborting is not None:  # the replies to its ABORTs
            if fail >= 0:
                self.release_failures += sum(1 for r in replies if r[0] != _OK)
            self._finish(txn, txn.aborting)
            return
        if fail >= 0:
            op, status = history[-1][0][fail][0], replies[fail][0]
            cause = cause_of(op, status)
            if cause == "error":
                name = Status(status).name if status in Status._value2member_map_ else str(status)
                key = f"{Op(op).name}:{name}"
                self.error_statuses[key] = self.error_statuses.get(key, 0) + 1
            txn.gen.close()
            self._abort(txn, cause)
            return
        try:
            batch = txn.gen.send(replies)
        except StopIteration:
            self._finish(txn, None)
            return
        except Abort as e:
            self._abort(txn, e.cause)
            return
        history.append((batch, None))
        self.io.submit(txn, txn.id, batch)

    def _abort(self, txn: Txn, cause: str) -> None:
        held = held_keys(txn.history)
        if not held:
            self._finish(txn, cause)
            return
        txn.aborting = cause
        batch = [(Op.ABORT, table, key, value, 0) if dest is None else (Op.ABORT, table, key, value, 0, dest)
                 for (table, key, dest), value in held.items()]
        txn.history.append((batch, None))
        self.io.submit(txn, txn.id, batch)

    def _finish(self, txn: Txn, cause: str | None) -> None:
        self.active -= 1
        for counts, recorded in ((self.total[txn.kind], True), (self.window[txn.kind], txn.recorded)):
            if not recorded:
                continue
            if cause is None:
                counts.committed += 1
            else:
                counts.aborts[cause] = counts.aborts.get(cause, 0) + 1
        if cause is None and txn.recorded:
            self.io.record(txn.kind, time.monotonic_ns() - txn.start)

    # -- results ----------------------------------------------------------
    def stats(self) -> dict:
        """Request-level counters (as the native request loop's)."""
        st = self.io.stats()
        st["txn_active"] = self.active
        st["txn_committed"] = sum(c.committed for c in self.window)
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
                "error_statuses": dict(self.error_statuses)}
