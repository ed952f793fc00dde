"""The consistency check over numpy columns (harness/consistency.py on
snapshot.read_columns) gives what the Record-based check it replaced gave,
verdict and details alike: that check is kept below as the reference and
both run on the same dumps, written as snapshots and read both ways."""
from __future__ import annotations

import random

import numpy as np
import pytest

from harness import HarnessError, consistency, snapshot
from harness.placement import Placement
from harness.schema import Schema
from harness.snapshot import Record
from workloads import CheckSpec, DataSpec, smallbank

SCHEMA = Schema((8, 40, 0, 3))


# -- the reference: the Record-based check, as it was ---------------------
def ref_copy(r):
    return None if r is None or not r.live else (r.ver, r.value)


def ref_replicas_agree(dumps):
    place = Placement(len(dumps))
    by_server = [{(r.table, r.key): r for r in d} for d in dumps]
    keys = set().union(*by_server)
    differ = []
    for table, key in keys:
        holders = place.holders(key)
        copies = [ref_copy(by_server[s].get((table, key))) for s in holders]
        if any(c != copies[0] for c in copies[1:]):
            differ.append({"table": table, "key": key,
                           "copies": {f"server {s}": (None if c is None else {"ver": c[0], "value": c[1].hex()})
                                      for s, c in zip(holders, copies)}})
    return {"name": "replicas_agree", "ok": not differ,
            "detail": {"rows": len(keys), "differing": len(differ), "examples": differ[:5]}}


def ref_no_locks_held(dumps):
    held = [{"server": s, "table": r.table, "key": r.key, "owner": r.owner, "shared": r.nshared}
            for s, d in enumerate(dumps) for r in d if r.owner or r.nshared]
    return {"name": "no_locks_held", "ok": not held, "detail": {"held": len(held), "examples": held[:5]}}


def ref_primaries(dumps):
    primary = Placement(len(dumps)).primary
    return {(r.table, r.key): r for s, d in enumerate(dumps) for r in d if r.live and primary(r.key) == s}


# -- dumps ----------------------------------------------------------------
def rows(seed=1, n=300, schema=SCHEMA):
    """Rows of every table: each table loaded in a run, then inserts
    interleaved (runs of one record), keys out of order."""
    rng = random.Random(seed)
    out = [Record(t, k, rng.randint(1, 9), rng.randbytes(size))
           for t, size in enumerate(schema.sizes) for k in range(n)]
    for k in rng.sample(range(n, 10 * n), n):
        t = rng.randrange(len(schema.sizes))
        out.append(Record(t, k, 1, rng.randbytes(schema.sizes[t])))
    return out


def holders_copies(records, servers):
    """Each server's dump: the records of the keys it holds."""
    place = Placement(servers)
    return [[r for r in records if s in place.holders(r.key)] for s in range(servers)]


def same_as_reference(tmp_path, dumps, schema=SCHEMA):
    """The new functions on the dumps written and read as columns, and on the
    Records themselves, against the reference on the Records read back."""
    paths = []
    for s, d in enumerate(dumps):
        paths.append(tmp_path / f"s{s}.snap")
        snapshot.write_snapshot(paths[-1], schema, d)
    records = [snapshot.read_snapshot(p)[1] for p in paths]
    cols = [snapshot.read_columns(p)[1] for p in paths]
    for new, ref in ((consistency.replicas_agree, ref_replicas_agree), (consistency.no_locks_held, ref_no_locks_held),
                     (consistency.primaries, ref_primaries)):
        want = ref(records)
        assert new(cols) == want
        assert new(dumps) == want
    return ref_replicas_agree(records), ref_no_locks_held(records)


def test_columns_hold_what_records_hold(tmp_path):
    """Runs of every length (longer than a walk, so numpy finds their end),
    a table of empty values, keys and versions at their widest."""
    recs = rows(n=1000)
    recs += [Record(0, 2 ** 64 - 1, 2 ** 32 - 1, b"\xff" * 8, live=False, owner=2 ** 64 - 1, nshared=255)]
    recs += [Record(2, k, 3, b"") for k in range(snapshot.WALK * 2)]   # a run ending at a window's edge
    path = tmp_path / "d.snap"
    snapshot.write_snapshot(path, SCHEMA, recs)
    schema, cols = snapshot.read_columns(path)
    assert schema == SCHEMA and len(cols.table) == len(recs)
    assert cols.records(np.arange(len(recs))) == recs == snapshot.read_snapshot(path)[1]
    some = np.array([len(recs) - 1, 5, 1200, 0])
    assert cols.records(some) == [recs[i] for i in some]
    assert snapshot.columns_of(recs).records(np.arange(len(recs))) == recs


def test_an_empty_snapshot(tmp_path):
    path = tmp_path / "e.snap"
    snapshot.write_snapshot(path, SCHEMA, [])
    cols = snapshot.read_columns(path)[1]
    assert len(cols.key) == 0 and [v.shape for v in cols.values] == [(0, 8), (0, 40), (0, 0), (0, 3)]
    assert consistency.replicas_agree([cols] * 3)["detail"] == {"rows": 0, "differing": 0, "examples": []}


