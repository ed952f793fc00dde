"""The server cost (harness/cost.py): every server's stats lines carry when
they were taken and what the server has cost so far, measured on its own
host; the cost per request comes from the lines around the clients' window,
and is null with a reason, never 0, when it cannot be had."""
from __future__ import annotations

import pytest

from harness import cost, dintd

S = 1_000_000_000


def line(t_s: float, rx: int, **cpu) -> dict:
    return {"rx": rx, "tx": rx, "t_ns": int(t_s * S), "mono_ns": int(t_s * S), **cpu}


def kernel_lines(rate: int = 1000, cpu_per_op_ns: int = 2000, napi_per_op_ns: int = 500, n: int = 40) -> list[dict]:
    """A server's lines every 100 ms, from t=100 s, serving `rate` requests/s."""
    out = []
    for i in range(n):
        t = 100 + i / 10
        rx = int(rate * i / 10)
        out.append(line(t, rx, cpu_ns=10**9 + rx * cpu_per_op_ns, napi_cpu_ns=rx * napi_per_op_ns))
    return out


def test_per_op_divides_the_cpu_between_the_bracketing_lines_by_the_requests_counted_there():
    lines = {"s0": kernel_lines(), "s1": kernel_lines(rate=3000, cpu_per_op_ns=1000, napi_per_op_ns=0)}
    got = cost.per_op("kernel", lines, (int(100.55 * S), int(102.25 * S)))
    # lines at 100.5 and 102.3 on both servers
    ops = (2300 - 500) + (6900 - 1500)
    cpu = (2300 - 500) * 2500 + (6900 - 1500) * 1000
    assert got["ops"] == ops
    assert got["server_cpu_us_per_op"] == pytest.approx(cpu / 1e3 / ops, abs=1e-4)
    assert got["napi_cpu_s"] == pytest.approx((2300 - 500) * 500 / 1e9, abs=1e-4)
    assert got["servers"]["s0"]["span_s"] == pytest.approx(1.8)
    assert "rule" in got and "reason" not in got


def test_a_line_exactly_at_the_window_edge_brackets_it():
    got = cost.per_op("kernel", {"s0": kernel_lines()}, (int(100.5 * S), int(102.0 * S)))
    assert got["servers"]["s0"]["span_s"] == pytest.approx(1.5) and got["ops"] == 1500


def test_dint_adds_the_xdp_run_time_to_the_processes_cpu():
    lines = [line(100 + i / 10, 1000 * i, cpu_ns=10**8 + 50_000 * i, bpf_run_ns=700_000 * i, bpf_run_cnt=1000 * i)
             for i in range(30)]
    got = cost.per_op("dint", {"s0": lines}, (int(100.15 * S), int(101.05 * S)))
    # lines 1 and 11: 10,000 requests, 7 ms of XDP and 0.5 ms of user space
    assert got["ops"] == 10_000 and got["bpf_runs"] == 10_000
    assert got["server_cpu_us_per_op"] == pytest.approx(0.75)
    assert got["bpf_run_ns_per_op"] == pytest.approx(700)
    assert got["user_space_cpu_s"] == pytest.approx(0.0005)


@pytest.mark.parametrize("case, reason", [
    ("died", "no stats line at or after the clients' window end"),
    ("late start", "no stats line at or before the clients' window start"),
    ("no field", "no napi_cpu_ns"),
    ("no stamp", "no stats line with a time stamp"),
    ("idle", "counted no request"),
    ("restarted", "went down"),
    ("no window", "did not report their window"),
])
def test_no_figure_is_null_with_a_reason_never_zero(case, reason):
    lines, window = kernel_lines(), (int(100.55 * S), int(102.25 * S))
    if case == "died":
        lines = lines[:15]  # nothing after 101.4
    elif case == "late start":
        lines = lines[10:]
    elif case == "no field":
        lines = [{k: v for k, v in ln.items() if k != "napi_cpu_ns"} for ln in lines]
    elif case == "no stamp":
        lines = [{k: v for k, v in ln.items() if k != "t_ns"} for ln in lines]
    elif case == "restarted":  # counting from 0 again from 101.2 s on
        lines = lines[:12] + [dict(ln, rx=ln["rx"] - 1200, cpu_ns=ln["cpu_ns"] - 10**9) for ln in lines[12:]]
    elif case == "no window":
        window = None
    other = kernel_lines()
    if case == "idle":  # neither server counted a request (their CPU alone is no cost per request)
        lines, other = kernel_lines(rate=0), kernel_lines(rate=0)
    got = cost.per_op("kernel", {"s0": other, "s1": lines}, window)
    assert got["server_cpu_us_per_op"] is None
    assert reason in got["reason"], got["reason"]
    if case not in ("no window", "idle"):
        assert "s1" in got["reason"]


