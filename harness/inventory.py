"""The inventory: which hosts exist, their role, interfaces, addresses, MACs
and cores. One format (an Ansible YAML inventory) describes the local
namespace testbed, a real cluster and a simulated one; local hosts also
name their netns. A simulated cluster (`testbed: simulated`) is a cluster
to the harness (reached over SSH, nothing shared with the controller)
whose hosts harness/testbed.py makes on this machine: each names the
namespace it lives in as `sim_netns`.

A host may state its memory (`memory_gb: 192`, GiB, or `memory: 192G`,
with K, M, G or T and an optional iB, binary units), as a variable of its
own, of its group or of `all`: the harness checks each run's need on
that host against it (harness/limits.py, and `reproduce --plan`)."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import INVENTORY_DIR, HarnessError
from .protocol import DEFAULT_PORT

DEFAULT_INVENTORY = INVENTORY_DIR / "local.yml"
ROLES = ("servers", "clients")


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str
    peer: str | None = None  # local testbed: the host at the other end of the veth


@dataclass(frozen=True)
class Host:
    name: str
    role: str  # "server" or "client"
    address: str
    cpus: tuple[int, ...]
    interfaces: tuple[Interface, ...]
    netns: str | None = None  # set for hosts of the local testbed
    dpdk_port: str | None = None  # a cluster host's DPDK port (PCI address) for bypass
    sim_netns: str | None = None  # a simulated cluster's host: the namespace it lives in
    mgmt: str | None = None  # a cluster host's management address (ansible_host)
    memory: int | None = None  # bytes the inventory says the host has (memory_gb / memory); None: not stated
    memory_var: str = ""       # the variable that said it, for messages
    # a server host's cores for dint's user space (dintd and its slow path)
    # when it has cores of its own (--slowpath-cpus own): outside `cpus`,
    # which run the packet work (XDP) and take the NIC's interrupts
    slowpath_cpus: tuple[int, ...] = ()

    def interface_to(self, peer: str) -> Interface:
        for iface in self.interfaces:
            if iface.peer == peer:
                return iface
        raise HarnessError(f"host {self.name} has no interface to {peer}")


@dataclass(frozen=True)
class Inventory:
    servers: tuple[Host, ...]
    clients: tuple[Host, ...]
    port: int = DEFAULT_PORT
    local: bool = True
    source: str = ""
    simulated: bool = False  # a simulated cluster: hosts made on this machine, reached over SSH
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def hosts(self) -> tuple[Host, ...]:
        return self.servers + self.clients

    @property
    def testbed(self) -> str | None:
        """Who makes the hosts and links: "local" (namespaces reached
        directly), "simulated" (namespaces with their own sshd, mounts and
        management network), or None (a real cluster: its owner)."""
        return "local" if self.local else "simulated" if self.simulated else None

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise HarnessError(f"no host {name} in inventory {self.source}")


def _mac(*octets: int) -> str:
    return ":".join(f"{o:02x}" for o in (0x02, 0xD1, *octets))


def default_cpus(ncpu: int | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Client and server cores: the first half of the machine for clients,
    the rest for servers (on 2 cores: clients on 0, servers on 1)."""
    ncpu = ncpu or os.cpu_count() or 2
    if ncpu < 2:
        raise HarnessError("the local testbed needs at least 2 CPUs (one for clients, one for servers)")
    half = ncpu // 2
    return tuple(range(half)), tuple(range(half, ncpu))


