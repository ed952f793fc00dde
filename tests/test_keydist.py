"""Key distributions (workloads/keydist.py, --key-dist): the specs and their
refusals, the same keys for every system and in every process from one
seed, and each distribution's shape checked statistically at a tiny scale."""
from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest
from scipy import stats

import workloads
from harness import HarnessError, ROOT, experiments
from harness.config import SYSTEMS, RunConfig
from harness.protocol import Op
from harness.processes import Clients
from workloads import DataSpec, LoadSpec, keydist, kv, lock, log, seeds

ALPHA = 1e-3  # a goodness-of-fit test fails the distribution below this p-value


def draws(spec: str, keys: int, n: int, seed: int = 1) -> np.ndarray:
    return keydist.parse(spec).draw_many(n, keys, seeds.generator(seed, "test"))


# -- specs --------------------------------------------------------------------
@pytest.mark.parametrize("spec,canonical", [
    ("uniform", "uniform"), ("nurand", "nurand:1048575"), ("nurand:255", "nurand:255"),
    ("zipf", "zipf:0.99"), ("zipf:0.5", "zipf:0.5"), ("zipf:0", "zipf:0.0"), (" zipf:0.75 ", "zipf:0.75"),
])
def test_specs_are_recorded_canonical(spec, canonical):
    assert keydist.canonical(spec) == canonical
    assert RunConfig(system="kernel", workload="kv", key_dist=spec).validate().key_dist == canonical


@pytest.mark.parametrize("spec,message", [
    ("zipf:-1", "--key-dist 'zipf:-1': zipf's THETA must be a number from 0 up to (not including) 1"),
    ("zipf:1", "zipf's THETA must be a number from 0 up to"),
    ("zipf:nan", "zipf's THETA must be a number from 0 up to"),
    ("nurand:0", "--key-dist 'nurand:0': NURand's A must be a whole number from 1"),
    ("nurand:1.5", "NURand's A must be a whole number"),
    ("uniform:3", "--key-dist 'uniform:3': uniform takes no parameter"),
    ("pareto:1", "--key-dist 'pareto:1': must be uniform, nurand:A"),
])
def test_a_bad_spec_is_one_line_naming_it(spec, message):
    with pytest.raises(HarnessError) as e:
        RunConfig(system="kernel", workload="kv", key_dist=spec).validate()
    line = str(e.value)
    assert line.startswith(f"--key-dist {spec!r}: ") and message in line and "\n" not in line


@pytest.mark.parametrize("workload,rule", [
    ("tatp", "tatp draws its keys by NURand, as its specification says"),
    ("smallbank", "smallbank draws its keys by its hotspot rule"),
    ("tpcc", "tpcc draws its keys by NURand and uniform draws, as its specification says"),
    ("echo", "(echo draws no keys)"),
])
def test_workloads_with_their_own_rule_refuse_the_option(workload, rule):
    with pytest.raises(HarnessError) as e:
        RunConfig(system="kernel", workload=workload, key_dist="zipf:0.9").validate()
    assert str(e.value).startswith("--key-dist applies to kv, log, lock only") and rule in str(e.value)
    RunConfig(system="kernel", workload=workload, key_dist="uniform").validate()  # the default is fine


def test_the_option_on_the_command_line_is_one_clear_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "harness", "run", "--system", "kernel", "--workload", "kv",
                        "--key-dist", "zipf:-1", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 1 and p.stderr.startswith("error: --key-dist 'zipf:-1'") and p.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_an_experiment_file_takes_the_field_and_names_a_bad_one():
    raw = {"version": 1, "defaults": {"duration_s": 1},
           "experiments": [{"name": "skew", "figure": "curve", "workload": "kv", "systems": ["dint"],
                            "sweep": {"key_dist": ["uniform", "nurand:1048575", "zipf:0.9"]}}]}
    points = experiments.parse(raw).points()
    assert [p.config().key_dist for p in points] == ["uniform", "nurand:1048575", "zipf:0.9"]
    # named by the spec made readable (no ':' or '.' in a directory's name)
    assert [p.name for p in points] == ["skew__dint__uniform", "skew__dint__nurand-1048575", "skew__dint__zipf-0-9"]
    raw["experiments"][0]["sweep"] = {"key_dist": ["zipf:2"]}
    with pytest.raises(HarnessError, match="point skew__dint__zipf-2: --key-dist 'zipf:2'"):
        experiments.parse(raw)


