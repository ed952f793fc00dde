"""The transaction engine's conformance suite, the same for every system:
each operation and status, duplicates answered again but never applied
twice, sizes and tables checked, the log, and the store's final state as the
server dumps it. Each test uses keys of its own."""
from __future__ import annotations

import pytest

from harness.protocol import Op, Status

from conftest import INITIAL

T8, T40, T0 = 0, 1, 2  # tables of the default schema: 8-, 40- and 0-byte values
Z8, Z40 = bytes(8), bytes(40)


def v8(x: int) -> bytes:
    return x.to_bytes(8, "big")


def test_read_returns_loaded_value_and_version(served):
    for rec in INITIAL:
        m = served.request(Op.READ, rec.key, bytes(len(rec.value)), table=rec.table)
        assert (m.status, m.value, m.ver) == (Status.OK, rec.value, rec.ver)


def test_read_of_a_missing_key(served):
    assert served.request(Op.READ, 999_999, Z8).status == Status.NOT_FOUND


@pytest.mark.parametrize("table,value,status", [
    (T8, bytes(7), Status.BAD_LENGTH),
    (T8, bytes(40), Status.BAD_LENGTH),
    (T40, Z8, Status.BAD_LENGTH),
    (T0, b"x", Status.BAD_LENGTH),
    (3, Z8, Status.UNKNOWN_TABLE),
    (255, b"", Status.UNKNOWN_TABLE),
])
def test_values_must_fit_their_table(served, table, value, status):
    assert served.request(Op.READ, 100, value, table=table).status == status


def test_a_write_without_transaction_is_refused(served):
    for op in (Op.LOCK_EXCL, Op.LOCK_SHARED, Op.COMMIT_PRIMARY, Op.INSERT, Op.DELETE, Op.LOG, Op.ABORT):
        assert served.request(op, 101, Z8, txn=0).status == Status.NOT_OWNER


def test_insert_then_read_and_duplicates(served):
    key = 1000
    m = served.request(Op.INSERT, key, v8(7), txn=11, ver=1)
    assert m.status == Status.OK and m.ver == 1
    assert served.request(Op.INSERT, key, v8(7), txn=11, ver=1).status == Status.OK  # retransmission
    assert served.request(Op.INSERT, key, v8(8), txn=12, ver=1).status == Status.EXISTS
    m = served.request(Op.READ, key, Z8)
    assert (m.status, m.value, m.ver) == (Status.OK, v8(7), 1)


def test_an_insert_whose_version_the_server_chooses_stays_locked_by_its_inserter(served):
    """ver 0 (the key's primary): the server picks the version, and nobody
    reads, locks or inserts the row before its inserter releases it."""
    key = 1001
    m = served.request(Op.INSERT, key, v8(5), txn=31, ver=0)
    assert m.status == Status.OK and m.ver >= 1
    again = served.request(Op.INSERT, key, v8(5), txn=31, ver=0)  # retransmission
    assert (again.status, again.ver) == (Status.OK, m.ver)
    assert served.request(Op.READ, key, Z8, txn=32).status == Status.LOCKED
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=32).status == Status.LOCKED
    assert served.request(Op.INSERT, key, v8(6), txn=32, ver=0).status == Status.EXISTS
    assert served.request(Op.ABORT, key, Z8, txn=31).status == Status.OK
    r = served.request(Op.READ, key, Z8, txn=32)
    assert (r.status, r.value, r.ver) == (Status.OK, v8(5), m.ver)


def test_exclusive_lock_conflicts_and_commit_releases(served):
    key = 102
    m = served.request(Op.LOCK_EXCL, key, Z8, txn=21)
    assert m.status == Status.OK and m.ver == 1
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=21).status == Status.OK  # its own lock, again
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=22).status == Status.LOCKED
    assert served.request(Op.LOCK_SHARED, key, Z8, txn=22).status == Status.LOCKED
    assert served.request(Op.READ, key, Z8, txn=22).status == Status.LOCKED
    assert served.request(Op.VALIDATE, key, Z8, txn=22, ver=1).status == Status.LOCKED
    assert served.request(Op.READ, key, Z8, txn=21).status == Status.OK  # the owner reads
    assert served.request(Op.COMMIT_PRIMARY, key, v8(55), txn=22, ver=2).status == Status.NOT_OWNER
    assert served.request(Op.COMMIT_PRIMARY, key, v8(55), txn=21, ver=2).status == Status.OK
    # a retransmitted commit is answered, not applied again
    assert served.request(Op.COMMIT_PRIMARY, key, v8(66), txn=21, ver=2).status == Status.OK
    m = served.request(Op.READ, key, Z8, txn=23)
    assert (m.status, m.value, m.ver) == (Status.OK, v8(55), 2)
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=22).status == Status.OK  # released
    assert served.request(Op.ABORT, key, Z8, txn=22).status == Status.OK


