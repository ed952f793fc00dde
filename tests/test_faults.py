"""Fault injection (harness/faults.py, bpf/faults.c): the spec's grammar and
its errors; the programs on the kernel's test path (BPF_PROG_TEST_RUN,
scapy-built frames in, verdict and counters out); and on the test testbed:
reply loss taking its share with every datagram still explained, dup
doubling what the servers receive, late copies and reordered requests
arriving when drawn (measured by a socket on a server host, apart from the
injector's own measure), and nothing of the injector left after a run,
an error or a Ctrl-C."""
from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw

from harness import BPF_DIR, ROOT, HarnessError, bpf_run, faults, inventory
from harness.config import RunConfig
from harness.experiments import sweep_tag
from harness.netns import netns
from harness.protocol import DEFAULT_PORT, Op, Status, pack
from harness.sh import ip, run
from harness.testbed import xdp_prog_id

from conftest import need_root

HARNESS = [sys.executable, "-m", "harness"]
SO_TIMESTAMPNS = 35  # asm-generic/socket.h (Python names only SO_TIMESTAMP)


# -- the spec ---------------------------------------------------------------
GOOD = [
    ("", ""),
    ("reply-loss=1%", "reply-loss=1%"),
    (" dup=5% , reply-loss=0.5%", "reply-loss=0.5%,dup=5%"),
    ("reply-loss=1%,request-loss=1%,dup=5%,late-dup=5%,reorder=2%,fault-seed=7",
     "reply-loss=1%,request-loss=1%,dup=5%,late-dup=5%,reorder=2%,late-delay=50ms-1s,reorder-delay=200us-2ms,"
     "fault-seed=7"),
    ("late-dup=100%,late-delay=100ms-200ms", "late-dup=100%,late-delay=100ms-200ms"),
    ("reorder=2%,reorder-delay=0.5ms-3ms", "reorder=2%,reorder-delay=500us-3ms"),
]


@pytest.mark.parametrize("text,canonical", GOOD, ids=[g[0] or "empty" for g in GOOD])
def test_good_specs_parse_to_their_canonical_form(text, canonical):
    spec = faults.parse(text)
    assert spec.canonical() == canonical
    assert faults.parse(spec.canonical()) == spec  # the canonical form reads back the same


BAD = [
    ("reply-los=1%", "'reply-los' is not a fault (did you mean reply-loss?)"),
    ("loss=1%", "'loss' is not a fault"),
    ("reply-loss=1", "reply-loss=1: give a share in percent"),
    ("reply-loss=abc%", "reply-loss=abc%: give a share in percent"),
    ("dup=101%", "dup=101%: a share must be between 0% and 100%"),
    ("dup=1%,dup=2%", "dup is given twice"),
    ("dup", "'dup': give NAME=VALUE"),
    ("dup=1%,,reorder=1%", "has an empty item"),
    ("late-delay=50ms-1s", "late-delay applies to late-dup only"),
    ("late-dup=1%,late-delay=1s", "late-delay=1s: give a range MIN-MAX"),
    ("late-dup=1%,late-delay=2s-1s", "late-delay=2s-1s: need 0 < MIN <= MAX <= 10s"),
    ("late-dup=1%,late-delay=1ms-1s", "late-delay=1ms-1s: MAX may be at most"),
    ("reorder=1%,reorder-delay=1m-2ms", "reorder-delay: '1m' is not a duration"),
    ("dup=1%,fault-seed=-3", "fault-seed=-3: the seed must be a whole number"),
]


