"""What Python mirrors from the C headers besides the wire format (that is
tests/test_protocol.py), against the C itself: a program built from
userspace/store.h and bpf/dint_cache.h prints every value the mirrors must
equal, so a change on one side only fails here."""
from __future__ import annotations

import struct

import pytest

from harness import BPF_DIR, ENGINE_DIR, USERSPACE_DIR, dintd, schema, snapshot, xdpbench

from conftest import run_c
import xdp_cache

# (table, key) pairs to hash on both sides
HASHED = ((0, 0), (1, 1), (2, 12345), (7, 2**64 - 1), (3, 0x0123456789ABCDEF))
LOG_FIELDS = ("txn", "key", "ver", "table")


def values_program(ints: list[str], strings: list[str]) -> str:
    """A C program printing {expression: value} for each expression."""
    lines = [f"\tI({e});" for e in ints] + [f"\tS({e});" for e in strings]
    body = "\n".join(lines)
    return rf"""
#include <stddef.h>
#include <stdio.h>
#include "store.h"
#include "dint_cache.h"
#define I(e) printf("\"%s\": %llu, ", #e, (unsigned long long)(e))
#define S(e) printf("\"%s\": \"%s\", ", #e, e)
int main(void)
{{
	printf("{{");
{body}
	printf("\"_\": 0}}\n");
	return 0;
}}
"""


def ints() -> list[str]:
    return [
        "DINT_CACHE_SLOTS", "DINT_STAT_XDP_MAX", *(f"DINT_STAT_{name.upper()}" for name in dintd.STAT_NAMES),
        "STORE_SNAP_VERSION", "STORE_SNAP_REC_HDR", "STORE_LOG_REC_HDR",
        *(f"offsetof(struct dint_log_rec, {f})" for f in (*LOG_FIELDS, "value")),
        "DINT_MAX_TABLES", "DINT_NTABLES", "DINT_VAL_MAX", *(f"DINT_VSIZE({t})" for t in range(len(schema.Schema().sizes))),
        "DINT_FILL_MAGIC", "DINT_WT_MAGIC", *(f"DINT_FILL_{r.upper()}" for r in xdp_cache.RESULTS.values()),
        "offsetof(struct dint_fill, rec)", "sizeof(struct dint_slot_id)",
        *(f"dint_hash({t}, {k}ULL)" for t, k in HASHED),
        *(f"dint_cache_bucket(dint_hash({t}, {k}ULL), 1000)" for t, k in HASHED),
    ]


@pytest.fixture(scope="module")
def c(tmp_path_factory) -> dict:
    return run_c(tmp_path_factory.mktemp("constants"), values_program(ints(), ["STORE_SNAP_MAGIC", "STORE_LOG_MAGIC"]),
                 ENGINE_DIR, USERSPACE_DIR, BPF_DIR)


def test_cache_slots(c):
    assert dintd.CACHE_SLOTS == c["DINT_CACHE_SLOTS"]


def test_xdp_stat_names_in_the_order_of_the_stats_map(c):
    assert [c[f"DINT_STAT_{name.upper()}"] for name in dintd.STAT_NAMES] == list(range(len(dintd.STAT_NAMES)))
    assert c["DINT_STAT_XDP_MAX"] == len(dintd.STAT_NAMES), "a counter the Python side does not name"


def test_snapshot_and_log_files(c):
    assert snapshot.SNAP_MAGIC.decode() == c["STORE_SNAP_MAGIC"]
    assert snapshot.LOG_MAGIC.decode() == c["STORE_LOG_MAGIC"]
    assert snapshot.SNAP_VERSION == c["STORE_SNAP_VERSION"]
    assert snapshot.REC.size == c["STORE_SNAP_REC_HDR"]
    assert snapshot.LOGREC.size == c["STORE_LOG_REC_HDR"]


def test_log_ring_records_read_as_log_file_records(c):
    """dintd reads struct dint_log_rec out of the ring with LOGREC."""
    offsets = [struct.calcsize(snapshot.LOGREC.format[:i + 1]) for i in range(len(LOG_FIELDS))]
    assert [c[f"offsetof(struct dint_log_rec, {f})"] for f in LOG_FIELDS] == offsets
    assert c["offsetof(struct dint_log_rec, value)"] == snapshot.LOGREC.size


def test_schema_limit_and_default(c):
    assert schema.MAX_TABLES == c["DINT_MAX_TABLES"]
    default = schema.Schema()
    assert len(default.sizes) == c["DINT_NTABLES"]
    assert list(default.sizes) == [c[f"DINT_VSIZE({t})"] for t in range(len(default.sizes))]
    assert default.val_max == c["DINT_VAL_MAX"]


def test_cache_test_helpers(c):
    assert xdp_cache.FILL_MAGIC == c["DINT_FILL_MAGIC"] and xdp_cache.WT_MAGIC == c["DINT_WT_MAGIC"]
    assert {c[f"DINT_FILL_{r.upper()}"]: r for r in xdp_cache.RESULTS.values()} == xdp_cache.RESULTS
    assert xdp_cache.FILL_HEAD.size == c["offsetof(struct dint_fill, rec)"]
    assert xdp_cache.SLOT_ID.size == c["sizeof(struct dint_slot_id)"]
    for t, k in HASHED:
        h = c[f"dint_hash({t}, {k}ULL)"]
        assert xdpbench.dint_hash(t, k) == h
        assert xdpbench.bucket_of(h, 1000) == c[f"dint_cache_bucket(dint_hash({t}, {k}ULL), 1000)"]