def test_a_granted_lock_replies_value_and_version(served):
    """2PL locks and reads in one round trip; a refused lock carries no value."""
    rec = next(r for r in INITIAL if r.table == T40)
    for op, txn in ((Op.LOCK_SHARED, 111), (Op.LOCK_EXCL, 112)):
        m = served.request(op, rec.key, Z40, table=T40, txn=txn)
        if op == Op.LOCK_EXCL:
            assert m.status == Status.LOCKED and m.value == Z40  # 111 reads it
            assert served.request(Op.ABORT, rec.key, Z40, table=T40, txn=111).status == Status.OK
            m = served.request(op, rec.key, Z40, table=T40, txn=txn)
        assert (m.status, m.value, m.ver) == (Status.OK, rec.value, rec.ver)
    m = served.request(Op.LOCK_SHARED, rec.key, Z40, table=T40, txn=112)  # the owner, again
    assert (m.status, m.value) == (Status.OK, rec.value)
    assert served.request(Op.ABORT, rec.key, Z40, table=T40, txn=112).status == Status.OK


def test_commit_primary_must_raise_the_version(served):
    key = 103
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=31).status == Status.OK
    m = served.request(Op.COMMIT_PRIMARY, key, v8(1), txn=31, ver=1)
    assert m.status == Status.STALE and m.ver == 1
    assert served.request(Op.ABORT, key, Z8, txn=31).status == Status.OK


def test_shared_locks_holders_limit_upgrade_and_release(served):
    key = 104
    for txn in (41, 42, 43, 44):
        assert served.request(Op.LOCK_SHARED, key, Z8, txn=txn).status == Status.OK
    assert served.request(Op.LOCK_SHARED, key, Z8, txn=41).status == Status.OK  # duplicate
    assert served.request(Op.LOCK_SHARED, key, Z8, txn=45).status == Status.FULL
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=45).status == Status.LOCKED
    assert served.request(Op.READ, key, Z8, txn=45).status == Status.OK  # readers do not block reads
    for txn in (42, 43, 44):
        assert served.request(Op.ABORT, key, Z8, txn=txn).status == Status.OK
        assert served.request(Op.ABORT, key, Z8, txn=txn).status == Status.OK  # duplicate
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=45).status == Status.LOCKED  # 41 still reads
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=41).status == Status.OK  # sole reader upgrades
    assert served.request(Op.LOCK_SHARED, key, Z8, txn=45).status == Status.LOCKED
    assert served.request(Op.ABORT, key, Z8, txn=41).status == Status.OK
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=45).status == Status.OK
    assert served.request(Op.ABORT, key, Z8, txn=45).status == Status.OK


def test_validate_compares_versions(served):
    key = 200
    m = served.request(Op.VALIDATE, key, Z40, table=T40, txn=51, ver=3)
    assert m.status == Status.OK and m.ver == 3
    m = served.request(Op.VALIDATE, key, Z40, table=T40, txn=51, ver=2)
    assert m.status == Status.STALE and m.ver == 3


def test_commit_backup_installs_newer_versions_once(served):
    key = 201
    assert served.request(Op.COMMIT_BACKUP, key, b"b" * 40, table=T40, txn=61, ver=4).status == Status.OK
    assert served.request(Op.COMMIT_BACKUP, key, b"c" * 40, table=T40, txn=61, ver=4).status == Status.OK
    assert served.request(Op.COMMIT_BACKUP, key, b"o" * 40, table=T40, txn=60, ver=2).status == Status.OK
    m = served.request(Op.READ, key, Z40, table=T40)
    assert (m.value, m.ver) == (b"b" * 40, 4)
    assert served.request(Op.COMMIT_BACKUP, 5555, Z40, table=T40, txn=61, ver=9).status == Status.NOT_FOUND


