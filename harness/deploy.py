"""Deployment through Ansible (the playbooks in deploy/), driven with
ansible-runner. One path for every inventory: the hosts of the local
testbed are localhost (`ansible_connection: local`) and their commands run
in their network namespace; a cluster's hosts are reached over SSH. The
control plane stays in Python: it computes every command line
(harness/systems.py, harness/run.py) and passes them to the playbooks as
extra vars; the playbooks start, wait for, signal and stop the processes,
and on a cluster copy their inputs and fetch their outputs back to the
same paths.

Each playbook run keeps its event log (ansible-runner's artifacts: stdout,
job_events/*.json, the command line, status) under the deployer's
directory, which for a run is <out>/ansible/."""
from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import ROOT, HarnessError
from .inventory import DEFAULT_INVENTORY, Host, Inventory
from .watch import live_pid, log_tail

DEPLOY_DIR = ROOT / "deploy"
PLAYBOOKS = ("setup.yml", "servers.yml", "clients.yml")
# How often ansible-runner looks at a cancel request while a playbook runs.
POLL_S = 0.1


def _quiet_logging() -> None:
    import logging
    logging.getLogger("ansible-runner").setLevel(logging.WARNING)


@dataclass
class ProcSpec:
    """One long-running process on a host, as the playbooks take it."""
    host: str
    name: str
    cmd: list[str]
    log: Path
    pidfile: Path
    ready: str | None = None
    rc_file: Path | None = None
    timeout: float = 90.0
    grace: float = 5.0
    inputs: tuple[Path, ...] = ()   # copied to a cluster host before it starts
    collect: tuple[Path, ...] = ()  # fetched from a cluster host after it stops

    def var(self) -> dict:
        d = {"name": self.name, "cmd": [str(c) for c in self.cmd], "log": str(self.log),
             "pidfile": str(self.pidfile), "timeout": self.timeout, "grace": self.grace,
             "inputs": [str(p) for p in self.inputs],
             "collect": [str(p) for p in (self.log, *self.collect)]}
        if self.ready:
            d["ready"] = self.ready
        if self.rc_file:
            d["rc_file"] = str(self.rc_file)
            d["collect"].append(str(self.rc_file))
        return d

    # -- what the controller can see of it (the local testbed) -------------
    def pid(self) -> int | None:
        """The live process's pid, from its pid file (local hosts only)."""
        return live_pid(self.pidfile)

    def tail(self, lines: int = 8) -> str:
        return log_tail(self.log, lines)

    def tagged_lines(self, kinds: tuple[str, ...] = ("stats", "checkpoint")) -> list[tuple[str, dict | None]]:
        """Every `<kind> {json}` line in its log, in order, as (kind, json)
        (None for one that does not parse)."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        out: list[tuple[str, dict | None]] = []
        for line in lines:
            kind, _, rest = line.partition(" ")
            if kind in kinds:
                try:
                    out.append((kind, json.loads(rest)))
                except ValueError:
                    out.append((kind, None))
        return out

    def stats_lines(self) -> list[dict | None]:
        """Every `stats {json}` line in its log (None for one that does not parse)."""
        return [line for _, line in self.tagged_lines(("stats",))]


def ansible_inventory(inv: Inventory) -> dict:
    """The inventory as Ansible takes it: the file itself; a local one that
    does not say how to reach its hosts gets the local connection and the
    harness's own Python."""
    data = json.loads(json.dumps(inv.raw))
    if inv.local:
        hvars = data["all"].setdefault("vars", {}) or {}
        data["all"]["vars"] = hvars
        hvars.setdefault("ansible_connection", "local")
        hvars.setdefault("ansible_python_interpreter", sys.executable)
    return data