def local_inventory(servers: int = 3, clients: int = 1, ncpu: int | None = 2,
                    port: int = DEFAULT_PORT, prefix: str = "dint", subnet: str = "10.77.0") -> dict:
    """The Ansible inventory of a local testbed: one namespace per host and
    one veth pair per client-server link (a bridge halves XDP throughput).
    Namespaces are named <prefix>-<host>; interface names start with the
    prefix's first letter, so two testbeds (a user's and the tests') can
    coexist; the addresses are private ones of the subnet (a /24)."""
    if not 1 <= servers <= 99 or not 1 <= clients <= 99:
        raise HarnessError("the local testbed takes 1-99 servers and 1-99 clients")
    if not prefix.isalnum() or len(prefix) > 8:
        raise HarnessError("the testbed prefix must be 1-8 letters or digits")
    p = prefix[0]
    client_cpus, server_cpus = default_cpus(ncpu)
    srv, cli = {}, {}
    for s in range(servers):
        srv[f"s{s}"] = {
            "netns": f"{prefix}-s{s}", "address": f"{subnet}.{1 + s}", "cpus": list(server_cpus),
            "interfaces": [{"name": f"{p}s{s}c{c}", "mac": _mac(0, s, c, 1), "peer": f"c{c}"}
                           for c in range(clients)],
        }
    for c in range(clients):
        cli[f"c{c}"] = {
            "netns": f"{prefix}-c{c}", "address": f"{subnet}.{101 + c}", "cpus": list(client_cpus),
            "interfaces": [{"name": f"{p}c{c}s{s}", "mac": _mac(0, s, c, 2), "peer": f"s{s}"}
                           for s in range(servers)],
        }
    # Ansible reaches every host of a local testbed on this machine, with the
    # harness's own Python; their commands run in their namespace.
    return {"all": {"vars": {"deployment": "local", "dint_port": port, "ansible_connection": "local",
                             "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                    "children": {"servers": {"hosts": srv}, "clients": {"hosts": cli}}}}


SIM_DIR = ".testbed"  # under the project: a simulated cluster's SSH key and known_hosts (git-ignored)


def sim_inventory(servers: int = 3, clients: int = 1, ncpu: int | None = 2, port: int = DEFAULT_PORT,
                  prefix: str = "sim", subnet: str = "10.75.0", mgmt: str = "10.76.0") -> dict:
    """The Ansible inventory of a simulated cluster: the hosts, links and
    addresses of local_inventory(), each host a namespace of its own
    (`sim_netns`) with private mounts and an sshd on a management network
    (`mgmt`, a /24 apart from the experiment subnet), reached by Ansible
    over SSH with a key and known_hosts that `testbed up` generates under
    .testbed/<prefix>/ of the controller's checkout. Nothing in it tells
    the harness it is not a real cluster but `testbed: simulated`, which
    only harness/testbed.py reads."""
    data = local_inventory(servers, clients, ncpu, port, prefix, subnet)
    for i, (name, spec) in enumerate((n, s) for g in ("servers", "clients")
                                     for n, s in data["all"]["children"][g]["hosts"].items()):
        spec["sim_netns"] = spec.pop("netns")
        data["all"]["children"]["servers" if name.startswith("s") else "clients"]["hosts"][name] = {
            "ansible_host": f"{mgmt}.{1 + i}", **spec}
    keys = "{{ dint_root }}/" + f"{SIM_DIR}/{prefix}"
    data["all"]["vars"] = {
        "deployment": "cluster", "testbed": "simulated", "dint_port": port, "sim_prefix": prefix,
        "sim_mgmt": mgmt,
        "ansible_connection": "ssh", "ansible_user": "root", "ansible_become": True,
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_private_key_file": f"{keys}/id_ed25519",
        # the hosts' keys are checked against the ones `testbed up` made
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={keys}/known_hosts -o GlobalKnownHostsFile=/dev/null "
                                   "-o StrictHostKeyChecking=yes -o BatchMode=yes",
        # connections reused (ControlPersist), and closed by `testbed down`
        "ansible_control_path_dir": f"/run/dint-bench/sim-{prefix}/cp",
    }
    return data


MEMORY_VARS = ("memory_gb", "memory")
MEMORY_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
MEMORY_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.I)


def parse_memory(spec: dict, where: str) -> tuple[int | None, str]:
    """(bytes, variable) from a host's `memory_gb` (a number of GiB) or
    `memory` (bytes, or a number with K, M, G or T, binary units, and an
    optional iB: 192G, 192 GiB, 1.5T); (None, "") when neither is given."""
    given = [k for k in MEMORY_VARS if spec.get(k) is not None]
    if not given:
        return None, ""
    if len(given) > 1:
        raise HarnessError(f"{where}: give one of 'memory_gb' and 'memory', not both")
    key = given[0]
    val = spec[key]
    if key == "memory_gb":
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not (0 < val < math.inf):
            raise HarnessError(f"{where}: 'memory_gb' must be a positive number of GiB, not {val!r}")
        return int(val * MEMORY_UNITS["G"]), key
    m = None if isinstance(val, bool) else MEMORY_RE.match(str(val))
    if not m or float(m.group(1)) <= 0:
        raise HarnessError(f"{where}: 'memory' must be bytes or a number with K, M, G or T (binary units, "
                           f"e.g. 192G or 192 GiB), not {val!r}")
    return int(float(m.group(1)) * MEMORY_UNITS[m.group(2).upper()]), key


def _memory_vars(d) -> dict:
    """The memory variables of a mapping of variables (one or none)."""
    return {k: v for k, v in d.items() if k in MEMORY_VARS} if isinstance(d, dict) else {}


def _host(name: str, role: str, spec: dict, where: str, inherited: dict | None = None) -> Host:
    if not isinstance(spec, dict):
        raise HarnessError(f"{where}: host {name} must be a mapping of its variables")
    for key in ("address", "cpus", "interfaces"):
        if key not in spec:
            raise HarnessError(f"{where}: host {name} lacks '{key}'")
    cpus = spec["cpus"]
    if not isinstance(cpus, list) or not cpus or not all(isinstance(c, int) and c >= 0 for c in cpus):
        raise HarnessError(f"{where}: host {name}: 'cpus' must be a non-empty list of CPU numbers")
    ifaces = []
    for i in spec["interfaces"] or []:
        if not isinstance(i, dict) or "name" not in i or "mac" not in i:
            raise HarnessError(f"{where}: host {name}: each interface needs 'name' and 'mac'")
        if len(i["name"]) > 15:
            raise HarnessError(f"{where}: host {name}: interface name {i['name']!r} is longer than 15 characters")
        ifaces.append(Interface(i["name"], str(i["mac"]).lower(), i.get("peer")))
    if not ifaces:
        raise HarnessError(f"{where}: host {name} has no interfaces")
    # the host's own memory variable, else its group's, else all's
    memory, memory_var = parse_memory(_memory_vars(spec) or inherited or {}, f"{where}: host {name}")
    own = spec.get("slowpath_cpus") or []
    if not isinstance(own, list) or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in own):
        raise HarnessError(f"{where}: host {name}: 'slowpath_cpus' must be a list of CPU numbers")
    if set(own) & set(cpus):
        raise HarnessError(f"{where}: host {name}: 'slowpath_cpus' {own} must be cores of their own, outside its "
                           f"'cpus' {cpus} (which run its packet work)")
    return Host(name, role, str(spec["address"]), tuple(cpus), tuple(ifaces), spec.get("netns"),
                spec.get("dpdk_port"), spec.get("sim_netns"), spec.get("ansible_host"), memory, memory_var,
                tuple(own))


# Where dint's user space (dintd and its slow path: fills, evictions,
# write-backs, the log's drain) runs (RunConfig.slowpath_cpus): on the
# server host's cores, where its XDP program runs and the NIC's interrupts
# go (xdp), or on cores of its own (own).
SLOWPATH_PLACES = ("xdp", "own")


def slowpath_cpus(inv: Inventory, host: Host, place: str = "xdp") -> tuple[int, ...]:
    """The cores dint's user space is pinned to on a server host: its
    `cpus` (xdp); with own, its `slowpath_cpus`, else on a testbed (local or
    simulated: every host on this machine) the machine's cores that no
    server host runs on (on a 2-core machine, the clients' core: the run's
    placement notes that clients share it). A cluster host that names no
    cores of its own cannot have them: refused in one line."""
    if place == "xdp":
        return host.cpus
    if host.slowpath_cpus:
        return host.slowpath_cpus
    if inv.testbed is not None:
        servers = {c for h in inv.servers for c in h.cpus}
        spare = tuple(c for c in sorted(os.sched_getaffinity(0)) if c not in servers)
        if spare:
            return spare
    raise HarnessError(f"--slowpath-cpus own: server {host.name} has no core of its own for dint's slow path: give "
                       f"it 'slowpath_cpus' in the inventory {inv.source} (cores outside its cpus "
                       f"{list(host.cpus)})")


def parse(data: dict, where: str = "<inventory>") -> Inventory:
    try:
        top = data["all"]
        groups = top.get("children", {})
        hvars = top.get("vars", {}) or {}
    except (KeyError, TypeError, AttributeError):
        raise HarnessError(f"{where}: not an inventory (expected all: {{vars, children: {{servers, clients}}}})") from None
    hosts: dict[str, tuple[Host, ...]] = {}
    for group in ROLES:
        members = ((groups.get(group) or {}).get("hosts")) or {}
        if not members:
            raise HarnessError(f"{where}: group '{group}' has no hosts")
        inherited = _memory_vars((groups.get(group) or {}).get("vars")) or _memory_vars(hvars)
        hosts[group] = tuple(_host(n, group[:-1], s, where, inherited) for n, s in members.items())
    local = hvars.get("deployment", "local") == "local"
    simulated = hvars.get("testbed") == "simulated"
    if simulated and local:
        raise HarnessError(f"{where}: a simulated cluster (testbed: simulated) must say deployment: cluster")
    inv = Inventory(hosts["servers"], hosts["clients"], int(hvars.get("dint_port", DEFAULT_PORT)),
                    local, where, simulated=simulated, raw=data)
    names = [h.name for h in inv.hosts]
    if len(set(names)) != len(names):
        raise HarnessError(f"{where}: a host is both server and client")
    if inv.local:
        for h in inv.hosts:
            if not h.netns:
                raise HarnessError(f"{where}: local host {h.name} lacks 'netns'")
            for i in h.interfaces:
                if i.peer not in names:
                    raise HarnessError(f"{where}: {h.name}/{i.name}: peer {i.peer!r} is not a host")
    if simulated:
        for h in inv.hosts:
            if h.netns:
                raise HarnessError(f"{where}: simulated host {h.name} has 'netns' (its namespace is 'sim_netns': "
                                   "the harness reaches it over SSH, not by entering it)")
            for key, val in (("sim_netns", h.sim_netns), ("ansible_host", h.mgmt)):
                if not val:
                    raise HarnessError(f"{where}: simulated host {h.name} lacks '{key}'")
            for i in h.interfaces:
                if i.peer not in names:
                    raise HarnessError(f"{where}: {h.name}/{i.name}: peer {i.peer!r} is not a host")
    return inv


def load(path: str | Path | None = None) -> Inventory:
    path = Path(path) if path else DEFAULT_INVENTORY
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise HarnessError(f"inventory {path} not found") from None
    except yaml.YAMLError as e:
        raise HarnessError(f"inventory {path} is not valid YAML: {e}") from None
    return parse(data, str(path))


def dump(data: dict) -> str:
    if data["all"]["vars"].get("testbed") == "simulated":
        header = ("# Simulated cluster: every host a network namespace with its own mounts\n"
                  "# and sshd, reached over SSH on a management network. Made by\n"
                  "# `python -m harness testbed inventory --simulated` (see README).\n")
    else:
        header = ("# Local testbed: one network namespace per host, one veth pair per\n"
                  "# client-server link. Made by `python -m harness testbed inventory`;\n"
                  "# a cluster uses the same format without netns (see README).\n")
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