def test_delete_is_idempotent_and_a_key_can_come_back(served):
    key = 105
    assert served.request(Op.DELETE, key, Z8, txn=71, ver=2).status == Status.OK
    assert served.request(Op.DELETE, key, Z8, txn=71, ver=2).status == Status.OK  # retransmission
    assert served.request(Op.DELETE, key, Z8, txn=72, ver=3).status == Status.NOT_FOUND
    assert served.request(Op.READ, key, Z8).status == Status.NOT_FOUND
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=72).status == Status.NOT_FOUND
    m = served.request(Op.INSERT, key, v8(9), txn=73, ver=1)
    assert m.status == Status.OK and m.ver > 2  # versions only grow
    m = served.request(Op.READ, key, Z8)
    assert (m.status, m.value) == (Status.OK, v8(9))


def test_delete_respects_locks(served):
    key = 106
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=81).status == Status.OK
    assert served.request(Op.DELETE, key, Z8, txn=82, ver=2).status == Status.LOCKED
    assert served.request(Op.DELETE, key, Z8, txn=81, ver=2).status == Status.OK  # the owner may


def test_abort_of_what_is_not_held_is_harmless(served):
    assert served.request(Op.ABORT, 107, Z8, txn=91).status == Status.OK
    assert served.request(Op.ABORT, 424242, Z8, txn=91).status == Status.OK
    m = served.request(Op.READ, 107, Z8)
    assert (m.status, m.ver) == (Status.OK, 1)


def test_zero_byte_tables_lock_and_version(served):
    key = 300
    assert served.request(Op.LOCK_EXCL, key, b"", table=T0, txn=95).status == Status.OK
    assert served.request(Op.COMMIT_PRIMARY, key, b"", table=T0, txn=95, ver=2).status == Status.OK
    m = served.request(Op.READ, key, b"", table=T0)
    assert (m.status, m.ver, m.value) == (Status.OK, 2, b"")


def test_log_appends_once_per_transaction_and_key(served):
    assert served.request(Op.LOG, 108, v8(1), txn=501, ver=2).status == Status.OK
    assert served.request(Op.LOG, 108, v8(1), txn=501, ver=2).status == Status.OK  # retransmission
    assert served.request(Op.LOG, 108, v8(2), txn=502, ver=3).status == Status.OK
    assert served.request(Op.LOG, 77_777, b"n" * 40, table=T40, txn=503, ver=1).status == Status.OK


# -- exactly once: copies of a request, however late ----------------------
# A client of this suite's own: its number (slot) in the low 16 bits, a
# nonce above, as the harness gives its clients.
CLIENT = 0x5A5A << 16 | 3


def once(served, op, key, value, seq, ack, **kw):
    """A request of CLIENT with id seq; ack: the oldest request the client
    still waits for an answer to."""
    return served.request(op, key, value, client_id=CLIENT, seq=seq, ack=ack, **kw)


def test_a_late_copy_of_a_lock_is_answered_as_the_first_and_grants_nothing(served):
    """The lock was granted and released by the transaction's commit; a copy
    of the lock request arriving later (the client still waits for an older
    request, 9, so its ack is 9) is answered as the first copy was, and the
    key stays free."""
    key = 1100
    assert served.request(Op.INSERT, key, v8(1), txn=900, ver=1).status == Status.OK
    first = once(served, Op.LOCK_EXCL, key, Z8, seq=10, ack=9, txn=901)
    assert (first.status, first.ver, first.value) == (Status.OK, 1, v8(1))
    assert once(served, Op.COMMIT_PRIMARY, key, v8(2), seq=11, ack=9, txn=901, ver=2).status == Status.OK
    late = once(served, Op.LOCK_EXCL, key, Z8, seq=10, ack=9, txn=901)
    assert (late.status, late.ver) == (Status.OK, 1)
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=902).status == Status.OK  # nobody holds it
    assert served.request(Op.ABORT, key, Z8, txn=902).status == Status.OK