class Deployer:
    """Runs the playbooks in deploy/ for one inventory, keeping every
    playbook run's event log under `pdir` (ansible-runner's private data
    directory)."""

    def __init__(self, inv: Inventory, pdir: Path):
        self.inv = inv
        self.pdir = Path(pdir).resolve()
        # numbered in order; a directory reused (a resumed run) keeps what it had
        arts = self.pdir / "artifacts"
        self.seq = len(list(arts.iterdir())) if arts.is_dir() else 0
        self.timings: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._inventory_file: Path | None = None

    @property
    def local(self) -> bool:
        return self.inv.local

    def inventory_file(self) -> Path:
        if self._inventory_file is None:
            self.pdir.mkdir(parents=True, exist_ok=True)
            path = self.pdir / "inventory.yml"
            path.write_text(yaml.safe_dump(ansible_inventory(self.inv), sort_keys=False))
            self._inventory_file = path
        return self._inventory_file

    def common_vars(self) -> dict:
        return {"dint_root": str(ROOT)}

    # -- one playbook run --------------------------------------------------
    def start_playbook(self, playbook: str, label: str, extravars: dict, limit: str | None = None,
                       procs: list[ProcSpec] = ()) -> "Play":
        """Starts a playbook run. Every var of PLAY_VARS is given (its
        default where extravars has none): ansible-runner keeps the extra
        vars of earlier plays in the run's directory, and one not given
        again would act anew. On a cluster, the hosts of the processes a
        play starts (procs) get their directories and
        inputs staged (stage()), and the outputs procs' hosts send back are
        unpacked when the play ends."""
        import ansible_runner
        _quiet_logging()
        with self._lock:  # two plays may start at once (a run stopping its clients and servers together)
            self.seq += 1
            ident = f"{self.seq:02d}-{label}"
        extravars = {**PLAY_VARS, **extravars}
        play = Play(self, playbook, ident)
        if not self.local and procs:
            play.packs = [pack_path(h, ps) for h, ps in self._by_host(procs).items()]
            if extravars.get("dint_action") in ("start", "run"):
                extravars["dint_stage"] = self.stage(procs)
        env = {"ANSIBLE_CONFIG": str(DEPLOY_DIR / "ansible.cfg"),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               # module results are plain data: no warning about interpreter discovery
               "ANSIBLE_PYTHON_INTERPRETER": os.environ.get("ANSIBLE_PYTHON_INTERPRETER", "auto_silent")}
        thread, runner = ansible_runner.run_async(
            private_data_dir=str(self.pdir), project_dir=str(DEPLOY_DIR), playbook=str(DEPLOY_DIR / playbook),
            inventory=str(self.inventory_file()), extravars={**self.common_vars(), **extravars},
            limit=limit, ident=ident, envvars=env, quiet=True, cancel_callback=play.cancelled,
            event_handler=play.on_event,
            settings={"pexpect_timeout": POLL_S, "suppress_ansible_output": True})
        play.thread, play.runner = thread, runner
        return play

    def run_playbook(self, playbook: str, label: str, extravars: dict, limit: str | None = None,
                     procs: list[ProcSpec] = ()) -> "Play":
        """Runs a playbook to its end; a failure raises HarnessError with
        what failed where. Interrupted (Ctrl-C), the playbook is killed."""
        play = self.start_playbook(playbook, label, extravars, limit, procs)
        play.wait()
        return play

    def stage(self, procs: list[ProcSpec]) -> dict[str, dict]:
        """{host: {archive, copies}} for a cluster's hosts
        (deploy/library/dint_stage.py): the directories of their processes'
        logs, pid files, inputs and outputs and the small input files in one
        tar archive (base64) unpacked at / by one module run, the outputs at
        the same paths that the controller does not have (an earlier run's,
        in a results directory used again) to remove, and the large input
        files (snapshots) to copy. A task per directory or file costs
        round trips to the host for each."""
        out = {}
        for host, ps in self._by_host(procs).items():
            files = sorted({f for p in ps for f in p["inputs"]})
            dirs = sorted({str(Path(f).parent) for p in ps for f in (p["log"], p["pidfile"], *p["inputs"],
                                                                       *p["collect"])})
            try:
                small = [f for f in files if Path(f).stat().st_size <= STAGE_INLINE_MAX]
            except OSError as e:
                raise HarnessError(f"cannot stage the inputs of host {host}: {e}") from None
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for name in dirs:
                    info = tarfile.TarInfo(name.lstrip("/"))
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
                    tar.addfile(info)
                for name in small:
                    tar.add(name, arcname=name.lstrip("/"), recursive=False)
            outputs = sorted({f for p in ps for f in (p["log"], p.get("rc_file"), *p["collect"]) if f})
            out[host] = {"archive": base64.b64encode(buf.getvalue()).decode(),
                         "copies": [f for f in files if f not in small],
                         # the host's outputs start where the controller's do
                         "absent": [f for f in outputs if not Path(f).exists()]}
        return out

    # -- the processes of a run --------------------------------------------
    @staticmethod
    def _by_host(procs: list[ProcSpec]) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for p in procs:
            out.setdefault(p.host, []).append(p.var())
        return out

    def start_servers(self, procs: list[ProcSpec], build: list[str] | None = None, label: str = "servers-start",
                      check: bool = False):
        """Builds what they run, starts them and waits for each one's ready
        line. With check, every host is first checked for what the harness
        did not start (residue()), and the start fails naming it; but not
        right after a stop this harness found clean (own_stops_trusted)."""
        key = _inv_key(self.inv)
        if check:  # the servers' start (not a neighbour's)
            if key in _TRUSTED:
                check = _TRUSTED[key] != "clean"
                _TRUSTED[key] = "started"  # until its stop says how it ended
            self.checked = check
        play = self.start_playbook("servers.yml", label, {
            "dint_action": "start", "dint_build": build or [], "dint_procs": self._by_host(procs),
            "dint_residue": residue(self.inv) if check else {}}, procs=procs)
        try:
            play.wait()
        except HarnessError:
            results = play.results("dint_residue")
            stale = {h: r["checkout"] for h, r in results.items() if r.get("checkout")}
            if stale:
                have: dict[str, list[str]] = {}
                for h, c in sorted(stale.items()):
                    have.setdefault(f"checkout {c['host']}" if c["host"] else "no checkout of deploy setup's",
                                    []).append(h)
                raise ResidueError(
                    "not starting: the hosts run another version of the project than the controller's (checkout "
                    f"{next(iter(stale.values()))['controller']}): "
                    + "; ".join(f"{', '.join(hs)} {'has' if len(hs) == 1 else 'have'} {what}"
                                for what, hs in have.items())
                    + f" (run 'python -m harness deploy setup --inventory {self.inv.source}')") from None
            found = {h: r["found"] for h, r in results.items() if r.get("found")}
            if not found:
                raise
            how = (f"'python -m harness testbed down --inventory {self.inv.source}' removes it" if self.local
                   else "stop or remove it on the host")
            raise ResidueError("not starting: " + "; ".join(f"{h} has {', '.join(f)}" for h, f in found.items())
                               + f" (not started by this run; {how})") from None

    def stop_servers(self, procs: list[ProcSpec], label: str = "servers-stop", clean: bool = False) -> dict:
        """SIGTERM (SIGKILL after their grace), then their outputs back.
        With clean, what a server that died left on its host (residue()) is
        removed; returns {host: [what was removed]} (empty after a clean stop)."""
        play = self.start_playbook("servers.yml", label, {
            "dint_action": "stop", "dint_procs": self._by_host(procs),
            "dint_residue": residue(self.inv, servers_only=True) if clean else {}}, procs=procs)
        try:
            play.wait()
        finally:
            # a host's last stop removes what a dead server left (its result
            # among the loop's)
            results = play.results("dint_proc")
            removed = {h: [x for item in r.get("results", [r]) for x in item.get("removed", [])]
                       for h, r in results.items()}
        removed = {h: r for h, r in removed.items() if r}
        key = _inv_key(self.inv)
        if clean and _TRUSTED.get(key) == "started":
            # the next start trusts it only if every server stopped on SIGTERM and nothing was left
            stops = [item for r in results.values() for item in r.get("results", [r])]
            ok = not removed and len(stops) == len(procs) and all(i.get("signal") == "TERM" for i in stops)
            _TRUSTED[key] = "clean" if ok else "dirty"
        return removed

    def server_stats(self, procs: list[ProcSpec], label: str = "servers-stats"):
        """SIGUSR1 to each server; returns when each printed one more stats line."""
        self.run_playbook("servers.yml", label, {"dint_action": "stats", "dint_procs": self._by_host(procs)},
                          procs=procs)

    def run_clients(self, procs: list[ProcSpec], label: str = "clients-run") -> "Play":
        """Starts every client and returns at once; the Play ends when all
        clients have finished and their outputs are back."""
        return self.start_playbook("clients.yml", label, {"dint_action": "run", "dint_procs": self._by_host(procs)},
                                   procs=procs)

    def stop_clients(self, procs: list[ProcSpec], label: str = "clients-stop"):
        distrust_own_stops(self.inv)
        self.run_playbook("clients.yml", label, {"dint_action": "stop", "dint_procs": self._by_host(procs)},
                          procs=procs)

    def setup(self) -> "Play":
        """deploy/setup.yml: packages, kernel headers, bpffs, the project and `make setup`."""
        extra = {}
        if not self.local:
            wheels = wheelhouse()
            extra["dint_checkout"] = checkout_id()
            extra["dint_archive"] = str(self.project_archive(wheels))
            extra["dint_wheels"] = str(wheels)
        return self.run_playbook("setup.yml", "setup", extra)

    def project_archive(self, wheels: Path | None = None) -> Path:
        """The checkout's files (tracked and new, not ignored) as a tarball,
        for cluster hosts, with the wheelhouse their `make setup` installs
        from."""
        path = self.pdir / "project.tar"
        self.pdir.mkdir(parents=True, exist_ok=True)
        files = [f.encode() for f in checkout_files()]
        if wheels:
            files.append(str(wheels.relative_to(ROOT)).encode())
        # not compressed: the wheels are, and the rest is small
        subprocess.run(["tar", "-cf", str(path), "--null", "-T", "-"], cwd=ROOT, input=b"\0".join(files), check=True)
        return path


