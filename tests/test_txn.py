"""The transaction executor (harness/txn.py over the native TxnIO) against
small in-test servers on loopback that keep records and no-wait locks as the
engine does (engine/dint_engine.h), with faults injected: batches, replies
matched by request id, retransmission with the same id, timeouts, abort
causes, locks released on abort, the measured window, transaction ids."""
from __future__ import annotations

import socket
import time

import pytest

from harness import metrics
from harness._netloop import TIMEOUT, BatchIO
from harness.protocol import HEADER_LEN, Op, Status, pack, unpack
from harness.txn import Abort, Batch, Executor, cause_of
from workloads import DataSpec, LoadSpec, kv, lock

from conftest import LoopbackServer, run_window

T = 0
PH = bytes(8)
SO_NO_CHECK = 11  # Linux: no UDP checksums on send (socket has no name for it)


class FakeEngine(LoopbackServer):
    """One server on 127.0.0.1: versioned records, no-wait shared/exclusive
    locks remembered by owner, idempotent commits. Faults: drop the first
    transmission of every request whose seq is a multiple of drop_first_every;
    lose the replies to the first lose_replies[op] copies of every request
    of that operation (applied, unanswered); never answer keys in `silent`."""

    def __init__(self, keys=range(100), drop_first_every: int = 0, silent=(), lose_replies=None):
        super().__init__()
        self.ver = {k: 1 for k in keys}
        self.value = {k: PH for k in keys}
        self.owner: dict[int, int] = {}
        self.shared: dict[int, set[int]] = {}
        self.last_txn: dict[int, int] = {}
        self.drop_first_every, self.silent = drop_first_every, set(silent)
        self.seen: set[tuple[int, int]] = set()
        self.lose_replies = dict(lose_replies or {})
        self.copies: dict[tuple[int, int], int] = {}  # (client_id, seq) -> copies received
        self.log: list = []  # (client_id, seq, op, txn, key) of every datagram received
        self.sizes: list = []  # and its size

    def apply(self, m) -> tuple[int, int]:
        k, txn = m.key, m.txn
        if k not in self.ver:
            return Status.OK if m.op == Op.ABORT else Status.NOT_FOUND, 0
        ver, owner, shared = self.ver[k], self.owner.get(k, 0), self.shared.setdefault(k, set())
        if m.op == Op.READ:
            return (Status.LOCKED if owner and owner != txn else Status.OK), ver
        if m.op == Op.LOCK_SHARED:
            if owner:
                return (Status.OK if owner == txn else Status.LOCKED), ver
            shared.add(txn)
            return Status.OK, ver
        if m.op == Op.LOCK_EXCL:
            if owner:
                return (Status.OK if owner == txn else Status.LOCKED), ver
            if shared - {txn}:
                return Status.LOCKED, ver
            shared.discard(txn)
            self.owner[k] = txn
            return Status.OK, ver
        if m.op == Op.VALIDATE:
            if owner and owner != txn:
                return Status.LOCKED, ver
            return (Status.OK if ver == m.ver else Status.STALE), ver
        if m.op == Op.COMMIT_PRIMARY:
            if self.last_txn.get(k) == txn and ver == m.ver and owner != txn:
                return Status.OK, m.ver
            if owner != txn:
                return Status.NOT_OWNER, m.ver
            if m.ver <= ver:
                return Status.STALE, ver
            self.ver[k], self.value[k], self.last_txn[k] = m.ver, m.value, txn
            self.owner[k] = 0
            shared.discard(txn)
            return Status.OK, m.ver
        if m.op == Op.ABORT:
            if owner == txn:
                self.owner[k] = 0
            shared.discard(txn)
            return Status.OK, m.ver
        return Status.UNKNOWN_OP, m.ver

    def held(self) -> dict:
        """{key: (owner, shared holders)} of every key still locked."""
        return {k: (self.owner.get(k, 0), set(self.shared.get(k, ()))) for k in self.ver
                if self.owner.get(k, 0) or self.shared.get(k)}

    def receive(self):
        """The next datagram (logged) and its sender, or None."""
        try:
            data, peer = self.sock.recvfrom(2048)
        except TimeoutError:
            return None
        m = unpack(data)
        self.log.append((m.client_id, m.seq, m.op, m.txn, m.key))
        self.sizes.append(len(data))
        return m, peer

    def answer(self, m, peer):
        status, ver = self.apply(m)
        value = self.value.get(m.key, m.value) if m.op == Op.READ and status == Status.OK else m.value
        self.sock.sendto(pack(m.op, m.key, value, table=m.table, ver=ver, txn=m.txn, client_id=m.client_id,
                              seq=m.seq, status=status), peer)

    def run(self):
        while not self.stop.is_set():
            got = self.receive()
            if got is None:
                continue
            m, peer = got
            if m.key in self.silent:
                continue
            if self.drop_first_every and m.seq % self.drop_first_every == 0 and (m.client_id, m.seq) not in self.seen:
                self.seen.add((m.client_id, m.seq))
                continue
            n = self.copies[(m.client_id, m.seq)] = self.copies.get((m.client_id, m.seq), 0) + 1
            if n <= self.lose_replies.get(m.op, 0):
                if n == 1:
                    self.apply(m)  # applied; its reply lost
                continue
            self.answer(m, peer)


