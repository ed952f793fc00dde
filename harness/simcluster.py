"""The hosts of a simulated cluster (an inventory with `testbed: simulated`),
made on this machine so that the harness can only reach them as it reaches
a real cluster's: over SSH.

Every host is, besides the network namespace and experiment links that a
local testbed's host has (harness/testbed.py builds those for both):
- a mount namespace of its own, held by its sshd, in which the project's
  path, /tmp and /run/dpdk are the host's own directories (its "disk",
  under DISK_ROOT/sim-<prefix>/<host>): nothing of the project or of a run
  reaches a host through the controller's filesystem, and the project must
  be copied there (`python -m harness deploy setup`). The rest of the
  system is this machine's (/usr, /etc, the Debian packages, root's home
  with its pip configuration and cache): one operating system installed
  alike on every host;
- an sshd listening on the host's address on a management network: a
  bridge in the root namespace (`<prefix>-mgmt`, the /24 `sim_mgmt` with
  the controller at .254), one veth pair per host, apart from the
  experiment links;
- a host key made at every `up`; the controller's key pair and the
  known_hosts that checks the hosts' keys are under .testbed/<prefix>/ of
  the checkout (git-ignored).
The hosts' disks are kept by `down` (a second `deploy setup` is quick, as
on a real cluster); everything else goes: sshd and every process of the
hosts, their mounts (with their mount namespaces), the bridge, the SSH
connections Ansible kept open (ControlPersist), the runtime directory.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from . import ROOT, HarnessError
from .inventory import SIM_DIR, Host, Inventory
from .sh import alive, in_netns, ip, run

SSHD = Path("/usr/sbin/sshd")
RUN_ROOT = Path("/run/dint-bench")
DISK_ROOT = Path("/var/lib/dint-bench")
# What is the host's own inside its mount namespace (each from its disk).
PRIVATE = {"project": ROOT, "tmp": Path("/tmp"), "dpdk": Path("/run/dpdk")}
READY_S = 15.0


class SimHosts:
    """The SSH side of a simulated cluster: management network, mounts,
    sshd per host, keys."""

    def __init__(self, inv: Inventory):
        hvars = inv.raw["all"].get("vars") or {}
        self.inv = inv
        self.prefix = str(hvars.get("sim_prefix") or inv.hosts[0].sim_netns.rsplit("-", 1)[0])
        self.mgmt = str(hvars.get("sim_mgmt") or "")
        if len(self.mgmt.split(".")) != 3:
            raise HarnessError(f"{inv.source}: a simulated cluster needs 'sim_mgmt', its management /24 "
                               "(three octets, e.g. 10.76.0)")
        self.run_dir = RUN_ROOT / f"sim-{self.prefix}"
        self.disk_dir = DISK_ROOT / f"sim-{self.prefix}"
        self.key_dir = ROOT / SIM_DIR / self.prefix
        self.cp_dir = Path(str(hvars.get("ansible_control_path_dir") or self.run_dir / "cp"))
        self.bridge = f"{self.prefix}-mgmt"

    # -- names and paths ---------------------------------------------------
    @property
    def key(self) -> Path:
        return self.key_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.key_dir / "known_hosts"

    def host_dir(self, h: Host) -> Path:
        return self.run_dir / h.name

    def disk(self, h: Host) -> Path:
        return self.disk_dir / h.name

    def mgmt_if(self, h: Host) -> str:
        return f"{self.prefix}m{h.name}"

    def ssh_command(self, h: Host, *cmd: str) -> list[str]:
        """ssh to a host as Ansible reaches it (its key checked), with no
        connection kept; cmd runs as given (quoted for the remote shell)."""
        return ["ssh", "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=3", f"root@{h.mgmt}", *([shlex.join(cmd)] if cmd else [])]

    def sshd_pid(self, h: Host) -> int | None:
        try:
            pid = int((self.host_dir(h) / "sshd.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    # -- lifecycle -----------------------------------------------------------
    def check_tools(self) -> None:
        for tool, package in ((SSHD, "openssh-server"), (Path("/usr/bin/ssh"), "openssh-client"),
                              (Path("/usr/bin/sudo"), "sudo")):
            if not tool.exists():
                raise HarnessError(f"a simulated cluster needs {tool} (Debian package {package}): "
                                   "run 'make setup-simcluster'")

    def is_up(self) -> bool:
        if ip("link", "show", self.bridge, check=False).returncode != 0:
            return False
        return all(self.sshd_pid(h) for h in self.inv.hosts)

    def build(self) -> None:
        """After the namespaces and experiment links: the management
        network, each host's disk, keys and sshd; returns once every host
        answers over SSH with the key it was given."""
        self.check_tools()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "cp").mkdir(exist_ok=True)
        self.cp_dir.mkdir(parents=True, exist_ok=True)
        self.key_dir.mkdir(parents=True, exist_ok=True)
        if not self.key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"dint-bench {self.prefix}",
                 "-f", str(self.key)])
        shutil.copy(f"{self.key}.pub", self.run_dir / "authorized_keys")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        Path("/run/dpdk").mkdir(mode=0o755, exist_ok=True)
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.mgmt}.254/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        known = []
        for h in self.inv.hosts:
            ns, outer = h.sim_netns, self.mgmt_if(h)
            ip("link", "add", outer, "type", "veth", "peer", "name", "mgmt0", "netns", ns)
            ip("link", "set", outer, "master", self.bridge, "up")
            ip("addr", "add", f"{h.mgmt}/24", "dev", "mgmt0", netns=ns)
            ip("link", "set", "mgmt0", "up", netns=ns)
            known.append(f"{h.mgmt} {self._host_key(h)}")
            self._claim_disk(h)
            for d in PRIVATE:
                (self.disk(h) / d).mkdir(parents=True, exist_ok=True)
            os.chmod(self.disk(h) / "tmp", 0o1777)
            self._start_sshd(h)
        self.known_hosts.write_text("\n".join(known) + "\n")
        for h in self.inv.hosts:
            self._wait_ready(h)

    def _claim_disk(self, h: Host) -> None:
        """A host's disk holds the checkout of one path: one that held
        another's, or whose path is not known, is emptied for a setup from
        nothing (its .venv would point to the other path, which is the
        controller's on the host)."""
        mark = self.disk(h) / "checkout"
        if not mark.exists() or mark.read_text().strip() != str(ROOT):
            shutil.rmtree(self.disk(h) / "project", ignore_errors=True)
        self.disk(h).mkdir(parents=True, exist_ok=True)
        mark.write_text(f"{ROOT}\n")

    def _host_key(self, h: Host) -> str:
        d = self.host_dir(h)
        d.mkdir(parents=True, exist_ok=True)
        key = d / "ssh_host_ed25519_key"
        key.unlink(missing_ok=True)
        Path(f"{key}.pub").unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{h.name}", "-f", str(key)])
        return " ".join(Path(f"{key}.pub").read_text().split()[:2])

    def _start_sshd(self, h: Host) -> None:
        d = self.host_dir(h)
        (d / "sshd_config").write_text("\n".join([
            f"ListenAddress {h.mgmt}:22",
            f"HostKey {d / 'ssh_host_ed25519_key'}",
            f"AuthorizedKeysFile {self.run_dir / 'authorized_keys'}",
            f"PidFile {d / 'sshd.pid'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PrintMotd no",
            "Subsystem sftp internal-sftp",
            ""]))
        # the system's directories first, then the project (which may lie
        # under one of them, e.g. a checkout in /tmp: its mount point is
        # made in the host's own directory)
        order = sorted(PRIVATE.items(), key=lambda kv: kv[1] == ROOT)
        mounts = " && ".join(f"mkdir -p {shlex.quote(str(path))} && "
                             f"mount --bind {shlex.quote(str(self.disk(h) / d))} {shlex.quote(str(path))}"
                             for d, path in order)
        script = f"{mounts} && exec {SSHD} -D -e -f {shlex.quote(str(d / 'sshd_config'))}"
        with open(d / "sshd.log", "ab") as log:
            subprocess.Popen(in_netns(h.sim_netns, ["unshare", "--mount", "--propagation", "private", "--",
                                                    "/bin/sh", "-c", script]),
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)

    def _wait_ready(self, h: Host) -> None:
        deadline = time.monotonic() + READY_S
        last = ""
        while time.monotonic() < deadline:
            p = subprocess.run(self.ssh_command(h, "true"), capture_output=True, text=True)
            if p.returncode == 0:
                return
            last = p.stderr.strip().splitlines()[-1:] or [f"exit {p.returncode}"]
            last = last[0]
            time.sleep(0.2)
        log = (self.host_dir(h) / "sshd.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise HarnessError(f"the sshd of simulated host {h.name} did not answer at {h.mgmt} within "
                           f"{READY_S:.0f} s: {last} (sshd log: {' | '.join(log) or 'empty'})")

    def down(self) -> None:
        """Closes the SSH connections kept open to the hosts and removes the
        management network and runtime files. (The hosts' processes, sshd
        among them, and with them their mounts go with their namespaces:
        harness/testbed.py.)"""
        for sock in (self.cp_dir.iterdir() if self.cp_dir.is_dir() else ()):
            subprocess.run(["ssh", "-S", str(sock), "-O", "exit", "host"], capture_output=True, timeout=10)
        self._kill_masters()
        if ip("link", "show", self.bridge, check=False).returncode == 0:
            ip("link", "del", self.bridge)
        for h in self.inv.hosts:
            if ip("link", "show", self.mgmt_if(h), check=False).returncode == 0:
                ip("link", "del", self.mgmt_if(h), check=False)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.cp_dir.is_dir():
            shutil.rmtree(self.cp_dir, ignore_errors=True)

    def _kill_masters(self) -> None:
        """SSH connection masters (ControlPersist) of this cluster that did
        not exit when asked: their command line names their socket."""
        mark = f"ssh: {self.cp_dir}/"
        for pid in self.master_pids(mark):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    @staticmethod
    def master_pids(mark: str) -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(mark):
                pids.append(int(entry))
        return pids

    def leftovers(self) -> dict:
        """What of the SSH side is still on the machine."""
        return {"bridge": ip("link", "show", self.bridge, check=False).returncode == 0,
                "ssh_masters": self.master_pids(f"ssh: {self.cp_dir}/"),
                "run_dir": self.run_dir.exists()}

    def status(self, h: Host) -> dict:
        return {"mgmt": h.mgmt, "sshd": self.sshd_pid(h), "disk": str(self.disk(h)),
                "project": (self.disk(h) / "project" / "Makefile").exists()}
