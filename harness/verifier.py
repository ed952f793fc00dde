"""The kernel verifier's figures of every BPF program the project loads, and
how far each is from the limits that would make the kernel refuse it; with
them, the limits of one datagram. Needs root.

    python -m harness verifier [--schema 8,40,0 ...] [--out FILE]

The programs, loaded here as the harness loads them and unloaded at once:

- bpf/dint_xdp.c (dint_xdp, the data plane, and dint_fill, the slow path's
  fill request), compiled with bcc by dintd.compile_program with the flags
  of a run (harness/dintd.py cflags): once per distinct schema of the
  workloads (workloads/*/schema.py), and for the kv workload's schema with
  each of the ablations the experiments run (no bloom filter, write-through
  cache). Served addresses: one interface with one address, as a server
  host of the local testbed has. --schema adds a build of that schema.
- bpf/faults.c (faults_xdp, faults_tc) and bpf/xdp_pass.c, as the Makefile
  builds them into build/*.o, loaded with libbpf (as bpftool loads them).

For each: the verifier's statistics (log level 4, BPF_LOG_STATS: "processed
N insns (limit 1000000) max_states_per_insn .. total_states .. peak_states ..
mark_read ..", "stack depth A+B.."), the program's length as compiled and as
the kernel keeps it after its rewrites (xlated), and the JIT's bytes.

The limits (constants below) and their shares: instructions the verifier
may process for one program, the stack, and the length a branch may span.
tests/test_verifier.py fails when a program comes within MAX_SHARE of any.

With --out FILE: the figures as JSON. report_section(path) renders them for
REPORT.md.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import time
from pathlib import Path
from typing import NamedTuple

from . import BUILD_DIR, ROOT, HarnessError
from .protocol import DEFAULT_PORT, HEADER_LEN, MAX_VALUE
from .schema import MAX_TABLES, Schema
from .sh import run

# The kernel's limits on a program loaded by root (include/linux/bpf.h):
# BPF_COMPLEXITY_LIMIT_INSNS, instructions the verifier may walk through
# for one program, over every path it explores (a program that needs more is
# refused: "BPF program is too large");
LIMIT_PROCESSED = 1_000_000
# MAX_BPF_STACK, bytes of stack of a program's deepest call chain;
LIMIT_STACK = 512
# a branch's offset is a signed 16-bit count of instructions: a program whose
# branches must span more cannot be encoded, and the kernel refuses it when
# its own rewrites (helper inlining) lengthen a branch past that ("insn N
# cannot be patched due to 16-bit range": dint_xdp for a one-table schema of
# 952-byte values does). Its length is the closest figure to watch.
LIMIT_BRANCH = 32_767
# BPF_MAXINSNS: the length an unprivileged loader may give; the harness
# loads as root, where it does not apply. Reported, not checked.
UNPRIVILEGED_INSNS = 4096

# tests/test_verifier.py fails when a figure passes this share of its limit.
# Why 80%: the figures move with clang, bcc and the kernel's verifier (one
# kernel's verifier may walk 20% more states than another's on the same
# program) and with a build's schema; a change that leaves less than a fifth
# of a limit is caught while the program still loads, not when a routine
# update of the toolchain or of a workload's schema makes it fail to load.
MAX_SHARE = 0.8

LOG_SIZE = 1 << 20  # the statistics take a few lines
FAIL_LOG_SIZE = 1 << 26  # a failed load is loaded again with the full log, for its reason

_PROCESSED = re.compile(r"processed (\d+) insns \(limit (\d+)\) max_states_per_insn (\d+) total_states (\d+) "
                        r"peak_states (\d+) mark_read (\d+)")
_STACK = re.compile(r"stack depth ([\d+]+)")
_TIME = re.compile(r"verification time (\d+) usec")

SERVER_IFACE = (1, "02:00:00:00:00:01", ("10.0.0.1",))  # dintd.Iface fields: one interface, one address


class Build(NamedTuple):
    """A build of bpf/dint_xdp.c: the flags a dint run gives it."""
    name: str
    schema: Schema
    bloom: bool = True
    write_through: bool = False


def parse_log(text: str) -> dict:
    """The statistics of a verifier log (any level: they end it). Raises
    HarnessError when it has none."""
    m = None
    for m in _PROCESSED.finditer(text):
        pass
    if m is None:
        raise HarnessError("the verifier's log has no statistics line ('processed N insns ...')")
    out = dict(zip(("processed_insns", "processed_limit", "max_states_per_insn", "total_states", "peak_states",
                    "mark_read"), map(int, m.groups())))
    stacks = _STACK.findall(text)
    # one figure per subprogram ("stack depth 176+32"); their sum bounds the
    # deepest call chain's, which MAX_BPF_STACK limits
    out["stack_depths"] = [int(x) for x in stacks[-1].split("+") if x] if stacks else []
    out["stack_bytes"] = sum(out["stack_depths"])
    t = _TIME.findall(text)
    if t:
        out["verification_us"] = int(t[-1])
    return out


def failure_reason(text: str) -> str:
    """The line of a verifier log that says why it refused the program: the
    last one before its statistics."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    keep = [ln for ln in lines if not _PROCESSED.search(ln) and not _TIME.search(ln) and not _STACK.search(ln)]
    return keep[-1] if keep else "no reason in the verifier's log"