# -- the same keys for every system, in every process -------------------------
def client_load(system: str, key_dist: str, workload: str = "kv", **kw) -> LoadSpec:
    """What client 1 of a run of this system is given (harness/processes.py)."""
    cfg = RunConfig(system=system, workload=workload, key_dist=key_dist, keys=500, requests=2000,
                    **kw).validate()
    clients = Clients(inv=None, points=[(cfg, ".")], where=".", deployer=None)
    host = types.SimpleNamespace(name="c0", address="10.0.0.1")
    return clients.spec(0, 1, host, (("10.0.0.2", 1), ("10.0.0.3", 1), ("10.0.0.4", 1))).load


@pytest.mark.parametrize("spec", ["uniform", "nurand:1048575", "zipf:0.9"])
def test_the_same_seed_gives_every_system_the_same_inputs(spec):
    loads = {s: client_load(s, spec) for s in SYSTEMS}
    assert len(set(loads.values())) == 1 and loads["dint"].key_dist == keydist.canonical(spec)
    streams = [kv.stream(load) for load in loads.values()]
    assert all(s == streams[0] for s in streams)
    contention = [kv.draw(client_load(s, spec, kv_mix="contention"), kv.TXN_TYPES) for s in SYSTEMS]
    assert all(c == contention[0] for c in contention)
    locks = [lock.draw(client_load(s, spec, workload="lock", lock_protocol=p), None)
             for s in SYSTEMS for p in ("parallel", "sequential")]
    assert all(sorted(k for r in x for k in r[1][0] + r[1][1]) ==
               sorted(k for r in locks[0] for k in r[1][0] + r[1][1]) for x in locks)
    logs = [log.stream(client_load(s, spec, workload="log")) for s in SYSTEMS]
    assert all(x == logs[0] for x in logs)
    # and another seed, other keys
    other = RunConfig(system="dint", workload="kv", key_dist=spec, keys=500, requests=2000, seed=2).validate()
    assert kv.stream(LoadSpec(other.data, 2001, 2000, 3, key_dist=other.key_dist)) != streams[0]


KEYS_SCRIPT = """
import sys
from workloads import keydist, lock, seeds
d = keydist.parse(sys.argv[1])
print(" ".join(map(str, d.draw_many(300, int(sys.argv[2]), seeds.generator(int(sys.argv[3]), "test")))))
print(lock.generate(50, int(sys.argv[2]), int(sys.argv[3]), sys.argv[1]))
"""


