"""Key distributions (workloads/keydist.py, --key-dist): the specs and their
refusals, the same keys for every system and in every process from one
seed, and each distribution's shape checked statistically at a tiny scale."""
from __future__ import annotations

import random
import subprocess
import sys
import types

import numpy as np
import pytest
from scipy import stats

import workloads
from harness import HarnessError, ROOT, experiments
from harness.config import SYSTEMS, RunConfig
from harness.processes import Clients
from workloads import DataSpec, LoadSpec, keydist, kv, lock, log

ALPHA = 1e-3  # a goodness-of-fit test fails the distribution below this p-value


def draws(spec: str, keys: int, n: int, seed: int = 1) -> np.ndarray:
    draw = keydist.parse(spec).sampler(keys, random.Random(seed))
    return np.array([draw() for _ in range(n)])


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


def test_uniform_draws_the_keys_the_workloads_always_drew():
    """The default changes nothing: today's inputs, draw for draw."""
    rng = random.Random(5)
    assert list(draws("uniform", 1000, 200, seed=5)) == [rng.randrange(1000) for _ in range(200)]
    rng = random.Random(5)
    expect = []
    for _ in range(50):  # lock.generate as it was before there were distributions
        chosen = rng.sample(range(40), rng.randint(*lock.KEYS_PER_TXN))
        written = [rng.random() < lock.WRITE_PROBABILITY for _ in chosen]
        expect.append((tuple(k for k, w in zip(chosen, written) if not w),
                       tuple(k for k, w in zip(chosen, written) if w)))
    assert lock.generate(50, 40, seed=5) == expect


KEYS_SCRIPT = """
import random, sys
from workloads import keydist
d = keydist.parse(sys.argv[1])
f = d.sampler(int(sys.argv[2]), random.Random(int(sys.argv[3])))
print(" ".join(str(f()) for _ in range(300)))
"""


@pytest.mark.parametrize("spec", ["nurand:1048575", "zipf:0.99"])
def test_draws_are_the_same_in_another_process(spec):
    p = subprocess.run([sys.executable, "-c", KEYS_SCRIPT, spec, "100000", "9"], capture_output=True, text=True,
                       cwd=ROOT, env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin:/bin"}, check=True)
    assert list(map(int, p.stdout.split())) == list(draws(spec, 100_000, 300, seed=9))


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


@pytest.mark.parametrize("spec", ["nurand:63", "zipf:0.9"])
def test_lock_transactions_draw_distinct_keys_skewed_by_the_distribution(spec):
    txns = lock.generate(3000, 200, seed=3, dist=spec)
    assert all(5 <= len(r) + len(w) <= 10 and len(set(r + w)) == len(r + w) for r, w in txns)
    assert all(0 <= k < 200 for r, w in txns for k in r + w)
    counts = np.bincount([k for r, w in txns for k in r + w], minlength=200)
    assert stats.chisquare(counts).pvalue < ALPHA  # not flat
    if spec.startswith("zipf"):
        assert counts[0] == counts.max()


def test_every_keyed_workload_either_draws_from_the_option_or_says_why_not():
    for name in workloads.NAMES:
        wl = workloads.get(name)
        assert not (wl.key_dist and wl.key_rule)
        if wl.scaling:
            assert wl.key_rule, name
    assert workloads.with_feature(lambda w: w.key_dist) == ("kv", "log", "lock")
    load = LoadSpec(DataSpec(keys=100), seed=1, requests=10, servers=3)
    assert load.key_dist == "uniform"