def builds(extra: list[Schema] = ()) -> list[Build]:
    """Every build of dint_xdp.c the workloads and the experiments' ablations
    make, one per distinct set of flags, named by the workloads that use it;
    then one per extra schema."""
    import workloads
    by_schema: dict[Schema, list[str]] = {}
    for name in workloads.NAMES:
        by_schema.setdefault(workloads.get(name).schema, []).append(name)
    out = [Build("+".join(names), schema) for schema, names in by_schema.items()]
    kv = workloads.get("kv").schema
    out += [Build("kv no-bloom", kv, bloom=False), Build("kv write-through", kv, write_through=True)]
    out += [Build(f"schema {s}", s) for s in dict.fromkeys(extra)
            if not any(b.schema == s and b.bloom and not b.write_through for b in out)]
    return out


# -- loading ---------------------------------------------------------------------

def _fdinfo(fd: int) -> dict:
    out = {}
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


def _sizes(fd: int) -> dict:
    """The loaded program's length as the kernel keeps it and its JIT bytes
    (bpftool's figures of bpf_prog_info), and the instructions the verifier
    processed as the kernel counts them (its fdinfo: the log's figure)."""
    fdinfo = _fdinfo(fd)
    info = json.loads(run(["bpftool", "-j", "prog", "show", "id", fdinfo["prog_id"]]).stdout)
    return {"prog_id": int(fdinfo["prog_id"]), "xlated_insns": info["bytes_xlated"] // 8, "jited_bytes": info.get("bytes_jited", 0),
            "verified_insns": int(fdinfo["verified_insns"]) if "verified_insns" in fdinfo else None}


def _figures(fd: int, log: bytes, insns: int) -> dict:
    out = parse_log(log.decode(errors="replace"))
    out["insns"] = insns
    out.update(_sizes(fd))
    return out


def _bcc_load(bpf, name: bytes, level: int, buf) -> tuple[int, int]:
    """One of a compiled module's programs loaded as bcc's load_func does,
    with the verifier's log at level into buf (load_func keeps it to
    itself): its fd, or a negative one and the errno."""
    from bcc import BPF
    from bcc.libbcc import lib
    m = bpf.module
    fd = lib.bcc_func_load(m, BPF.XDP, name, lib.bpf_function_start(m, name), lib.bpf_function_size(m, name),
                           lib.bpf_module_license(m), lib.bpf_module_kern_version(m), level, buf, len(buf), None, 0)
    return fd, ctypes.get_errno()


