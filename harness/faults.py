"""Fault injection, a run option (`--faults SPEC`, RunConfig.faults): loss,
duplication, late duplication and reordering of requests, and loss of
replies, injected by BPF programs (bpf/faults.c) on every client host's
ends of its links to the servers, attached after the servers are ready and
removed when the run ends (also on errors and Ctrl-C), and counted.

The spec, comma-separated::

    reply-loss=P%      drop P% of the replies arriving at the client (XDP)
    request-loss=P%    drop P% of the requests leaving the client (TC egress)
    dup=P%             send a copy of P% of the requests at once
    late-dup=P%        send a copy of P% of the requests that leaves late,
                       at a time drawn from late-delay (default 50ms-1s)
    reorder=P%         hold P% of the requests for a time drawn from
                       reorder-delay (default 200us-2ms): later ones overtake
    late-delay=A-B, reorder-delay=A-B   the delays' ranges (us, ms or s)
    fault-seed=N       the seed of the injector's random streams (default:
                       the run's --seed)

Where each acts: reply-loss in an XDP program on every client end (in
place of xdp_pass on a local or simulated testbed); the request faults in a
TC egress program on every client end. Delayed packets go through a delay
line of the client host's own: a veth pair beside its ends whose first end
(hold) has an HTB
qdisc with one leaf class per lane, put into debt by debt packets sized so
that each held packet leaves when drawn (see bpf/faults.c); the second end
(release) measures how late each one is and sends it back to its link.

A request sent as one UDP GSO batch is one packet at TC egress: runs with
request faults send datagram by datagram (RunConfig.validate turns
--client-gso auto to off, and refuses on).

Who attaches them: a client host's part is a HostFaults (attach; finish:
drain the delay line, cut it, read the counters; remove). On a local
testbed the controller runs it in each client host's namespace; a cluster
host (real or simulated) runs it itself, as `python -m harness.faults agent
ACTION JSON` started by the controller over SSH as Ansible reaches the host
(root: the inventory logs in as root or becomes root with sudo). The hosts
go in parallel. A cluster's links' drops are not read: the instrument check
takes them as 0 and says so."""
from __future__ import annotations

import difflib
import json
import math
import re
import shlex
import shutil
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from . import BUILD_DIR, HarnessError
from .inventory import Host, Interface, Inventory
from .sh import ip, run

OBJ = BUILD_DIR / "faults.o"
PASS_OBJ = BUILD_DIR / "xdp_pass.o"
PIN_ROOT = Path("/sys/fs/bpf/dint-faults")  # one directory per client host's namespace

# Mirrors of bpf/faults.c (tests/test_faults.py checks them against it).
LATE_LANES, REORDER_LANES, MAX_SLOTS = 56, 8, 8
SLOT_LANES = LATE_LANES + REORDER_LANES
DEBT_MIN, DEBT_MAX = 64, 16000
LANE_MINOR = 0x10
CONFIG_LAYOUT = struct.Struct("<12Q6I")  # struct config
COUNTERS = (
    "req_seen", "req_dropped", "req_dup", "req_late", "req_reorder", "req_gso_untouched", "req_copy_failed",
    "rel_late", "rel_reorder", "rel_debt", "rel_failed",
    "hold_failed", "hold_debt_bytes", "late_beyond_draw",
    "late_sum_ns", "late_max_ns", "late_min_inv_ns", "late_err_sum_ns", "late_err_max_ns",
    "reorder_sum_ns", "reorder_max_ns", "reorder_min_inv_ns", "reorder_err_sum_ns", "reorder_err_max_ns",
    "rep_seen", "rep_dropped", "req_dup_link_dropped",
)
MAX_COUNTERS = {"late_max_ns", "late_min_inv_ns", "late_err_max_ns", "reorder_max_ns", "reorder_min_inv_ns",
                "reorder_err_max_ns"}  # per-CPU maxima: the largest, not the sum

SHARES = {"reply-loss": "reply_loss", "request-loss": "request_loss", "dup": "dup", "late-dup": "late_dup",
          "reorder": "reorder"}