class LateGrant(FakeEngine):
    """Key `key` is locked by a foreign transaction. The first lock request
    for it is answered LOCKED only after `delay` seconds, then the foreign
    lock goes; the copies the client sent meanwhile (it retransmits, same
    request id) are taken after that answer, and granted."""
    FOREIGN = 0xF00

    def __init__(self, key: int, delay: float, **kw):
        super().__init__(**kw)
        self.key, self.delay = key, delay
        self.owner[key] = self.FOREIGN
        self.sock.settimeout(0.001)

    def run(self):
        first = None        # (when to answer, message, peer)
        copies: list = []   # what arrived for the key meanwhile
        while not self.stop.is_set():
            if first and time.monotonic() >= first[0]:
                self.answer(*first[1:])         # LOCKED
                self.owner[self.key] = 0        # the foreign transaction lets go
                for m, peer in copies:
                    self.answer(m, peer)        # granted, to a request the client saw refused
                first, copies = None, []
            got = self.receive()
            if got is None:
                continue
            m, peer = got
            if m.key == self.key and m.op == Op.LOCK_EXCL and self.owner.get(self.key) == self.FOREIGN:
                if first is None:
                    first = (time.monotonic() + self.delay, m, peer)
                else:
                    copies.append((m, peer))
                continue
            self.answer(m, peer)


def sockets(servers) -> list[socket.socket]:
    out = []
    for srv in servers:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.connect(srv.addr)
        out.append(s)
    return out


def executor(servers, kinds, funcs, params, concurrency=4, timeout_ms=20, retries=3, client_id=7, dead_ms=5000):
    """An executor over Python fake servers, with a fixed retransmission
    timeout (their round trips wander with the interpreter's thread
    switches)."""
    socks = sockets(servers)
    ex = Executor([s.fileno() for s in socks], client_id, kinds, funcs, params, concurrency,
                  int(timeout_ms * 1e6), retries, max_value=40, rto_min_ns=int(timeout_ms * 1e6),
                  dead_ns=int(dead_ms * 1e6))
    return socks, ex


def drive(ex, seconds=0.3, warmup=0.0):
    run_window(ex, seconds, warmup, drain_s=2.0)
    return ex.transactions()


def close(socks):
    for s in socks:
        s.close()


def two_keys(a, b, servers=1):
    """Locks two keys, writes the second (its version + 1); each on its primary."""
    r = yield [(Op.LOCK_SHARED, T, a, PH, 0, a % servers), (Op.LOCK_EXCL, T, b, PH, 0, b % servers)]
    ver = r[1][1] + 1
    yield [(Op.COMMIT_PRIMARY, T, b, ver.to_bytes(8, "big"), ver, b % servers),
           (Op.ABORT, T, a, PH, 0, a % servers)]


# -- the native batch I/O (BatchIO: the executor's, without the executor) -----
def test_a_batch_completes_once_with_replies_in_request_order():
    with FakeEngine() as a, FakeEngine() as b:
        socks = sockets([a, b])
        io = BatchIO([s.fileno() for s in socks], 9, 20_000_000, 2, 64, 8, rto_min_ns=20_000_000)
        tag = object()
        reqs = [(Op.READ, T, k, PH, 0, (k + 1) % 2) for k in (4, 1, 3, 2, 0)]  # not the keys' primaries
        io.submit(tag, 5, reqs)
        done = []
        deadline = time.monotonic_ns() + 1_000_000_000
        while not done and time.monotonic_ns() < deadline:
            done = io.run(deadline)
        assert len(done) == 1
        got_tag, replies, fail = done[0]
        assert got_tag is tag and fail == -1
        assert [r[:2] for r in replies] == [(Status.OK, 1)] * 5 and all(r[2] == PH for r in replies)
        # each to the server it names, in one round, stamped with the transaction
        assert sorted(k for *_, k in a.log) == [1, 3] and sorted(k for *_, k in b.log) == [0, 2, 4]
        assert {txn for *_, txn, _ in a.log + b.log} == {5}
        st = io.stats()
        assert st["sent"] == 5 == st["replies"] and st["inflight"] == 0 and st["batches"] == 1
        close(socks)