def load_bcc(build: Build) -> list[dict]:
    """bpf/dint_xdp.c compiled for build, each of its programs loaded with
    the verifier's statistics, then everything unloaded."""
    from bcc.libbcc import lib
    from .dintd import Iface, cflags, compile_program
    t0 = time.monotonic()
    bpf = compile_program(DEFAULT_PORT, build.schema, bloom=build.bloom, write_through=build.write_through,
                          ifaces=[Iface(*SERVER_IFACE)], local=list(SERVER_IFACE[2]))
    compile_s = time.monotonic() - t0
    flags = cflags(DEFAULT_PORT, build.schema, bloom=build.bloom, write_through=build.write_through,
                   ifaces=[Iface(*SERVER_IFACE)], local=list(SERVER_IFACE[2]))
    out = []
    try:
        for name in (b"dint_xdp", b"dint_fill"):
            size = lib.bpf_function_size(bpf.module, name)
            buf = ctypes.create_string_buffer(LOG_SIZE)
            fd, err = _bcc_load(bpf, name, 4, buf)
            if fd < 0:
                full = ctypes.create_string_buffer(FAIL_LOG_SIZE)
                _bcc_load(bpf, name, 1, full)
                label = build.name if build.name == f"schema {build.schema}" else f"{build.name} (schema {build.schema})"
                raise HarnessError(f"{label}: the kernel refused {name.decode()} "
                                   f"({size // 8:,} instructions): {os.strerror(err)}: "
                                   f"{failure_reason(full.value.decode(errors='replace'))}")
            try:
                fig = _figures(fd, buf.value, size // 8)
            finally:
                os.close(fd)
            out.append({"object": "bpf/dint_xdp.c", "build": build.name, "program": name.decode(), "type": "xdp",
                        "loader": "bcc", "schema": str(build.schema), "bloom": build.bloom,
                        "write_through": build.write_through, "compile_s": round(compile_s, 2), "cflags": flags,
                        **fig})
    finally:
        bpf.cleanup()
    return out


class _Libbpf:
    """The few calls of libbpf (the system's libbpf.so.1) that load an
    object file's programs with a log of their own."""

    def __init__(self):
        try:
            lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        except OSError:
            raise HarnessError("libbpf.so.1 is not installed (run 'make setup')") from None
        P = ctypes.c_void_p
        for fn, res, args in (("bpf_object__open", P, [ctypes.c_char_p]), ("bpf_object__load", ctypes.c_int, [P]),
                              ("bpf_object__close", None, [P]), ("bpf_object__next_program", P, [P, P]),
                              ("bpf_program__name", ctypes.c_char_p, [P]), ("bpf_program__fd", ctypes.c_int, [P]),
                              ("bpf_program__set_log_level", ctypes.c_int, [P, ctypes.c_uint32]),
                              ("bpf_program__set_log_buf", ctypes.c_int, [P, P, ctypes.c_size_t]),
                              ("bpf_program__insn_cnt", ctypes.c_size_t, [P]),
                              ("bpf_program__section_name", ctypes.c_char_p, [P]),
                              ("libbpf_set_print", P, [P])):
            f = getattr(lib, fn)
            f.restype, f.argtypes = res, args
        self.lib = lib


def load_object(path: Path, libbpf: _Libbpf | None = None) -> list[dict]:
    """An object file's programs loaded with libbpf, each with its own
    verifier statistics, then unloaded (the object closed)."""
    lib = (libbpf or _Libbpf()).lib
    old_print = lib.libbpf_set_print(None)  # its messages: the error below says what failed
    try:
        return _load_object(lib, path, LOG_SIZE)
    finally:
        lib.libbpf_set_print(old_print)


def _load_object(lib, path: Path, log_size: int, level: int = 4) -> list[dict]:
    obj = lib.bpf_object__open(os.fspath(path).encode())
    if not obj:
        raise HarnessError(f"libbpf could not open {path}: {os.strerror(ctypes.get_errno())}")
    try:
        progs, bufs = [], []
        p = lib.bpf_object__next_program(obj, None)
        while p:
            buf = ctypes.create_string_buffer(log_size)
            lib.bpf_program__set_log_level(p, level)
            lib.bpf_program__set_log_buf(p, buf, len(buf))
            progs.append(p)
            bufs.append(buf)
            p = lib.bpf_object__next_program(obj, p)
        err = lib.bpf_object__load(obj)
        if err:
            if level == 4:
                return _load_object(lib, path, FAIL_LOG_SIZE, level=1)  # for the reason
            why = "; ".join(f"{lib.bpf_program__name(p).decode()}: {failure_reason(b.value.decode(errors='replace'))}"
                            for p, b in zip(progs, bufs) if b.value)
            raise HarnessError(f"the kernel refused {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
                               f"{os.strerror(-err)}{': ' + why if why else ''}")
        out = []
        for p, buf in zip(progs, bufs):
            fd = lib.bpf_program__fd(p)
            section = lib.bpf_program__section_name(p).decode()
            out.append({"object": f"bpf/{path.stem}.c", "build": path.name, "program": lib.bpf_program__name(p).decode(),
                        "type": section.split("/")[0], "loader": "libbpf",
                        **_figures(fd, buf.value, lib.bpf_program__insn_cnt(p))})
        return out
    finally:
        lib.bpf_object__close(obj)


OBJECTS = ("faults.o", "xdp_pass.o")  # built by the Makefile from bpf/*.c


def ensure_objects() -> list[Path]:
    paths = [BUILD_DIR / o for o in OBJECTS]
    run(["make", "-s", "-C", str(ROOT), *(str(p.relative_to(ROOT)) for p in paths)])
    return paths


# -- figures ---------------------------------------------------------------------

LIMITS = {"processed_insns": LIMIT_PROCESSED, "stack_bytes": LIMIT_STACK, "xlated_insns": LIMIT_BRANCH}


def margins(prog: dict) -> dict:
    """Each checked figure's share of its limit, and what is left of it."""
    return {k: {"figure": prog[k], "limit": lim, "share": round(prog[k] / lim, 4), "left": lim - prog[k]}
            for k, lim in LIMITS.items()}


def over(progs: list[dict], share: float = MAX_SHARE) -> list[str]:
    """The figures that pass share of their limit, one line each."""
    return [f"{p['build']} {p['program']}: {k} {m['figure']:,} is {m['share']:.0%} of {m['limit']:,}"
            for p in progs for k, m in margins(p).items() if m["figure"] > share * m["limit"]]


def measure(extra: list[Schema] = (), log=print) -> dict:
    """Every program's figures."""
    if os.geteuid() != 0:
        raise HarnessError("the verifier's figures need root (BPF)")
    progs = []
    for b in builds(extra):
        log(f"verifier: bpf/dint_xdp.c for {b.name} (schema {b.schema}"
            f"{', no bloom' if not b.bloom else ''}{', write-through' if b.write_through else ''})")
        progs += load_bcc(b)
    libbpf = _Libbpf()
    for path in ensure_objects():
        log(f"verifier: {path.relative_to(ROOT)}")
        progs += load_object(path, libbpf)
    for p in progs:
        p["margins"] = margins(p)
    return {"kernel": os.uname().release,
            "limits": {"processed_insns": LIMIT_PROCESSED, "stack_bytes": LIMIT_STACK, "branch_insns": LIMIT_BRANCH,
                       "unprivileged_insns": UNPRIVILEGED_INSNS},
            "max_share": MAX_SHARE, "programs": progs, "over": over(progs), "datagram": datagram_limits()}


def datagram_limits() -> dict:
    """What one datagram carries, and the bounds of what a client sends in
    one round of a transaction (mirrors, checked by tests/test_verifier.py)."""
    from .txn import MAX_INFLIGHT
    return {
        "keys_per_request": 1,
        "header_bytes": HEADER_LEN,
        "max_value_bytes": MAX_VALUE,
        "max_udp_payload_bytes": HEADER_LEN + MAX_VALUE,
        "max_ipv4_bytes": 20 + 8 + HEADER_LEN + MAX_VALUE,
        "max_tables": MAX_TABLES,
        "max_requests_in_flight_per_client": MAX_INFLIGHT,
    }


# -- output ----------------------------------------------------------------------

def table(res: dict, markdown: bool = False) -> str:
    head = ["build", "program", "processed insns", "stack B", "insns (xlated)", "jited B", "states (peak)"]
    body = []
    for p in res["programs"]:
        m = p["margins"]
        body.append([p["build"], p["program"],
                     f"{p['processed_insns']:,} ({m['processed_insns']['share']:.1%})",
                     f"{p['stack_bytes']} ({m['stack_bytes']['share']:.0%})",
                     f"{p['insns']:,} ({p['xlated_insns']:,}, {m['xlated_insns']['share']:.0%})",
                     f"{p['jited_bytes']:,}", f"{p['total_states']:,} ({p['peak_states']:,})"])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r))  # noqa: E731
    return "\n".join([fmt(head), *(fmt(r) for r in body)])


