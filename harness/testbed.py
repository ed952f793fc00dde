"""The local testbed: every host of a local inventory is a network namespace,
every client-server link a veth pair. Brought up idempotently (a failed `up`
rolls back), torn down completely (processes, namespaces and with them links
and XDP programs, and the DPDK runtime files of its servers), and usable as a context manager.
A simulated cluster's hosts and links are made the same way, and each host
gets its own mounts and sshd besides (harness/simcluster.py)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from . import BUILD_DIR, HarnessError
from .deploy import DPDK_RUNTIME
from .inventory import Inventory
from .sh import alive, in_netns, ip, run
from .simcluster import SimHosts

STATE_DIR = Path("/run/dint-bench")
PASS_OBJ = BUILD_DIR / "xdp_pass.o"
NAPI_MODES = ("pinned", "inline")


def _namespaces() -> set[str]:
    out = ip("netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def netns_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False).stdout
    return [int(p) for p in out.split()]


def kill_netns_processes(ns: str, grace: float = 3.0) -> None:
    """Stops every process living in ns: SIGTERM, then SIGKILL."""
    pids = netns_pids(ns)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if alive(p)]
        time.sleep(0.05)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def xdp_prog_id(ns: str, iface: str) -> int | None:
    out = ip("-j", "link", "show", "dev", iface, netns=ns, check=False).stdout
    try:
        info = json.loads(out)[0]
    except (ValueError, IndexError):
        return None
    xdp = info.get("xdp") or {}
    return xdp.get("prog", {}).get("id") or (xdp.get("attached") or [{}])[0].get("prog", {}).get("id")


def napi_threads(iface: str) -> list[int]:
    """PIDs of the threaded-NAPI kernel threads of an interface."""
    prefix = f"napi/{iface}-"
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as f:
                if f.read().startswith(prefix):
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _set_threaded(ns: str, iface: str, on: bool, tries: int = 30) -> None:
    """Writes the interface's threaded-NAPI switch. Right after an XDP program
    is attached to a veth whose NAPI was threaded before, the kernel refuses
    the write (EIO) for a moment: retried briefly."""
    path = f"/sys/class/net/{iface}/threaded"
    want = str(int(on))
    for _ in range(tries):
        if run(in_netns(ns, ["cat", path])).stdout.strip() == want:
            return
        if run(in_netns(ns, ["sh", "-c", f"echo {want} > {path}"]), check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise HarnessError(f"could not set threaded NAPI to {want} on {ns}/{iface}")


class Testbed:
    """The namespaces and links of a local inventory. As a context manager it
    brings the testbed up and, if it made it, takes it down again."""

    def __init__(self, inventory: Inventory):
        if inventory.testbed is None:
            raise HarnessError(f"inventory {inventory.source} describes a cluster, not a local testbed")
        self.inv = inventory
        # a simulated cluster: its hosts' mounts, sshd and management network
        self.sim = SimHosts(inventory) if inventory.simulated else None
        self._made = False
        self._napi: str | None = None  # the placement last set
        # What this inventory file last brought up, in case the file changed since.
        key = hashlib.sha256(str(Path(inventory.source).resolve()).encode()).hexdigest()[:12]
        self.state_file = STATE_DIR / f"testbed-{key}.json"

    @staticmethod
    def ns(host) -> str:
        """The namespace a host lives in."""
        return host.netns or host.sim_netns

    @property
    def namespaces(self) -> list[str]:
        return [self.ns(h) for h in self.inv.hosts]

    # -- lifecycle -----------------------------------------------------
    def is_up(self) -> bool:
        """True when every namespace and link of the inventory is in place."""
        have = _namespaces()
        if not all(ns in have for ns in self.namespaces):
            return False
        for h in self.inv.hosts:
            out = ip("-br", "link", "show", netns=self.ns(h), check=False).stdout
            names = {line.split()[0].split("@")[0] for line in out.splitlines() if line.strip()}
            if not all(i.name in names for i in h.interfaces):
                return False
        return self.sim is None or self.sim.is_up()

    def up(self) -> bool:
        """Brings the testbed up; returns False if it already was."""
        if os.geteuid() != 0:
            raise HarnessError("the testbed needs root (network namespaces and XDP): run as root")
        if not PASS_OBJ.exists():
            raise HarnessError(f"{PASS_OBJ} is missing: run 'make setup'")
        if self.sim:
            self.sim.check_tools()
        if self.is_up():
            return False
        self.down()  # a half-made testbed is rebuilt from scratch
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({"source": self.inv.source, "namespaces": self.namespaces}))
        self._made = True
        return True

    def _build(self) -> None:
        ns = self.ns
        for name in self.namespaces:
            ip("netns", "add", name)
            ip("link", "set", "lo", "up", netns=name)
        for srv in self.inv.servers:
            for sif in srv.interfaces:
                cli = self.inv.host(sif.peer)
                cif = cli.interface_to(srv.name)
                ip("link", "add", sif.name, "netns", ns(srv), "address", sif.mac, "type", "veth",
                   "peer", "name", cif.name, "netns", ns(cli), "address", cif.mac)
                for host, iface, peer, peer_if in ((srv, sif, cli, cif), (cli, cif, srv, sif)):
                    ip("link", "set", iface.name, "up", netns=ns(host))
                    ip("addr", "add", f"{host.address}/32", "dev", iface.name, netns=ns(host))
                    ip("route", "add", f"{peer.address}/32", "dev", iface.name, netns=ns(host))
                    ip("neigh", "replace", peer.address, "lladdr", peer_if.mac, "dev", iface.name,
                       "nud", "permanent", netns=ns(host))
                # Replies sent with XDP_TX reach a veth only if it runs NAPI,
                # which an attached XDP program turns on.
                ip("link", "set", "dev", cif.name, "xdp", "obj", str(PASS_OBJ), "sec", "xdp",
                   netns=ns(cli))
                if self.sim:
                    # what a local run sets on the client ends before its
                    # servers start (systems.full_checksums_on_links,
                    # set_napi), set once: a cluster's NICs are the hosts'
                    run(in_netns(ns(cli), ["ethtool", "-K", cif.name, "tx", "off", "tso", "off",
                                           "tx-udp-segmentation", "off"]))
        if self.sim:
            self.sim.build()

    def down(self) -> None:
        """Removes every namespace of this testbed (and of the one recorded as
        up), with the processes inside and so the links, XDP programs, qdiscs
        and filters (the fault injector's delay line too), and the fault
        injector's pinned programs and maps (harness/faults.py)."""
        from . import faults
        recorded = []
        if self.state_file.exists():
            try:
                recorded = json.loads(self.state_file.read_text()).get("namespaces", [])
            except ValueError:
                pass
        if self.sim:
            self.sim.down()
        have = _namespaces()
        for ns in dict.fromkeys(self.namespaces + recorded):
            if ns in have:
                kill_netns_processes(ns)
                ip("netns", "del", ns, check=False)
            faults.remove_pins(ns)
            # a bypass server's DPDK runtime files (DPDK leaves them behind)
            shutil.rmtree(DPDK_RUNTIME / f"dint-{ns}", ignore_errors=True)
        if self.sim:
            self.sim.down()  # what went with the namespaces: the connections to their sshd
        left = _namespaces() & set(self.namespaces + recorded)
        if left:
            raise HarnessError(f"could not remove namespaces: {', '.join(sorted(left))}")
        self.state_file.unlink(missing_ok=True)
        self._made = False

    def __enter__(self) -> "Testbed":
        self.up()
        return self

    def __exit__(self, *exc) -> None:
        if self._made:
            self.down()

    # -- where server packet work runs ----------------------------------
    def set_napi(self, mode: str) -> dict:
        """pinned: threaded NAPI on every server veth, its threads on the
        server's cores (the analogue of steering NIC interrupts to them).
        inline: veth's default, the work runs on the sending client's CPU.
        Call after the servers attached their programs (that recreates NAPI),
        and reset_napi() before they detach them. Returns what was set."""
        if mode not in NAPI_MODES:
            raise HarnessError(f"--napi must be one of {', '.join(NAPI_MODES)}, not {mode!r}")
        placed = {}
        self._napi = None  # unknown until every interface is set
        for srv in self.inv.servers:
            for iface in srv.interfaces:
                # Without XDP, veth runs NAPI only for GRO: on before threading
                # it, off after.
                # The client's end, whatever the server: without TSO, since
                # veth hands a frame to the receiver's NAPI only if it may be
                # aggregated, and from a sender with TSO on a UDP frame is not:
                # it went through the client's backlog, and a socket server's
                # receive work ran on the client's core (UDP never uses TSO).
                # Without UDP segmentation offload, so that the client's GSO
                # sends (harness/native/wire.h) are cut into datagrams on the
                # client's side, as a NIC would, and every server receives
                # plain datagrams. (An XDP program on the server's end takes
                # both off anyway.)
                cli = self.inv.host(iface.peer)
                run(in_netns(cli.netns, ["ethtool", "-K", cli.interface_to(srv.name).name, "tso", "off",
                                         "tx-udp-segmentation", "off"]))
                # (also to switch threading off: a veth whose XDP program went
                # while it was threaded, e.g. its server died, has no NAPI
                # to switch until GRO brings it back)
                gro = xdp_prog_id(srv.netns, iface.name) is None
                if gro:
                    run(in_netns(srv.netns, ["ethtool", "-K", iface.name, "gro", "on"]))
                _set_threaded(srv.netns, iface.name, mode == "pinned")
                if gro and mode == "inline":
                    run(in_netns(srv.netns, ["ethtool", "-K", iface.name, "gro", "off"]))
                threads = napi_threads(iface.name)
                if mode == "pinned":
                    if not threads:
                        raise HarnessError(f"threaded NAPI did not start on {srv.name}/{iface.name}")
                    for pid in threads:
                        os.sched_setaffinity(pid, srv.cpus)
                placed[f"{srv.name}/{iface.name}"] = {
                    "threaded": mode == "pinned", "napi_threads": len(threads),
                    "cpus": list(srv.cpus) if mode == "pinned" else "sender's CPU"}
        self._napi = mode
        return placed

    def reset_napi(self) -> None:
        """Back to veth's default while the servers' NAPI instances still
        exist: a veth left threaded when its XDP program goes refuses to be
        switched back after the next attach."""
        if self._napi == "inline":
            return
        try:
            self.set_napi("inline")
        except HarnessError as e:
            self._napi = "inline"  # tried: once is enough
            print(f"warning: could not reset NAPI placement: {e}", file=sys.stderr)

    # -- the links ---------------------------------------------------------
    def link_drops(self) -> dict:
        """Datagrams the links have dropped so far (veth's tx_dropped: a
        burst filled the receiving end's ring): requests on the client ends,
        replies on the server ends."""
        def dropped(host, iface) -> int:
            out = ip("-s", "-j", "link", "show", "dev", iface, netns=host.netns).stdout
            try:
                return int(json.loads(out)[0]["stats64"]["tx"]["dropped"])
            except (ValueError, IndexError, KeyError) as e:
                raise HarnessError(f"cannot read the counters of {host.name}/{iface}: {e}") from None
        return {"requests": sum(dropped(c, i.name) for c in self.inv.clients for i in c.interfaces),
                "replies": sum(dropped(s, i.name) for s in self.inv.servers for i in s.interfaces)}

    # -- inspection ------------------------------------------------------
    def status(self) -> list[dict]:
        from . import faults
        have = _namespaces()
        rows = []
        for h in self.inv.hosts:
            ns = self.ns(h)
            up = ns in have
            row = {"host": h.name, "role": h.role, "netns": ns, "exists": up,
                   "address": h.address, "cpus": list(h.cpus), "interfaces": [], "processes": []}
            if self.sim:
                row["simulated"] = self.sim.status(h)
            if up:
                for i in h.interfaces:
                    row["interfaces"].append({"name": i.name, "xdp_prog": xdp_prog_id(ns, i.name)})
                if h.role == "client" and not self.sim:
                    row["faults"] = faults.attached(h)
                for pid in netns_pids(ns):
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as f:
                            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
                    except OSError:
                        continue
                    row["processes"].append({"pid": pid, "cmd": cmd[:120]})
            rows.append(row)
        return rows


def leftovers(inv: Inventory) -> dict:
    """What of ours is still on the machine (for `down` checks and tests)."""
    nss = _namespaces() & {Testbed.ns(h) for h in inv.hosts}
    out = {"namespaces": sorted(nss), "processes": {ns: netns_pids(ns) for ns in sorted(nss)}}
    if inv.simulated:
        out.update({k: v for k, v in SimHosts(inv).leftovers().items() if v})
    return out