def test_lost_datagrams_are_retransmitted_with_the_same_id_and_given_up_as_timeout():
    with FakeEngine(drop_first_every=2, silent={7}) as srv:
        socks = sockets([srv])
        io = BatchIO([socks[0].fileno()], 9, 5_000_000, 2, 64, 8, rto_min_ns=5_000_000)
        io.submit("t", 5, [(Op.READ, T, k, PH, 0, 0) for k in (1, 2, 3, 7)])
        done, deadline = [], time.monotonic_ns() + 2_000_000_000
        while not done and time.monotonic_ns() < deadline:
            done = io.run(deadline)
        _, replies, fail = done[0]
        assert [r[0] for r in replies] == [Status.OK] * 3 + [TIMEOUT] and fail == 3
        st = io.stats()
        assert st["retransmits"] == 1 + 2  # key 2 (seq 2, dropped once), key 7 twice before giving up
        seqs_by_key: dict[int, set] = {}
        for _, seq, _, _, key in srv.log:
            seqs_by_key.setdefault(key, set()).add(seq)
        assert all(len(s) == 1 for s in seqs_by_key.values())  # retransmissions kept their request id
        assert len([e for e in srv.log if e[4] == 7]) == 3  # first send + max_retries
        close(socks)


def run_batch(io, reqs, seconds=2.0):
    io.submit("t", 5, reqs)
    done, deadline = [], time.monotonic_ns() + int(seconds * 1e9)
    while not done and time.monotonic_ns() < deadline:
        done = io.run(deadline)
    return done


@pytest.mark.parametrize("gso", [True, False])
def test_gso_sends_reach_the_server_as_the_datagrams_they_are(gso):
    """Runs of same-size requests to one server go out as UDP GSO sends:
    the server still receives one datagram per request, each its own size."""
    values = [bytes([i]) * (8 if i % 3 else 40) for i in range(100)]
    with FakeEngine(keys=()) as srv:  # ABORT of a key it does not have: OK
        socks = sockets([srv])
        io = BatchIO([socks[0].fileno()], 9, 200_000_000, 2, 256, 40, gso, rto_min_ns=200_000_000)
        (_, replies, fail), = run_batch(io, [(Op.ABORT, T, k, v, 0, 0) for k, v in enumerate(values)])
        assert fail == -1 and len(replies) == 100
        assert sorted(srv.sizes) == sorted(HEADER_LEN + len(v) for v in values)
        st = io.stats()
        assert st["gso"] is gso and st["sent"] == 100 == st["replies"] and st["send_failed"] == 0
        close(socks)


def test_a_refused_gso_send_falls_back_to_datagrams():
    """A socket that cannot take GSO sends (here: UDP checksums off, which
    GSO needs) makes the client send datagram by datagram; what the refused
    send carried is sent again after the timeout."""
    with FakeEngine() as srv:
        socks = sockets([srv])
        socks[0].setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        io = BatchIO([socks[0].fileno()], 9, 5_000_000, 3, 64, 8, rto_min_ns=5_000_000)
        (_, replies, fail), = run_batch(io, [(Op.READ, T, k, PH, 0, 0) for k in range(10)])
        st = io.stats()
        # the first datagram goes alone (sent); the other nine, as one GSO send (refused)
        assert fail == -1 and st["gso"] is False and st["send_failed"] == 9 == st["retransmits"]
        assert len(srv.sizes) == 10
        close(socks)


@pytest.mark.parametrize("bad,message", [
    ([], "at least one request"),
    ([(Op.READ, T, 1, PH)], "a tuple"),
    ([(Op.READ, T, 1, PH, 0)], "request 1: .* dest"),  # the destination is not optional
    ([(Op.READ, T, 1, bytes(100), 0, 0)], "value must be bytes"),
    ([(99, T, 1, PH, 0, 0)], "out of range"),
    ([(Op.READ, T, 1, PH, 0, 3)], "out of range"),
    ([(Op.READ, T, -1, PH, 0, 0)], "unsigned"),
])
def test_bad_requests_are_refused_and_leave_nothing_in_flight(bad, message):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    io = BatchIO([sock.fileno()], 1, 10**6, 1, 8, 8, rto_min_ns=10**6)
    with pytest.raises((ValueError, TypeError), match=message):
        io.submit("t", 1, [(Op.READ, T, 2, PH, 0, 0)] + bad if bad else bad)
    assert io.stats()["inflight"] == 0
    with pytest.raises(RuntimeError, match="max_inflight"):
        io.submit("t", 1, [(Op.READ, T, k, PH, 0, 0) for k in range(9)])
    sock.close()


# -- the executor ----------------------------------------------------------
def test_transactions_commit_and_every_started_one_finishes():
    with FakeEngine() as a, FakeEngine() as b:
        params = [(0, (k, k + 50, 2)) for k in range(0, 40, 2)]
        socks, ex = executor([a, b], ["two_keys"], [two_keys], params, concurrency=4)
        out = drive(ex)
        t = out["types"]["two_keys"]
        assert t["started"] == t["committed"] + t["aborted"] > 20
        assert t["total"]["started"] == t["total"]["committed"] + t["total"]["aborted"]
        assert out["active"] == 0 and out["release_failures"] == 0
        assert metrics.decode(t["histogram"]).get_total_count() == t["committed"]
        assert a.held() == {} and b.held() == {}
        # each commit bumped one version: total bumps = committed (all of the run)
        bumps = sum(v - 1 for srv in (a, b) for v in srv.ver.values())
        assert bumps == t["total"]["committed"] == ex.stats()["ok_by_op"][int(Op.COMMIT_PRIMARY)]
        close(socks)


