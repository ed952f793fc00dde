"""The verifier's figures (harness/verifier.py): every BPF program the
project loads stays within MAX_SHARE of the kernel's limits, the log parser
reads the kernel's statistics, and the limits of one datagram are refused
in one clear error on the client side. The BPF tests need root, and fail
in CI rather than skip (conftest.need_root)."""
from __future__ import annotations

import json
import time

import pytest

import workloads
from harness import HarnessError, verifier
from harness.__main__ import main
from harness.protocol import HEADER_LEN, MAX_VALUE, Op, pack, unpack
from harness.schema import Schema

from conftest import need_root

# Captured from this kernel (6.18): bpf/dint_xdp.c's dint_xdp at log level 4,
# a program with a subprogram at level 2 (its statistics end the log), and
# dint_xdp built for a one-table schema of 952-byte values, refused.
LOG_STATS = """verification time 387341 usec
stack depth 176
processed 139287 insns (limit 1000000) max_states_per_insn 34 total_states 8437 peak_states 4192 mark_read 0
"""
LOG_SUBPROGS = """func#0 @0
func#1 @12
0: R1=ctx() R10=fp0
0: (bf) r6 = r1                       ; R1=ctx() R6_w=ctx()
...
13: (95) exit
verification time 52 usec
stack depth 64+32
processed 41 insns (limit 1000000) max_states_per_insn 0 total_states 3 peak_states 3 mark_read 1
"""
LOG_REFUSED = """insn 30174 cannot be patched due to 16-bit range
verification time 495325 usec
stack depth 176
processed 569761 insns (limit 1000000) max_states_per_insn 34 total_states 7965 peak_states 4163 mark_read 0
"""


def test_the_parser_reads_the_statistics():
    assert verifier.parse_log(LOG_STATS) == {
        "processed_insns": 139287, "processed_limit": 1_000_000, "max_states_per_insn": 34, "total_states": 8437,
        "peak_states": 4192, "mark_read": 0, "stack_depths": [176], "stack_bytes": 176, "verification_us": 387341}
    sub = verifier.parse_log(LOG_SUBPROGS)
    assert (sub["processed_insns"], sub["stack_depths"], sub["stack_bytes"], sub["mark_read"]) == (41, [64, 32], 96, 1)
    with pytest.raises(HarnessError, match="no statistics line"):
        verifier.parse_log("0: (b7) r0 = 2\n1: (95) exit\n")


def test_a_refusal_is_said_by_its_reason():
    assert verifier.failure_reason(LOG_REFUSED) == "insn 30174 cannot be patched due to 16-bit range"


def test_the_limits_and_the_margin():
    assert (verifier.LIMIT_PROCESSED, verifier.LIMIT_STACK, verifier.LIMIT_BRANCH) == (1_000_000, 512, 32_767)
    prog = {"build": "b", "program": "p", "processed_insns": 800_001, "stack_bytes": 409, "xlated_insns": 100}
    assert verifier.over([prog]) == ["b p: processed_insns 800,001 is 80% of 1,000,000"]
    prog.update(processed_insns=800_000, stack_bytes=410)
    assert verifier.over([prog]) == ["b p: stack_bytes 410 is 80% of 512"]


def test_every_workload_schema_and_ablation_is_a_build():
    bs = verifier.builds([Schema((512,)), Schema()])
    assert {w.schema for w in map(workloads.get, workloads.NAMES)} | {Schema((512,))} == {b.schema for b in bs}
    assert len({(b.schema, b.bloom, b.write_through) for b in bs}) == len(bs)
    assert {(b.bloom, b.write_through) for b in bs} == {(True, False), (False, False), (True, True)}


@pytest.fixture(scope="module")
def figures():
    need_root()
    return verifier.measure(log=lambda *_: None)


def test_every_program_is_within_its_margins(figures):
    """The point of the module: a program that nears a limit fails here."""
    assert not figures["over"], "within a fifth of the kernel's limits: " + "; ".join(figures["over"])


def test_every_program_the_project_loads_is_measured(figures):
    got = {(p["build"], p["program"]) for p in figures["programs"]}
    for b in verifier.builds():
        assert {(b.name, "dint_xdp"), (b.name, "dint_fill")} <= got
    assert {("faults.o", p) for p in ("faults_reply", "faults_request", "faults_hold", "faults_release")} <= got
    assert ("xdp_pass.o", "xdp_pass") in got
    for p in figures["programs"]:
        # the log's figure is the kernel's own count (fdinfo)
        assert p["verified_insns"] in (None, p["processed_insns"])
        assert 0 < p["insns"] <= p["xlated_insns"] or p["program"] == "xdp_pass"
        assert p["jited_bytes"] > 0
    assert figures["datagram"]["max_value_bytes"] == MAX_VALUE


def test_nothing_is_left_loaded(figures):
    import subprocess
    ids = {p["prog_id"] for p in figures["programs"] if "prog_id" in p}
    listed = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                                       check=True).stdout)
    assert not ids & {p["id"] for p in listed}


