"""The transaction coordinator (client side): FaSST-style OCC and no-wait
2PL over the engine's operations, with primary-backup replication and
DINT's commit order. Workload transactions are written once against Tx and
run unchanged on every system (through the executor, harness/txn.py):

    def send_payment(tx, a, b):
        chk_a, chk_b = yield from tx.read_for_update([(CHECKING, a), (CHECKING, b)])
        if money(chk_a) < 500:
            raise Abort("user")
        tx.write(CHECKING, a, cents(money(chk_a) - 500))
        tx.write(CHECKING, b, cents(money(chk_b) + 500))
        yield from tx.commit()

Placement: a key's primary and backups as harness/placement.py says.

Execution: read() takes shared locks (2PL: LOCK_SHARED) or reads value and
version (OCC: READ) at the primaries; read_for_update() takes exclusive
locks (LOCK_EXCL, both modes), which answer value and version. A row that
may be absent is asked for with missing_ok (its value comes back None).

Commit (commit()), one round trip per step, steps with nothing to send
skipped:
  1. OCC: VALIDATE the read set at the primaries (versions unchanged, not
     locked by another; a row read absent must still be absent). Skipped for
     a transaction that read one row and writes nothing.
  2. LOG every write, insert and delete to all its replicas. Once all are
     logged the transaction is committed (the commit point). Every request
     that may change state, these and all that follow, is sent until
     answered (the executor never gives one up, and the servers apply each
     once, harness/txn.py), so a committed transaction always finishes.
  3. INSERT new rows at their primaries (version 0: the primary chooses it,
     and the new row stays locked by this transaction). An insert answered
     EXISTS (another transaction inserted the row since it was read absent)
     aborts the transaction as a lock conflict; its log records stay (the
     log is redo-only and records aborted work harmlessly).
  4. Backups: COMMIT_BACKUP each write, INSERT each new row (the version the
     primary gave it), DELETE each deleted row.
  5. Primaries: COMMIT_PRIMARY each write (locked version + 1; it also
     releases the lock), DELETE each deleted row, and ABORT (release) every
     other lock held: 2PL shared locks, exclusive locks not written, and the
     new rows.

Deviation from DINT: DINT sends inserts through the same order as updates
(backups, then the primary). Here a new row goes to its primary first, in
the round before the backups, so the primary decides between concurrent
inserts of one key and the replicas cannot diverge; it costs a round trip
for transactions that insert. The new row stays locked at its primary until
the last round, so no transaction reads, locks, updates or deletes it
before its backups have it (a TPC-C Delivery did: its commit then found the
order absent at a backup).

An abort (a rejected lock, a failed validation, a read that timed out,
`raise Abort(...)`) is handled by the executor: it releases every lock the
transaction may hold.
"""
from __future__ import annotations

from workloads.contract import CC_MODES

from .placement import Placement
from .protocol import Op, Status
from .txn import Abort, Batch

_OK, _NOT_FOUND, _EXISTS = int(Status.OK), int(Status.NOT_FOUND), int(Status.EXISTS)
# plain ints: the hot path builds many request tuples
(_READ, _LOCK_SHARED, _LOCK_EXCL, _VALIDATE, _LOG, _COMMIT_BACKUP, _COMMIT_PRIMARY, _ABORT, _INSERT,
 _DELETE) = (int(o) for o in (Op.READ, Op.LOCK_SHARED, Op.LOCK_EXCL, Op.VALIDATE, Op.LOG, Op.COMMIT_BACKUP,
                               Op.COMMIT_PRIMARY, Op.ABORT, Op.INSERT, Op.DELETE))
# the batches a transaction yields, made as cheaply as lists
_MaybeAbsent = Batch.kind(tolerate=(_NOT_FOUND,))   # rows that may be absent; VALIDATE of rows read absent
_MayExist = Batch.kind(tolerate=(_EXISTS,))          # inserts of rows read absent
_BOTH, _READS, _UPDATES = 0, 1, 2                   # what access() returns


def _pairs(items) -> list:
    """items as a list of (table, key) tuples (they are used as dict keys)."""
    if type(items) is list and (not items or type(items[0]) is tuple):
        return items
    return [(t, k) for t, k in items]