def test_transaction_ids_are_unique_and_carry_the_client_id():
    with FakeEngine() as srv:
        socks, ex = executor([srv], ["two_keys"], [two_keys], [(0, (1, 2)), (0, (3, 4))], concurrency=1,
                             client_id=0x1234)
        drive(ex, seconds=0.1)
        txns = {}
        for _, _, op, txn, key in srv.log:
            txns.setdefault(txn, set()).add(key)
        assert all(txn >> 32 == 0x1234 and txn & 0xFFFFFFFF for txn in txns)
        assert all(keys in ({1, 2}, {3, 4}) for keys in txns.values())  # one transaction, one id
        assert len(txns) > 10
        close(socks)


def test_a_lock_conflict_aborts_and_releases_every_granted_lock():
    """Key 5 is write-locked by a foreign transaction: every transaction
    touching it aborts with cause "lock" and releases what it was granted."""
    with FakeEngine() as srv:
        srv.owner[5] = 0xF00
        txn_lock = lock.two_phase_locking
        first = ((Op.LOCK_SHARED, T, 1, PH, 0, 0), (Op.LOCK_EXCL, T, 2, PH, 0, 0), (Op.LOCK_EXCL, T, 5, PH, 0, 0),
                 (Op.LOCK_SHARED, T, 3, PH, 0, 0))
        socks, ex = executor([srv], ["2pl"], [txn_lock], [(0, ((1, 3), (2, 5), first))], concurrency=1)
        out = drive(ex, seconds=0.1)
        t = out["types"]["2pl"]
        assert t["committed"] == 0 and t["aborts"]["lock"] == t["started"] > 3
        assert srv.held() == {5: (0xF00, set())}  # only the foreign lock is left
        aborts = {key for _, _, op, _, key in srv.log if op == Op.ABORT}
        assert aborts == {1, 2, 3}  # to every granted key, not to the rejected one
        assert ex.stats()["txn_committed"] == 0
        close(socks)


def test_a_lock_refused_while_a_copy_of_its_request_was_out_is_released_too():
    """The first answer to a lock request is LOCKED, but the request was sent
    more than once and a later copy finds the key free and is granted: the
    aborting transaction sends ABORT to that key as well, so no lock is left
    behind (the copy's OK reply is a stray)."""
    with LateGrant(key=5, delay=0.02) as srv:
        socks, ex = executor([srv], ["two_keys"], [two_keys], [(0, (1, 5))], concurrency=1, timeout_ms=5,
                             retries=20)  # not given up before the 20 ms answer
        out = drive(ex, seconds=0.1)
        t = out["types"]["two_keys"]
        assert t["total"]["aborts"]["lock"] == 1 and t["total"]["committed"] > 0
        first = min(txn for _, _, _, txn, _ in srv.log)
        assert [key for _, _, op, txn, key in srv.log if op == Op.ABORT and txn == first] == [1, 5]
        assert srv.held() == {} and ex.stats()["stray"] > 0 and out["release_failures"] == 0
        close(socks)


def test_a_commit_still_holding_a_lock_releases_it_before_it_ends():
    """A lock request answered NOT_FOUND (tolerated) after it was sent more
    than once may have been granted to a later copy: the transaction commits
    without it, then sends ABORT to it before it finishes."""
    def maybe(key):
        (v,) = yield Batch([(Op.LOCK_EXCL, T, key, PH, 0, 0)], tolerate=(Status.NOT_FOUND,))
        return "absent" if v[0] == Status.NOT_FOUND else "present"

    class Appears(LateGrant):
        def apply(self, m):
            if m.key == self.key and self.owner.get(self.key) == self.FOREIGN:
                return Status.NOT_FOUND, 0           # absent when the first copy arrives
            return super().apply(m)

    with Appears(key=5, delay=0.02) as srv:
        socks, ex = executor([srv], ["maybe"], [maybe], [(0, (5,))], concurrency=1, timeout_ms=5,
                             retries=20)  # not given up before the 20 ms answer
        out = drive(ex, seconds=0.1)
        t = out["types"]["maybe"]
        assert t["total"]["outcomes"]["absent"] == 1 and t["total"]["committed"] == t["total"]["started"]
        first = min(txn for _, _, _, txn, _ in srv.log)
        assert [key for _, _, op, txn, key in srv.log if op == Op.ABORT and txn == first] == [5]
        assert srv.held() == {} and out["release_failures"] == 0
        close(socks)


def test_occ_validation_failure_is_its_own_cause():
    def stale_read(key):
        r = yield [(Op.READ, T, key, PH, 0, 0)]
        yield [(Op.VALIDATE, T, key, PH, r[0][1] - 1, 0)]  # as if the version had moved

    with FakeEngine() as srv:
        socks, ex = executor([srv], ["stale"], [stale_read], [(0, (4,))], concurrency=2)
        out = drive(ex, seconds=0.1)
        t = out["types"]["stale"]
        assert t["started"] == t["aborts"]["validation"] > 0 and t["committed"] == 0
        close(socks)


