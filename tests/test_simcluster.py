"""The cluster path on a simulated cluster: hosts that share nothing with the
controller but this machine's operating system, reached only over SSH
(harness/simcluster.py). Brought up once for the module, set up with
`deploy setup`, run on like a local testbed (with faults too, injected by
the client host's agent), and taken down without a trace."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from harness import ROOT, faults, inventory
from harness import testbed as testbeds
from harness.testbed import leftovers, netns_pids, xdp_prog_id

from conftest import need_root, worker_index, worker_subnet

HARNESS = [sys.executable, "-m", "harness"]
# The module runs in one xdist worker (conftest.py keeps a module's tests
# together); should it ever be split, each worker's cluster has names and
# addresses of its own all the same: the prefix with the worker's number,
# both /24s two apart per worker (the management /24 is the next one by
# default).
_WORKER = worker_index()
SIM_PREFIX = os.environ.get("DINT_TEST_SIM_PREFIX", "tsim") + (str(_WORKER) if _WORKER else "")
SIM_SUBNET = worker_subnet(os.environ.get("DINT_TEST_SIM_SUBNET", "10.74.0"), _WORKER, stride=2)
SIM_MGMT = worker_subnet(os.environ.get("DINT_TEST_SIM_MGMT", "10.74.1"), _WORKER, stride=2)
FAIL_S = 3.0


@pytest.fixture(scope="module")
def sim_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "sim.yml"
    path.write_text(inventory.dump(inventory.sim_inventory(3, 1, 2, prefix=SIM_PREFIX, subnet=SIM_SUBNET,
                                                           mgmt=SIM_MGMT)))
    return path


@pytest.fixture(scope="module")
def sim(sim_path):
    need_root()
    inv = inventory.load(sim_path)
    tb = testbeds.Testbed(inv)
    tb.up()
    assert not tb.up(), "a second up of a testbed that is up does nothing"
    yield tb
    tb.down()
    left = leftovers(inv)
    assert left == {"namespaces": [], "processes": {}}, f"the simulated cluster left behind: {left}"
    # nothing of it either: sshd processes, connection masters, mounts
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"/run/dint-bench/sim-{SIM_PREFIX}/" not in ps, ps
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"sim-{SIM_PREFIX}" not in mounts


def _cmdline(pid: int) -> bytes:
    """A process's command line, spaces between its words; b"" once it is
    gone (a process listed a moment ago may have exited since)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def _ssh(tb, host, *cmd, known_hosts=None, check=False):
    argv = tb.sim.ssh_command(host, *cmd)
    if known_hosts:
        argv = [a.replace(str(tb.sim.known_hosts), str(known_hosts)) for a in argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture(scope="module")
def deployed(sim, sim_path, tmp_path_factory):
    """deploy setup: every host from nothing (or from what its disk kept)."""
    t = time.monotonic()
    p = subprocess.run([*HARNESS, "deploy", "setup", "--inventory", str(sim_path),
                        "--out", str(tmp_path_factory.mktemp("deploy"))],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    print(f"deploy setup: {time.monotonic() - t:.1f} s")


def test_hosts_are_reached_over_ssh_with_their_keys_checked(sim, tmp_path):
    inv = sim.inv
    for host in inv.hosts:
        p = _ssh(sim, host, "ip", "-br", "addr")
        assert p.returncode == 0, p.stderr
        # the host's experiment interfaces and its management one, nothing else
        names = {line.split()[0].split("@")[0] for line in p.stdout.splitlines()}
        assert names == {"lo", "mgmt0", *(i.name for i in host.interfaces)}
    # another key for s0's address: refused, not accepted
    other = tmp_path / "known_hosts"
    lines = sim.sim.known_hosts.read_text().splitlines()
    s0, s1 = inv.servers[0], inv.servers[1]
    key_of_s1 = next(line for line in lines if line.startswith(s1.mgmt + " ")).split(" ", 1)[1]
    other.write_text(f"{s0.mgmt} {key_of_s1}\n")
    p = _ssh(sim, s0, "true", known_hosts=other)
    assert p.returncode != 0 and "Host key verification failed" in p.stderr, p.stderr


def test_a_host_has_its_own_files(sim):
    """The project's path, /tmp and /run/dpdk of a host are its own: what one
    host writes there no other host and not the controller sees."""
    s0, s1 = sim.inv.servers[0], sim.inv.servers[1]
    mark = f"dint-sim-test-{os.getpid()}"
    for path in ("/tmp", str(ROOT), "/run/dpdk"):
        _ssh(sim, s0, "touch", f"{path}/{mark}", check=True)
        try:
            assert not Path(path, mark).exists(), f"{path} of s0 is the controller's"
            assert _ssh(sim, s1, "test", "-e", f"{path}/{mark}").returncode == 1, f"{path} of s0 is s1's"
        finally:
            _ssh(sim, s0, "rm", "-f", f"{path}/{mark}")
    # the controller's SSH key is not there (deploy setup copies the
    # checkout's files, not what git ignores)
    assert _ssh(sim, s1, "test", "-e", f"{ROOT}/.testbed").returncode == 1


def test_deploy_setup_makes_every_host_ready(sim, deployed):
    for host in sim.inv.hosts:
        p = _ssh(sim, host, f"{ROOT}/.venv/bin/python", "-c", "import harness, bcc; print(harness.__file__)")
        assert p.returncode == 0 and p.stdout.strip() == f"{ROOT}/harness/__init__.py", p.stderr
        assert _ssh(sim, host, "test", "-x", f"{ROOT}/build/kernel_server").returncode == 0


def test_a_host_that_runs_another_checkout_is_refused(sim, deployed, sim_path, tmp_path):
    """A run starts only when every host runs the controller's checkout (the
    id deploy setup left there): a host with another is named, with the fix."""
    from harness.deploy import CHECKOUT_ID_FILE, checkout_id
    s1 = sim.inv.servers[1]
    assert _ssh(sim, s1, "cat", str(CHECKOUT_ID_FILE)).stdout.strip() == checkout_id()
    _ssh(sim, s1, "sh", "-c", f"echo 0123456789abcdef > {CHECKOUT_ID_FILE}", check=True)
    try:
        p = subprocess.run([*HARNESS, "run", "--system", "kernel", "--duration", "1", "--inventory", str(sim_path),
                            "--out", str(tmp_path / "stale")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        _ssh(sim, s1, "sh", "-c", f"echo {checkout_id()} > {CHECKOUT_ID_FILE}", check=True)
    assert p.returncode == 1, p.stderr
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and f"{s1.name} has checkout 0123456789abcdef" in err[0] and "deploy setup" in err[0], err
    # s1 alone is named (read from the message's list of hosts, not found
    # as a substring: the controller's checkout id before it is hex, and
    # may hold "c0")
    named = re.search(r"\(checkout [0-9a-f]+\): (.*?) (?:has|have) ", err[0])
    assert named and named.group(1) == s1.name, err
    # nothing was started anywhere
    for h in sim.inv.hosts:
        assert not [q for q in netns_pids(h.sim_netns) if b"kernel_server" in _cmdline(q)], h.name


def _run(inv_path: Path, out: Path, system: str, workload: str, *extra: str) -> dict:
    p = subprocess.run([*HARNESS, "run", "--system", system, "--workload", workload, "--duration", "1",
                        "--warmup", "0.3", "--napi", "inline", "--inventory", str(inv_path), "--out", str(out),
                        *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads((out / "summary.json").read_text())


# echo, and a transactional workload with its consistency check, on every
# system: the same fields both ways
POINTS = [("kernel", "echo"), ("dint", "smallbank"), ("bypass", "smallbank")]


@pytest.mark.parametrize("system,workload", POINTS)
def test_a_run_on_the_simulated_cluster_matches_the_local_testbed(deployed, sim_path, testbed, test_inventory_path,
                                                                  tmp_path, system, workload):
    local = _run(test_inventory_path, tmp_path / "local", system, workload)
    remote = _run(sim_path, tmp_path / "sim", system, workload)
    for s in (local, remote):
        assert s["errors"] == 0 and s["instrument_check"]["match"], s["instrument_check"]
        assert all(st["rx"] > 0 and st.get("clean", True) for st in s["servers"].values()), s["servers"]
        # measured on the hosts, both ways
        assert s["server_cpu_us_per_op"] is not None and s["server_cpu_us_per_op"] > 0, s["server_cost"]
    assert set(local) == set(remote)
    assert local["config"] | {"inventory": None} == remote["config"] | {"inventory": None}
    assert set(local["servers"]) == set(remote["servers"])
    assert {k: set(v) for k, v in local["servers"].items()} == {k: set(v) for k, v in remote["servers"].items()}
    if workload != "echo":
        for s in (local, remote):
            assert s["consistency"]["checked"] and s["consistency"]["violations"] == 0, s["consistency"]
        assert set(local["transactions"]) == set(remote["transactions"])
    # the outputs came back from the hosts
    for server in ("s0", "s1", "s2"):
        assert (tmp_path / "sim" / "logs" / f"server-{server}.log").exists()
    assert (tmp_path / "sim" / "clients" / "client-1.json").exists()


def test_faults_on_the_simulated_cluster_are_injected_on_the_client_host_and_leave_nothing(deployed, sim, sim_path,
                                                                                          tmp_path):
    """--faults on a cluster: the host agent attaches the injector on the
    client host over SSH, every datagram is explained by its counters (the
    links' drops not measured, and said so), and the agent takes it all off
    again."""
    t = time.monotonic()
    s = _run(sim_path, tmp_path / "faults", "kernel", "kv", "--keys", "2000",
             "--faults", "reply-loss=5%,dup=5%,late-dup=5%,late-delay=10ms-100ms")
    print(f"a 1 s point with faults: {time.monotonic() - t:.1f} s")
    f, check = s["faults"], s["instrument_check"]
    req, rep = f["counters"]["requests"], f["counters"]["replies"]
    assert "host agent" in f["where"]["attached_by"]
    assert req["seen"] == check["client_sent"] > 100 and rep["seen"] == check["server_tx"]
    assert req["duplicated"] > 0 and req["late_duplicated"] > 0 and rep["dropped"] > 0, f["counters"]
    assert req["dropped"] == req["reordered"] == 0
    late = f["delay_line"]["late"]
    assert late["released"] == req["late_duplicated"] and 9 < late["lateness_ms"]["min"], late
    assert f["delay_line"]["qdisc"]["c0"]["backlog_packets"] == 0
    assert check["match"] is True, check
    assert check["link_drops"]["requests"] is None and "not measured" in check["link_drops_not_measured"]
    # nothing of the injector is left on the client host
    cli = sim.inv.clients[0]
    links = {i["ifname"]: i for i in json.loads(_ssh(sim, cli, "ip", "-j", "link", "show", check=True).stdout)}
    assert not set(faults.delay_line_names(cli)) & set(links), sorted(links)
    assert {i.name: ((links[i.name].get("xdp") or {}).get("prog") or {}).get("name") for i in cli.interfaces} == \
        {i.name: "xdp_pass" for i in cli.interfaces}
    assert "clsact" not in _ssh(sim, cli, "tc", "qdisc", "show", check=True).stdout
    pins = faults.pin_dir(faults.pin_key(cli))
    assert str(pins) == f"/sys/fs/bpf/dint-faults/{cli.sim_netns}"
    assert _ssh(sim, cli, "test", "-e", str(pins)).returncode == 1


def test_a_server_killed_on_a_simulated_host_fails_the_run(deployed, sim, sim_path, tmp_path):
    host = sim.inv.servers[1]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*HARNESS, "run", "--system", "kernel", "--workload", "kv", "--keys", "2000",
                             "--duration", "10", "--warmup", "0.3", "--inventory", str(sim_path), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []

    def read():
        for line in proc.stderr:
            lines.append((time.monotonic(), line.rstrip("\n")))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # the clients run (their process on the client host), then the kill
        cli = sim.inv.clients[0]
        deadline = time.monotonic() + 120
        while not any(b"harness.loadgen" in _cmdline(p) for p in netns_pids(cli.sim_netns)):
            assert time.monotonic() < deadline and proc.poll() is None, "the clients did not start"
            time.sleep(0.1)
        time.sleep(1.0)
        victim = next(p for p in netns_pids(host.sim_netns)
                      if re.search(rb"/kernel_server ", _cmdline(p)))
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    reader.join(5)
    err = "\n".join(line for _, line in lines)
    assert rc == 1, err
    named = [t for t, line in lines if f"kernel server on {host.name} died during the run" in line]
    assert named and named[0] - killed <= FAIL_S, err
    assert f"on host {host.name})" in err and "ready" in err, err  # its log lines, from the host
    print(f"reported {named[0] - killed:.2f} s after the kill")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["phase"] == "a server died"
    # nothing of the run is left on the hosts
    for h in sim.inv.hosts:
        left = [p for p in netns_pids(h.sim_netns) if _cmdline(p) and b"sshd" not in _cmdline(p)]
        assert left == [], (h.name, left)
        for iface in h.interfaces:
            prog = xdp_prog_id(h.sim_netns, iface.name)
            assert prog is None or h.role == "client", (h.name, iface.name)


def test_a_colocation_neighbour_on_a_simulated_host_is_measured_from_its_fetched_log(deployed, sim_path, tmp_path):
    """The neighbours' logs are the hosts' until their stop fetches them: the
    colocation figures come from the fetched logs."""
    s = _run(sim_path, tmp_path / "neighbour", "kernel", "kv", "--keys", "2000", "--neighbour")
    hosts = s["neighbour"]["hosts"]
    assert set(hosts) == {"s0", "s1", "s2"}
    assert all(h["idle_units_per_s"] and h["window_units_per_s"] for h in hosts.values()), hosts
    for name in hosts:
        assert (tmp_path / "neighbour" / "logs" / f"neighbour-{name}.log").exists()


def test_a_series_on_the_simulated_cluster_brings_each_point_s_checkpoint_back(deployed, sim_path, tmp_path):
    """A sweep served by one start of the servers on hosts that share
    nothing: the clients run both points in one process each and take the
    checkpoint between them in band (no playbook run), each point's
    checkpoint (dumps, logs) comes back from the hosts with the servers'
    stop, and each point gets its own counters, consistency verdict and
    results."""
    from harness.config import RunConfig
    from harness.run import execute_series
    points = [(RunConfig(system="dint", workload="smallbank", cc="2pl", concurrency=c, duration_s=0.6, warmup_s=0.2,
                         inventory=str(sim_path)).validate(), tmp_path / f"c{c}") for c in (2, 8)]
    outcomes = execute_series(points, tmp_path / "servers", show_progress=False)
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    for (_, out), s in zip(points, outcomes):
        assert s["consistency"]["checked"] and s["consistency"]["violations"] == 0, s["consistency"]
        assert s["instrument_check"]["match"], s["instrument_check"]
        assert s["server_cpu_us_per_op"] is not None and s["server_cpu_us_per_op"] > 0, s["server_cost"]
        for server in ("s0", "s1", "s2"):
            assert (out / "logs" / f"store-{server}.snap").stat().st_size > 0
        assert not (out / "ansible" / "artifacts").exists()
    assert outcomes[1]["series"]["index"] == 2
    assert (tmp_path / "c8" / "logs" / "client-1.log").read_text().count('"phase": "done"') == 2