def test_the_command_prints_the_table_and_writes_json(figures, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(verifier, "measure", lambda extra=(), log=print: figures)
    assert main(["verifier", "--quiet", "--out", str(tmp_path / "v.json")]) == 0
    out = capsys.readouterr().out
    assert "dint_xdp" in out and "faults_request" in out and "one datagram" in out
    assert json.loads((tmp_path / "v.json").read_text())["programs"] == figures["programs"]
    section = verifier.report_section(tmp_path / "v.json")
    assert "| echo | dint_xdp |" in section and "Datagram limits" in section


def test_a_bad_schema_is_one_line(capsys):
    assert main(["verifier", "--schema", "8,x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: a schema is comma-separated value sizes")


# -- the limits of one datagram, client side (the servers' BAD_LENGTH for a
# longer value: tests/test_conformance.py, every system; test_xdp_packets.py)

def test_pack_refuses_a_value_no_server_takes():
    assert len(pack(Op.ECHO, 1, bytes(MAX_VALUE))) == HEADER_LEN + MAX_VALUE
    with pytest.raises(ValueError, match=f"at most {MAX_VALUE:,} bytes of value"):
        pack(Op.ECHO, 1, bytes(MAX_VALUE + 1))
    # on purpose, up to what val_len encodes
    assert unpack(pack(Op.ECHO, 1, bytes(MAX_VALUE + 1), oversize=True)).val_len == MAX_VALUE + 1
    with pytest.raises(ValueError, match="16-bit val_len"):
        pack(Op.ECHO, 1, bytes(1 << 16), oversize=True)


def test_the_native_client_refuses_a_longer_value():
    import socket
    from harness.txn import TxnIO
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(ValueError, match="at most 1024 bytes"):
            TxnIO([s.fileno()], 1, 10**6, 1, 16, MAX_VALUE + 1)
        TxnIO([s.fileno()], 1, 10**6, 1, 16, MAX_VALUE)
    finally:
        s.close()


def test_the_most_requests_a_round_may_have_and_beyond(monkeypatch, capsys, tmp_path):
    """A transaction's round (a Batch) holds at most what the client may
    have in flight, MAX_INFLIGHT at most (half the servers' window of
    completion records): the executor refuses more, and the client process
    ends with that one line, never a traceback."""
    import socket
    from harness import loadgen
    from harness.txn import MAX_INFLIGHT, WINDOW, BatchTooLarge, Executor, TxnIO
    assert MAX_INFLIGHT == WINDOW // 2 == 32768
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(ValueError, match="max_inflight must be in 1..32768"):
            TxnIO([s.fileno()], 1, 10**6, 1, MAX_INFLIGHT + 1, 64)
        with pytest.raises(ValueError, match="concurrency must be between 1 and 32768"):
            Executor([s.fileno()], 7, ["t"], [None], [(0, ())], MAX_INFLIGHT + 1, 10**6, 1)

        def wide(n):
            yield [(Op.READ, 0, k, bytes(8), 0, 0) for k in range(n)]
        # concurrency 256: room for all 32,768; one more is refused
        ex = Executor([s.fileno()], 7, ["wide"], [wide], [(0, (MAX_INFLIGHT + 1,))], 256, 10**6, 1)
        assert ex.capacity == MAX_INFLIGHT
        with pytest.raises(BatchTooLarge, match="a batch of 32769 requests is more than the 32768 this client"):
            ex.run(time.monotonic_ns() + 10**9, True)
    finally:
        s.close()

    def drive(*_, **__):
        raise BatchTooLarge("a batch of 300 requests is more than the 256 this client can have in flight; "
                            "raise the concurrency or split the batch")
    monkeypatch.setattr(loadgen, "drive", drive)
    spec = tmp_path / "spec.json"
    spec.write_text(loadgen.ClientSpec(
        client_id=1, host="c0", address="127.0.0.1", dests=(("127.0.0.1", 9),), workload="kv",
        load=workloads.LoadSpec(data=workloads.DataSpec(keys=10), seed=1, requests=10, servers=1), concurrency=2,
        warmup_s=0.1, duration_s=0.1, timeout_ms=10, max_retries=1, rto_min_ms=1, server_window=64).to_json())
    assert loadgen.main([str(spec), str(tmp_path / "result.json")]) == 1
    err = capsys.readouterr().err
    assert err == ("loadgen: error: a batch of 300 requests is more than the 256 this client can have in flight; "
                   "raise the concurrency or split the batch\n")


def test_a_schema_no_server_takes_is_one_line():
    with pytest.raises(HarnessError, match=f"0..{MAX_VALUE} bytes"):
        Schema((MAX_VALUE + 1,))


def test_a_program_the_kernel_refuses_is_one_line():
    """dintd's load (a schema of values too large to verify, e.g. one table
    of 951 bytes on 6.18: a branch out of 16-bit range) says so in one line
    that names the command with the reason."""
    from harness.dintd import load_xdp

    class Refused:
        def load_func(self, name, kind):
            raise Exception("Failed to load BPF program b'dint_xdp': Cannot allocate memory")
    with pytest.raises(HarnessError) as e:
        load_xdp(Refused(), b"dint_xdp", Schema((951,)))
    assert "\n" not in str(e.value) and "refused dint_xdp built for schema 951" in str(e.value)
    assert "python -m harness verifier --schema 951" in str(e.value)


def test_a_schema_clang_cannot_build_is_refused_before_it_compiles():
    """From 953-byte values a record passes 1,024 bytes, whose clearing
    clang's BPF backend makes a memset call and then ends the process."""
    from harness.dintd import compile_program
    with pytest.raises(HarnessError, match="a record of 1032 bytes .* values of at most 952 bytes"):
        compile_program(7777, Schema((953,)))