def test_a_read_given_up_aborts_with_timeout_and_releases_what_is_held():
    """Replies to key 9 never come: its READ is given up after max_retries,
    the transaction aborts with cause "timeout", and the lock it was granted
    on key 8 is released (a READ holds nothing)."""
    with FakeEngine(silent={9}) as srv:
        first = ((Op.READ, T, 9, PH, 0, 0), (Op.LOCK_EXCL, T, 8, PH, 0, 0))
        socks, ex = executor([srv], ["occ"], [lock.occ], [(0, ((9,), (8,), first))],
                             concurrency=1, timeout_ms=5, retries=1)
        out = drive(ex, seconds=0.05)
        t = out["types"]["occ"]
        assert t["aborts"]["timeout"] == t["started"] >= 1 and out["active"] == 0
        assert {key for _, _, op, _, key in srv.log if op == Op.ABORT} == {8}
        assert out["release_failures"] == 0 and srv.held() == {}
        close(socks)


def test_a_lock_request_is_never_given_up_and_a_silent_server_fails_the_run():
    """A request that may change state is sent again until answered, past
    max_retries: its outcome must be known. A server that leaves it
    unanswered for dead_ns is taken for dead, and the run fails."""
    with FakeEngine(silent={9}) as srv:
        first = ((Op.LOCK_EXCL, T, 9, PH, 0, 0),)
        socks, ex = executor([srv], ["2pl"], [lock.two_phase_locking], [(0, ((), (9,), first))],
                             concurrency=1, timeout_ms=5, retries=1, dead_ms=200)
        with pytest.raises(TimeoutError, match="server 0 has not answered a request for 0.2 s"):
            drive(ex, seconds=0.5)
        sent = [seq for _, seq, op, _, key in srv.log if op == Op.LOCK_EXCL]
        assert len(sent) > 1 + 1 and len(set(sent)) == 1  # past max_retries, one request id
        close(socks)


@pytest.mark.parametrize("op", [Op.COMMIT_PRIMARY, Op.ABORT])
def test_a_lost_reply_to_a_commit_or_a_release_is_sent_again_until_answered(op):
    """The replies to the first three copies of every COMMIT_PRIMARY (or
    ABORT) are lost, more than max_retries allows: the request is sent again
    until answered, so a commit is counted committed and a release leaves
    nothing held (with the old give-up, a commit counted aborted, or a lock
    left held)."""
    def commit(key):
        r = yield [(Op.LOCK_EXCL, T, key, PH, 0, 0)]
        yield [(Op.COMMIT_PRIMARY, T, key, r[0][2], r[0][1] + 1, 0)]

    def release(key):
        yield [(Op.LOCK_EXCL, T, key, PH, 0, 0)]
        yield [(Op.ABORT, T, key, PH, 0, 0)]
    with FakeEngine(lose_replies={op: 3}) as srv:
        func = commit if op == Op.COMMIT_PRIMARY else release
        socks, ex = executor([srv], ["t"], [func], [(0, (k,)) for k in range(10)], concurrency=1, timeout_ms=5,
                             retries=1)
        out = drive(ex, seconds=0.2)
        t = out["types"]["t"]
        assert t["committed"] == t["started"] > 0 and t["aborted"] == 0 and out["active"] == 0
        assert srv.held() == {} and out["release_failures"] == 0
        assert ex.stats()["lost"] == 0
        close(socks)


def test_user_abort_and_unexpected_status():
    def user(key):
        r = yield [(Op.LOCK_EXCL, T, key, PH, 0, 0)]
        raise Abort("user")

    def missing(key):
        yield [(Op.READ, T, key, PH, 0, 0)]

    with FakeEngine(keys=range(10)) as srv:
        socks, ex = executor([srv], ["user", "missing"], [user, missing], [(0, (3,)), (1, (77,))],
                             concurrency=1)
        out = drive(ex, seconds=0.1)
        assert out["types"]["user"]["aborts"]["user"] == out["types"]["user"]["started"] > 0
        assert out["types"]["missing"]["aborts"]["error"] == out["types"]["missing"]["started"] > 0
        assert out["error_statuses"] == {"READ:NOT_FOUND": out["types"]["missing"]["total"]["aborted"]}
        assert srv.held() == {}
        close(socks)


def test_only_transactions_started_in_the_window_are_counted():
    with FakeEngine() as srv:
        socks, ex = executor([srv], ["two_keys"], [two_keys], [(0, (1, 2))], concurrency=1)
        out = drive(ex, seconds=0.1, warmup=0.1)
        t = out["types"]["two_keys"]
        assert 0 < t["started"] < t["total"]["started"]
        assert t["started"] == t["committed"]
        close(socks)