@pytest.mark.parametrize("text,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_specs_give_one_line_naming_the_bad_part(text, expected):
    with pytest.raises(HarnessError) as info:
        faults.parse(text)
    msg = str(info.value)
    assert msg.startswith("--faults: ") and expected in msg and "\n" not in msg


def test_the_command_line_refuses_a_bad_spec_in_one_line(tmp_path):
    p = subprocess.run([*HARNESS, "run", "--system", "kernel", "--faults", "dup=5", "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 1
    assert p.stderr.strip() == "error: --faults: dup=5: give a share in percent, e.g. dup=1% or dup=0.5%"


def test_request_faults_send_without_gso():
    assert RunConfig(system="kernel", faults="dup=1%").validate().client_gso == "off"
    assert RunConfig(system="kernel", faults="reply-loss=1%").validate().client_gso == "auto"
    with pytest.raises(HarnessError, match="--client-gso on cannot be used with request faults"):
        RunConfig(system="kernel", faults="request-loss=1%", client_gso="on").validate()


def test_a_cluster_inventory_takes_faults_run_as_root_on_its_client_hosts(tmp_path):
    """A real cluster's inventory: the spec checked as anywhere, the host
    agent's command line carries all it needs (the host has no inventory),
    through sudo for a login that becomes root, and a login that cannot is
    refused in one line."""
    data = inventory.local_inventory(servers=1, clients=1, prefix="fq", subnet="10.98.9")
    data["all"]["vars"].update(deployment="cluster", ansible_connection="ssh", ansible_user="root")
    for group in data["all"]["children"].values():
        for host in group["hosts"].values():
            del host["netns"]
    path = tmp_path / "cluster.yml"

    def load(**hvars):
        data["all"]["vars"].update(hvars)
        path.write_text(yaml.safe_dump(data))
        return inventory.load(path)
    inv = load()
    faults.check_inventory("reply-loss=1%", inv)
    with pytest.raises(HarnessError, match="^--faults: dup=5: give a share in percent"):
        faults.check_inventory("dup=5", inv)
    injector = faults.Injector(inv, "reply-loss=1%,late-dup=2%", 7)
    unit = injector.units[0]
    cmd = injector.agent_command(unit, "attach")
    assert cmd[:-1] == [sys.executable, "-m", "harness.faults", "agent", "attach"]
    assert json.loads(cmd[-1]) == {"host": "c0", "interfaces": ["fc0s0"], "cpus": [0], "key": "c0",
                                   "spec": "reply-loss=1%,late-dup=2%", "seed": 7, "port": DEFAULT_PORT,
                                   "index": 0, "pass_back": False}
    again = faults.HostFaults.from_agent(json.loads(cmd[-1]))
    assert again.to_agent() == unit.to_agent() and again.netns is None and again.hold == unit.hold

    inv = load(ansible_user="dint")
    with pytest.raises(HarnessError) as info:
        faults.check_inventory("reply-loss=1%", inv)
    assert str(info.value) == ("--faults needs root on client host c0 (BPF programs on its interfaces): "
                               f"{path} logs in as dint, without ansible_become")
    faults.check_inventory("", inv)  # no faults: nothing to refuse
    inv = load(ansible_become=True)
    faults.check_inventory("reply-loss=1%", inv)
    assert faults.Injector(inv, "reply-loss=1%", 1).agent_command(unit, "remove")[:4] == \
        ["sudo", "-n", sys.executable, "-m"]

    # the agent's failure: one line on stderr, exit 1
    p = subprocess.run([sys.executable, "-m", "harness.faults", "agent", "finish", "{}"], capture_output=True,
                       text=True, cwd=ROOT)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("error: the fault injector's host agent got a bad JSON argument") \
        and p.stderr.count("\n") == 1


def test_point_names_show_the_faults_readably():
    assert sweep_tag("faults", "") == "no-faults"
    assert sweep_tag("faults", "reply-loss=1%") == "reply-loss-1pct"
    assert sweep_tag("faults", "reply-loss=0.5%,dup=5%,fault-seed=3") == "reply-loss-0p5pct-dup-5pct-seed3"
    assert sweep_tag("concurrency", 32) == "c32"


def test_the_mirrors_agree_with_the_bpf_source():
    src = (BPF_DIR / "faults.c").read_text()
    define = lambda name: int(re.search(rf"#define {name} (\w+)", src).group(1), 0)  # noqa: E731
    assert (define("LATE_LANES"), define("REORDER_LANES"), define("MAX_SLOTS")) == \
        (faults.LATE_LANES, faults.REORDER_LANES, faults.MAX_SLOTS)
    assert (define("DEBT_MIN"), define("DEBT_MAX")) == (faults.DEBT_MIN, faults.DEBT_MAX)
    enum = re.search(r"enum counter \{(.*?)\};", src, re.S).group(1)
    names = [n.strip().lower() for n in enum.replace("\n", " ").split(",") if n.strip()]
    assert names[-1] == "ncounters"
    assert tuple(names[:-1]) == faults.COUNTERS
    body = re.search(r"struct config \{(.*?)\};", src, re.S).group(1)
    u64 = sum(len(re.findall(r"\w+(?:\[\d+\])?", line.split("__u64", 1)[1].split(";")[0]))
              for line in body.splitlines() if line.strip().startswith("__u64"))
    u32 = sum(len(re.findall(r"\w+", line.split("__u32", 1)[1].split(";")[0]))
              for line in body.splitlines() if line.strip().startswith("__u32"))
    assert faults.CONFIG_LAYOUT.format == f"<{u64}Q{u32}I"


# -- the programs on the kernel's test path ------------------------------------
CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:02", "02:00:00:00:00:01"


def frame(payload: bytes, sport: int = 40000, dport: int = DEFAULT_PORT) -> bytes:
    return bytes(Ether(src=CLIENT_MAC, dst=SERVER_MAC) / IP(src="10.0.0.2", dst="10.0.0.1") /
                 UDP(sport=sport, dport=dport) / Raw(payload))


REQUEST = frame(pack(Op.ECHO, 1, b"hi"))
REPLY = frame(pack(Op.ECHO, 1, b"hi", status=Status.OK), sport=DEFAULT_PORT, dport=40000)
OTHER = {
    "arp": bytes(Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst="10.0.0.1")),
    "udp_other_port": frame(b"x" * 40, dport=53),
    "tcp": bytes(Ether() / IP(proto=6) / Raw(b"x" * 40)),
    "runt": REQUEST[:38],  # IP header whole, UDP header cut
}


@pytest.fixture
def programs():
    """build/faults.o loaded and pinned in a directory of its own, run from a
    network namespace of its own (copies go to its loopback)."""
    need_root()
    name = f"fa-prog-{uuid.uuid4().hex[:6]}"
    pins = faults.PIN_ROOT.parent / f"dint-faults-test-{name}"
    ip("netns", "add", name)
    try:
        ip("link", "set", "lo", "up", netns=name)
        faults.load(pins)
        from bcc.libbcc import lib
        lib.bpf_obj_get.argtypes = [ctypes.c_char_p]
        fds = {p: lib.bpf_obj_get(str(pins / p).encode()) for p in ("faults_reply", "faults_request")}
        assert all(fd >= 0 for fd in fds.values())

        def configure(text: str, seed: int = 1) -> None:
            """The config, and the random streams started again (as a run's load starts them)."""
            faults.write_config(pins, faults.parse(text), seed, DEFAULT_PORT)
            for key in ("00", "01"):
                run(["bpftool", "map", "update", "pinned", str(pins / "maps" / "faults_rng"), "key", "hex", key,
                     "00", "00", "00", "value", "hex", *["00"] * 8])

        def run_prog(prog: str, packet: bytes):
            with netns(name):
                return bpf_run.run(fds[prog], packet,
                                   verdicts=bpf_run.TC_VERDICTS if prog == "faults_request" else bpf_run.XDP_VERDICTS)

        yield configure, run_prog, lambda: faults.counters(pins)
        for fd in fds.values():
            os.close(fd)
    finally:
        shutil.rmtree(pins, ignore_errors=True)
        ip("netns", "del", name, check=False)


TABLE = [
    # spec, program, frame, verdict, counters that moved
    ("reply-loss=100%", "faults_reply", REPLY, "XDP_DROP", {"rep_seen": 1, "rep_dropped": 1}),
    ("reply-loss=0%,dup=1%", "faults_reply", REPLY, "XDP_PASS", {"rep_seen": 1}),
    ("reply-loss=100%", "faults_reply", REQUEST, "XDP_PASS", {}),
    ("request-loss=100%", "faults_request", REQUEST, "TC_ACT_SHOT", {"req_seen": 1, "req_dropped": 1}),
    ("request-loss=100%", "faults_request", REPLY, "TC_ACT_OK", {}),
    ("reply-loss=100%", "faults_request", REQUEST, "TC_ACT_OK", {"req_seen": 1}),
    ("dup=100%", "faults_request", REQUEST, "TC_ACT_OK", {"req_seen": 1, "req_dup": 1}),
    ("request-loss=100%,dup=100%", "faults_request", REQUEST, "TC_ACT_SHOT", {"req_seen": 1, "req_dropped": 1}),
    # no delay line configured: the copy cannot be held, the request goes as it is
    ("late-dup=100%", "faults_request", REQUEST, "TC_ACT_OK", {"req_seen": 1, "req_copy_failed": 1}),
]


@pytest.mark.parametrize("spec,prog,packet,verdict,moved", TABLE,
                         ids=[f"{t[0]}-{t[1]}-{'request' if t[2] is REQUEST else 'reply'}" for t in TABLE])
def test_packet_table(programs, spec, prog, packet, verdict, moved):
    configure, run_prog, counters = programs
    configure(spec)
    res = run_prog(prog, packet)
    assert res.verdict == verdict
    if verdict.endswith("PASS") or verdict == "TC_ACT_OK":
        assert res.packet == packet  # passed untouched
    assert {k: v for k, v in counters().items() if v} == moved


@pytest.mark.parametrize("name", list(OTHER))
@pytest.mark.parametrize("prog", ["faults_reply", "faults_request"])
def test_other_traffic_passes_uncounted(programs, prog, name):
    configure, run_prog, counters = programs
    configure("reply-loss=100%,request-loss=100%")
    res = run_prog(prog, OTHER[name])
    assert res.verdict in ("XDP_PASS", "TC_ACT_OK") and res.packet == OTHER[name]
    assert not any(counters().values())


def test_a_share_takes_that_share_and_a_seed_fixes_which(programs):
    configure, run_prog, counters = programs

    def fates(seed: int) -> list[str]:
        configure("reply-loss=30%", seed)
        return [run_prog("faults_reply", REPLY).verdict for _ in range(400)]

    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})  # one CPU: one stream
    try:
        a, b, c = fates(11), fates(11), fates(12)
    finally:
        os.sched_setaffinity(0, cpus)
    assert a == b and a != c
    assert 0.22 < a.count("XDP_DROP") / len(a) < 0.38