def test_client_window_is_the_union_on_the_realtime_clock():
    rs = [{"window_realtime_ns": [5, 10], "window_ns": [1, 2]}, {"window_realtime_ns": [4, 9]}]
    assert cost.client_window(rs) == (4, 10)
    assert cost.client_window([{"window_ns": [1, 2]}]) is None


def test_dintd_falls_back_to_the_sysctl_and_restores_it(tmp_path, monkeypatch):
    sysctl = tmp_path / "bpf_stats_enabled"
    sysctl.write_text("0\n")

    def refused() -> int:
        raise OSError(1, "refused")
    monkeypatch.setattr(dintd, "_enable_stats_fd", refused)
    monkeypatch.setattr(dintd, "STATS_SYSCTL", str(sysctl))
    stats = dintd.RunStats()
    assert stats.how == "kernel.bpf_stats_enabled" and sysctl.read_text() == "1"
    stats.close()
    assert sysctl.read_text() == "0"


def test_dintd_enables_the_statistics_with_an_fd(root):
    stats = dintd.RunStats()
    try:
        assert stats.how == "BPF_ENABLE_STATS" and stats.fd is not None and stats.fd >= 0
    finally:
        stats.close()

# Every system's stats lines carry these fields, and a short run of each gives
# a positive cost: tests/test_run.py::test_run_writes_a_complete_summary.


def test_cores_used_split_into_packet_work_and_process_and_no_user_kernel_without_their_fields():
    """Cores used, as DINT reports CPU efficiency: CPU seconds per second of
    each server's span, summed; user and kernel apart only from lines that
    carry them."""
    lines = {"s0": kernel_lines(), "s1": kernel_lines(rate=3000, cpu_per_op_ns=1000, napi_per_op_ns=0)}
    got = cost.per_op("kernel", lines, (int(100.55 * S), int(102.25 * S)))["cores"]
    # s0: 1,000 requests/s x 2 us of process and 0.5 us of NAPI; s1: 3,000 x 1 us
    assert got["process"] == pytest.approx(0.002 + 0.003, abs=1e-3)
    assert got["packet"] == pytest.approx(0.0005, abs=1e-4)
    assert got["total"] == pytest.approx(got["process"] + got["packet"], abs=1e-4)
    assert got["user"] is None and got["kernel"] is None
    assert "cpu_user_ns" in got["user_kernel_note"] and got["packet_work"] == "napi_cpu_ns"


def test_cores_user_and_kernel_apart_when_the_lines_carry_them():
    lines = [dict(ln, cpu_user_ns=ln["rx"] * 500, cpu_sys_ns=10**9 + ln["rx"] * 1500) for ln in kernel_lines()]
    got = cost.per_op("kernel", {"s0": lines}, (int(100.55 * S), int(102.25 * S)))["cores"]
    # 1,000 requests/s: 0.5 us user, 1.5 us system and 0.5 us NAPI each
    assert got["user"] == pytest.approx(0.0005, abs=1e-4)
    assert got["kernel"] == pytest.approx(0.0015 + 0.0005, abs=1e-4)
    assert "user_kernel_note" not in got


def test_dint_counts_its_napi_threads_in_place_of_the_xdp_runs_when_its_lines_carry_them():
    lines = [line(100 + i / 10, 1000 * i, cpu_ns=10**8 + 50_000 * i, bpf_run_ns=700_000 * i, bpf_run_cnt=1000 * i)
             for i in range(30)]
    window = (int(100.15 * S), int(101.05 * S))
    xdp_only = cost.per_op("dint", {"s0": lines}, window)
    assert xdp_only["cores"]["packet_work"] == "bpf_run_ns"
    assert xdp_only["cores"]["total"] == pytest.approx((0.007 + 0.0005) / 1.0, abs=1e-4)
    napi = cost.per_op("dint", {"s0": [dict(ln, napi_cpu_ns=ln["bpf_run_ns"] * 2) for ln in lines]}, window)
    assert napi["cores"]["packet_work"] == "napi_cpu_ns"
    assert napi["cores"]["packet"] == pytest.approx(0.014, abs=1e-4)
    assert napi["server_cpu_us_per_op"] == pytest.approx(1.45)
    # NAPI not threaded (--napi inline): the threads ran less than the XDP
    # program did (it ran on the senders' cores), so the runs count
    inline = cost.per_op("dint", {"s0": [dict(ln, napi_cpu_ns=0) for ln in lines]}, window)
    assert inline["cores"]["packet_work"] == "bpf_run_ns"
    assert inline["server_cpu_us_per_op"] == xdp_only["server_cpu_us_per_op"]