class Tx:
    """One transaction's read set, locks and writes; its methods are
    generators to be called with `yield from` inside a transaction. Rows are
    (table, key) tuples. It runs once per transaction on the client's
    critical path, so it is written for speed: read() and read_for_update()
    hand back access()'s generator itself (one frame fewer per round), and
    the containers a transaction rarely needs are made on first use."""
    __slots__ = ("cc", "occ", "place", "sizes", "blanks", "reads", "locked", "shared", "writes", "inserts",
                 "deletes")

    def __init__(self, cc: str, place: Placement, sizes: tuple[int, ...], blanks: tuple[bytes, ...] | None = None):
        self.cc, self.place, self.sizes = cc, place, sizes
        self.occ = occ = cc == "occ"
        self.blanks = blanks or tuple(bytes(n) for n in sizes)  # each table's placeholder value
        self.reads: dict | None = {} if occ else None      # OCC: row -> version read (None: read absent)
        self.shared: set | None = None if occ else set()   # 2PL shared locks held
        self.locked: dict = {}      # exclusive locks: row -> version locked
        self.writes: dict = {}      # row -> new value
        self.inserts: dict | None = None  # row -> value
        self.deletes: set | None = None

    # -- execution --------------------------------------------------------
    def access(self, read=(), update=(), missing_ok: bool = False):
        """One round trip: the values of the rows in read (shared locks under
        2PL; value and version under OCC) and of those in update (exclusive
        locks, both modes), as two lists; an absent row's value is None if
        missing_ok (else it aborts the transaction)."""
        return self._access(read, update, missing_ok, _BOTH)

    def read(self, items, missing_ok: bool = False):
        """Values of [(table, key)]: see access()."""
        return self._access(items, (), missing_ok, _READS)

    def read_for_update(self, items, missing_ok: bool = False):
        """Values of [(table, key)] under exclusive locks: see access()."""
        return self._access((), items, missing_ok, _UPDATES)

    def _access(self, read, update, missing_ok, want):
        primary, blanks, occ = self.place.primary, self.blanks, self.occ
        reqs = []
        if read:
            read = _pairs(read)
            op = _READ if occ else _LOCK_SHARED
            reqs = [(op, t, k, blanks[t], 0, primary(k)) for t, k in read]
        if update:
            update = _pairs(update)
            reqs += [(_LOCK_EXCL, t, k, blanks[t], 0, primary(k)) for t, k in update]
        replies = yield (_MaybeAbsent(reqs) if missing_ok else reqs)
        # A reply is OK, or NOT_FOUND where tolerated (any other status has
        # aborted the transaction): its value is bytes, or None.
        rvals = uvals = ()
        nr = len(read) if read else 0
        if read:
            rvals = [r[2] for r in replies[:nr]] if update else [r[2] for r in replies]
            if occ:  # the read set, versions to validate (None: read absent, must stay so)
                reads = self.reads
                for tk, r in zip(read, replies):
                    if tk not in reads:
                        reads[tk] = r[1] if r[0] == _OK else None
            else:    # 2PL: shared locks held (unless the row is locked exclusively)
                shared, locked = self.shared, self.locked
                for tk, r in zip(read, replies):
                    if r[0] == _OK and tk not in locked:
                        shared.add(tk)
        if update:
            locked, shared, reads = self.locked, self.shared, self.reads
            ureplies = replies[nr:] if nr else replies
            uvals = [r[2] for r in ureplies]
            for tk, r in zip(update, ureplies):
                if r[0] == _OK:
                    locked[tk] = r[1]
                    if shared:
                        shared.discard(tk)
                elif occ and tk not in reads:
                    reads[tk] = None
        if want == _READS:
            return rvals
        if want == _UPDATES:
            return uvals
        return list(rvals), list(uvals)

    def write(self, table: int, key: int, value: bytes) -> None:
        if (table, key) not in self.locked:
            raise ValueError(f"write of {table}/{key} without read_for_update")
        if len(value) != self.sizes[table]:
            raise ValueError(f"table {table} holds {self.sizes[table]}-byte values, not {len(value)}")
        self.writes[(table, key)] = value

    def insert(self, table: int, key: int, value: bytes) -> None:
        if len(value) != self.sizes[table]:
            raise ValueError(f"table {table} holds {self.sizes[table]}-byte values, not {len(value)}")
        if self.inserts is None:
            self.inserts = {}
        self.inserts[(table, key)] = value

    def delete(self, table: int, key: int) -> None:
        if (table, key) not in self.locked:
            raise ValueError(f"delete of {table}/{key} without read_for_update")
        self.writes.pop((table, key), None)
        if self.deletes is None:
            self.deletes = set()
        self.deletes.add((table, key))

    # -- commit -----------------------------------------------------------
    def commit(self):
        locked, writes, inserts, deletes, shared, reads = (self.locked, self.writes, self.inserts, self.deletes,
                                                           self.shared, self.reads)
        if not locked and not inserts and not shared and (not reads or len(reads) == 1):
            return None  # read one row (OCC), or nothing: nothing to validate or release
        primary, holders_of, blanks = self.place.primary, self.place.holders_of, self.blanks
        # 1. validation (OCC)
        if reads:
            check = [(tk, ver) for tk, ver in reads.items() if tk not in locked] if locked else [*reads.items()]
            if check and (len(reads) + len(locked) > 1 or writes or inserts or deletes):
                replies = yield _MaybeAbsent([(_VALIDATE, t, k, blanks[t], ver or 0, primary(k))
                                              for (t, k), ver in check])
                for (_, ver), r in zip(check, replies):
                    st = r[0]
                    if st != _OK and st != _NOT_FOUND or (ver is None) != (st == _NOT_FOUND):
                        raise Abort("validation")   # changed, locked, appeared or vanished
        if not writes and not deletes and not inserts:
            releases = [(_ABORT, t, k, blanks[t], 0, primary(k)) for t, k in ((*shared, *locked) if shared else locked)]
            if releases:
                yield releases
            return None
        # 2. log to every replica: the commit point
        log = [(_LOG, t, k, v, locked[(t, k)] + 1, d) for (t, k), v in writes.items() for d in holders_of[primary(k)]]
        if deletes:
            log += [(_LOG, t, k, blanks[t], locked[(t, k)] + 1, d) for t, k in deletes for d in holders_of[primary(k)]]
        if inserts:
            log += [(_LOG, t, k, v, 0, d) for (t, k), v in inserts.items() for d in holders_of[primary(k)]]
        yield log
        # 3. new rows at their primaries
        if inserts:
            items = list(inserts.items())
            replies = yield _MayExist([(_INSERT, t, k, v, 0, primary(k)) for (t, k), v in items])
            if any(r[0] == _EXISTS for r in replies):
                raise Abort("lock")
            ins_ver = {tk: r[1] for (tk, _), r in zip(items, replies)}
        # 4. backups
        bk = [(_COMMIT_BACKUP, t, k, v, locked[(t, k)] + 1, d)
              for (t, k), v in writes.items() for d in holders_of[primary(k)][1:]]
        if inserts:
            bk += [(_INSERT, t, k, v, ins_ver[(t, k)], d) for (t, k), v in inserts.items() for d in holders_of[primary(k)][1:]]
        if deletes:
            bk += [(_DELETE, t, k, blanks[t], locked[(t, k)] + 1, d) for t, k in deletes for d in holders_of[primary(k)][1:]]
        if bk:
            yield bk
        # 5. primaries: apply and release
        pr = [(_COMMIT_PRIMARY, t, k, v, locked[(t, k)] + 1, primary(k)) for (t, k), v in writes.items()]
        if deletes:
            pr += [(_DELETE, t, k, blanks[t], locked[(t, k)] + 1, primary(k)) for t, k in deletes]
        release = [*shared] if shared else []
        if len(locked) > len(writes) + (len(deletes) if deletes else 0):
            release += [tk for tk in locked if tk not in writes and not (deletes and tk in deletes)]
        if inserts:
            release += inserts
        if release:
            pr += [(_ABORT, t, k, blanks[t], 0, primary(k)) for t, k in release]
        if pr:
            yield pr
        return None


def bind(func, cc: str, servers: int, sizes: tuple[int, ...]):
    """A transaction function func(tx, *args) as the executor calls it:
    f(*args) -> generator, with a fresh Tx each time. func returns its
    outcome label (or None) after `yield from tx.commit()`."""
    if cc not in CC_MODES:
        raise ValueError(f"concurrency control must be one of {', '.join(CC_MODES)}, not {cc!r}")
    place = Placement(servers)
    blanks = tuple(bytes(n) for n in sizes)

    def start(*args):
        return func(Tx(cc, place, sizes, blanks), *args)
    start.__name__ = func.__name__
    return start


# Rounds of the longest commit (validate, log, insert, backups, primaries);
# a workload's Transactions.rounds adds its execution rounds.
COMMIT_ROUNDS = 5
