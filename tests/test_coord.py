"""The coordinator (harness/coord.py), driven by hand: which requests each
round sends, to which servers, in DINT's commit order; and the consistency
check (harness/consistency.py) on dumps made up to break each rule."""
from __future__ import annotations

import pytest

from harness import consistency, coord
from harness.protocol import Op, Status
from harness.snapshot import Record
from harness.txn import Abort, Batch
from harness.placement import Placement
from workloads import CC_MODES, CheckSpec, DataSpec, smallbank

OK, NF = int(Status.OK), int(Status.NOT_FOUND)
SIZES = (8, 8)
V = bytes(8)


def v(x: int) -> bytes:
    return x.to_bytes(8, "big")


def drive(gen, answer):
    """Runs a transaction generator, answering each batch with answer(batch)
    -> replies; returns ([batches], return value or the Abort raised)."""
    batches = []
    try:
        batch = next(gen)
        while True:
            batches.append(batch)
            batch = gen.send(answer(batch))
    except StopIteration as e:
        return batches, e.value
    except Abort as e:
        return batches, e


def all_ok(batch):
    return [(OK, 7, V if r[0] in (Op.READ, Op.LOCK_SHARED, Op.LOCK_EXCL) else None) for r in batch]


def transfer(tx, a, b):
    (x,), (y,) = yield from tx.access(read=[(0, a)], update=[(1, b)])
    tx.write(1, b, v(int.from_bytes(y, "big") + 1))
    yield from tx.commit()
    return "done"


def test_placement_primary_then_next_two():
    p = Placement(3)
    assert [list(p.holders(k)) for k in (0, 1, 2, 5)] == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [2, 0, 1]]
    assert list(Placement(1).holders(4)) == [0] and list(Placement(5).backups(4)) == [0, 1]


@pytest.mark.parametrize("cc", CC_MODES)
def test_commit_order_log_backups_primary(cc):
    batches, out = drive(coord.bind(transfer, cc, 3, SIZES)(4, 5), all_ok)
    assert out == "done"
    ops = [sorted({r[0] for r in b}) for b in batches]
    first = Op.LOCK_SHARED if cc == "2pl" else Op.READ
    expect = [sorted({first, Op.LOCK_EXCL})]
    if cc == "occ":
        expect.append([Op.VALIDATE])
    expect += [[Op.LOG], [Op.COMMIT_BACKUP], [Op.COMMIT_PRIMARY] + ([Op.ABORT] if cc == "2pl" else [])]
    assert ops == expect
    # reads and locks go to the primary (key mod 3)
    assert {(r[2], r[5]) for r in batches[0]} == {(4, 1), (5, 2)}
    log, backups, primary = batches[-3:]
    assert sorted(r[5] for r in log) == [0, 1, 2] and all(r[4] == 8 for r in log)  # locked ver 7 + 1
    assert sorted(r[5] for r in backups) == [0, 1] and all(r[4] == 8 for r in backups)
    commit = [r for r in primary if r[0] == Op.COMMIT_PRIMARY]
    assert [(r[2], r[4], r[5], r[3]) for r in commit] == [(5, 8, 2, v(1))]  # value 0 + 1, version 8
    if cc == "2pl":  # the shared lock released at the primary
        assert [(r[2], r[5]) for r in primary if r[0] == Op.ABORT] == [(4, 1)]
    # after the commit point every request may change state: the executor
    # never gives one up, so each is answered and the commit always finishes
    assert all(r[0] not in (Op.READ, Op.VALIDATE) for b in (log, backups, primary) for r in b)


def test_occ_validation_failure_aborts_before_logging():
    def answer(batch):
        if batch[0][0] == Op.VALIDATE:
            return [(int(Status.STALE), 9, None)]
        return all_ok(batch)
    batches, out = drive(coord.bind(transfer, "occ", 3, SIZES)(4, 5), answer)
    assert isinstance(out, Abort) and out.cause == "validation"
    assert not any(r[0] == Op.LOG for b in batches for r in b)


