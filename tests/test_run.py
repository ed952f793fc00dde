"""`python -m harness run` end to end on the testbed, as a user runs it:
what it writes, how it refuses bad input, and that a Ctrl-C in the middle
leaves nothing of ours behind."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from harness import ROOT, inventory
from harness.testbed import leftovers

HARNESS = [sys.executable, "-m", "harness"]


def harness(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, cwd=ROOT, **kw)


# What every stats line carries (userspace/server_common.h, harness/dintd.py).
COST_FIELDS = {"dint": ("bpf_run_ns", "bpf_run_cnt", "dintd_cpu_ns", "slow_cpu_ns"),
               "kernel": ("napi_cpu_ns",), "bypass": ("napi_cpu_ns",)}


def check_cost_fields(system: str, out: Path) -> None:
    """Each server's log: a stats line every STATS_INTERVAL_MS (besides the
    one at stop), each with when it was taken and what the server has cost
    so far, measured on its host: its CPU time, and its interfaces' NAPI
    threads' (kernel, bypass; threaded with --napi pinned) or its XDP
    program's run time (dint)."""
    from harness.systems import STATS_INTERVAL_MS
    for log in sorted((out / "logs").glob("server-*.log")):
        lines = [json.loads(ln[6:]) for ln in log.read_text().splitlines() if ln.startswith("stats ")]
        assert len(lines) >= 10, (log.name, len(lines))  # a run of over a second
        for ln in lines:
            for f in ("rx", "t_ns", "mono_ns", "cpu_ns", *COST_FIELDS[system]):
                assert isinstance(ln.get(f), int), (log.name, f, ln)
        assert all(a["t_ns"] <= b["t_ns"] and a["cpu_ns"] <= b["cpu_ns"] for a, b in zip(lines, lines[1:]))
        assert abs(lines[-1]["t_ns"] - time.time_ns()) < 600e9
        gaps = [(b["mono_ns"] - a["mono_ns"]) / 1e6 for a, b in zip(lines[:-2], lines[1:-1])]
        assert max(gaps) < 10 * STATS_INTERVAL_MS, (log.name, gaps)
        first, last = lines[0], lines[-1]
        assert last["rx"] > first["rx"]
        if system == "dint":
            assert last["bpf_run_cnt"] - first["bpf_run_cnt"] >= last["rx"] - first["rx"]
            assert last["bpf_run_ns"] > first["bpf_run_ns"]
            assert last["cpu_ns"] == last["dintd_cpu_ns"] + last["slow_cpu_ns"]
            for mode in ("cpu_user_ns", "cpu_sys_ns"):
                assert last[mode] == last[f"dintd_{mode}"] + last[f"slow_{mode}"], mode
            # the NAPI threads ran the XDP program (threaded with --napi pinned)
            assert last["napi_cpu_ns"] - first["napi_cpu_ns"] >= last["bpf_run_ns"] - first["bpf_run_ns"]
        else:  # the interfaces' NAPI threads did the packets' kernel work
            assert last["napi_cpu_ns"] > first["napi_cpu_ns"], log.name
        assert all(isinstance(ln.get(f), int) for ln in lines for f in ("cpu_user_ns", "cpu_sys_ns"))


@pytest.mark.parametrize("system", ["dint", "kernel", "bypass"])
def test_run_writes_a_complete_summary(testbed, test_inventory_path, tmp_path, system):
    out = tmp_path / "run"
    p = harness("run", "--system", system, "--concurrency", "4", "--duration", "1", "--warmup", "0.3",
                "--napi", "pinned", "--inventory", str(test_inventory_path), "--out", str(out))
    assert p.returncode == 0, p.stderr
    s = json.loads((out / "summary.json").read_text())
    assert (s["system"], s["workload"], s["concurrency"], s["napi"]) == (system, "echo", 4, "pinned")
    assert s["completed"] > 100 and s["errors"] == 0
    assert s["throughput_per_s"] == pytest.approx(s["completed"] / s["duration_s"], rel=1e-3)
    assert 0.9 < s["duration_s"] < 1.5
    lat = s["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"]
    assert isinstance(s["client_saturated"], bool) and "getrusage" in s["client_saturation_rule"]
    assert 0 <= s["client_cpu_util"] <= 1.05
    assert s["instrument_check"]["match"], s["instrument_check"]
    # the server cost, from the servers' own stats lines around the window
    assert s["server_cpu_us_per_op"] > 0, s["server_cost"]
    cost = s["server_cost"]
    assert "reason" not in cost and cost["rule"] and set(cost["servers"]) == {"s0", "s1", "s2"}
    assert cost["ops"] > 0 and cost["server_cpu_s"] > 0
    assert (cost["bpf_runs"] > 0 and cost["bpf_run_ns_per_op"] > 0) if system == "dint" else cost["napi_cpu_s"] > 0
    check_cost_fields(system, out)
    # cores used: the NAPI threads' time as the packet work (dint's hold its
    # XDP runs), user and kernel apart
    assert cost["cores"]["packet_work"] == "napi_cpu_ns" and cost["cores"]["user"] is not None, cost["cores"]
    assert set(s["servers"]) == {"s0", "s1", "s2"}
    assert s["placement"]["oversubscribed"]  # three servers on one core
    for key in ("kernel", "cpu_model", "git_revision", "versions"):
        assert key in s["env"]
    assert s["config"]["system"] == system
    for name in ("config.json", "env.json", "inventory.yml", "system.json", "histogram.hdr",
                 "logs/server-s0.log", "logs/client-1.log", "clients/client-1.json"):
        assert (out / name).exists(), name
    assert "ready" in (out / "logs/server-s0.log").read_text()
    assert system in p.stdout
    # it went through the Ansible playbooks, and their event log is kept
    runs = sorted(d.name for d in (out / "ansible" / "artifacts").iterdir())
    assert runs == ["01-servers-start", "02-clients-run", "03-servers-stop"], runs
    for r in runs:
        art = out / "ansible" / "artifacts" / r
        assert (art / "status").read_text().strip() == "successful"
        assert list((art / "job_events").glob("*.json"))
    assert set(json.loads((out / "ansible" / "timings.json").read_text())) == set(runs)