def legend(res: dict) -> str:
    lim = res["limits"]
    return (f"shares of the kernel's limits: {lim['processed_insns']:,} processed instructions, "
            f"{lim['stack_bytes']} bytes of stack, {lim['branch_insns']:,} instructions a branch may span "
            f"(the unprivileged {lim['unprivileged_insns']:,}-instruction limit does not apply to root); "
            f"the test fails above {res['max_share']:.0%}. Kernel {res['kernel']}.")


def datagram_text(d: dict) -> str:
    return (f"one datagram: one request, one key; a {d['header_bytes']}-byte header and a value of at most "
            f"{d['max_value_bytes']:,} bytes (UDP payload {d['max_udp_payload_bytes']:,} B, IPv4 packet "
            f"{d['max_ipv4_bytes']:,} B: never fragmented on a 1500-byte MTU); a longer one is answered BAD_LENGTH. "
            f"A transaction's round: at most {d['max_requests_in_flight_per_client']:,} requests in flight per "
            f"client (a larger batch is refused by the client)")


def write(res: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n")


def report_section(path) -> str:
    """The figures of path (a verifier.json) as a markdown section."""
    res = json.loads(Path(path).read_text())
    lines = ["Each BPF program the run's build loads, as the kernel's verifier saw it (log level 4): instructions "
             "processed and stack bytes, the program's length as compiled (and as the kernel keeps it), with the "
             "share of each limit. " + legend(res), "", table(res, markdown=True), ""]
    if res["over"]:
        lines += ["**Within a fifth of a limit:** " + "; ".join(res["over"]), ""]
    lines += ["Datagram limits: " + datagram_text(res["datagram"]) + ".", ""]
    return "\n".join(lines)


def cmd_verifier(args) -> int:
    extra = [Schema.parse(s) for s in args.schema or []]
    res = measure(extra, log=lambda m: None if args.quiet else print(m))
    print(table(res))
    print(legend(res))
    print(datagram_text(res["datagram"]))
    for line in res["over"]:
        print(f"near a limit: {line}")
    if args.out:
        write(res, Path(args.out))
        print(f"results: {args.out}")
    return 0


def add_parser(sub) -> None:
    """The `verifier` subcommand of python -m harness."""
    p = sub.add_parser("verifier", help="the verifier's figures of every BPF program the project loads, against "
                                        "the kernel's limits, and the limits of one datagram")
    p.add_argument("--schema", action="append",
                   help="also bpf/dint_xdp.c built for this schema, e.g. 512 or 8,40,0 (repeatable)")
    p.add_argument("--out", help="write the figures here as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_verifier)