def test_read_only_transactions():
    def balance(tx, a, b):
        yield from tx.read([(0, a), (1, b)])
        yield from tx.commit()
    b2pl, _ = drive(coord.bind(balance, "2pl", 3, SIZES)(1, 2), all_ok)
    assert [sorted({r[0] for r in b}) for b in b2pl] == [[Op.LOCK_SHARED], [Op.ABORT]]
    bocc, _ = drive(coord.bind(balance, "occ", 3, SIZES)(1, 2), all_ok)
    assert [sorted({r[0] for r in b}) for b in bocc] == [[Op.READ], [Op.VALIDATE]]

    def one(tx, a):
        yield from tx.read([(0, a)])
        yield from tx.commit()
    assert len(drive(coord.bind(one, "occ", 3, SIZES)(1), all_ok)[0]) == 1  # nothing to validate


def test_insert_goes_to_its_primary_first_and_may_lose():
    def add(tx, k):
        (old,) = yield from tx.read([(0, k)], missing_ok=True)
        assert old is None
        tx.insert(0, k, v(3))
        yield from tx.commit()

    def answer(batch):
        if batch[0][0] == Op.READ:
            return [(NF, 0, None)]
        if batch[0][0] == Op.VALIDATE:
            return [(NF, 0, None)]
        if batch[0][0] == Op.INSERT and batch[0][5] == 1:
            return [(OK, 4, None)]
        return all_ok(batch)
    batches, _ = drive(coord.bind(add, "occ", 3, SIZES)(4), answer)
    # the primary first (version 0: it chooses, and the row stays locked by
    # the inserter), then the backups, then the primary releases the row
    assert [[(r[0], r[5]) for r in b] for b in batches[2:]] == [
        [(Op.LOG, 1), (Op.LOG, 2), (Op.LOG, 0)], [(Op.INSERT, 1)], [(Op.INSERT, 2), (Op.INSERT, 0)],
        [(Op.ABORT, 1)]]
    assert batches[3][0][4] == 0 and all(r[4] == 4 for r in batches[4])  # the version the primary gave it

    def lost(batch):
        if batch[0][0] == Op.INSERT:
            return [(int(Status.EXISTS), 5, None)]
        return answer(batch)
    assert drive(coord.bind(add, "occ", 3, SIZES)(4), lost)[1].cause == "lock"


def test_writes_need_a_lock_and_the_table_size():
    tx = coord.Tx("2pl", Placement(3), SIZES)
    with pytest.raises(ValueError, match="without read_for_update"):
        tx.write(0, 1, V)
    with pytest.raises(ValueError, match="8-byte values"):
        tx.insert(0, 1, b"x")


# -- the consistency check ------------------------------------------------
def rec(t, k, ver=1, value=V, **kw):
    return Record(t, k, ver, value, **kw)


def test_replicas_must_agree_and_locks_be_free():
    good = [[rec(0, k) for k in range(6)] for _ in range(3)]
    assert consistency.replicas_agree(good)["ok"]
    bad = [list(d) for d in good]
    bad[2][4] = rec(0, 4, ver=2)  # key 4: primary 1, backups 2 and 0
    r = consistency.replicas_agree(bad)
    assert not r["ok"] and r["detail"]["differing"] == 1 and r["detail"]["examples"][0]["key"] == 4
    gone = [list(d) for d in good]
    gone[0][4] = rec(0, 4, live=False, ver=2)
    assert not consistency.replicas_agree(gone)["ok"]
    locked = [list(d) for d in good]
    locked[1][3] = rec(0, 3, owner=99)
    assert not consistency.no_locks_held(locked)["ok"]


def test_smallbank_money_must_be_conserved():
    spec = CheckSpec(DataSpec(scale=50, seed=3), servers=3)
    rows = smallbank.WORKLOAD.initial(spec.data)
    dumps = [list(rows) for _ in range(3)]
    committed = {"DepositChecking": {"committed": 2, "outcomes": {}},
                 "WriteCheck": {"committed": 1, "outcomes": {"overdraft": 1}}}
    verdict = consistency.check(smallbank.WORKLOAD, dumps, committed, spec)
    assert verdict["violations"] == 1 and verdict["failed"] == ["money_conserved"]
    assert verdict["details"]["money_conserved"]["difference_cents"] == -(2 * 130 - 600)
    assert consistency.check(smallbank.WORKLOAD, dumps, {}, spec)["violations"] == 0