def test_cause_of_each_rejection():
    assert cause_of(Op.LOCK_EXCL, Status.LOCKED) == "lock"
    assert cause_of(Op.READ, Status.LOCKED) == "lock"
    assert cause_of(Op.LOCK_SHARED, Status.FULL) == "lock"
    assert cause_of(Op.VALIDATE, Status.LOCKED) == "validation"
    assert cause_of(Op.VALIDATE, Status.STALE) == "validation"
    assert cause_of(Op.COMMIT_PRIMARY, TIMEOUT) == "timeout"
    assert cause_of(Op.COMMIT_PRIMARY, Status.NOT_OWNER) == "error"


def test_an_abort_releases_what_is_held_after_commits_and_releases():
    """Locks 1, 2 and 3, commits 1, releases 2, then is refused 5 (held by a
    foreign transaction): ABORT goes to 3 only, each time."""
    def txn():
        r = yield [(Op.LOCK_EXCL, T, 1, PH, 0, 0), (Op.LOCK_SHARED, T, 2, PH, 0, 0), (Op.LOCK_EXCL, T, 3, PH, 0, 0)]
        ver = r[0][1] + 1
        yield [(Op.COMMIT_PRIMARY, T, 1, ver.to_bytes(8, "big"), ver, 0), (Op.ABORT, T, 2, PH, 0, 0)]
        yield [(Op.LOCK_EXCL, T, 5, PH, 0, 0)]

    with FakeEngine() as srv:
        srv.owner[5] = 0xF00
        socks, ex = executor([srv], ["t"], [txn], [(0, ())], concurrency=1)
        out = drive(ex, seconds=0.05)
        t = out["types"]["t"]
        assert t["aborts"]["lock"] == t["started"] > 0 and out["release_failures"] == 0
        aborts = [key for _, _, op, _, key in srv.log if op == Op.ABORT]
        assert aborts.count(3) == t["total"]["started"] == aborts.count(2)  # 2: its own release only
        assert set(aborts) == {2, 3} and srv.held() == {5: (0xF00, set())}
        close(socks)


def test_a_batch_tolerates_only_engine_statuses():
    with pytest.raises(ValueError, match="engine statuses"):
        Batch([], tolerate=(TIMEOUT,))
    assert Batch([], tolerate=(Status.NOT_FOUND, Status.EXISTS)).mask == (1 << 5) | (1 << 8)


def test_a_transaction_that_is_not_a_generator_stops_the_run():
    with FakeEngine() as srv:
        socks, ex = executor([srv], ["f"], [lambda: 42], [(0, ())])
        with pytest.raises(TypeError, match="not a generator"):
            drive(ex, seconds=0.05)
        close(socks)


def test_a_request_without_its_destination_stops_the_run_with_its_index():
    def placed_by_nobody():
        yield [(Op.READ, T, 1, PH, 0, 0), (Op.READ, T, 2, PH, 0)]
    with FakeEngine() as srv:
        socks, ex = executor([srv], ["p"], [placed_by_nobody], [(0, ())])
        with pytest.raises(TypeError, match=r"request 1: a tuple \(op, table, key, value, ver, dest\)"):
            drive(ex, seconds=0.05)
        assert srv.log == [] and ex.stats()["inflight"] == 0  # nothing of that batch was sent
        close(socks)


def test_bad_parameters_stop_the_run_with_their_index():
    def one():
        yield [(Op.READ, T, 1, PH, 0, 0)]
    with FakeEngine() as srv:
        socks, ex = executor([srv], ["one"], [one], [(0, ()), (3, ())])
        with pytest.raises(ValueError, match="parameters 1: not"):
            drive(ex, seconds=0.05)
        close(socks)


# -- the workloads' generators -----------------------------------------------
def test_lock_transactions_draw_5_to_10_distinct_keys_a_fifth_written():
    txns = lock.generate(3000, 1000, seed=3)
    assert txns == lock.generate(3000, 1000, seed=3) and txns != lock.generate(3000, 1000, seed=4)
    sizes = [len(r) + len(w) for r, w in txns]
    assert min(sizes) == 5 and max(sizes) == 10
    assert all(len(set(r) | set(w)) == len(r) + len(w) for r, w in txns)
    written = sum(len(w) for _, w in txns) / sum(sizes)
    assert written == pytest.approx(0.2, abs=0.02)
    tx = lock.WORKLOAD.transactions
    types = tx.types_for("occ")
    params = tx.params(load(requests=10, keys=100, seed=1, cc="occ"), types)
    assert [t.name for t in types] == ["occ"] and [t.func for t in types] == [lock.occ] and len(params) == 10
    _, (reads, writes, first) = params[0]
    assert [op for op, *_ in first] == [Op.READ] * len(reads) + [Op.LOCK_EXCL] * len(writes)
    assert [dest for *_, dest in first] == [k % 3 for k in reads + writes]  # each key's primary


def load(requests: int, keys: int, seed: int, cc: str = "", servers: int = 3) -> LoadSpec:
    return LoadSpec(data=DataSpec(keys=keys), seed=seed, requests=requests, servers=servers, cc=cc)


