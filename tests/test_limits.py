"""Sizes checked before a run starts (harness/limits.py): each workload's
record count against its loader, the per-record figures against the C and
against Python's own accounting, absurd sizes refused in one line naming
their parameter, and the project's profiles accepted. No root needed."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
import yaml

import workloads
from harness import BPF_DIR, ENGINE_DIR, USERSPACE_DIR, HarnessError, experiments, inventory, limits
from harness.config import RunConfig
from harness.schema import Schema
from harness.systems import BypassSystem
from workloads import DataSpec

from conftest import run_c

CLUSTER = inventory.INVENTORY_DIR / "cluster.example.yml"

# Small sizes that still give a per-record figure (fixed costs amortised),
# and how far a drawn count may be from its expectation.
SMALL = {"echo": DataSpec(), "log": DataSpec(), "kv": DataSpec(keys=50_000), "lock": DataSpec(keys=50_000),
         "smallbank": DataSpec(scale=25_000), "tatp": DataSpec(scale=5_000), "tpcc": DataSpec(scale=1, divisor=10)}
DRAWN = {"tatp", "tpcc"}
TOLERANCE = 0.03


@pytest.fixture(scope="module")
def local_inv() -> inventory.Inventory:
    return inventory.parse(inventory.local_inventory(), "local")


@pytest.fixture(scope="module")
def cluster_inv() -> inventory.Inventory:
    return inventory.load(CLUSTER)


@pytest.fixture(scope="module", params=workloads.NAMES)
def generated(request):
    """(workload, data, records, tracemalloc's peak bytes while generating)."""
    wl, data = workloads.get(request.param), SMALL[request.param]
    tracemalloc.start()
    try:
        records = wl.initial(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return wl, data, records, peak


# -- record counts -----------------------------------------------------------
def test_every_workload_counts_its_records():
    assert all(workloads.get(n).rows for n in workloads.NAMES)


def test_rows_match_the_loader(generated):
    wl, data, records, _ = generated
    counted, expected = Counter(r.table for r in records), wl.rows(data)
    assert set(counted) <= set(expected)
    for table, n in expected.items():
        if wl.name in DRAWN:
            assert abs(counted[table] - n) <= TOLERANCE * n, (table, counted[table], n)
        else:
            assert counted[table] == n, (table, counted[table], n)
    assert wl.initial_rows(data) == sum(expected.values())
    assert wl.initial_value_bytes(data) == sum(len(r.value) for r in records) or wl.name in DRAWN


def test_tpcc_rows_exact_but_for_the_drawn_tables():
    """ORDER_LINE (5-15 per order) and CUSTOMER_NAME (a row per 31
    customers of a last name) are drawn; every other table is exact, and at
    the specification's cardinalities the name rows a district expects
    (1,004.2: a few names draw more than 31 customers) hold too."""
    from workloads.tpcc import loader, schema as s
    for data in (DataSpec(scale=2, divisor=100), DataSpec(scale=1, divisor=1)):
        logical = Counter(r.key >> 60 for r in loader.initial(data))
        for lt, n in loader.logical_rows(data).items():
            if lt == s.ORDER_LINE:
                assert abs(logical[lt] - n) <= TOLERANCE * n
            elif lt == s.CUSTOMER_NAME:
                assert abs(logical[lt] - n) <= max(2, 0.002 * n), (logical[lt], n)
            else:
                assert logical[lt] == n, (s.NAMES[lt], logical[lt], n)


def test_rows_are_instant_at_any_size():
    start = time.monotonic()
    for name in workloads.NAMES:
        wl = workloads.get(name)
        biggest = DataSpec(keys=2**40, scale=wl.scaling.maximum if wl.scaling else 0,
                           divisor=min(wl.scaling.divisors) if wl.scaling else 1)
        assert all(isinstance(n, int) and n >= 0 for n in wl.rows(biggest).values())
    assert time.monotonic() - start < 0.5


# -- per-record figures --------------------------------------------------------
def test_python_bytes_per_row_cover_tracemalloc(generated):
    """Each workload's constant (measured with ru_maxrss at large sizes) is
    at least tracemalloc's peak per record at a small size, and not far
    above it."""
    wl, _, records, peak = generated
    if not records:
        return
    measured = peak / len(records)
    assert measured <= limits.PY_BYTES_PER_ROW[wl.name] <= 1.3 * measured, (wl.name, measured)


@pytest.mark.parametrize("name", workloads.NAMES)
def test_param_bytes_cover_tracemalloc(name):
    """A client's parameters (harness/loadgen.py draws them before it
    starts): each workload's constant is at least tracemalloc's peak per
    parameter, and not far above it (every mix and control of it)."""
    from workloads import LoadSpec
    wl = workloads.get(name)
    cfg = RunConfig(system="kernel", workload=name).validate()
    n, worst = 20_000, 0.0
    mixes = [cfg.kv_mix] + (list(wl.transactions.mixes) if wl.transactions and wl.stream else [])
    for mix in dict.fromkeys(mixes):
        for cc in wl.cc or ("",):
            load = LoadSpec(data=cfg.data, seed=3, requests=n, servers=3, cc=cc, mix=mix)
            tracemalloc.start()
            try:
                if wl.stream and not (wl.transactions and mix in wl.transactions.mixes):
                    drawn = wl.stream.generate(load)
                else:
                    drawn = wl.transactions.params(load, wl.transactions.types_for(cc))
                worst = max(worst, tracemalloc.get_traced_memory()[1] / n)
            finally:
                tracemalloc.stop()
            del drawn
    assert worst <= limits.PARAM_BYTES[name] <= 1.4 * worst, (name, worst)


def test_client_hosts_hold_their_processes_and_parameters(cluster_inv):
    """Each client host: its client processes, each with the parameters it
    draws; TATP's grow with the run's length (a bound per second)."""
    cfg = RunConfig(system="dint", workload="kv", clients_per_host=4).validate()
    needs = {n.place: n for n in limits.memory_need(cfg, cluster_inv) if n.resource == "memory"}
    for h in cluster_inv.clients:
        parts = {p.what: p.bytes for p in needs[h.name].parts}
        assert parts == {"client processes": 4 * limits.CLIENT_PROCESS_BYTES,
                         "client parameters": 4 * cfg.requests * limits.PARAM_BYTES["kv"]}
    short = RunConfig(system="dint", workload="tatp", duration_s=2.0).validate()
    long = RunConfig(system="dint", workload="tatp", duration_s=200.0).validate()
    tatp = workloads.get("tatp")
    assert limits.client_params(long, tatp) == int((long.warmup_s + 200.0 + limits.PARAM_SLACK_S)
                                                   * tatp.transactions.params_per_s)
    assert limits.client_params(long, tatp) > limits.client_params(short, tatp) >= short.requests


def _layout_program(schema: Schema) -> str:
    sizes = ["sizeof(struct dint_rec)", "sizeof(struct store_entry)", "sizeof(struct store_id)",
             "sizeof(struct store_slot)", "sizeof(struct dint_done)", "sizeof(struct dint_session)",
             "sizeof(struct dint_log_rec)", "sizeof(struct dint_bucket)", "DINT_SHARED_MAX", "DINT_WINDOW"]
    defines = "\n".join(f"#define {f[2:].replace('=', ' ', 1)}" for f in schema.cflags())
    body = "\n".join(f'\tprintf("\\"{e}\\": %llu, ", (unsigned long long)({e}));' for e in sizes)
    return f"""{defines}
#include <stdio.h>
#include "store.h"
#include "dint_cache.h"
int main(void)
{{
\tprintf("{{");
{body}
\tprintf("\\"_\\": 0}}\\n");
\treturn 0;
}}
"""


@pytest.mark.parametrize("name", ["kv", "lock", "tpcc"])
def test_layout_is_the_c(name, tmp_path):
    """The struct sizes limits.Layout computes are the C's, for schemas of
    40-, 8- and 64-byte values."""
    schema = workloads.get(name).schema
    c = run_c(tmp_path, _layout_program(schema), ENGINE_DIR, USERSPACE_DIR, BPF_DIR)
    lay = limits.Layout(schema)
    assert (lay.rec, lay.entry, lay.ident, lay.index_slot, lay.done, lay.session, lay.log_rec, lay.bucket) == (
        c["sizeof(struct dint_rec)"], c["sizeof(struct store_entry)"], c["sizeof(struct store_id)"],
        c["sizeof(struct store_slot)"], c["sizeof(struct dint_done)"], c["sizeof(struct dint_session)"],
        c["sizeof(struct dint_log_rec)"], c["sizeof(struct dint_bucket)"])
    assert (limits.SHARED_MAX, limits.WINDOW) == (c["DINT_SHARED_MAX"], c["DINT_WINDOW"])


def test_mirrored_server_constants(local_inv):
    xdp = (BPF_DIR / "dint_xdp.c").read_text()
    assert int(re.search(r"#define DINT_LOG_CAPACITY (\d+)", xdp).group(1)) == limits.XDP_LOG_CAPACITY
    cmd = BypassSystem(local_inv, RunConfig(system="bypass").validate(), Path("/nonexistent")).command(
        local_inv.servers[0])
    assert cmd[cmd.index("-m") + 1] == str(limits.DPDK_BYTES // limits.MiB)


def test_store_size_follows_its_index():
    """The index is a power of two of at least twice the capacity."""
    lay = limits.Layout(Schema((40,)))
    fixed = lay.store(0, 1)
    assert lay.store(1000, 1) - fixed == 1000 * (lay.entry + lay.ident) + (2048 - 1) * lay.index_slot
    assert lay.store(1024, 1) - fixed == 1024 * (lay.entry + lay.ident) + (2048 - 1) * lay.index_slot
    assert lay.store(1025, 1) - fixed == 1025 * (lay.entry + lay.ident) + (4096 - 1) * lay.index_slot


# -- refusals ------------------------------------------------------------------
def _refusal(cfg: RunConfig, inv, out: Path) -> str:
    start = time.monotonic()
    with pytest.raises(HarnessError) as e:
        limits.check_memory(cfg, inv, out)
    assert time.monotonic() - start < 0.5
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_scale_refused_in_one_line(local_inv, tmp_path):
    msg = _refusal(RunConfig(system="kernel", workload="tatp", scale=10**12), local_inv, tmp_path)
    assert re.fullmatch(r"--scale 1,000,000,000,000: TATP at 1,000,000,000,000 subscribers needs about [\d.]+ PiB "
                        r"of memory on this machine \(stores [\d.]+ PiB, initial data [\d.]+ PiB\); "
                        r"it has [\d.]+ [KMGT]iB available \(and keeps 10% of the need spare\)", msg), msg


def test_tpcc_scale_names_its_divisor(local_inv, tmp_path):
    msg = _refusal(RunConfig(system="dint", workload="tpcc", scale=60_000), local_inv, tmp_path)
    assert msg.startswith("--scale 60,000: TPC-C at 60,000 warehouses (cardinalities divided by 10) needs about")


def test_keys_refused(local_inv, tmp_path):
    msg = _refusal(RunConfig(system="dint", workload="kv", keys=2**40), local_inv, tmp_path)
    assert msg.startswith("--keys 1,099,511,627,776: kv over 1,099,511,627,776 keys needs about")


def test_store_capacity_refused(local_inv, tmp_path):
    msg = _refusal(RunConfig(system="kernel", workload="kv", store_capacity=10**12), local_inv, tmp_path)
    assert msg.startswith("--store-capacity 1,000,000,000,000: 3 server stores of 1,000,000,000,000 records need "
                          "about")
    assert "(stores " in msg


def test_duration_refused(local_inv, tmp_path):
    """TPC-C's stores are sized for the rows its clients may insert."""
    msg = _refusal(RunConfig(system="kernel", workload="tpcc", duration_s=10**7), local_inv, tmp_path)
    assert msg.startswith("--duration 10,000,000: a 10,000,002 s tpcc run (1 client process inserting up to "
                          "30,000 rows a second each) needs about")


def test_cache_fraction_refused(local_inv, tmp_path):
    msg = _refusal(RunConfig(system="dint", workload="kv", keys=10**9, cache_fraction=4), local_inv, tmp_path)
    assert msg.startswith("--cache-fraction 4: dint's caches with slots for 4 times the records need about")
    assert "BPF maps" in msg


def test_system_refused(local_inv, tmp_path, monkeypatch):
    """On a small machine even bypass's fixed DPDK memory does not fit."""
    monkeypatch.setattr(limits, "available_memory", lambda: 1 * limits.GiB)
    msg = _refusal(RunConfig(system="bypass", workload="echo"), local_inv, tmp_path)
    assert msg.startswith("--system bypass: bypass echo on 3 servers needs about 1.7 GiB of memory")
    assert "DPDK 1.5 GiB" in msg and "it has 1.0 GiB available" in msg


def test_disk_refused(local_inv, tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "free_disk", lambda path: (Path(path), 10 * limits.MiB))
    msg = _refusal(RunConfig(system="kernel", workload="smallbank", scale=1_000_000), local_inv, tmp_path / "run")
    assert msg.startswith("--scale 1,000,000: SmallBank at 1,000,000 accounts needs about")
    assert f"of disk under {tmp_path / 'run'} (server dumps" in msg and "its filesystem has 10.0 MiB free" in msg


def test_infinite_duration_refused(local_inv, tmp_path):
    assert _refusal(RunConfig(system="kernel", workload="tpcc", duration_s=float("inf")), local_inv,
                    tmp_path) == "--duration and --warmup must be finite"


# -- places --------------------------------------------------------------------
def test_local_testbed_needs_are_all_this_machines(local_inv):
    needs = limits.memory_need(RunConfig(system="dint", workload="tatp"), local_inv)
    assert all(n.local for n in needs)
    assert {n.place for n in needs if n.resource == "memory"} == {"controller", "s0", "s1", "s2", "c0"}
    server = next(n for n in needs if n.place == "s0")
    assert {p.what for p in server.parts} == {"stores", "BPF maps", "dintd"}
    client = next(n for n in needs if n.place == "c0")
    assert {p.what for p in client.parts} == {"client processes", "client parameters"}


def test_cluster_checks_the_controller_only(cluster_inv, tmp_path):
    """Servers' stores of 10^12 records are for their hosts to check (here:
    hosts that do not state their memory); the controller's part is small
    and passes. Its initial data at 10^12 subscribers is refused here."""
    cluster_inv = inventory.parse(yaml.safe_load(CLUSTER.read_text().replace("memory_gb:", "note:")), "unstated")
    assert all(h.memory is None for h in cluster_inv.hosts)
    cfg = RunConfig(system="kernel", workload="kv", store_capacity=10**12, inventory=str(CLUSTER))
    limits.check_memory(cfg, cluster_inv, tmp_path)
    servers = [n for n in limits.memory_need(cfg, cluster_inv) if n.place in {h.name for h in cluster_inv.servers}]
    assert {(n.place, n.resource) for n in servers} == {(h.name, r) for h in cluster_inv.servers
                                                       for r in ("memory", "disk")}
    assert not any(n.local for n in servers)
    assert all(n.bytes > 10**12 for n in servers if n.resource == "memory")
    msg = _refusal(RunConfig(system="kernel", workload="tatp", scale=10**12, inventory=str(CLUSTER)), cluster_inv,
                   tmp_path)
    assert "of memory on the controller, this machine (initial data" in msg


# -- the project's own profiles --------------------------------------------------
@pytest.mark.parametrize("profile", ["local", "local-all"])
def test_every_local_point_fits_the_local_testbed(tmp_path, profile):
    """As reproduce checks them: each point with the span of its series."""
    from harness import reproduce
    inv = inventory.load(inventory.DEFAULT_INVENTORY)
    reproduce.check_sizes(experiments.load(profile).points(), inv, None, tmp_path)


def test_a_series_sizes_its_stores_for_all_its_points():
    from harness.config import RunConfig
    inv = inventory.load(inventory.DEFAULT_INVENTORY)
    cfg = RunConfig(system="dint", workload="tpcc", concurrency=8, duration_s=2.0, warmup_s=0.5).validate()
    alone = sum(n.bytes for n in limits.memory_need(cfg, inv))
    served = sum(n.bytes for n in limits.memory_need(cfg, inv, span_s=5 * (2.0 + 0.5 + 5)))
    assert served > alone


def test_every_paper_point_fits_the_controller(cluster_inv, tmp_path, monkeypatch):
    """The controller's part of the paper's scale (TATP's 7M subscribers:
    75M records, about 18.6 GiB) against this machine's memory as a whole:
    what other processes hold while the test runs is not the profile's."""
    total = limits._meminfo()["MemTotal"]
    monkeypatch.setattr(limits, "available_memory", lambda: total)
    for point in experiments.load("paper").points():
        limits.check_memory(point.config(str(CLUSTER)), cluster_inv, tmp_path)


# -- the commands: refused before anything is made ----------------------------
HARNESS = [sys.executable, "-m", "harness"]
ROOT = Path(__file__).resolve().parents[1]


def test_a_run_too_big_is_one_line_and_makes_nothing(test_inventory_path, tmp_path):
    out = tmp_path / "huge"
    p = subprocess.run([*HARNESS, "run", "--system", "dint", "--workload", "tatp", "--scale", str(10**12),
                        "--inventory", str(test_inventory_path), "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --scale 1,000,000,000,000: TATP at"), p.stderr
    assert "available" in err[0]
    assert not out.exists()


def test_reproduce_checks_every_point_before_it_makes_its_directory(test_inventory_path, tmp_path):
    profile = tmp_path / "huge.yml"
    profile.write_text(yaml.safe_dump({
        "version": 1, "profile": "huge", "defaults": {"duration_s": 0.3, "warmup_s": 0.2},
        "systems": ["kernel"],
        "experiments": [{"name": "small", "figure": "curve", "workload": "kv", "sweep": {"concurrency": [1]}},
                        {"name": "big", "figure": "curve", "workload": "smallbank",
                         "config": {"scale": 10**12}, "sweep": {"concurrency": [1]}}]}))
    run_id = f"huge-{os.getpid()}"
    p = subprocess.run([*HARNESS, "reproduce", "--profile", str(profile), "--run-id", run_id,
                        "--inventory", str(test_inventory_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and re.match(r"error: point big\S*: --scale 1,000,000,000,000: SmallBank", err[0]), p.stderr
    assert not (ROOT / "results" / run_id).exists()
