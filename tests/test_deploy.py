"""Deployment through Ansible (deploy/, harness/deploy.py): the playbooks
and every role's tasks pass a syntax check, the inventories parse as
Ansible inventories, and the process module's life cycle (ready line,
failure before ready, counters on SIGUSR1, stop, exit codes) works through
the same playbooks the runs use. No root needed: these processes run on
this machine without namespaces."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import HarnessError, ROOT, inventory
from harness.deploy import DEPLOY_DIR, PLAYBOOKS, Deployer, ProcSpec
from harness.sh import in_netns

BIN = Path(sys.executable).parent
ENV = {**os.environ, "ANSIBLE_CONFIG": str(DEPLOY_DIR / "ansible.cfg"), "PATH": f"{BIN}:{os.environ['PATH']}"}
INVENTORIES = [ROOT / "inventory" / "local.yml", ROOT / "inventory" / "cluster.example.yml"]


def ansible(tool: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, cwd=DEPLOY_DIR, env=ENV)


@pytest.mark.parametrize("playbook", PLAYBOOKS)
@pytest.mark.parametrize("inv", INVENTORIES, ids=["local", "cluster"])
def test_playbook_syntax(playbook, inv):
    p = ansible("ansible-playbook", "--syntax-check", "-i", str(inv), str(DEPLOY_DIR / playbook))
    assert p.returncode == 0, p.stdout + p.stderr


def test_every_role_task_file_syntax(tmp_path):
    """The playbooks include some task files by name at run time, which a
    syntax check of the playbook does not read: here each is imported."""
    tasks = []
    for f in sorted((DEPLOY_DIR / "roles").glob("*/tasks/*.yml")):
        tasks.append({"name": f"{f.parent.parent.name}/{f.name}", "ansible.builtin.import_role":
                      {"name": f.parent.parent.name, "tasks_from": f.name}})
    assert len(tasks) >= 8
    pb = tmp_path / "all-tasks.yml"
    pb.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "vars": {"procs": []}, "tasks": tasks}]))
    p = ansible("ansible-playbook", "--syntax-check", "-i", str(INVENTORIES[0]), str(pb))
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("path", INVENTORIES, ids=["local", "cluster"])
def test_inventories_parse_for_ansible_and_the_harness(path):
    p = ansible("ansible-inventory", "-i", str(path), "--list")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert len(data["servers"]["hosts"]) == 3 and data["clients"]["hosts"]
    hv = data["_meta"]["hostvars"]
    inv = inventory.load(path)
    if inv.local:
        assert all(hv[h]["ansible_connection"] == "local" and hv[h]["netns"] for h in hv)
    else:
        assert all("netns" not in hv[h] and hv[h]["ansible_host"] for h in hv)
        assert all(h.dpdk_port for h in inv.servers)
    text = path.read_text().lower()
    for secret in ("password", "ansible_ssh_pass", "ansible_become_pass", "private_key"):
        assert f"{secret}:" not in text


def test_test_inventory_reaches_localhost(test_inventory_path):
    p = ansible("ansible-inventory", "-i", str(test_inventory_path), "--list")
    hv = json.loads(p.stdout)["_meta"]["hostvars"]
    assert {v["ansible_connection"] for v in hv.values()} == {"local"}


def _spec(d: Path, host: str, name: str, script: str, **kw) -> ProcSpec:
    return ProcSpec(host, name, ["sh", "-c", script], d / "logs" / f"{name}.log", d / "pids" / f"{name}.pid", **kw)


def test_process_life_cycle_through_the_playbooks(test_inventory_path, tmp_path):
    inv = inventory.load(test_inventory_path)
    dep = Deployer(inv, tmp_path / "ansible")
    s0, c0 = inv.servers[0].name, inv.clients[0].name
    # a server: ready, a stats line on SIGUSR1, a last one at SIGTERM
    server = _spec(tmp_path, s0, "srv", r"""trap 'echo "stats {\"n\": 1}"' USR1; trap 'echo "stats {\"n\": 2}"; exit 0' TERM; """
                   "echo ready; while :; do sleep 0.05; done", ready="ready", timeout=10)
    dep.start_servers([server])
    pid = server.pid()
    assert pid and "ready" in server.log.read_text()
    dep.server_stats([server])
    assert server.stats_lines() == [{"n": 1}]
    dep.stop_servers([server])
    assert server.pid() is None and server.stats_lines()[-1] == {"n": 2}
    dep.stop_servers([server])  # stopping again is harmless
    # one that dies before it is ready: its exit code and last words
    bad = _spec(tmp_path, s0, "bad", "echo cannot bind; exit 3", ready="ready", timeout=10)
    with pytest.raises(HarnessError, match=r"bad exited with code 3 before it was ready .*cannot bind"):
        dep.start_servers([bad])
    # clients: run to their end, exit codes recorded
    ok = _spec(tmp_path, c0, "cli-ok", "echo progress {}; exit 0", rc_file=tmp_path / "ok.rc", timeout=20)
    fail = _spec(tmp_path, c0, "cli-fail", "exit 5", rc_file=tmp_path / "fail.rc", timeout=20)
    dep.run_clients([ok, fail]).wait()
    assert (ok.rc_file.read_text().strip(), fail.rc_file.read_text().strip()) == ("0", "5")
    # every playbook run's event log is kept
    runs = sorted(p.name for p in (tmp_path / "ansible" / "artifacts").iterdir())
    assert runs[0] == "01-servers-start" and len(runs) == 6
    for r in runs:
        assert list((tmp_path / "ansible" / "artifacts" / r / "job_events").glob("*.json"))


def test_a_running_client_is_stopped(test_inventory_path, tmp_path):
    inv = inventory.load(test_inventory_path)
    dep = Deployer(inv, tmp_path / "ansible")
    slow = _spec(tmp_path, inv.clients[0].name, "slow", "sleep 60", rc_file=tmp_path / "slow.rc", timeout=90)
    play = dep.run_clients([slow])
    for _ in range(200):
        if slow.pid():
            break
        play.ended.wait(0.05)
    assert slow.pid()
    play.cancel()
    dep.stop_clients([slow])
    assert slow.pid() is None


def test_setup_playbook_on_the_local_testbed(root, test_inventory_path, tmp_path):
    """setup.yml on a local inventory: once for the machine (its hosts are
    one), and idempotent on a machine `make setup` already prepared."""
    p = subprocess.run([sys.executable, "-m", "harness", "deploy", "setup", "--inventory", str(test_inventory_path),
                        "--out", str(tmp_path / "setup")], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    art = next((tmp_path / "setup" / "artifacts").iterdir())
    assert (art / "status").read_text().strip() == "successful"
    events = [json.loads(f.read_text()) for f in (art / "job_events").glob("*.json")]
    ran = {e["event_data"]["host"] for e in events if e["event"] == "runner_on_ok"}
    assert len(ran) == 1, ran


def test_a_start_without_the_check_does_not_repeat_an_earlier_ones(testbed, test_inventory, tmp_path):
    """Processes started beside running servers (the colocation neighbour)
    are not checked against them: ansible-runner keeps the extra vars of a
    run's earlier plays, and the servers' check must not come back."""
    dep = Deployer(test_inventory, tmp_path / "ansible")
    s0 = test_inventory.servers[0]

    def spec(name):
        return ProcSpec(s0.name, name, in_netns(s0.netns, ["sh", "-c", "echo ready; exec sleep 30"]),
                        tmp_path / "logs" / f"{name}.log", tmp_path / "pids" / f"{name}.pid", ready="ready",
                        timeout=10, grace=1.0)
    first, second = spec("first"), spec("second")
    try:
        dep.start_servers([first], check=True)
        dep.start_servers([second])
        assert first.pid() and second.pid()
    finally:
        dep.stop_servers([first, second])


def test_a_cluster_hosts_inputs_are_staged_in_one_archive_and_unpacked_at_their_paths(tmp_path):
    """deploy stage(): the directories and small inputs of a host's
    processes in one archive that dint_proc's first start unpacks where they
    were (deploy/module_utils/dint_stage.py); a large input is left to a copy
    of its own."""
    import base64
    from harness.deploy import STAGE_INLINE_MAX
    inv = inventory.load(INVENTORIES[1])
    small, large = tmp_path / "in" / "spec.json", tmp_path / "data" / "big.snap"
    small.parent.mkdir()
    large.parent.mkdir()
    small.write_text('{"a": 1}')
    large.write_bytes(b"x" * (STAGE_INLINE_MAX + 1))
    procs = [_spec(tmp_path, "c0", "client-1", "true", inputs=(small, large), collect=(tmp_path / "out" / "r.json",))]
    staged = Deployer(inv, tmp_path / "ansible").stage(procs)
    assert set(staged) == {"c0"} and staged["c0"]["copies"] == [str(large)]
    # outputs the controller does not have go on the host (an earlier run's)
    stale = tmp_path / "out" / "r.json"
    assert staged["c0"]["absent"] == sorted([str(procs[0].log), str(stale)])
    small.unlink()
    stale.parent.mkdir()
    stale.write_text("an earlier run's")
    res = _stage_module(tmp_path, staged["c0"]["archive"], staged["c0"]["absent"])
    assert not res.get("failed"), res
    assert small.read_text() == '{"a": 1}' and oct(small.stat().st_mode & 0o777) == "0o644"
    for d in ("logs", "pids", "out"):
        assert (tmp_path / d).is_dir()
    assert not stale.exists() and res["staged"]["removed"] == 1
    assert res["staged"]["files"] == 1
    assert staged["c0"]["archive"] not in json.dumps(res)  # not echoed into the event logs
    # an archive naming a path outside its members' normal form is refused whole
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(str(tmp_path / "x" / ".." / "escape").lstrip("/"))
        tar.addfile(info, io.BytesIO(b""))
    res = _stage_module(tmp_path, base64.b64encode(buf.getvalue()).decode(), [])
    assert res.get("failed") and "normal paths" in res["msg"] and not (tmp_path / "escape").exists(), res
    # and nothing started (the first start's line alone in the log)
    assert (tmp_path / "logs" / "staged.log").read_text().count("# true") == 1


def _stage_module(d: Path, archive: str, absent: list[str]) -> dict:
    """dint_proc's start of a process that does nothing, with a stage, run
    through ansible on localhost (as a cluster host runs it)."""
    args = json.dumps({"name": "staged", "state": "started", "cmd": ["true"], "log": str(d / "logs" / "staged.log"),
                       "pidfile": str(d / "pids" / "staged.pid"), "stage": archive, "absent": absent})
    p = ansible("ansible", "localhost", "-c", "local", "-m", "dint_proc", "-a", args, "-o")
    out = p.stdout.strip()
    assert " | " in out, p.stdout + p.stderr
    return {**json.loads(out.split(" => ", 1)[1]), "failed": " | FAILED" in out}


def test_the_clients_stop_does_not_repeat_the_servers_cleanup(testbed, test_inventory, tmp_path):
    """A run stopped early stops its clients while the fault injector is
    still on the client ends: the clients' play must not run the check or
    cleanup an earlier servers play was given (ansible-runner keeps a run's
    extra vars), which takes every other program and filter off them."""
    dep = Deployer(test_inventory, tmp_path / "ansible")
    s0, c0 = test_inventory.servers[0], test_inventory.clients[0]
    end = c0.interfaces[0].name
    tc = ["tc", "-n", c0.netns]
    proc = ProcSpec(s0.name, "first", in_netns(s0.netns, ["sh", "-c", "echo ready; exec sleep 30"]),
                    tmp_path / "logs" / "first.log", tmp_path / "pids" / "first.pid", ready="ready", timeout=10,
                    grace=1.0)
    try:
        dep.start_servers([proc], check=True)
        subprocess.run([*tc, "qdisc", "add", "dev", end, "clsact"], check=True)
        subprocess.run([*tc, "filter", "add", "dev", end, "egress", "bpf", "bytecode", "1,6 0 0 4294967295,"],
                       check=True)  # (a classic BPF filter: this kernel has neither matchall nor gact)
        dep.stop_clients([])
        out = subprocess.run([*tc, "filter", "show", "dev", end, "egress"], capture_output=True, text=True).stdout
        assert "bytecode" in out
    finally:
        subprocess.run([*tc, "qdisc", "del", "dev", end, "clsact"], capture_output=True)
        dep.stop_servers([proc])