def test_bad_input_is_one_clear_line(tmp_path):
    p = harness("run", "--system", "dint", "--concurrency", "0", "--out", str(tmp_path / "x"))
    assert p.returncode == 1
    assert p.stderr.strip() == "error: --concurrency must be between 1 and 32768"
    p = harness("run", "--system", "dint", "--inventory", str(tmp_path / "none.yml"), "--out", str(tmp_path / "x"))
    assert p.returncode == 1 and "not found" in p.stderr and "Traceback" not in p.stderr


def test_existing_results_are_never_overwritten(tmp_path):
    out = tmp_path / "done"
    out.mkdir()
    (out / "summary.json").write_text('{"kept": true}')
    p = harness("run", "--system", "kernel", "--out", str(out))
    assert p.returncode == 1 and "already holds a run" in p.stderr
    assert json.loads((out / "summary.json").read_text()) == {"kept": True}


@pytest.mark.parametrize("system", ["dint", "bypass"])
def test_ctrl_c_mid_run_leaves_nothing_behind(root, tmp_path, system):
    data = inventory.local_inventory(servers=2, clients=1, prefix="ctb", subnet="10.79.2")
    inv_path = tmp_path / "own.yml"
    inv_path.write_text(yaml.safe_dump(data))
    inv = inventory.load(inv_path)
    out = tmp_path / "run"
    proc = subprocess.Popen([*HARNESS, "run", "--system", system, "--duration", "60", "--warmup", "0",
                             "--inventory", str(inv_path), "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        log = out / "logs" / "client-1.log"
        while not (log.exists() and log.stat().st_size > 0 and (out / "clients").exists()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never started its client"
            time.sleep(0.1)
        time.sleep(1.0)  # in the middle of the measured window
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert leftovers(inv) == {"namespaces": [], "processes": {}}
    names = {i.name for h in inv.hosts for i in h.interfaces}
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not [line for line in ps.splitlines() if any(n in line for n in names)]
    # the run keeps its directory, with a summary that says it did not finish
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "failed" and s["error"] == "interrupted (Ctrl-C)" and s["system"] == system, s


@pytest.fixture
def public_dir():
    """A directory of its own that user nobody may enter (pytest's
    temporary directories are private to root); removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="dint-nobody-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def as_nobody(cmd: list[str], public: Path) -> subprocess.CompletedProcess:
    """Runs cmd as user nobody from the checkout, seen through a bind mount
    on a directory nobody can enter, in a mount namespace of the command's
    own (gone when it exits): a checkout under /root (mode 700), as CI's may
    be, is otherwise out of nobody's reach, though its files are readable
    by all. The checkout's Python (its .venv) runs through the same view."""
    view = public / "checkout"
    view.mkdir(exist_ok=True)
    exe = Path(sys.executable)
    if exe.is_relative_to(ROOT):
        exe = view / exe.relative_to(ROOT)
    cmd = [str(exe) if c == sys.executable else c for c in cmd]
    script = 'mount --bind "$1" "$2" && cd "$2" && shift 2 && exec runuser -u nobody -- "$@"'
    return subprocess.run(["unshare", "--mount", "--", "sh", "-c", script, "sh", str(ROOT), str(view), *cmd],
                          capture_output=True, text=True)


@pytest.mark.parametrize("cmd", [
    ["bash", "scripts/setup.sh"], [sys.executable, "-m", "harness", "preflight"],
    [sys.executable, "-m", "harness", "reproduce", "--run-id", "as-nobody"],
    [sys.executable, "-m", "harness", "run", "--system", "kernel", "--out", "results/as-nobody"]],
    ids=["setup", "preflight", "reproduce", "run"])
def test_without_root_one_line_says_what_is_missing(root, public_dir, cmd):
    readable = as_nobody(["test", "-r", "harness/__init__.py"], public_dir)
    if readable.returncode != 0:
        msg = f"user nobody cannot read the checkout's files {readable.stderr.strip()}".rstrip()
        if os.environ.get("CI"):
            pytest.fail(f"{msg}, and CI is set: this test may not skip in CI")
        pytest.skip(msg)
    p = as_nobody(cmd, public_dir)
    assert p.returncode != 0
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "root" in lines[0], p.stderr
    assert "Traceback" not in p.stderr
    assert not (ROOT / "results" / "as-nobody").exists()  # nothing made
