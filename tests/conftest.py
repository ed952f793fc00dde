"""Shared fixtures. Tests that need root, BPF or the testbed skip without
them on a developer's machine, and fail instead when CI is set: in CI they
must run."""
from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from harness import inventory, snapshot
from harness.netns import netns
from harness.protocol import Op, Status, pack, unpack
from harness.schema import Schema
from harness.testbed import Testbed as LocalTestbed, leftovers


def worker_index() -> int:
    """Which pytest-xdist worker this is (gw0 -> 0, gw1 -> 1, ...); 0 when
    the tests run in one process."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


# First letters of the other testbeds' prefixes: the ones single tests bring
# up (ctb, ftb, fq, xtb, zq), a user's (dint) and a simulated cluster's
# default (sim).
OTHER_LETTERS = set("cdfsxz")


def worker_prefix(base: str, worker: int) -> str:
    """The testbed prefix of a worker: the base for the first (and without
    xdist); another first letter for each other one. Interface names start
    with the prefix's first letter (harness/inventory.py), and the kernel
    names threaded NAPI's threads after the interface, machine-wide: the
    servers of one testbed would count and pin the threads of another
    whose interfaces have the same names (tests/test_testbed.py)."""
    if worker == 0:
        return base
    first = base[0].lower()
    free = [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in OTHER_LETTERS and c != first]
    free.sort(key=lambda c: (c < first, c))  # the letters after the base's first, then round
    if worker > len(free):
        raise ValueError(f"no testbed prefix left for xdist worker {worker}")
    return free[worker - 1] + base[1:]


def worker_subnet(base: str, worker: int, stride: int = 1) -> str:
    """The /24 of a worker: the base's third number plus worker * stride."""
    a, b, c = base.split(".")
    third = int(c) + worker * stride
    if third > 255:
        raise ValueError(f"no subnet left for xdist worker {worker} after {base}")
    return f"{a}.{b}.{third}"


# The tests' own testbed, apart from a user's (other names and subnet).
# Two checkouts testing at once on one machine give each its own; each
# xdist worker of one run has its own too, derived from these.
TEST_PREFIX = worker_prefix(os.environ.get("DINT_TEST_PREFIX", "tst"), worker_index())
TEST_SUBNET = worker_subnet(os.environ.get("DINT_TEST_SUBNET", "10.78.0"), worker_index())


class LoopbackServer(threading.Thread):
    """A fake server for the client's own tests: a thread answering on a UDP
    socket of 127.0.0.1 (its run() is the subclass's), started and stopped
    as a context manager."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.addr = self.sock.getsockname()
        self.stop = threading.Event()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()
        self.sock.close()


class EchoServer(LoopbackServer):
    """Answers every dint request on 127.0.0.1 (readiness pings included):
    OK, unless a subclass's answer() says otherwise."""

    def run(self):
        while not self.stop.is_set():
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            self.answer(data, peer)

    def answer(self, data: bytes, peer) -> None:
        reply = bytearray(data)
        reply[4] = Status.OK
        self.sock.sendto(bytes(reply), peer)


def run_window(loop, seconds: float, warmup: float, drain_s: float) -> None:
    """Runs a native loop (Loop, or an Executor) through a warm-up and a
    measured window, then lets what is in flight finish (up to drain_s)."""
    t0 = time.monotonic_ns()
    start, end = t0 + int(warmup * 1e9), t0 + int((warmup + seconds) * 1e9)
    loop.set_window(start, end)
    loop.run(end, True)
    loop.run(time.monotonic_ns() + int(drain_s * 1e9), False)


def need_root() -> None:
    if os.geteuid() == 0:
        return
    msg = "needs root (network namespaces, BPF, XDP)"
    if os.environ.get("CI"):
        pytest.fail(f"{msg}, and CI is set: these tests may not skip in CI")
    pytest.skip(msg)


@pytest.fixture
def root() -> None:
    need_root()