def test_the_sequential_lock_protocol_takes_one_lock_a_round_trip_in_key_order_and_retries_the_same():
    """DINT's lock client, step by step: a lock a round trip in ascending
    key order (a rejection handed to it, not aborting it); on a rejection
    the locks held released one a round trip in the order taken, then the
    same transaction again from its first lock; once all are held, the
    written keys committed and the read ones released one a round trip in
    descending key order."""
    tx = lock.WORKLOAD.transactions
    types = tx.types_for("2pl", "sequential")
    assert [t.name for t in types] == ["2pl-sequential"] and types[0].func is lock.sequential
    assert tx.types_for("2pl") == lock.TYPES_BY_CC["2pl"]  # the default protocol: today's
    params = tx.params(LoadSpec(DataSpec(keys=50), seed=4, requests=40, servers=3, cc="2pl",
                                lock_protocol="sequential"), types)
    parallel = tx.params(LoadSpec(DataSpec(keys=50), seed=4, requests=40, servers=3, cc="2pl"), tx.types_for("2pl"))
    for (_, (r, w, locks)), (_, (r2, w2, first)) in zip(params, parallel):
        assert (r, w) == (r2, w2) and sorted(locks) == sorted(first)  # the same transactions
        assert [q[2] for q in locks] == sorted(r + w)
    _, (reads, writes, locks) = next(p for p in params if p[1][1] and len(p[1][0]) >= 2)
    g = lock.sequential(reads, writes, locks)

    def step(reply=None):
        batch = g.send(reply) if reply is not None else next(g)
        assert len(batch) == 1
        return batch[0], batch

    def granted(req, ver=1):
        return [(Status.OK, ver, PH)]

    req, batch = step()
    assert req == locks[0] and {Status.LOCKED, Status.FULL} <= batch.tolerate
    req, _ = step(granted(req))
    assert req == locks[1]
    req, _ = step([(Status.LOCKED, 0, None)])  # the second is refused: release the first, retry
    assert (req[0], req[2], req[5]) == (Op.ABORT, locks[0][2], locks[0][5])
    for i, lk in enumerate(locks):  # the same transaction again, every lock granted at version 4
        req, _ = step([(Status.OK, 0, None)] if i == 0 else granted(locks[i - 1], 4))
        assert req == lk
    done = []
    reply = granted(locks[-1], 4)
    while True:
        try:
            req, _ = step(reply)
        except StopIteration as stop:
            assert stop.value == "retried"
            break
        done.append(req)
        reply = [(Status.OK, 5, None)]
    assert [q[2] for q in done] == sorted(reads + writes, reverse=True)
    for q in done:
        if q[2] in writes:
            assert (q[0], q[4], q[3]) == (Op.COMMIT_PRIMARY, 5, lock.value_of(5))
        else:
            assert q[0] == Op.ABORT


def test_sequential_lock_transactions_contending_all_commit_in_key_order():
    """Two clients whose transactions share a handful of keys, against the
    fake engine: every transaction commits (retried until it does, none
    aborted), the rejections show as the retried outcome, every attempt
    takes its locks in ascending key order, and nothing is left locked."""
    tx = lock.WORKLOAD.transactions
    types = tx.types_for("2pl", "sequential")
    with FakeEngine(keys=range(12)) as srv:
        exs = []
        for cid in (7, 8):
            params = tx.params(LoadSpec(DataSpec(keys=12), seed=cid, requests=300, servers=1, cc="2pl",
                                        lock_protocol="sequential"), types)
            exs.append(executor([srv], ["2pl-sequential"], [lock.sequential], params, concurrency=3,
                                client_id=cid))
        t0 = time.monotonic_ns()
        end = t0 + 400_000_000
        for _, ex in exs:
            ex.set_window(t0, end)
        while time.monotonic_ns() < end:  # the two take turns
            for _, ex in exs:
                ex.run(min(end, time.monotonic_ns() + 2_000_000), True)
        deadline = time.monotonic_ns() + 5_000_000_000  # then until both are done, still in turns
        while any(ex.stats()["txn_active"] for _, ex in exs) and time.monotonic_ns() < deadline:
            for _, ex in exs:
                ex.run(time.monotonic_ns() + 1_000_000, False)
        results = [ex.transactions() for _, ex in exs]
        committed = retried = 0
        for out in results:
            t = out["types"]["2pl-sequential"]
            assert out["active"] == 0 and out["release_failures"] == 0 and out["error_statuses"] == {}
            assert t["started"] == t["committed"] > 0 and sum(t["aborts"].values()) == 0
            committed += t["committed"]
            retried += t["outcomes"].get("retried", 0)
        assert retried > 0, "the clients contended"
        assert srv.held() == {}
        # each transaction's lock requests (copies sent again counted once):
        # attempt after attempt, a prefix of its keys in ascending order
        # (the last attempt all of them), each retry from the first key
        keys: dict = {}
        seen = set()
        for client_id, seq, op, txn, key in srv.log:
            if op in (Op.LOCK_SHARED, Op.LOCK_EXCL) and (client_id, seq) not in seen:
                seen.add((client_id, seq))
                keys.setdefault((client_id, txn), []).append(key)
        retries = 0
        for sent in keys.values():
            order = sorted(set(sent))
            attempts = [[]]
            for k in sent:
                if k == order[0] and attempts[-1]:
                    attempts.append([])
                attempts[-1].append(k)
            assert all(a == order[:len(a)] for a in attempts), sent
            assert attempts[-1] == order
            retries += len(attempts) - 1
        assert retries >= retried
        # the lock requests answered, of those first sent in the window
        lock_ops = sum(ex.stats()["answered_by_op"].get(int(op), 0) for _, ex in exs
                       for op in (Op.LOCK_SHARED, Op.LOCK_EXCL))
        assert 0 < lock_ops <= len(seen)
        for socks, _ in exs:
            close(socks)