@pytest.mark.parametrize("cut", [10, 40, -1, -30])
def test_a_truncated_snapshot_is_one_clear_error(tmp_path, cut):
    path = tmp_path / "t.snap"
    snapshot.write_snapshot(path, SCHEMA, rows(n=50))
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(HarnessError, match=f"{path}.*(truncated or corrupt|not a dint snapshot)"):
        snapshot.read_columns(path)


def test_an_unknown_table_is_one_clear_error(tmp_path):
    path = tmp_path / "u.snap"
    snapshot.write_snapshot(path, SCHEMA, rows(n=50) + [Record(3, 1, 1, b"abc")])
    data = bytearray(path.read_bytes())
    data[-(snapshot.REC.size + 3)] = 7   # the last record names no table of the schema
    path.write_bytes(bytes(data))
    with pytest.raises(HarnessError, match=f"{path} is truncated or corrupt \\(no table 7"):
        snapshot.read_columns(path)


def test_agreeing_replicas(tmp_path):
    agree, locks = same_as_reference(tmp_path, [rows()] * 3)
    assert agree["ok"] and agree["detail"]["rows"] == 4 * 300 + 300 and locks["ok"]


def test_a_row_deleted_on_all_holders_agrees(tmp_path):
    base = rows()
    dead = [r._replace(live=False) if r.key % 7 == 0 else r for r in base]
    agree, _ = same_as_reference(tmp_path, [dead, list(dead), list(dead)])
    assert agree["ok"] and agree["detail"]["rows"] == 4 * 300 + 300


def test_differing_copies(tmp_path):
    """A version, a value, a row missing on one holder, one deleted on one
    holder only, one deleted then inserted again (the last record counts)."""
    base = rows()
    dumps = [list(base) for _ in range(3)]
    dumps[1][4] = dumps[1][4]._replace(ver=99)
    dumps[2][400] = dumps[2][400]._replace(value=bytes(40))
    del dumps[0][1000]
    dumps[2][10] = dumps[2][10]._replace(live=False)
    dumps[0].append(dumps[0][20]._replace(live=False))
    dumps[0].append(dumps[0][20]._replace(ver=100))        # the key live again, at another version
    dumps[1].append(dumps[1][30]._replace(live=False))     # deleted on one holder, last
    agree, _ = same_as_reference(tmp_path, dumps)
    assert not agree["ok"] and agree["detail"]["differing"] == 6 and len(agree["detail"]["examples"]) == 5


def test_every_row_differs(tmp_path):
    base = rows()
    other = [r._replace(ver=r.ver + 1) for r in base]
    agree, _ = same_as_reference(tmp_path, [base, other, base])
    assert agree["detail"]["differing"] == agree["detail"]["rows"] == 4 * 300 + 300


def test_locks_held(tmp_path):
    base = rows()
    dumps = [list(base) for _ in range(3)]
    for i in (3, 50, 900, 1000, 1300, 1499):
        dumps[i % 3][i] = dumps[i % 3][i]._replace(owner=i * 1000)
    dumps[1][8] = dumps[1][8]._replace(nshared=2)
    _, locks = same_as_reference(tmp_path, dumps)
    assert not locks["ok"] and locks["detail"]["held"] == 7


@pytest.mark.parametrize("servers", [1, 2, 4, 5])
def test_other_numbers_of_servers(tmp_path, servers):
    """Holders are 3 of 4 or 5 (every server with fewer); a copy on a server
    that does not hold the key is a row but not compared."""
    dumps = holders_copies(rows(), servers)
    agree, _ = same_as_reference(tmp_path, dumps)
    assert agree["ok"]
    dumps[0].append(Record(1, 10 ** 6 + 1, 1, bytes(40)))   # on server 0, whichever holds it
    if servers > 1:
        i = next(i for i, r in enumerate(dumps[servers - 1]) if r.key % servers == servers - 1)
        dumps[servers - 1][i] = dumps[servers - 1][i]._replace(ver=77)   # on its primary
    agree, _ = same_as_reference(tmp_path, dumps)
    assert agree["ok"] == (servers == 1)


def test_check_takes_columns_or_records(tmp_path):
    spec = CheckSpec(DataSpec(scale=50, seed=3), servers=3)
    recs = smallbank.WORKLOAD.initial(spec.data)
    dumps = [list(recs) for _ in range(3)]
    dumps[0][3] = dumps[0][3]._replace(value=(10 ** 6).to_bytes(8, "little"))  # on its primary
    paths = [tmp_path / f"s{s}.snap" for s in range(3)]
    for p, d in zip(paths, dumps):
        snapshot.write_snapshot(p, smallbank.WORKLOAD.schema, d)
    cols = [snapshot.read_columns(p)[1] for p in paths]
    verdict = consistency.check(smallbank.WORKLOAD, cols, {}, spec)
    assert verdict == consistency.check(smallbank.WORKLOAD, dumps, {}, spec)
    assert verdict["failed"] == ["replicas_agree", "money_conserved"]
    assert verdict["details"]["replicas_agree"]["examples"] == ref_replicas_agree(dumps)["detail"]["examples"]