def checkout_files() -> list[str]:
    """The checkout's files that a cluster host gets: tracked and new, not
    ignored, present."""
    p = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                       cwd=ROOT, capture_output=True)
    if p.returncode != 0:
        raise HarnessError(f"cannot list the checkout's files for the cluster hosts (git ls-files in {ROOT}): "
                           f"{p.stderr.decode(errors='replace').strip() or p.returncode}")
    names = sorted({f.decode() for f in p.stdout.split(b"\0") if f})
    return [f for f in names if (ROOT / f).is_file()]


CHECKOUT_ID_FILE = ROOT / "build" / "checkout-id"


def checkout_id() -> str:
    """What the checkout's files are, as one id: a hash of their names and
    contents (git's object ids). `deploy setup` leaves it on every cluster
    host (CHECKOUT_ID_FILE), and a run's start checks each host has the
    controller's."""
    files = checkout_files()
    p = subprocess.run(["git", "hash-object", "--no-filters", "--stdin-paths"], cwd=ROOT, capture_output=True,
                       text=True, input="".join(f + "\n" for f in files))
    if p.returncode != 0:
        raise HarnessError(f"cannot hash the checkout's files (git hash-object in {ROOT}): "
                           f"{p.stderr.strip() or p.returncode}")
    h = hashlib.sha256()
    for name, oid in zip(files, p.stdout.split()):
        h.update(f"{oid} {name}\n".encode())
    return h.hexdigest()[:16]