# -- on the testbed -------------------------------------------------------------
def _left_on(inv) -> list[str]:
    """What of the injector is still on the testbed's client hosts."""
    left = []
    for host in inv.clients:
        for iface in host.interfaces:
            info = json.loads(ip("-j", "link", "show", "dev", iface.name, netns=host.netns).stdout)[0]
            name = ((info.get("xdp") or {}).get("prog") or {}).get("name")
            if name != "xdp_pass":
                left.append(f"{iface.name}: xdp {name}")
            qd = run(["tc", "-n", host.netns, "qdisc", "show", "dev", iface.name]).stdout
            if "clsact" in qd:
                left.append(f"{iface.name}: clsact")
        hold, _ = faults.delay_line_names(host)
        if ip("link", "show", "dev", hold, netns=host.netns, check=False).returncode == 0:
            left.append(f"delay line {hold}")
        if faults.pin_dir(host.netns).exists():
            left.append(str(faults.pin_dir(host.netns)))
    return left


def harness_run(inv_path, out: Path, spec: str, *extra: str) -> dict:
    p = subprocess.run([*HARNESS, "run", "--system", "kernel", "--concurrency", "8", "--duration", "1",
                        "--warmup", "0.3", "--inventory", str(inv_path), "--out", str(out), "--faults", spec, *extra],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return json.loads((out / "summary.json").read_text())


def test_reply_loss_takes_half_and_every_datagram_is_explained(testbed, test_inventory_path, test_inventory,
                                                              tmp_path):
    s = harness_run(test_inventory_path, tmp_path / "run", "reply-loss=50%")
    f, check = s["faults"], s["instrument_check"]
    rep = f["counters"]["replies"]
    assert rep["seen"] == check["server_tx"] > 100
    assert 0.4 < rep["dropped"] / rep["seen"] < 0.6
    assert f["counters"]["requests"]["seen"] == check["client_sent"]
    assert check["match"] is True, check
    assert s["error_detail"]["retransmits"] > 0  # the client saw the losses
    assert f["seed"] == 1 and f["seed_from"] == "--seed"
    assert _left_on(test_inventory) == []


def test_dup_doubles_what_the_servers_receive(testbed, test_inventory_path, test_inventory, tmp_path):
    s = harness_run(test_inventory_path, tmp_path / "run", "dup=100%,fault-seed=5")
    check, req = s["instrument_check"], s["faults"]["counters"]["requests"]
    assert req["duplicated"] == check["client_sent"] > 100
    assert check["server_rx"] == 2 * check["client_sent"]
    assert check["match"] is True, check
    assert s["config"]["client_gso"] == "off" and s["faults"]["seed"] == 5
    assert _left_on(test_inventory) == []


def test_late_copies_and_reordered_requests_arrive_when_drawn(testbed, test_inventory):
    """Datagrams sent from the client host to a socket on a server host: each
    late copy arrives 100-200 ms after its original, and held requests are
    overtaken by later ones."""
    inv = test_inventory
    client, server = inv.clients[0], inv.servers[0]
    with netns(server.netns):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with netns(client.netns):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind((server.address, inv.port))
    tx.bind((client.address, 0))
    rx.settimeout(1.0)
    rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # when each arrived, read later

    def receive() -> tuple[int, float]:
        data, anc, _, _ = rx.recvmsg(2048, 64)
        sec, nsec = struct.unpack("qq", anc[0][2][:16])
        return int.from_bytes(data[:4], "big"), sec + nsec / 1e9

    arrivals: dict[int, list[float]] = {}
    try:
        injector = faults.Injector(inv, "late-dup=100%,late-delay=100ms-200ms", 3)
        with injector:
            for i in range(20):
                tx.sendto(i.to_bytes(4, "big") + bytes(40), (server.address, inv.port))
                time.sleep(0.005)
            try:
                while sum(map(len, arrivals.values())) < 40:
                    i, at = receive()
                    arrivals.setdefault(i, []).append(at)
            except TimeoutError:
                pass
        gaps = [t[1] - t[0] for t in arrivals.values() if len(t) == 2]
        assert len(gaps) == 20, arrivals
        assert all(0.095 < g < 0.25 for g in gaps), gaps
        late = injector.result()["delay_line"]["late"]
        assert late["released"] == 20 and 99 < late["lateness_ms"]["min"] <= late["lateness_ms"]["max"] < 205
        assert late["model_error_ms"]["max"] < 5
        assert _left_on(inv) == []

        order = []
        with faults.Injector(inv, "reorder=50%,reorder-delay=2ms-4ms", 3) as injector:
            for i in range(200):
                tx.sendto(i.to_bytes(4, "big") + bytes(40), (server.address, inv.port))
            try:
                while len(order) < 200:
                    order.append(receive()[0])
            except TimeoutError:
                pass
        assert sorted(order) == list(range(200))
        held = injector.result()["counters"]["requests"]["reordered"]
        assert 60 < held < 140
        assert order != sorted(order)  # later ones overtook the held ones
        assert _left_on(inv) == []
    finally:
        rx.close()
        tx.close()


def test_an_error_inside_the_run_leaves_nothing_behind(testbed, test_inventory):
    with pytest.raises(KeyboardInterrupt):
        with faults.Injector(test_inventory, "reply-loss=1%,late-dup=1%,reorder=1%", 1):
            assert _left_on(test_inventory)  # attached
            status = {r["host"]: r.get("faults") for r in testbed.status()}
            assert status["c0"]["delay_line"] == list(faults.delay_line_names(test_inventory.clients[0]))
            raise KeyboardInterrupt
    assert _left_on(test_inventory) == []
    assert all(xdp_prog_id(h.netns, i.name) for h in test_inventory.clients for i in h.interfaces)


# -- the experiment, its figure and the report -----------------------------------
def test_the_faults_figure_and_report_from_fabricated_points(tmp_path, monkeypatch):
    """A faults experiment run with made-up summaries (test_eval's): the
    table carries the faults, the figure labels every point with its
    consistency verdict, and the report gives the goodput kept per system."""
    from harness import experiments, report, reproduce, results
    from harness import run as harness_run
    from test_eval import point_series
    import plots.faults
    from test_eval import fake_summary

    raw = {"version": 1, "profile": "tiny", "defaults": {"duration_s": 0.3, "warmup_s": 0.2},
           "experiments": [{"name": "faults", "figure": "faults", "workload": "smallbank",
                            "config": {"concurrency": 8},
                            "sweep": {"faults": ["", "reply-loss=1%", "reply-loss=5%"]}}]}
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(raw))
    ef = experiments.load(str(path))
    names = [p.name for p in ef.points()]
    assert names[:3] == ["faults__dint__no-faults", "faults__dint__reply-loss-1pct", "faults__dint__reply-loss-5pct"]

    def execute(cfg, out, **_):
        out.mkdir(parents=True)
        s = fake_summary(cfg, violation=out.name == "faults__kernel__reply-loss-5pct")
        loss = results.loss_percent(cfg.faults)
        s["transactions"]["total"]["goodput_per_s"] = 1000.0 * (1 - loss / 10)
        (out / "summary.json").write_text(json.dumps(s))
        return s

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.setattr(harness_run, "Series", point_series(execute))
    reproduce.run_points(run_dir, ef.points(), progress=False, log=lambda m: None)
    df = results.write_table(run_dir)
    row = df[df["point"] == "faults__bypass__reply-loss-1pct"].iloc[0]
    assert (row["faults"], row["loss_percent"]) == ("reply-loss=1%", 1.0)

    labels = []

    def save(fig, out_dir, stem, foot=None):
        labels.extend(t.get_text() for ax in fig.axes for t in ax.texts)
        return [Path(out_dir) / f"{stem}.png"]
    monkeypatch.setattr(plots.faults, "save", save)
    assert plots.faults.plot(df, "faults", "t", run_dir) == [run_dir / "faults-faults.png"]
    # each of the 9 points labelled, in both panels
    assert sorted(labels) == sorted(["VIOLATIONS"] * 2 + ["ok"] * 16)

    text = report.render(run_dir, df)
    assert "## Fault injection" in text
    one = "[? one repetition]"  # one run a point: the shares' intervals are unknown
    assert f"- faults, dint: fault-free 1,000/s (ok); reply-loss=1%: 90% {one} (ok); reply-loss=5%: 50% {one} (ok)" \
        in text
    assert (f"- faults, kernel: fault-free 1,000/s (ok); reply-loss=1%: 90% {one} (ok); reply-loss=5%: 50% {one} "
            "(violations)") in text


