"""The inventory: which hosts exist, their role, interfaces, addresses, MACs
and cores. One format (an Ansible YAML inventory) describes the local
namespace testbed and a real cluster; local hosts also name their netns."""
from __future__ import annotations

import os
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
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def hosts(self) -> tuple[Host, ...]:
        return self.servers + self.clients

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


def _host(name: str, role: str, spec: dict, where: str) -> Host:
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
    return Host(name, role, str(spec["address"]), tuple(cpus), tuple(ifaces), spec.get("netns"),
                spec.get("dpdk_port"))


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
        hosts[group] = tuple(_host(n, group[:-1], s, where) for n, s in members.items())
    inv = Inventory(hosts["servers"], hosts["clients"], int(hvars.get("dint_port", DEFAULT_PORT)),
                    hvars.get("deployment", "local") == "local", where, data)
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
    header = ("# Local testbed: one network namespace per host, one veth pair per\n"
              "# client-server link. Made by `python -m harness testbed inventory`;\n"
              "# a cluster uses the same format without netns (see README).\n")
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