def test_a_late_copy_of_a_lock_after_the_clients_ack_passed_it_is_dropped(served):
    """The same, once the client has said (ack 12) that it waits for nothing
    before request 12: the copy is dropped unanswered, and the key stays free."""
    key = 1101
    assert served.request(Op.INSERT, key, v8(1), txn=903, ver=1).status == Status.OK
    assert once(served, Op.LOCK_EXCL, key, Z8, seq=12, ack=12, txn=904).status == Status.OK
    assert once(served, Op.COMMIT_PRIMARY, key, v8(2), seq=13, ack=13, txn=904, ver=2).status == Status.OK
    served.unanswered(Op.LOCK_EXCL, key, Z8, client_id=CLIENT, seq=12, ack=12, txn=904)
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=902).status == Status.OK  # nobody holds it
    assert served.request(Op.ABORT, key, Z8, txn=902).status == Status.OK


def test_a_copy_of_a_granted_lock_still_held_answers_its_value(served):
    """The reply to a granted lock was lost: the copy gets the value and
    version again, and the lock is held once."""
    key = 203  # T40, version 3, b"\xcb" * 40 (conftest)
    first = once(served, Op.LOCK_EXCL, key, Z40, seq=15, ack=15, table=T40, txn=905)
    again = once(served, Op.LOCK_EXCL, key, Z40, seq=15, ack=15, table=T40, txn=905)
    assert (again.status, again.ver, again.value) == (first.status, first.ver, first.value) == \
        (Status.OK, 3, bytes([203]) * 40)
    assert served.request(Op.LOCK_EXCL, key, Z40, table=T40, txn=906).status == Status.LOCKED
    assert once(served, Op.ABORT, key, Z40, seq=16, ack=16, table=T40, txn=905).status == Status.OK


def test_a_copy_of_a_commit_after_another_commit_is_answered_ok(served):
    """The reply to a commit was lost and another transaction has committed
    the key since: the copy is answered OK (as the first was), not
    NOT_OWNER, and changes nothing."""
    key = 1110
    assert served.request(Op.INSERT, key, v8(1), txn=910, ver=1).status == Status.OK
    assert once(served, Op.LOCK_EXCL, key, Z8, seq=20, ack=20, txn=911).status == Status.OK
    assert once(served, Op.COMMIT_PRIMARY, key, v8(2), seq=21, ack=21, txn=911, ver=2).status == Status.OK
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=912).status == Status.OK
    assert served.request(Op.COMMIT_PRIMARY, key, v8(3), txn=912, ver=3).status == Status.OK
    again = once(served, Op.COMMIT_PRIMARY, key, v8(2), seq=21, ack=21, txn=911, ver=2)  # its reply was lost
    assert again.status == Status.OK
    m = served.request(Op.READ, key, Z8)
    assert (m.status, m.ver, m.value) == (Status.OK, 3, v8(3))


def test_a_release_that_overtook_its_lock_leaves_the_key_free(served):
    """The client gave up waiting for its lock request and released the key;
    the release arrives first, with an ack past the lock request: the lock
    request arriving afterwards is dropped, not granted."""
    key = 1120
    assert served.request(Op.INSERT, key, v8(1), txn=920, ver=1).status == Status.OK
    assert once(served, Op.ABORT, key, Z8, seq=31, ack=31, txn=921).status == Status.OK
    served.unanswered(Op.LOCK_EXCL, key, Z8, client_id=CLIENT, seq=30, ack=30, txn=921)
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=922).status == Status.OK
    assert served.request(Op.ABORT, key, Z8, txn=922).status == Status.OK


def test_a_late_copy_of_an_insert_after_a_delete_does_not_bring_the_row_back(served):
    key = 1130
    ins = once(served, Op.INSERT, key, v8(5), seq=40, ack=39, txn=931, ver=0)
    assert ins.status == Status.OK
    assert once(served, Op.ABORT, key, Z8, seq=41, ack=39, txn=931).status == Status.OK  # the last commit round
    assert served.request(Op.LOCK_EXCL, key, Z8, txn=932).status == Status.OK
    assert served.request(Op.DELETE, key, Z8, txn=932, ver=ins.ver + 1).status == Status.OK
    late = once(served, Op.INSERT, key, v8(5), seq=40, ack=39, txn=931, ver=0)
    assert (late.status, late.ver) == (Status.OK, ins.ver)
    assert served.request(Op.READ, key, Z8).status == Status.NOT_FOUND