# The extra vars every playbook run is given (deploy/*.yml), and their
# defaults: what a play does not set is cleared.
STAGE_INLINE_MAX = 256 * 1024  # an input file larger than this is copied apart
PLAY_VARS = {"dint_action": "", "dint_build": [], "dint_procs": {}, "dint_residue": {}, "dint_stage": {}}


def pack_path(host: str, procs: list[dict]) -> Path:
    """Where deploy/roles/procs/tasks/collect.yml packs a cluster host's
    outputs, on the host and (fetched) on the controller: beside the pid
    files, in the run's directory."""
    return Path(procs[0]["pidfile"]).parent / f"outputs-{host}.tar"


def unpack(pack: Path) -> None:
    """A host's fetched outputs, back at their paths; the archive goes."""
    if not pack.exists():
        return
    p = subprocess.run(["tar", "-xPf", str(pack)], capture_output=True, text=True)
    if p.returncode:
        raise HarnessError(f"cannot unpack the outputs fetched into {pack}: "
                           f"{(p.stderr.strip().splitlines() or [p.returncode])[-1]}")
    pack.unlink()


WHEELS_DIR = ROOT / "build" / "wheels"


def requirements() -> list[list[str]]:
    """What `make setup` installs with pip, as pip resolves it: the build
    system's requirements (an isolated build environment) and the project's
    pinned dependencies (pyproject.toml)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [list(data["build-system"]["requires"]), list(data["project"]["dependencies"])]


def wheelhouse() -> Path:
    """The project's Python dependencies as wheels (pip wheel, from the
    controller's package index and cache), made once per set of pins: a
    cluster host installs from them, so it needs no package index of its
    own and gets exactly the controller's versions."""
    reqs = requirements()
    text = "\n".join(r for group in reqs for r in group) + "\n"
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    done = WHEELS_DIR / key
    if (done / ".complete").exists():
        return done
    for old in WHEELS_DIR.glob("*.partial"):  # an interrupted gathering
        shutil.rmtree(old, ignore_errors=True)
    part = WHEELS_DIR / f"{key}.partial"
    part.mkdir(parents=True)
    for group in reqs:
        p = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                            "-w", str(part), *group], capture_output=True, text=True)
        if p.returncode != 0:
            last = (p.stderr or p.stdout).strip().splitlines()[-1:] or [f"exit {p.returncode}"]
            raise HarnessError(f"could not gather the Python packages for the cluster hosts (pip wheel into {part}): "
                               f"{last[0]}")
    (part / ".complete").write_text(text)
    shutil.rmtree(done, ignore_errors=True)
    part.rename(done)
    return done


