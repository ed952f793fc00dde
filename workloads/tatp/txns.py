"""TATP's transactions, one function each, named as the spec names them
(spec 1.0, section 3); written once against the coordinator
(harness/coord.py). Each returns its outcome, "success" or "fail".

The rule for a transaction that cannot do its work (the row it looks for is
absent, or the row it would insert exists): it commits having written
nothing and returns "fail". Its reads, absent rows included, are validated
at commit under OCC like any other, so a "fail" is a serializable answer
too; it is never a user abort. A type's success rate is therefore
outcomes["success"] / committed (workloads/tatp/check.py)."""
from __future__ import annotations

from harness.txn import Abort

from ..contract import mix_of
from .schema import (ACCESS_INFO, CALL_FORWARDING, FAIL, MIX, SPECIAL_FACILITY, START_TIMES, SUB_NBR, SUBSCRIBER,
                     SUCCESS, TYPES, ai_key, call_forwarding, cf_key, index, nbr_key, pack_call_forwarding,
                     sf_key, special_facility, subscriber)


def GetSubscriberData(tx, s_id):
    """Reads the subscriber's row (spec 3.1)."""
    (row,) = yield from tx.read([(SUBSCRIBER, s_id)])
    subscriber(row)
    yield from tx.commit()
    return SUCCESS


def GetNewDestination(tx, s_id, sf_type, start_time, end_time):
    """The numberx of the subscriber's CALL_FORWARDING rows of sf_type with
    cf.start_time <= start_time and end_time < cf.end_time, if its
    SPECIAL_FACILITY row of sf_type is active (spec 3.2): one round trip
    reads that row and the rows of every start time that can match."""
    rows = [(SPECIAL_FACILITY, sf_key(s_id, sf_type))]
    rows += [(CALL_FORWARDING, cf_key(s_id, sf_type, st)) for st in START_TIMES if st <= start_time]
    sf, *cfs = yield from tx.read(rows, missing_ok=True)
    numbers = []
    if sf is not None and special_facility(sf).is_active:
        numbers = [cf.numberx for cf in map(call_forwarding, filter(None, cfs)) if end_time < cf.end_time]
    yield from tx.commit()
    return SUCCESS if numbers else FAIL


def GetAccessData(tx, s_id, ai_type):
    """Reads the subscriber's ACCESS_INFO row of ai_type, if any (spec 3.3)."""
    (row,) = yield from tx.read([(ACCESS_INFO, ai_key(s_id, ai_type))], missing_ok=True)
    yield from tx.commit()
    return FAIL if row is None else SUCCESS


def UpdateSubscriberData(tx, s_id, sf_type, bit_1, data_a):
    """Sets the subscriber's bit_1 and its SPECIAL_FACILITY row's data_a
    (spec 3.4); both locked in one round trip. Without that row it writes
    neither (the spec's rollback) and fails."""
    _, (sub, sf) = yield from tx.access(update=[(SUBSCRIBER, s_id), (SPECIAL_FACILITY, sf_key(s_id, sf_type))],
                                        missing_ok=True)
    if sub is None:
        raise Abort("error")  # every subscriber exists, always
    if sf is None:
        yield from tx.commit()
        return FAIL
    row = subscriber(sub)
    tx.write(SUBSCRIBER, s_id, row._replace(bits=row.bits & ~1 | bit_1).encode())
    tx.write(SPECIAL_FACILITY, sf_key(s_id, sf_type), special_facility(sf)._replace(data_a=data_a).encode())
    yield from tx.commit()
    return SUCCESS


def _lookup(tx, number):
    """The s_id of a sub_nbr, through the SUB_NBR index (one round trip)."""
    (row,) = yield from tx.read([(SUB_NBR, nbr_key(number))])
    return index(row)


def UpdateLocation(tx, number, vlr_location):
    """Sets the vlr_location of the subscriber with sub_nbr number (spec 3.5)."""
    s_id = yield from _lookup(tx, number)
    (sub,) = yield from tx.read_for_update([(SUBSCRIBER, s_id)])
    tx.write(SUBSCRIBER, s_id, subscriber(sub)._replace(vlr_location=vlr_location).encode())
    yield from tx.commit()
    return SUCCESS


def InsertCallForwarding(tx, number, sf_type, start_time, end_time, numberx):
    """Reads the subscriber's SPECIAL_FACILITY rows and inserts a
    CALL_FORWARDING row for sf_type and start_time (spec 3.6); it fails
    without a SPECIAL_FACILITY row of sf_type (the foreign key) or when the
    row exists (the primary key). The round trip that reads the
    SPECIAL_FACILITY rows also reads the CALL_FORWARDING row, absent or not;
    an insert that loses a race at the primary aborts (cause "lock")."""
    s_id = yield from _lookup(tx, number)
    key = cf_key(s_id, sf_type, start_time)
    *sfs, cf = yield from tx.read([(SPECIAL_FACILITY, sf_key(s_id, t)) for t in TYPES] + [(CALL_FORWARDING, key)],
                                  missing_ok=True)
    if sfs[sf_type - 1] is None or cf is not None:
        yield from tx.commit()
        return FAIL
    tx.insert(CALL_FORWARDING, key, pack_call_forwarding(end_time, numberx.encode()))
    yield from tx.commit()
    return SUCCESS


def DeleteCallForwarding(tx, number, sf_type, start_time):
    """Deletes the subscriber's CALL_FORWARDING row of sf_type and
    start_time (spec 3.7); fails if there is none."""
    s_id = yield from _lookup(tx, number)
    key = cf_key(s_id, sf_type, start_time)
    (cf,) = yield from tx.read_for_update([(CALL_FORWARDING, key)], missing_ok=True)
    if cf is None:
        yield from tx.commit()
        return FAIL
    tx.delete(CALL_FORWARDING, key)
    yield from tx.commit()
    return SUCCESS


TXN_TYPES = mix_of(MIX, GetSubscriberData, GetNewDestination, GetAccessData, UpdateSubscriberData, UpdateLocation,
                   InsertCallForwarding, DeleteCallForwarding)