def run_c(directory: Path, source: str, *include_dirs: Path):
    """Compiles a C program that prints one JSON value, runs it and returns
    the value: how the tests ask the C headers for what Python mirrors."""
    (directory / "prog.c").write_text(source)
    subprocess.run(["gcc", "-Wall", "-Werror", *(f"-I{d}" for d in include_dirs), "-o", str(directory / "prog"),
                    str(directory / "prog.c")], check=True)
    return json.loads(subprocess.run([str(directory / "prog")], check=True, capture_output=True, text=True).stdout)


# The files that take longest, first. With pytest-xdist (pyproject.toml:
# -n 2 --dist loadfile) a worker takes one whole file at a time, in this
# order: one of these started last would finish the run alone. The
# simulated cluster's file is set up once for the module (about two minutes)
# and is the longest by far.
SLOW_FILES = ["test_simcluster.py"]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest as collected


@pytest.fixture(scope="session", autouse=True)
def schemas_built() -> None:
    """With xdist: the servers of every workload's schema are built before
    the tests, by one worker at a time per schema (the workers start at
    different ones). A run builds what its schema needs (make skips what is
    current, harness/schema.py), and two workers' runs making one schema's
    directory at once could start a server from a half-written binary."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    import fcntl
    import workloads
    from harness import BUILD_DIR
    schemas = sorted({workloads.get(n).schema for n in workloads.NAMES} - {Schema()}, key=str)
    k = worker_index() % len(schemas)
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    for schema in schemas[k:] + schemas[:k]:
        with open(BUILD_DIR / f".{schema.build_dir.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            schema.ensure_built()


@pytest.fixture(scope="session")
def test_inventory_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inventory") / "test.yml"
    data = inventory.local_inventory(servers=3, clients=1, ncpu=2, prefix=TEST_PREFIX, subnet=TEST_SUBNET)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def test_inventory(test_inventory_path) -> inventory.Inventory:
    return inventory.load(test_inventory_path)


@pytest.fixture(scope="session")
def testbed(test_inventory):
    """A testbed for the whole session; removed at its end."""
    need_root()
    tb = LocalTestbed(test_inventory)
    tb.up()
    yield tb
    tb.down()
    left = leftovers(test_inventory)
    assert not left["namespaces"], f"testbed left behind: {left}"


# -- one running system, for the suites every system must pass ------------
SYSTEMS = ["dint", "kernel", "bypass"]
# The suites also run on dint with a cache too small for the data (slots
# for a tenth of the records, so most requests miss and go through the slow
# path, which evicts and writes back), and with both of the paper's
# ablations on top (no bloom filter, write-through).
VARIANTS = {
    "dint": {}, "kernel": {}, "bypass": {},
    "dint-tenth": {"system": "dint", "cache_fraction": 0.1},
    "dint-ablations": {"system": "dint", "cache_fraction": 0.1, "cache_bloom": False,
                       "cache_write_through": True},
}

# Initial data of the conformance suites: the same snapshot for every system.
INITIAL = [snapshot.Record(table=0, key=k, ver=1, value=k.to_bytes(8, "big")) for k in range(100, 110)] + \
    [snapshot.Record(table=1, key=k, ver=3, value=bytes([k % 256]) * 40) for k in range(200, 205)] + \
    [snapshot.Record(table=2, key=k, ver=1, value=b"") for k in range(300, 303)]


def client_sockets_of(inv) -> list[socket.socket]:
    """One client's UDP sockets on the testbed, in the first client host's
    namespace, one connected to each server (the caller closes them)."""
    client = inv.clients[0]
    socks = []
    with netns(client.netns):
        for srv in inv.servers:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((client.address, 0))
            s.connect((srv.address, inv.port))
            socks.append(s)
    return socks


class Link(NamedTuple):
    """The client's link to one server, as a frame crafted on it needs:
    the client's interface and both ends' MAC and IPv4 addresses."""
    iface: str
    client_mac: str
    server_mac: str
    client_ip: str
    server_ip: str


class Served:
    """A running system plus what the tests sent to each server."""

    def __init__(self, system, inv):
        self.system, self.inv = system, inv
        self.client = inv.clients[0]
        with netns(self.client.netns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.client.address, 0))
        self.sent = collections.Counter()  # (server, stat) -> count
        self.seq = 0
        self.raw: dict[str, socket.socket] = {}  # client interface -> AF_PACKET socket sending frames

    @property
    def sport(self) -> int:
        """The client socket's port: frames crafted from it get their replies there."""
        return self.sock.getsockname()[1]

    def link(self, server) -> Link:
        cif, sif = self.client.interface_to(server.name), server.interface_to(self.client.name)
        return Link(cif.name, cif.mac, sif.mac, self.client.address, server.address)

    def send_frames(self, server, frames: list[bytes]) -> None:
        """Sends Ethernet frames as they are on the client's link to server
        (a raw socket on its interface: the client's stack adds nothing)."""
        iface = self.link(server).iface
        if iface not in self.raw:
            with netns(self.client.netns):
                self.raw[iface] = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            self.raw[iface].bind((iface, 0))
        for f in frames:
            self.raw[iface].send(f)

    def sniffer(self, server) -> socket.socket:
        """A raw socket seeing the IPv4 frames that arrive on the client's
        link to server (the caller closes it)."""
        with netns(self.client.netns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        s.bind((self.link(server).iface, 0x0800))  # Python puts the protocol in network order itself
        return s

    def replies(self, wait: float, want: int | None = None) -> list[bytes]:
        """The datagrams that reach the client's socket within wait s (the
        first want of them, as soon as they are in)."""
        out, deadline = [], time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0 and len(out) != want:
            self.sock.settimeout(left)
            try:
                out.append(self.sock.recvfrom(65536)[0])
            except TimeoutError:
                break
        return out

    def close(self) -> None:
        self.sock.close()
        for s in self.raw.values():
            s.close()

    def exchange(self, server, data: bytes, wait: float = 0.3) -> bytes | None:
        self.sock.sendto(data, (server.address, self.inv.port))
        self.sent[(server.name, "rx")] += 1
        self.sock.settimeout(wait)
        try:
            reply, _ = self.sock.recvfrom(4096)
            return reply
        except TimeoutError:
            return None

    def request(self, op, key, value=b"", server=None, **kw):
        """Sends one request to a server (s0 by default), returns the reply
        (protocol.Message) and counts what the server should count. The
        request id is client 0's next unless client_id and seq are given."""
        server = server or self.inv.servers[0]
        if "seq" not in kw:
            self.seq += 1
            kw["seq"] = self.seq
        reply = self.exchange(server, pack(op, key, value, **kw))
        assert reply is not None, f"{self.system.name}/{server.name}: no reply to {Op(op).name} {key}"
        msg = unpack(reply)
        assert msg.seq == kw["seq"]
        self.sent[(server.name, "tx")] += 1
        if msg.status != Status.OK:
            self.sent[(server.name, "err")] += 1
        return msg

    def unanswered(self, op, key, value=b"", server=None, **kw) -> None:
        """Sends a request that must be dropped (a stale copy): no reply."""
        server = server or self.inv.servers[0]
        reply = self.exchange(server, pack(op, key, value, **kw))
        assert reply is None, f"{self.system.name}/{server.name}: {Op(op).name} {key} answered: {unpack(reply)}"
        self.sent[(server.name, "drop")] += 1
        self.sent[(server.name, "stale")] += 1


@pytest.fixture(scope="module", params=list(VARIANTS))
def served(request, testbed, test_inventory_path, test_inventory, tmp_path_factory):
    from harness.config import RunConfig
    from harness.systems import make_system
    d = tmp_path_factory.mktemp(f"served-{request.param}")
    snapshot.write_snapshot(d / "initial.snap", Schema(), INITIAL)
    cfg = RunConfig(**{"system": request.param, **VARIANTS[request.param]}, inventory=str(test_inventory_path))
    system = make_system(test_inventory, cfg, d / "logs", Schema(), d / "initial.snap")
    with system:
        s = Served(system, test_inventory)
        yield s
        s.close()