@pytest.mark.parametrize("spec", ["uniform", "nurand:1048575", "zipf:0.99"])
def test_draws_are_the_same_in_another_process(spec):
    p = subprocess.run([sys.executable, "-c", KEYS_SCRIPT, spec, "100000", "9"], capture_output=True, text=True,
                       cwd=ROOT, env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"}, check=True)
    keys, txns = p.stdout.splitlines()
    assert list(map(int, keys.split())) == list(draws(spec, 100_000, 300, seed=9))
    assert txns == str(lock.generate(50, 100_000, 9, spec))


# -- shapes ---------------------------------------------------------------------
def test_uniform_fits_a_flat_distribution():
    keys, n = 100, 50_000
    counts = np.bincount(draws("uniform", keys, n, seed=3), minlength=keys)
    assert stats.chisquare(counts).pvalue > ALPHA


@pytest.mark.parametrize("a,keys", [(63, 50), (255, 100), (7, 40)])
def test_nurand_fits_its_exact_frequencies(a, keys):
    """NURand(A, 0, keys-1) = (random(0, A) | random(0, keys-1)) mod keys:
    the exact probabilities by enumerating every pair."""
    pairs = (np.arange(a + 1)[:, None] | np.arange(keys)[None, :]) % keys
    expected_p = np.bincount(pairs.ravel(), minlength=keys) / pairs.size
    n = 60_000
    counts = np.bincount(draws(f"nurand:{a}", keys, n, seed=4), minlength=keys)
    assert stats.chisquare(counts, expected_p * n).pvalue > ALPHA
    # it is skewed: a flat distribution does not fit
    assert stats.chisquare(counts).pvalue < ALPHA


@pytest.mark.parametrize("theta", [0.5, 0.8, 0.99])
def test_zipf_has_its_rank_frequency_slope(theta):
    """On a log-log plot of frequency against rank the slope is -theta;
    ranks 1 and 2 (keys 0 and 1) have exactly their zipfian probabilities."""
    keys, n = 1000, 200_000
    x = draws(f"zipf:{theta}", keys, n, seed=6)
    counts = np.bincount(x, minlength=keys)
    ranks = np.arange(1, 101)
    slope = stats.linregress(np.log(ranks), np.log(counts[:100])).slope
    assert slope == pytest.approx(-theta, abs=0.06)
    zetan = keydist.zeta(keys, theta)
    for key, p in ((0, 1 / zetan), (1, 0.5 ** theta / zetan)):
        assert stats.binomtest(int(counts[key]), n, p).pvalue > ALPHA
    assert x.min() == 0 and x.max() < keys


def test_zipf_zero_is_uniform_and_tiny_key_spaces_work():
    counts = np.bincount(draws("zipf:0", 50, 40_000, seed=2), minlength=50)
    assert stats.chisquare(counts).pvalue > ALPHA
    for keys in (1, 2, 3):
        assert set(draws("zipf:0.99", keys, 500)) == set(range(keys))
        assert set(draws("nurand:1048575", keys, 500)) == set(range(keys))


def test_zeta_is_the_harmonic_sum():
    assert keydist.zeta(10, 0.5) == pytest.approx(sum(i ** -0.5 for i in range(1, 11)), rel=1e-15)
    big = keydist.ZETA_CHUNK * 2 + 17  # across chunks
    assert keydist.zeta(big, 0.9) == pytest.approx(float(np.sum(np.arange(1, big + 1.0) ** -0.9)), rel=1e-12)


def test_distinct_keys_are_drawn_over_until_new():
    """A row of distinct keys is what drawing them one at a time, a repeat
    drawn over, gives: the first two keys (a, b) of a row come up with
    probability p(a) p(b) / (1 - p(a)) (NURand's exact p); uniform, each
    place is uniform."""
    a, keys, n = 7, 10, 60_000
    pairs = (np.arange(a + 1)[:, None] | np.arange(keys)[None, :]) % keys
    p = np.bincount(pairs.ravel(), minlength=keys) / pairs.size
    rows = keydist.parse(f"nurand:{a}").distinct_many(n, 4, keys, seeds.generator(2, "test"))
    assert all(len(set(r)) == 4 for r in rows.tolist()) and rows.min() >= 0 and rows.max() < keys
    expected = p[:, None] * p[None, :] / (1 - p[:, None])
    np.fill_diagonal(expected, 0)
    counts = np.bincount(rows[:, 0] * keys + rows[:, 1], minlength=keys * keys).reshape(keys, keys)
    off = ~np.eye(keys, dtype=bool)
    assert stats.chisquare(counts[off], expected[off] * n).pvalue > ALPHA
    rows = keydist.parse("uniform").distinct_many(n, 10, 12, seeds.generator(3, "test"))
    assert all(len(set(r)) == 10 for r in rows.tolist())
    for col in rows.T:
        assert stats.chisquare(np.bincount(col, minlength=12)).pvalue > ALPHA
    with pytest.raises(ValueError, match="cannot draw 11 distinct keys of 10"):
        keydist.parse("uniform").distinct_many(1, 11, 10, seeds.generator(1, "test"))


@pytest.mark.parametrize("spec", ["nurand:63", "zipf:0.9"])
def test_lock_transactions_draw_distinct_keys_skewed_by_the_distribution(spec):
    txns = lock.generate(3000, 200, seed=3, dist=spec)
    assert all(5 <= len(r) + len(w) <= 10 and len(set(r + w)) == len(r + w) for r, w in txns)
    assert all(0 <= k < 200 for r, w in txns for k in r + w)
    counts = np.bincount([k for r, w in txns for k in r + w], minlength=200)
    assert stats.chisquare(counts).pvalue < ALPHA  # not flat
    if spec.startswith("zipf"):
        assert counts[0] == counts.max()


@pytest.mark.parametrize("spec", ["uniform", "nurand:1048575", "zipf:0.99"])
@pytest.mark.parametrize("cc,protocol", [("2pl", "parallel"), ("occ", "parallel"), ("2pl", "sequential")])
def test_lock_parameters_are_the_same_for_a_seed_and_well_formed(spec, cc, protocol):
    """The executor's parameters of the lock workload: one seed, the same
    ones (another seed, others); each transaction 5-10 distinct keys in
    range, its first batch its reads (LOCK_SHARED or READ) then its writes
    (LOCK_EXCL), or its locks in key order, each to its key's primary, all
    of it plain Python ints and tuples."""
    def load(seed):
        return LoadSpec(DataSpec(keys=1000), seed=seed, requests=3000, servers=3, cc=cc, key_dist=spec,
                        lock_protocol=protocol)
    ps = lock.draw(load(5), None)
    assert ps == lock.draw(load(5), None) and ps != lock.draw(load(6), None) and len(ps) == 3000
    read_op = Op.LOCK_SHARED if cc == "2pl" else Op.READ
    for kind, (reads, writes, first) in ps:
        keys = reads + writes
        assert kind == 0 and type(reads) is type(writes) is type(first) is tuple
        assert 5 <= len(keys) <= 10 and len(set(keys)) == len(keys)
        assert all(type(k) is int and 0 <= k < 1000 for k in keys)
        expect = [(read_op, lock.TABLE, k, lock.PLACEHOLDER, 0, k % 3) for k in reads] + \
                 [(Op.LOCK_EXCL, lock.TABLE, k, lock.PLACEHOLDER, 0, k % 3) for k in writes]
        if protocol == "sequential":
            expect.sort(key=lambda req: req[2])
        assert list(first) == expect
        assert all(type(req) is tuple and all(type(x) in (int, bytes) for x in req) for req in first)
    assert sum(len(w) for _, (r, w, _) in ps) / sum(len(r) + len(w) for _, (r, w, _) in ps) == \
        pytest.approx(lock.WRITE_PROBABILITY, abs=0.02)


@pytest.mark.parametrize("spec", ["uniform", "nurand:1048575", "zipf:0.99"])
def test_kv_contention_parameters_are_the_same_for_a_seed_and_well_formed(spec):
    def load(seed):
        return LoadSpec(DataSpec(keys=1000), seed=seed, requests=5000, servers=3, key_dist=spec, mix="contention")
    ps = kv.draw(load(5), kv.TXN_TYPES)
    assert ps == kv.draw(load(5), kv.TXN_TYPES) and ps != kv.draw(load(6), kv.TXN_TYPES) and len(ps) == 5000
    names = [t.name for t in kv.TXN_TYPES]
    for kind, args in ps:
        if names[kind] == "write":
            key, (req,) = args
            assert req == (Op.LOCK_EXCL, kv.TABLE, key, kv.PLACEHOLDER, 0, key % 3)
        else:
            ((req,),) = args
            key = req[2]
            assert req == (Op.READ, kv.TABLE, key, kv.PLACEHOLDER, 0, key % 3)
        assert type(key) is int and 0 <= key < 1000 and all(type(x) in (int, bytes) for x in req)
    assert sum(names[k] == "write" for k, _ in ps) / len(ps) == pytest.approx(0.2, abs=0.02)


def test_every_keyed_workload_either_draws_from_the_option_or_says_why_not():
    for name in workloads.NAMES:
        wl = workloads.get(name)
        assert not (wl.key_dist and wl.key_rule)
        if wl.scaling:
            assert wl.key_rule, name
    assert workloads.with_feature(lambda w: w.key_dist) == ("kv", "log", "lock")
    load = LoadSpec(DataSpec(keys=100), seed=1, requests=10, servers=3)
    assert load.key_dist == "uniform"