DELAYS = {"late-delay": "late_delay_ns", "reorder-delay": "reorder_delay_ns"}
KEYS = (*SHARES, *DELAYS, "fault-seed")
UNITS_NS = {"us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
MAX_DELAY_NS = 10 * UNITS_NS["s"]
# A lane's debt packets go from DEBT_MIN to DEBT_MAX bytes at a rate that
# makes DEBT_MAX last the longest delay: a delay shorter than the longest
# over DEBT_MAX / DEBT_MIN cannot be held (it would leave at once).
MAX_DELAY_RATIO = DEBT_MAX // DEBT_MIN // 2
DRAIN_MARGIN_S = 0.2   # after the delay line is empty: for the last replies to arrive
RULE = ("requests: every datagram the clients sent passed the injector (client_sent == requests seen), and "
        "server_rx == client_sent - requests dropped + copies sent at once + late copies released "
        "- reordered requests never released - requests the links dropped after the injector (link_drops: "
        "copies sent at once that the end dropped are among them); "
        "replies: every reply the servers sent passed the injector "
        "(replies seen == server_tx), and client_received == server_tx - replies dropped - replies the links "
        "dropped - replies that "
        "reached a client socket already closed (UDP NoPorts in the client namespaces over the run) - replies "
        "left unread in a client's socket when it closed, which only copies can cause (a client waits for the "
        "replies to its own requests): 0 <= unread <= copies sent at once + late copies released; "
        "and server_tx + server_drop == server_rx")


def _fail(msg: str):
    raise HarnessError(f"--faults: {msg}")


def _share(key: str, text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)%", text)
    if not m:
        _fail(f"{key}={text}: give a share in percent, e.g. {key}=1% or {key}=0.5%")
    p = float(m.group(1))
    if p > 100:
        _fail(f"{key}={text}: a share must be between 0% and 100%")
    return p / 100


def _duration_ns(key: str, text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms|s)", text)
    if not m:
        _fail(f"{key}: {text!r} is not a duration (a number with us, ms or s, e.g. 200us)")
    return round(float(m.group(1)) * UNITS_NS[m.group(2)])


def _range_ns(key: str, text: str) -> tuple[int, int]:
    parts = text.split("-")
    if len(parts) != 2:
        _fail(f"{key}={text}: give a range MIN-MAX, e.g. {key}=50ms-1s")
    lo, hi = (_duration_ns(key, p) for p in parts)
    if not 0 < lo <= hi <= MAX_DELAY_NS:
        _fail(f"{key}={text}: need 0 < MIN <= MAX <= 10s")
    if hi > lo * MAX_DELAY_RATIO:
        _fail(f"{key}={text}: MAX may be at most {MAX_DELAY_RATIO} times MIN (the delay line's debt packets "
              f"span {DEBT_MIN}-{DEBT_MAX} bytes)")
    return lo, hi


def _fmt_ns(ns: int) -> str:
    for unit in ("s", "ms", "us"):
        if ns % UNITS_NS[unit] == 0:
            return f"{ns // UNITS_NS[unit]}{unit}"
    return f"{ns / 1000:g}us"


def _fmt_pct(share: float) -> str:
    return f"{share * 100:.6g}%"


@dataclass(frozen=True)
class FaultSpec:
    """A parsed --faults: shares between 0 and 1, delays in ns."""
    reply_loss: float = 0.0
    request_loss: float = 0.0
    dup: float = 0.0
    late_dup: float = 0.0
    reorder: float = 0.0
    seed: int | None = None
    late_delay_ns: tuple[int, int] = (50 * UNITS_NS["ms"], UNITS_NS["s"])
    reorder_delay_ns: tuple[int, int] = (200 * UNITS_NS["us"], 2 * UNITS_NS["ms"])

    @property
    def active(self) -> bool:
        return any(getattr(self, f) for f in SHARES.values())

    @property
    def on_requests(self) -> bool:
        return bool(self.request_loss or self.dup or self.late_dup or self.reorder)

    @property
    def delays(self) -> bool:
        return bool(self.late_dup or self.reorder)

    def canonical(self) -> str:
        """The spec written back in its own grammar (what summary.json shows)."""
        parts = [f"{k}={_fmt_pct(getattr(self, f))}" for k, f in SHARES.items() if getattr(self, f)]
        if self.late_dup:
            parts.append(f"late-delay={'-'.join(map(_fmt_ns, self.late_delay_ns))}")
        if self.reorder:
            parts.append(f"reorder-delay={'-'.join(map(_fmt_ns, self.reorder_delay_ns))}")
        if self.seed is not None:
            parts.append(f"fault-seed={self.seed}")
        return ",".join(parts)

    def to_dict(self) -> dict:
        d = {k: round(getattr(self, f) * 100, 6) for k, f in SHARES.items()}
        d = {f"{k}_percent": v for k, v in d.items()}
        d["late_delay_ms"] = [n / 1e6 for n in self.late_delay_ns]
        d["reorder_delay_ms"] = [n / 1e6 for n in self.reorder_delay_ns]
        return d


def parse(text: str) -> FaultSpec:
    """--faults SPEC (see the module's docstring); '' is no fault. Bad input
    raises HarnessError with one line naming the bad part."""
    text = (text or "").strip()
    if not text:
        return FaultSpec()
    kw: dict = {}
    seen: set[str] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            _fail(f"{text!r} has an empty item (two commas, or one at an end)")
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not value:
            _fail(f"{item!r}: give NAME=VALUE, e.g. reply-loss=1%")
        if key not in KEYS:
            near = difflib.get_close_matches(key.replace("_", "-"), KEYS, n=1)
            _fail(f"{key!r} is not a fault" + (f" (did you mean {near[0]}?)" if near else "")
                  + f"; known: {', '.join(KEYS)}")
        if key in seen:
            _fail(f"{key} is given twice")
        seen.add(key)
        if key in SHARES:
            kw[SHARES[key]] = _share(key, value)
        elif key in DELAYS:
            kw[DELAYS[key]] = _range_ns(key, value)
        else:
            if not re.fullmatch(r"\d{1,18}", value):
                _fail(f"fault-seed={value}: the seed must be a whole number")
            kw["seed"] = int(value)
    for key, needs in (("late-delay", "late-dup"), ("reorder-delay", "reorder")):
        if key in seen and not kw.get(SHARES[needs]):
            _fail(f"{key} applies to {needs} only, and {needs} is not given (or is 0%)")
    return FaultSpec(**kw)


def tag(text: str) -> str:
    """A point name's part for a --faults value: 'no-faults', or e.g.
    'reply-loss-1pct' and 'dup-5pct-late-dup-5pct'."""
    spec = parse(text)
    if not spec.active:
        return "no-faults"
    parts = [f"{k}-{_fmt_pct(getattr(spec, f))[:-1].replace('.', 'p')}pct" for k, f in SHARES.items()
             if getattr(spec, f)]
    if spec.seed is not None:
        parts.append(f"seed{spec.seed}")
    return "-".join(parts)


def _login(inv: Inventory, host: Host) -> tuple[str, bool]:
    """Who the inventory logs in to a cluster host as, and whether it becomes
    root there (ansible_become)."""
    import getpass
    from .watch import host_vars
    val = host_vars(inv, host)
    become = str(val("ansible_become") or "").strip().lower() in ("true", "yes", "on", "1")
    return val("ansible_user") or getpass.getuser(), become


def _needs_sudo(inv: Inventory, host: Host) -> bool:
    user, become = _login(inv, host)
    return user != "root" and become


def check_inventory(spec_text: str, inv: Inventory) -> None:
    """--faults on inv: the spec valid and, on a cluster, root on every
    client host (the host agent puts BPF programs on its interfaces): the
    inventory logs in as root, or becomes root (sudo)."""
    if not parse(spec_text).active or inv.local:
        return
    for host in inv.clients:
        user, become = _login(inv, host)
        if user != "root" and not become:
            raise HarnessError(f"--faults needs root on client host {host.name} (BPF programs on its "
                               f"interfaces): {inv.source} logs in as {user}, without ansible_become")


# -- one client host -------------------------------------------------------
def pin_key(host: Host) -> str:
    """The name of a client host's directory under PIN_ROOT: its namespace
    on a local or simulated testbed (hosts that share this machine's
    kernel), its name on a cluster."""
    return host.netns or host.sim_netns or host.name


def pin_dir(key: str) -> Path:
    return PIN_ROOT / key


def delay_line_names(host: Host) -> tuple[str, str]:
    """The delay line's (hold, release) ends on a client host: named like
    the host's other interfaces (same first letter)."""
    p = host.interfaces[0].name[0]
    return f"{p}{host.name}fh", f"{p}{host.name}fr"


def _ns(netns: str | None, cmd: list[str], check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """cmd in netns, with this process's mounts (so that /sys/fs/bpf is the
    one the programs are pinned in; `ip -n` remounts /sys); in the current
    namespace without one (on a cluster host)."""
    return run(["nsenter", f"--net=/var/run/netns/{netns}", *cmd] if netns else cmd, check=check, input=input)


def _tc(netns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["tc", *(["-n", netns] if netns else []), *args], check=check)


def _bpftool_json(*args: str):
    return json.loads(run(["bpftool", "-j", *args]).stdout or "null")


def _map_values(path: Path) -> dict[int, list[int]]:
    """{key: [value per CPU]} (one value for a plain array) of a pinned map
    of u32 keys and u64 values."""
    out: dict[int, list[int]] = {}
    for e in _bpftool_json("map", "dump", "pinned", str(path)):
        key = e.get("key")
        key = int.from_bytes(bytes(int(b, 16) for b in key), "little") if isinstance(key, list) else int(key)
        if "values" in e:
            vals = [v.get("value") for v in e["values"]]
        else:
            vals = [e.get("value")]
        out[key] = [int.from_bytes(bytes(int(b, 16) for b in v), "little") if isinstance(v, list) else int(v)
                    for v in vals]
    return out


def _udp_stats(netns: str | None) -> dict[str, int]:
    lines = [line.split() for line in _ns(netns, ["cat", "/proc/net/snmp"]).stdout.splitlines()
             if line.startswith("Udp:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:]))) if len(lines) >= 2 else {}


def _ifindex(netns: str | None, iface: str) -> int:
    info = json.loads(ip("-j", "link", "show", "dev", iface, netns=netns).stdout)
    return int(info[0]["ifindex"])


def lane_rate(max_delay_ns: int) -> int:
    """Bytes per second of a lane whose largest debt packet lasts max_delay_ns."""
    return math.ceil(DEBT_MAX * 1_000_000_000 / max_delay_ns)


def load(pins: Path) -> None:
    """build/faults.o loaded, its programs pinned in pins and its maps in
    pins/maps."""
    pins.parent.mkdir(parents=True, exist_ok=True)
    p = run(["bpftool", "prog", "loadall", str(OBJ), str(pins), "pinmaps", str(pins / "maps")], check=False)
    if p.returncode:
        # bpftool ends with a generic hint (the --legacy option): the
        # reason is the last line before it
        detail = [line.strip() for line in p.stderr.splitlines()
                  if line.strip() and not line.startswith("If it used to work")]
        raise HarnessError(f"loading {OBJ} failed: {detail[-1] if detail else p.returncode}")


def write_config(pins: Path, spec: FaultSpec, seed: int, port: int, hold_ifindex: int = 0, host_index: int = 0,
                 slots: int = 1) -> None:
    """The programs' struct config, in the pinned faults_config map."""
    share = lambda f: round(f * 2**32)  # noqa: E731 - a threshold out of 2^32
    cfg = CONFIG_LAYOUT.pack(
        seed & (2**64 - 1), share(spec.reply_loss), share(spec.request_loss), share(spec.dup), share(spec.late_dup),
        share(spec.reorder), *spec.late_delay_ns, *spec.reorder_delay_ns, lane_rate(spec.late_delay_ns[1]),
        lane_rate(spec.reorder_delay_ns[1]), port, hold_ifindex, host_index, LANE_MINOR, slots, 0)
    run(["bpftool", "map", "update", "pinned", str(pins / "maps" / "faults_config"), "key", "hex", "00", "00",
         "00", "00", "value", "hex", *(f"{b:02x}" for b in cfg)])


def counters(pins: Path) -> dict[str, int]:
    """The programs' counters in pins/maps, summed over CPUs (maxima: the
    largest)."""
    values = _map_values(pins / "maps" / "faults_counters")
    out = {}
    for i, name in enumerate(COUNTERS):
        per_cpu = values.get(i, [0])
        out[name] = max(per_cpu) if name in MAX_COUNTERS else sum(per_cpu)
    return out


def remove_pins(key: str) -> None:
    """The pinned programs and maps of a client host's injector (files in
    bpffs: removing them unpins; programs no longer attached are freed)."""
    d = pin_dir(key)
    if d.exists():
        shutil.rmtree(d, ignore_errors=True)
    try:
        PIN_ROOT.rmdir()  # when no other host or testbed has one
    except OSError:
        pass


def attached(host: Host) -> dict | None:
    """What of the injector is on a local testbed's client host (testbed
    status), or None."""
    return HostFaults(host).attached()


AGENT_ACTIONS = ("attach", "finish", "remove")


class HostFaults:
    """The injector's work on one client host, done where the host's
    interfaces are: by the controller on a local testbed (in the host's
    namespace, host.netns), and on a cluster by the host agent, `python -m
    harness.faults agent ACTION JSON`, on the host itself (host.netns is
    None: in the current namespace).

    attach() loads and configures the programs, makes the delay line and
    puts the programs on the host's ends; finish() waits for the delay line
    to drain, cuts it, reads the counters; remove() takes off whatever is
    left. Each returns what the Injector merges (JSON-able)."""

    def __init__(self, host: Host, spec_text: str = "", seed: int = 0, port: int = 0, index: int = 0,
                 key: str | None = None, pass_back: bool = True):
        self.host, self.text = host, spec_text
        # what goes back on the ends: xdp_pass on a local or simulated
        # testbed (whose client ends carry it), nothing on a real cluster's
        self.pass_back = pass_back
        self.spec = parse(spec_text)
        self.seed, self.port, self.index = seed, port, index
        self.netns = host.netns
        self.key = key or pin_key(host)
        self.pins = pin_dir(self.key)
        self.hold, self.release = delay_line_names(host)

    # -- what the agent is given -----------------------------------------
    def to_agent(self) -> dict:
        """All the agent needs (a cluster host has no inventory)."""
        return {"host": self.host.name, "interfaces": [i.name for i in self.host.interfaces],
                "cpus": list(self.host.cpus), "key": self.key, "spec": self.text, "seed": self.seed,
                "port": self.port, "index": self.index, "pass_back": self.pass_back}

    @classmethod
    def from_agent(cls, d: dict) -> "HostFaults":
        host = Host(str(d["host"]), "client", "", tuple(int(c) for c in d["cpus"]),
                    tuple(Interface(str(n), "") for n in d["interfaces"]))
        return cls(host, str(d["spec"]), int(d["seed"]), int(d["port"]), int(d["index"]), key=str(d["key"]),
                   pass_back=bool(d["pass_back"]))

    def run(self, action: str) -> dict:
        """One of AGENT_ACTIONS, its result as a JSON-able dict."""
        if action == "attach":
            return self.attach()
        if action == "finish":
            return self.finish()
        if action == "remove":
            return {"errors": self.remove()}
        raise HarnessError(f"unknown fault injector action {action!r} (one of {', '.join(AGENT_ACTIONS)})")

    # -- the steps -----------------------------------------------------------
    def attach(self) -> dict:
        """Everything on; returns the host's UDP counters from just before
        (udp_before)."""
        if not OBJ.exists():
            raise HarnessError(f"{OBJ} is missing: run 'make setup'")
        if not Path("/sys/fs/bpf").is_mount():
            raise HarnessError("bpffs is not mounted on /sys/fs/bpf: run 'mount -t bpf bpf /sys/fs/bpf'")
        ns = self.netns
        self.remove()  # what a killed run may have left
        load(self.pins)
        hold_ifindex = 0
        slots = max(1, min(MAX_SLOTS, len(self.host.cpus)))
        if self.spec.delays:
            hold_ifindex = self._delay_line(slots)
        write_config(self.pins, self.spec, self.seed, self.port, hold_ifindex, self.index, slots)
        udp_before = _udp_stats(ns)
        for iface in self.host.interfaces:
            _ns(ns, ["tc", "qdisc", "add", "dev", iface.name, "clsact"])
            _ns(ns, ["tc", "filter", "add", "dev", iface.name, "egress", "prio", "1", "handle", "1", "bpf",
                     "direct-action", "object-pinned", str(self.pins / "faults_request")])
            # in place of xdp_pass, atomically: the end never goes without a program
            _ns(ns, ["ip", "-force", "link", "set", "dev", iface.name, "xdp", "pinned",
                     str(self.pins / "faults_reply")])
        return {"udp_before": udp_before}

    def _delay_line(self, slots: int) -> int:
        """The host's delay line: a veth pair (hold, release) beside its
        ends, HTB lanes on hold, the hold and release programs. Returns
        hold's ifindex."""
        ns, hold, release = self.netns, self.hold, self.release
        ip("link", "add", hold, "type", "veth", "peer", "name", release, netns=ns)
        for dev in (hold, release):
            # no IPv6 autoconfiguration: nothing but held packets on the line
            ip("link", "set", "dev", dev, "addrgenmode", "none", netns=ns)
            ip("link", "set", "dev", dev, "mtu", "65535", "txqueuelen", "100000", "up", netns=ns)
        late_rate, reorder_rate = lane_rate(self.spec.late_delay_ns[1]), lane_rate(self.spec.reorder_delay_ns[1])
        lines = [f"qdisc add dev {hold} root handle 1: htb default 0"]
        for slot in range(slots):
            for i in range(SLOT_LANES):
                minor = LANE_MINOR + slot * SLOT_LANES + i
                bits = 8 * (late_rate if i < LATE_LANES else reorder_rate)
                # burst 1: a lane holds (almost) no credit, so its debt is exact
                lines.append(f"class add dev {hold} parent 1: classid 1:{minor:x} htb rate {bits}bit "
                             f"ceil {bits}bit burst 1 cburst 1 quantum 1514")
        lines += [f"qdisc add dev {hold} clsact", f"qdisc add dev {release} clsact"]
        _ns(ns, ["tc", "-batch", "-"], input="\n".join(lines) + "\n")
        _ns(ns, ["tc", "filter", "add", "dev", hold, "egress", "prio", "1", "handle", "1", "bpf", "direct-action",
                 "object-pinned", str(self.pins / "faults_hold")])
        _ns(ns, ["tc", "filter", "add", "dev", release, "ingress", "prio", "1", "handle", "1", "bpf",
                 "direct-action", "object-pinned", str(self.pins / "faults_release")])
        return _ifindex(ns, hold)

    def _line_qdisc(self) -> dict | None:
        """The delay line's HTB qdisc, with its statistics (None: no line)."""
        out = _tc(self.netns, "-s", "-j", "qdisc", "show", "dev", self.hold, check=False).stdout
        try:
            return next((q for q in json.loads(out) if q.get("kind") == "htb"), None)
        except ValueError:
            return None

    def finish(self) -> dict:
        """After the clients stopped: the delay line drained (until every
        held packet has left, at most the longest delay and 2 s), then
        cut; DRAIN_MARGIN_S for the last replies; the counters read."""
        t0 = time.monotonic()
        qdisc = None
        if self.spec.delays:
            deadline = t0 + max(self.spec.late_delay_ns[1], self.spec.reorder_delay_ns[1]) / 1e9 + 2.0
            lanes = _map_values(self.pins / "maps" / "faults_lanes")
            last = max((v[0] for v in lanes.values()), default=0)
            wait = (last - time.monotonic_ns()) / 1e9
            if wait > 0:
                time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            while ((self._line_qdisc() or {}).get("qlen") or 0) and time.monotonic() < deadline:
                time.sleep(0.01)
            qdisc = self._cut_line()
        time.sleep(DRAIN_MARGIN_S)
        return {"counters": counters(self.pins), "qdisc": qdisc, "udp_after": _udp_stats(self.netns),
                "drain_s": round(time.monotonic() - t0, 3)}

    def _cut_line(self) -> dict:
        """Reads the delay line's queue and deletes the line: what it still
        holds (a line that did not drain in time) is dropped there and then,
        so no copy reaches a server after the counters are read."""
        q = self._line_qdisc()
        ip("link", "del", "dev", self.hold, netns=self.netns)
        return {"sent_packets": q.get("packets"), "dropped": q.get("drops"),
                "backlog_packets": q.get("qlen")} if q else {}

    def remove(self) -> list[str]:
        """Takes everything of the injector off the host, whatever is left:
        xdp_pass back on its ends where it is not (a real cluster's ends:
        faults_reply taken off), their clsact qdiscs, the delay line, the
        pinned programs and maps. Returns what failed (empty when all
        went)."""
        ns, errors = self.netns, []
        if ns is None or ns in set(run(["ip", "netns", "list"], check=False).stdout.split()):
            for iface in self.host.interfaces:
                info = ip("-j", "link", "show", "dev", iface.name, netns=ns, check=False).stdout
                try:
                    xdp = json.loads(info)[0].get("xdp") or {}
                except (ValueError, IndexError):
                    continue
                name = ((xdp.get("prog") or {}).get("name")
                        or ((xdp.get("attached") or [{}])[0].get("prog") or {}).get("name"))
                if self.pass_back and name != "xdp_pass":
                    p = ip("-force", "link", "set", "dev", iface.name, "xdp", "obj", str(PASS_OBJ), "sec", "xdp",
                           netns=ns, check=False)
                    if p.returncode:
                        errors.append(f"xdp_pass back on {iface.name}: {p.stderr.strip()}")
                elif name == "faults_reply":
                    p = ip("link", "set", "dev", iface.name, "xdp", "off", netns=ns, check=False)
                    if p.returncode:
                        errors.append(f"faults_reply off {iface.name}: {p.stderr.strip()}")
                if '"clsact"' in _tc(ns, "-j", "qdisc", "show", "dev", iface.name, check=False).stdout:
                    p = _tc(ns, "qdisc", "del", "dev", iface.name, "clsact", check=False)
                    if p.returncode:
                        errors.append(f"clsact off {iface.name}: {p.stderr.strip()}")
            if ip("link", "show", "dev", self.hold, netns=ns, check=False).returncode == 0:
                p = ip("link", "del", "dev", self.hold, netns=ns, check=False)
                if p.returncode:
                    errors.append(f"delay line {self.hold}: {p.stderr.strip()}")
        remove_pins(self.key)
        return errors

    def attached(self) -> dict | None:
        """What of the injector is on the host, or None."""
        if not self.pins.exists():
            return None
        line = ip("link", "show", "dev", self.hold, netns=self.netns, check=False).returncode == 0
        return {"pinned": str(self.pins), "delay_line": [self.hold, self.release] if line else None}


def agent(argv: list[str]) -> int:
    """`python -m harness.faults agent ACTION JSON` on a cluster's client
    host (as root): one of AGENT_ACTIONS of HostFaults, with what
    HostFaults.to_agent() gives. Prints its result as one JSON line; on
    failure, one line `error: ...` on stderr and exit 1."""
    if len(argv) != 2 or argv[0] not in AGENT_ACTIONS:
        print(f"usage: python -m harness.faults agent {{{'|'.join(AGENT_ACTIONS)}}} JSON", file=sys.stderr)
        return 2
    try:
        try:
            unit = HostFaults.from_agent(json.loads(argv[1]))
        except (ValueError, KeyError, TypeError) as e:
            raise HarnessError(f"the fault injector's host agent got a bad JSON argument: {e!r}") from None
        out = unit.run(argv[0])
    except HarnessError as e:
        print("error: " + " | ".join(str(e).splitlines()), file=sys.stderr)
        return 1
    print(json.dumps(out), flush=True)
    return 0


# -- every client host ---------------------------------------------------------
class Injector:
    """The faults of one run on every client host, as a context manager:
    attached on entry, drained, read and removed on exit (also on errors and
    Ctrl-C). Each host's part is a HostFaults: called by the controller on
    a local testbed, run by the host agent over SSH on a cluster; the hosts
    go in parallel. Without faults it does nothing and its result() is None."""

    AGENT_TIMEOUT_S = 60.0  # an agent's step, beyond the longest delay

    def __init__(self, inv: Inventory, spec_text: str, seed: int, client_gso: str = ""):
        self.inv, self.text = inv, spec_text
        self.spec = parse(spec_text)
        self.seed = self.spec.seed if self.spec.seed is not None else seed
        self.client_gso = client_gso
        self.late_rate = lane_rate(self.spec.late_delay_ns[1])
        self.reorder_rate = lane_rate(self.spec.reorder_delay_ns[1])
        self.units = [HostFaults(h, spec_text, self.seed, inv.port, i, pass_back=inv.testbed is not None)
                      for i, h in enumerate(inv.clients)]
        self.on: list[HostFaults] = []  # the hosts the injector was attached to (or tried)
        self.udp_before: dict[str, dict] = {}
        self.counters: dict[str, int] | None = None
        self.qdisc: dict[str, dict] = {}
        self.udp_after: dict[str, dict] = {}
        self.drain_s: float | None = None

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> "Injector":
        if not self.spec.active:
            return self
        check_inventory(self.text, self.inv)
        self.on = list(self.units)
        try:
            self.udp_before = {h: r["udp_before"] for h, r in self._each("attach", "could not attach").items()}
        except BaseException:
            self._remove_all(raise_errors=False)
            raise
        return self

    def __exit__(self, exc_type, *_) -> None:
        if not self.on:
            return
        try:
            if exc_type is None:
                done = self._each("finish", "could not read")
                total = dict.fromkeys(COUNTERS, 0)
                for host, r in done.items():
                    for name, v in r["counters"].items():
                        total[name] = max(total[name], v) if name in MAX_COUNTERS else total[name] + v
                    self.udp_after[host] = r["udp_after"]
                    if r["qdisc"] is not None:
                        self.qdisc[host] = r["qdisc"]
                self.counters = total
                self.drain_s = max(r["drain_s"] for r in done.values())
        finally:
            self._remove_all(raise_errors=exc_type is None)

    def _each(self, action: str, what: str, raise_errors: bool = True) -> dict[str, dict]:
        """action on every host the injector is on, in parallel; returns
        {host: result}. Waits for every host's step to end, even on Ctrl-C
        (so that no step runs on when the removal starts). With
        raise_errors, a host that failed raises naming every failure
        ("<what> the fault injector: ..."); else its result is
        {"error": why}."""
        out: dict[str, dict] = {}
        errors: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=len(self.on), thread_name_prefix=f"faults-{action}") as pool:
            futures = {u.host.name: pool.submit(self._step, u, action) for u in self.on}
            for host, f in futures.items():
                try:
                    out[host] = f.result()
                except HarnessError as e:
                    errors[host] = str(e)
                    out[host] = {"error": str(e)}
        if errors and raise_errors:
            raise HarnessError(f"{what} the fault injector: " + "; ".join(f"{h}: {e}" for h, e in errors.items()))
        return out

    def _step(self, unit: HostFaults, action: str) -> dict:
        if self.inv.local:
            return unit.run(action)
        return self._agent(unit, action)

    def agent_command(self, unit: HostFaults, action: str) -> list[str]:
        """The host agent's command line for one step on unit's host (the
        project is at the same path on every host); as root, through sudo
        when the inventory logs in as another user and becomes root."""
        cmd = [sys.executable, "-m", "harness.faults", "agent", action, json.dumps(unit.to_agent())]
        return ["sudo", "-n", *cmd] if _needs_sudo(self.inv, unit.host) else cmd

    def _agent(self, unit: HostFaults, action: str) -> dict:
        from .watch import ssh_command
        timeout = self.AGENT_TIMEOUT_S + max(self.spec.late_delay_ns[1], self.spec.reorder_delay_ns[1]) / 1e9
        argv = ssh_command(self.inv, unit.host) + [shlex.join(self.agent_command(unit, action))]
        try:
            # a session of its own: a Ctrl-C at the terminal does not cut a step short on the host
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"its host agent's {action} did not end within {timeout:.0f} s") from None
        lines = p.stdout.strip().splitlines()
        if p.returncode == 0 and lines:
            try:
                return json.loads(lines[-1])
            except ValueError:
                pass
        err = [line.strip() for line in p.stderr.splitlines() if line.strip()]
        why = next((line[len("error: "):] for line in reversed(err) if line.startswith("error: ")), None)
        raise HarnessError(why or f"its host agent's {action} failed over ssh: "
                           + (err[-1] if err else f"exit {p.returncode}"))

    def _remove_all(self, raise_errors: bool) -> None:
        errors, failed = [], []
        for unit, (host, r) in zip(self.on, self._each("remove", "could not remove", raise_errors=False).items()):
            why = [r["error"]] if "error" in r else r["errors"]
            errors += [f"{host}: {e}" for e in why]
            failed += [unit] if why else []
        self.hosts_removed = [u.host.name for u in self.on]
        if errors:
            how = ("run 'testbed down'" if self.inv.testbed else
                   "on the host: " + "; ".join(shlex.join(self.agent_command(u, "remove")) for u in failed))
            msg = "could not remove the fault injector: " + "; ".join(errors) + f" ({how})"
            if raise_errors:
                raise HarnessError(msg)
            print(f"warning: {msg}", file=sys.stderr)

    # -- what it did --------------------------------------------------------
    def _udp_delta(self, key: str) -> int:
        return sum(self.udp_after.get(host, {}).get(key, 0) - before.get(key, 0)
                   for host, before in self.udp_before.items())

    def result(self) -> dict | None:
        """summary.json's `faults` (None without faults)."""
        if not self.spec.active:
            return None
        out = {"spec": self.text, "canonical": self.spec.canonical(), "parsed": self.spec.to_dict(),
               "seed": self.seed, "seed_from": "fault-seed" if self.spec.seed is not None else "--seed",
               "client_gso": self.client_gso,
               "where": {
                   "reply-loss": "XDP program faults_reply on every client end (in place of xdp_pass)",
                   "request faults": "TC egress program faults_request on every client end; delayed packets "
                                     "through the client host's delay line (HTB lanes)",
                   "attached_by": "the controller, in each client host's namespace" if self.inv.local else
                                  "the host agent (python -m harness.faults agent) on each client host, over SSH"}}
        c = self.counters
        if c is None:
            out["counters"] = None
            out["counters_missing"] = "the run did not end normally: the injector's counters were not read"
            return out

        def stats(kind: str, n: int) -> dict:
            if not n:
                return {"released": 0, "lateness_ms": None, "model_error_ms": None,
                        "why_null": "nothing was held"}
            ms = lambda ns: round(ns / 1e6, 3)  # noqa: E731
            return {"released": n,
                    "lateness_ms": {"min": ms(2**64 - 1 - c[f"{kind}_min_inv_ns"]), "mean": ms(c[f"{kind}_sum_ns"] / n),
                                    "max": ms(c[f"{kind}_max_ns"])},
                    "model_error_ms": {"mean": ms(c[f"{kind}_err_sum_ns"] / n), "max": ms(c[f"{kind}_err_max_ns"])}}

        out["counters"] = {
            "requests": {"seen": c["req_seen"], "dropped": c["req_dropped"], "duplicated": c["req_dup"],
                         "late_duplicated": c["req_late"], "reordered": c["req_reorder"],
                         "gso_untouched": c["req_gso_untouched"], "copy_failed": c["req_copy_failed"],
                         "duplicated_link_dropped": c["req_dup_link_dropped"]},
            "replies": {"seen": c["rep_seen"], "dropped": c["rep_dropped"]},
        }
        if self.spec.delays:
            out["delay_line"] = {
                "late": {**stats("late", c["rel_late"]), "later_than_drawn": c["late_beyond_draw"]},
                "reorder": stats("reorder", c["rel_reorder"]),
                "debt_packets": c["rel_debt"], "debt_bytes": c["hold_debt_bytes"],
                "hold_failed": c["hold_failed"], "release_failed": c["rel_failed"],
                "not_released": c["req_late"] + c["req_reorder"] - c["rel_late"] - c["rel_reorder"],
                "lane_rates_bytes_per_s": {"late": self.late_rate, "reorder": self.reorder_rate},
                "lanes_per_cpu": {"late": LATE_LANES, "reorder": REORDER_LANES},
                "qdisc": self.qdisc, "drain_s": self.drain_s,
                "rule": "lateness: from the copy's (or held request's) creation at the client end to its release "
                        "from the delay line; model error: release time against the time the lane model "
                        "predicted; later_than_drawn: copies no lane could hold until their drawn time, "
                        "which left when the earliest lane was free"}
        out["client_sockets"] = {"closed_port_replies": self._udp_delta("NoPorts"),
                                 "rcvbuf_errors": self._udp_delta("RcvbufErrors"),
                                 "in_errors": self._udp_delta("InErrors")}
        return out


def instrument_check(sent: int, received: int, srv: dict, servers_reported: bool, faults: dict,
                     links: dict | None = None) -> dict:
    """The instrument check of a run with faults (RULE): every datagram
    explained by the injector's counters, and what the links dropped after
    it (a burst filling a veth ring; not measured on a cluster, where the
    check takes it as 0 and says so: summary.link_drops_taken)."""
    c = faults.get("counters")
    base = {"client_sent": sent, "server_rx": srv["rx"], "server_drop": srv["drop"], "server_tx": srv["tx"],
            "client_received": received, "rule": RULE}
    if not c:
        return {**base, "match": None, "why_null": faults.get("counters_missing", "no counters")}
    req, rep = c["requests"], c["replies"]
    line = faults.get("delay_line") or {}
    not_released = line.get("not_released", 0)
    late_released = (line.get("late") or {}).get("released", 0)
    reorder_lost = req["reordered"] - (line.get("reorder") or {}).get("released", 0)
    closed = faults["client_sockets"]["closed_port_replies"]
    from .summary import link_drops_taken  # (summary imports this module)
    link_req, link_rep, unmeasured = link_drops_taken(links)
    expected_rx = sent - req["dropped"] + req["duplicated"] + late_released - reorder_lost - link_req
    unread = srv["tx"] - rep["dropped"] - closed - link_rep - received
    copies = req["duplicated"] + late_released
    parts = {"injector_saw_every_request": req["seen"] == sent,
             "server_rx_explained": srv["rx"] == expected_rx,
             "servers_answered_or_dropped": srv["tx"] + srv["drop"] == srv["rx"],
             "injector_saw_every_reply": rep["seen"] == srv["tx"],
             "client_received_explained": 0 <= unread <= copies}
    return {**base, "requests_dropped": req["dropped"], "copies_at_once": req["duplicated"],
            "late_copies_released": late_released, "held_not_released": not_released,
            "replies_dropped": rep["dropped"], "replies_to_closed_sockets": closed,
            "replies_unread_at_close": unread, "expected_server_rx": expected_rx, "link_drops": links,
            **unmeasured, "parts": parts, "match": servers_reported and all(parts.values())}


if __name__ == "__main__":
    if sys.argv[1:2] != ["agent"]:
        print("usage: python -m harness.faults agent ACTION JSON (the fault injector's host agent)", file=sys.stderr)
        sys.exit(2)
    sys.exit(agent(sys.argv[2:]))