def test_kv_contention_mix_is_a_fifth_writes():
    tx = kv.WORKLOAD.transactions
    params = tx.params(load(requests=5000, keys=100, seed=2), tx.types)
    assert [t.name for t in tx.types] == ["read", "write"]
    assert sum(1 for k, _ in params if k == 1) / len(params) == pytest.approx(0.2, abs=0.02)
    assert kv.WORKLOAD.transactional("contention") and not kv.WORKLOAD.transactional("parallel")


def test_kv_contention_against_the_fake_engine_keeps_values_consistent():
    with FakeEngine(keys=range(20)) as a, FakeEngine(keys=range(20)) as b:
        for srv in (a, b):
            srv.value = {k: kv.value_of(k) for k in srv.ver}
        tx = kv.WORKLOAD.transactions
        params = tx.params(load(requests=500, keys=20, seed=2, servers=2), tx.types)
        socks, ex = executor([a, b], [t.name for t in tx.types], [t.func for t in tx.types], params, concurrency=8)
        out = drive(ex)
        w = out["types"]["write"]
        assert w["committed"] > 0 and out["types"]["read"]["committed"] > 0
        for i, srv in enumerate((a, b)):
            for k in srv.ver:
                if k % 2 == i:  # the key's primary
                    assert srv.value[k] == kv.value_of(k, srv.ver[k])
        assert a.held() == {} and b.held() == {}
        close(socks)


def test_a_batch_larger_than_the_server_window_goes_out_in_parts():
    """100 reads to one server with room for 16 on the wire: the rest wait
    in the send queue, and the batch completes."""
    def reads(keys):
        replies = yield [(Op.READ, T, k, PH, 0, 0) for k in keys]
        assert all(r[0] == Status.OK for r in replies)
    with FakeEngine(keys=range(200)) as srv:
        socks = sockets([srv])
        ex = Executor([s.fileno() for s in socks], 7, ["reads"], [reads], [(0, (tuple(range(100)),))], 1,
                      200_000_000, 3, max_value=40, rto_min_ns=200_000_000, server_window=16)
        out = drive(ex, seconds=0.2)
        assert out["types"]["reads"]["committed"] > 0 and out["active"] == 0
        assert ex.stats()["retransmits"] == 0
        close(socks)


def test_big_batches_wait_for_room_instead_of_failing():
    """Two transactions of 200 reads each, with room for 256 requests in
    flight (concurrency 2): the second batch waits for the first."""
    def wide(keys):
        replies = yield [(Op.READ, T, k, PH, 0, 0) for k in keys]
        assert len(replies) == len(keys) and all(r[0] == Status.OK for r in replies)
    with FakeEngine(keys=range(200)) as srv:
        socks, ex = executor([srv], ["wide"], [wide], [(0, (tuple(range(200)),))], concurrency=2)
        out = drive(ex, seconds=0.2)
        assert out["types"]["wide"]["committed"] > 2 and out["types"]["wide"]["aborts"]["error"] == 0
        st = ex.stats()
        assert st["inflight"] == 0 and st["txn_waiting"] == 0 and st["txn_active"] == 0
        socks2, ex = executor([srv], ["wide"], [wide], [(0, (tuple(range(150)) * 2,))], concurrency=2)
        with pytest.raises(ValueError, match="a batch of 300 requests is more than the 256"):
            drive(ex, seconds=0.05)
        close(socks + socks2)


def test_open_loop_transactions_start_on_schedule():
    def one(key):
        yield [(Op.READ, T, key, PH, 0, 0)]
    with FakeEngine() as srv:
        socks = sockets([srv])
        ex = Executor([s.fileno() for s in socks], 7, ["one"], [one], [(0, (3,))], 16, int(20e6), 3,
                      interval_ns=2_000_000)  # 500 per second
        out = drive(ex, seconds=0.4, warmup=0.1)
        assert out["types"]["one"]["started"] == pytest.approx(200, abs=8)
        st = ex.stats()
        assert st["open_loop_skipped"] == 0 and 0 <= st["open_loop_late"] <= 200
        close(socks)
