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

Placement: with S servers, the primary of a key is key mod S and its
backups the next min(3, S) - 1 servers (mod S); every server holds every key
it is a replica of (with 3 servers, all of them).

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
     logged the transaction is committed (the commit point); every later
     batch is sent again, same request ids, until answered.
  3. INSERT new rows at their primaries. An insert answered EXISTS (another
     transaction inserted the row since it was read absent) aborts the
     transaction as a lock conflict; its log records stay (the log is
     redo-only and records aborted work harmlessly).
  4. Backups: COMMIT_BACKUP each write, INSERT each new row (the version the
     primary gave it), DELETE each deleted row.
  5. Primaries: COMMIT_PRIMARY each write (locked version + 1; it also
     releases the lock), DELETE each deleted row, and ABORT (release) every
     other lock held: 2PL shared locks and exclusive locks not written.

Deviation from DINT: DINT sends inserts through the same order as updates
(backups, then the primary). Here a new row goes to its primary first, in
the round before the backups, so the primary decides between concurrent
inserts of one key and the replicas cannot diverge; it costs a round trip
for transactions that insert. Inserted rows are not locked, so a new row is
visible at its primary one round before the transaction's updates are.

An abort (a rejected lock, a failed validation, a timeout before the
commit point, `raise Abort(...)`) is handled by the executor: it releases
every lock the transaction may hold.
"""
from __future__ import annotations

from .protocol import Op, Status
from .txn import Abort, Batch

MODES = ("2pl", "occ")
REPLICAS = 3

_OK, _NOT_FOUND, _EXISTS = int(Status.OK), int(Status.NOT_FOUND), int(Status.EXISTS)
_ABSENT = frozenset((_NOT_FOUND,))
# plain ints: the hot path builds many request tuples
(_READ, _LOCK_SHARED, _LOCK_EXCL, _VALIDATE, _LOG, _COMMIT_BACKUP, _COMMIT_PRIMARY, _ABORT, _INSERT,
 _DELETE) = (int(o) for o in (Op.READ, Op.LOCK_SHARED, Op.LOCK_EXCL, Op.VALIDATE, Op.LOG, Op.COMMIT_BACKUP,
                               Op.COMMIT_PRIMARY, Op.ABORT, Op.INSERT, Op.DELETE))


class Placement:
    """Which servers hold a key: its primary first, then its backups."""

    def __init__(self, servers: int, replicas: int = REPLICAS):
        if servers < 1:
            raise ValueError("at least one server")
        self.servers = servers
        self.replicas = min(replicas, servers)
        # by primary: the holders, primary first (computed once)
        self.holders_of = tuple(tuple((p + i) % servers for i in range(self.replicas)) for p in range(servers))

    def primary(self, key: int) -> int:
        return key % self.servers

    def backups(self, key: int) -> tuple[int, ...]:
        return self.holders_of[key % self.servers][1:]

    def holders(self, key: int) -> tuple[int, ...]:
        return self.holders_of[key % self.servers]


class Tx:
    """One transaction's read set, locks and writes; its methods are
    generators to be called with `yield from` inside a transaction."""
    __slots__ = ("cc", "place", "sizes", "blanks", "reads", "locked", "shared", "writes", "inserts", "deletes")

    def __init__(self, cc: str, place: Placement, sizes: tuple[int, ...], blanks: tuple[bytes, ...] | None = None):
        self.cc, self.place, self.sizes = cc, place, sizes
        self.blanks = blanks or tuple(bytes(n) for n in sizes)  # each table's placeholder value
        self.reads: dict = {}      # OCC: (table, key) -> version read (None: read absent)
        self.locked: dict = {}     # exclusive locks: (table, key) -> version locked
        self.shared: set = set()   # 2PL shared locks: (table, key)
        self.writes: dict = {}     # (table, key) -> new value
        self.inserts: dict = {}    # (table, key) -> value
        self.deletes: set = set()  # (table, key)

    # -- execution --------------------------------------------------------
    def access(self, read=(), update=(), missing_ok: bool = False):
        """One round trip: the values of the rows in read (shared locks under
        2PL; value and version under OCC) and of those in update (exclusive
        locks, both modes), as two lists; an absent row's value is None if
        missing_ok (else it aborts the transaction)."""
        n, blanks, occ = self.place.servers, self.blanks, self.cc == "occ"
        read = [(t, k) for t, k in read]       # items may be any iterable of pairs
        reqs = [(_READ if occ else _LOCK_SHARED, t, k, blanks[t], 0, k % n) for t, k in read]
        if update:
            update = [(t, k) for t, k in update]
            reqs += [(_LOCK_EXCL, t, k, blanks[t], 0, k % n) for t, k in update]
        replies = yield (Batch(reqs, _ABSENT) if missing_ok else reqs)
        nr = len(read)
        rvals = []
        if occ:  # the read set, versions to validate (None: read absent, must stay so)
            reads = self.reads
            for tk, (status, ver, value) in zip(read, replies):
                if status == _OK:
                    rvals.append(value)
                    if tk not in reads:
                        reads[tk] = ver
                else:
                    rvals.append(None)
                    if tk not in reads:
                        reads[tk] = None
        else:  # 2PL: shared locks held (unless the row is locked exclusively)
            for tk, (status, ver, value) in zip(read, replies):
                if status == _OK:
                    rvals.append(value)
                    if tk not in self.locked:
                        self.shared.add(tk)
                else:
                    rvals.append(None)
        if not update:
            return rvals, []
        uvals = []
        for tk, (status, ver, value) in zip(update, replies[nr:]):
            if status == _OK:
                uvals.append(value)
                self.locked[tk] = ver
                self.shared.discard(tk)
            else:
                uvals.append(None)
                if occ and tk not in self.reads:
                    self.reads[tk] = None
        return rvals, uvals

    def read(self, items, missing_ok: bool = False):
        """Values of [(table, key)]: see access()."""
        values, _ = yield from self.access(read=items, missing_ok=missing_ok)
        return values

    def read_for_update(self, items, missing_ok: bool = False):
        """Values of [(table, key)] under exclusive locks: see access()."""
        _, values = yield from self.access(update=items, missing_ok=missing_ok)
        return values

    def write(self, table: int, key: int, value: bytes) -> None:
        if (table, key) not in self.locked:
            raise ValueError(f"write of {table}/{key} without read_for_update")
        if len(value) != self.sizes[table]:
            raise ValueError(f"table {table} holds {self.sizes[table]}-byte values, not {len(value)}")
        self.writes[(table, key)] = value

    def insert(self, table: int, key: int, value: bytes) -> None:
        if len(value) != self.sizes[table]:
            raise ValueError(f"table {table} holds {self.sizes[table]}-byte values, not {len(value)}")
        self.inserts[(table, key)] = value

    def delete(self, table: int, key: int) -> None:
        if (table, key) not in self.locked:
            raise ValueError(f"delete of {table}/{key} without read_for_update")
        self.writes.pop((table, key), None)
        self.deletes.add((table, key))

    # -- commit -----------------------------------------------------------
    def commit(self):
        n, holders_of, blanks = self.place.servers, self.place.holders_of, self.blanks
        locked, writes, inserts, deletes = self.locked, self.writes, self.inserts, self.deletes
        if not locked and not inserts and len(self.reads) <= 1 and not self.shared:
            return None  # read one row (OCC), or nothing: nothing to validate or release
        # 1. validation (OCC)
        if self.cc == "occ":
            check = [(tk, ver) for tk, ver in self.reads.items() if tk not in locked]
            if check and (len(self.reads) + len(locked) > 1 or writes or inserts or deletes):
                reqs = [(_VALIDATE, t, k, blanks[t], ver or 0, k % n) for (t, k), ver in check]
                replies = yield Batch(reqs, _ABSENT)
                for ((_, ver), (status, _, _)) in zip(check, replies):
                    if status not in (_OK, _NOT_FOUND) or (ver is None) != (status == _NOT_FOUND):
                        raise Abort("validation")   # changed, locked, appeared or vanished
        if not writes and not deletes and not inserts:
            releases = [(_ABORT, t, k, blanks[t], 0, k % n) for t, k in (*self.shared, *locked)]
            if releases:
                yield releases
            return None
        # 2. log to every replica: the commit point
        log = [(_LOG, t, k, v, locked[(t, k)] + 1, d) for (t, k), v in writes.items() for d in holders_of[k % n]]
        if deletes:
            log += [(_LOG, t, k, blanks[t], locked[(t, k)] + 1, d) for t, k in deletes for d in holders_of[k % n]]
        if inserts:
            log += [(_LOG, t, k, v, 0, d) for (t, k), v in inserts.items() for d in holders_of[k % n]]
        yield log
        # 3. new rows at their primaries
        ins_ver = {}
        if inserts:
            items = list(inserts.items())
            replies = yield Batch([(_INSERT, t, k, v, 0, k % n) for (t, k), v in items], must=True,
                                  tolerate=(_EXISTS,))
            if any(r[0] == _EXISTS for r in replies):
                raise Abort("lock")
            ins_ver = {tk: r[1] for (tk, _), r in zip(items, replies)}
        # 4. backups
        bk = [(_COMMIT_BACKUP, t, k, v, locked[(t, k)] + 1, d)
              for (t, k), v in writes.items() for d in holders_of[k % n][1:]]
        if inserts:
            bk += [(_INSERT, t, k, v, ins_ver[(t, k)], d) for (t, k), v in inserts.items() for d in holders_of[k % n][1:]]
        if deletes:
            bk += [(_DELETE, t, k, blanks[t], locked[(t, k)] + 1, d) for t, k in deletes for d in holders_of[k % n][1:]]
        if bk:
            yield Batch(bk, must=True)
        # 5. primaries: apply and release
        pr = [(_COMMIT_PRIMARY, t, k, v, locked[(t, k)] + 1, k % n) for (t, k), v in writes.items()]
        if deletes:
            pr += [(_DELETE, t, k, blanks[t], locked[(t, k)] + 1, k % n) for t, k in deletes]
        release = [*self.shared] if self.shared else []
        if len(locked) > len(writes) + len(deletes):
            release += [tk for tk in locked if tk not in writes and tk not in deletes]
        if release:
            pr += [(_ABORT, t, k, blanks[t], 0, k % n) for t, k in release]
        if pr:
            yield Batch(pr, must=True)
        return None


def bind(func, cc: str, servers: int, sizes: tuple[int, ...]):
    """A transaction function func(tx, *args) as the executor calls it:
    f(*args) -> generator, with a fresh Tx each time. func returns its
    outcome label (or None) after `yield from tx.commit()`."""
    if cc not in MODES:
        raise ValueError(f"concurrency control must be one of {', '.join(MODES)}, not {cc!r}")
    place = Placement(servers)
    blanks = tuple(bytes(n) for n in sizes)

    def start(*args):
        return func(Tx(cc, place, sizes, blanks), *args)
    start.__name__ = func.__name__
    return start


# Rounds of the longest commit (validate, log, insert, backups, primaries);
# a workload's MAX_ROUNDS adds its execution rounds.
COMMIT_ROUNDS = 5