def test_the_instrument_check_accounts_for_what_the_links_dropped():
    """A burst that fills a veth ring loses datagrams on the link (its
    tx_dropped): the check counts them, and only them, as explained. Links
    not measured (a cluster's) are taken as 0, and the check says so."""
    from harness.summary import instrument_check
    srv = {"rx": 95, "tx": 95, "drop": 0}
    links = {"requests": 5, "replies": 2}
    assert instrument_check(100, 93, srv, True, links)["match"]
    assert not instrument_check(100, 93, srv, True, {"requests": 4, "replies": 2})["match"]
    assert "link_drops_not_measured" not in instrument_check(100, 93, srv, True, links)
    unmeasured = instrument_check(100, 93, srv, True, {"requests": None, "replies": None, "why_null": "a cluster"})
    assert not unmeasured["match"]
    assert unmeasured["link_drops_not_measured"] == ("the links' drops were not measured on this testbed (a cluster) "
                                                     "and are taken as 0: a datagram a link lost shows as a mismatch")
    assert instrument_check(95, 95, srv, True, None)["match"]
    # with faults, the same: said, and taken as 0
    f = {"counters": {"requests": {"seen": 95, "dropped": 0, "duplicated": 0, "reordered": 0},
                      "replies": {"seen": 95, "dropped": 0}}, "client_sockets": {"closed_port_replies": 0}}
    check = faults.instrument_check(95, 95, srv, True, f, {"requests": None, "replies": None, "why_null": "a cluster"})
    assert check["match"] and "(a cluster)" in check["link_drops_not_measured"]
    assert "link_drops_not_measured" not in faults.instrument_check(95, 95, srv, True, f, {"requests": 0, "replies": 0})