def test_a_copy_older_than_the_clients_ack_is_dropped(served):
    """Once the client says (ack) it waits for nothing before seq 51, a copy
    of its request 50 is dropped unanswered, whatever it is."""
    key = 1140
    assert served.request(Op.INSERT, key, v8(1), txn=940, ver=1).status == Status.OK
    assert once(served, Op.LOG, key, v8(9), seq=50, ack=50, txn=941, ver=2).status == Status.OK
    assert once(served, Op.LOCK_SHARED, key, Z8, seq=52, ack=51, txn=942).status == Status.OK
    served.unanswered(Op.LOG, key, v8(9), client_id=CLIENT, seq=50, ack=50, txn=941, ver=2)
    assert once(served, Op.ABORT, key, Z8, seq=53, ack=51, txn=942).status == Status.OK


def test_a_copy_of_a_granted_lock_on_a_key_no_server_holds_reads_no_record(served):
    """A request under the id of a granted lock is taken for a copy of it,
    whatever key it names: answered with the lock's outcome, and the value
    of the key it names read again. That key has no record anywhere, so the
    value is the request's own, and no record is made for it."""
    key, absent = 204, 88_888  # 204: T40, version 3, bytes([204]) * 40 (conftest)
    first = once(served, Op.LOCK_EXCL, key, Z40, seq=60, ack=60, table=T40, txn=960)
    assert (first.status, first.ver, first.value) == (Status.OK, 3, bytes([204]) * 40)
    mine = b"q" * 40
    again = once(served, Op.LOCK_EXCL, absent, mine, seq=60, ack=60, table=T40, txn=960)
    assert (again.status, again.ver, again.value) == (Status.OK, 3, mine)
    assert served.request(Op.READ, absent, Z40, table=T40).status == Status.NOT_FOUND
    assert once(served, Op.ABORT, key, Z40, seq=61, ack=61, table=T40, txn=960).status == Status.OK


def test_servers_are_independent(served):
    s1 = served.inv.servers[1]
    assert served.request(Op.INSERT, 2000, v8(1), txn=601, ver=1, server=s1).status == Status.OK
    assert served.request(Op.READ, 2000, Z8).status == Status.NOT_FOUND  # s0 never saw it


def test_zz_final_state_log_and_counters(served):
    """Stops the system (runs last in the module): the dumps and logs hold
    what the suite did, and each server counted exactly what it was sent."""
    stats = served.system.stop()
    s0, s1 = served.inv.servers[0], served.inv.servers[1]
    for server in served.inv.servers:
        got = stats[server.name]
        for key in ("rx", "tx", "err", "drop", "stale"):
            assert got[key] == served.sent[(server.name, key)], (server.name, key, got)
    store = {(r.table, r.key): r for r in served.system.dump(s0)}
    assert store[(T8, 102)].value == v8(55) and store[(T8, 102)].ver == 2
    assert store[(T40, 201)].value == b"b" * 40 and store[(T40, 201)].ver == 4
    assert store[(T8, 1000)].live and store[(T8, 105)].live
    assert all(r.owner == 0 and r.nshared == 0 for r in store.values()), "a lock was left held"
    assert (T8, 2000) not in store and (T8, 2000) in {(r.table, r.key) for r in served.system.dump(s1)}
    # keys no server ever held, asked only by requests that create nothing
    assert not {(T8, 999_999), (T8, 424_242), (T40, 5555), (T40, 88_888)} & set(store)
    log = [(r.txn, r.table, r.key, r.ver, r.value) for r in served.system.log(s0)]
    assert log.count((501, T8, 108, 2, v8(1))) == 1
    assert (502, T8, 108, 3, v8(2)) in log and (503, T40, 77_777, 1, b"n" * 40) in log
    assert log.count((941, T8, 1140, 2, v8(9))) == 1  # its stale copy was not appended again
    assert len(log) == 4