# Hosts the harness itself left clean. Within own_stops_trusted() (a
# reproduce's series, run one after the other against one inventory), a
# start of the servers right after a stop that removed nothing, with every
# server gone on SIGTERM and no client stopped by force since the start
# before, does not check the hosts again: that stop was the check. The
# first start checks, and so does the start after anything else (a server
# that died or was killed, a forced client stop, a failed series).
# State per inventory: "unchecked", "started", "clean" or "dirty".
_TRUSTED: dict[str, str] = {}


def _inv_key(inv: Inventory | str | None) -> str:
    source = inv.source if isinstance(inv, Inventory) else inv
    return os.path.realpath(source or DEFAULT_INVENTORY)


@contextlib.contextmanager
def own_stops_trusted(inv: Inventory):
    key = _inv_key(inv)
    _TRUSTED[key] = "unchecked"
    try:
        yield
    finally:
        _TRUSTED.pop(key, None)


def distrust_own_stops(inv: Inventory | str | None) -> None:
    """The next start on this inventory (or inventory file) checks every host."""
    key = _inv_key(inv)
    if key in _TRUSTED:
        _TRUSTED[key] = "dirty"


class Play:
    """One playbook run in progress (ansible-runner in a thread)."""

    def __init__(self, deployer: Deployer, playbook: str, ident: str):
        self.deployer, self.playbook, self.ident = deployer, playbook, ident
        self.thread: threading.Thread | None = None
        self.runner = None
        self._cancel = False
        self.t0 = time.monotonic()
        # The play's outcome as soon as its final event arrives: the
        # harness goes on while ansible-playbook exits (about half a second).
        self.stats: dict | None = None
        self.ended = threading.Event()
        self.packs: list[Path] = []  # outputs fetched from cluster hosts (unpacked at the end)

    def on_event(self, event: dict) -> bool:
        if event.get("event") == "playbook_on_stats":
            self.stats = event.get("event_data", {})
            self.ended.set()
        return True

    @property
    def artifacts(self) -> Path:
        return self.deployer.pdir / "artifacts" / self.ident

    def results(self, action: str) -> dict[str, dict]:
        """{host: result} of the play's tasks running module `action` that
        finished (ok or failed), from the event log."""
        out: dict[str, dict] = {}
        try:
            for ev in self.runner.events:
                data = ev.get("event_data", {})
                if ev.get("event") in ("runner_on_ok", "runner_on_failed") and data.get("task_action") == action:
                    out[data.get("host")] = data.get("res", {})
        except Exception:  # noqa: BLE001 - an unreadable event log: nothing known
            pass
        return out

    def cancelled(self) -> bool:
        return self._cancel

    def done(self) -> bool:
        return self.ended.is_set() or not self.thread.is_alive()

    def succeeded(self) -> bool:
        if self.stats is not None and self.thread.is_alive():
            return not any(self.stats.get(k) for k in ("failures", "dark"))
        return self.runner.status == "successful"

    def cancel(self) -> None:
        """Kills the playbook (its ansible-playbook process group)."""
        self._cancel = True
        self.thread.join(10)

    def wait(self, timeout: float | None = None) -> None:
        """Until the playbook ends; raises HarnessError if it failed. A
        Ctrl-C (or any exception) while waiting kills the playbook."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self.done():
                self.ended.wait(POLL_S)
                if deadline is not None and time.monotonic() > deadline:
                    raise HarnessError(f"playbook {self.playbook} ({self.ident}) did not finish in time "
                                       f"(event log {self.artifacts})")
        except BaseException:
            self.cancel()
            raise
        self.deployer.timings.append((self.ident, time.monotonic() - self.t0))
        self.finish()
        self.check()

    def finish(self) -> None:
        """The hosts' fetched outputs unpacked (also after a failure: their
        logs tell why)."""
        for pack in self.packs:
            unpack(pack)
        self.packs = []

    def check(self) -> None:
        if self.succeeded():
            return
        self.thread.join(10)  # its whole event log, for the message
        raise HarnessError(f"{self.failure()} (playbook {self.playbook}, event log {self.artifacts})")

    def failure(self) -> str:
        """What failed, from the event log: each failed task's message."""
        msgs = []
        try:
            for ev in self.runner.events:
                if ev.get("event") in ("runner_on_failed", "runner_item_on_failed", "runner_on_unreachable"):
                    data = ev.get("event_data", {})
                    res = data.get("res", {})
                    if ev["event"] == "runner_on_failed" and res.get("results"):
                        continue  # a loop's summary: its items were reported
                    msg = res.get("msg") or res.get("stderr") or "failed"
                    msgs.append(f"{data.get('host')}: {msg}")
        except Exception:  # noqa: BLE001 - a broken event log must not hide the failure
            pass
        if msgs:
            return "; ".join(dict.fromkeys(msgs))
        if self.runner.status == "canceled":
            return f"playbook {self.playbook} was cancelled"
        try:
            tail = (self.artifacts / "stdout").read_text(errors="replace").strip().splitlines()[-3:]
        except OSError:
            tail = []
        return f"playbook {self.playbook} ended {self.runner.status} (rc {self.runner.rc}): " + " | ".join(tail)


class ResidueError(HarnessError):
    """A host has something the harness did not start: nothing was started."""


def dpdk_prefix(host: Host) -> str:
    """The DPDK file prefix of a host's server process (its runtime files
    are under /var/run/dpdk/<prefix>, as root)."""
    return f"dint-{host.netns or host.name}"


DPDK_RUNTIME = Path("/var/run/dpdk")


def residue(inv: Inventory, servers_only: bool = False) -> dict[str, dict]:
    """What the harness looks for on each host before its servers start,
    and removes from the server hosts after they stop
    (deploy/library/dint_residue.py): programs on the testbed interfaces
    (a client end of a local or simulated testbed keeps its pass-through
    program),
    the host's DPDK runtime directory, and (checked only) processes and, on
    a cluster, the project's version (checkout_id())."""
    out = {}
    code = checkout_id() if not inv.local and not servers_only else ""
    for host in inv.servers if servers_only else inv.hosts:
        server = host.role == "server"
        out[host.name] = {"netns": host.netns or "", "ifaces": [i.name for i in host.interfaces],
                          "allowed_xdp": [] if server or inv.testbed is None else ["xdp_pass"],
                          "paths": [str(DPDK_RUNTIME / dpdk_prefix(host))] if server else []}
        if code:
            out[host.name].update(checkout=code, checkout_file=str(CHECKOUT_ID_FILE))
    return out


def host_pidfile(pdir: Path, host: Host | str, name: str) -> Path:
    return Path(pdir) / "pids" / f"{getattr(host, 'name', host)}-{name}.pid"
