"""A series client (harness/loadgen.py, run_series) against a loopback echo
server: one process runs the points one after the other, writes each
point's result as it ends, says so, and starts the next only when told
(SIGUSR1, as deploy/roles/procs/tasks/go.yml sends it); without the signal
it gives up with one line."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace

from harness.loadgen import ClientSpec
from workloads import DataSpec, LoadSpec

from conftest import EchoServer


def plan(tmp_path, server, go_timeout_s: float) -> tuple[list[str], object]:
    base = ClientSpec(client_id=1 << 16 | 1, host="c0", address="127.0.0.1", dests=(server.addr,), workload="echo",
                      load=LoadSpec(data=DataSpec(keys=100), seed=1, requests=1000, servers=1), concurrency=2,
                      warmup_s=0.05, duration_s=0.2, timeout_ms=50, max_retries=3, rto_min_ms=1, server_window=64)
    points = [base, replace(base, client_id=2 << 16 | 1, concurrency=4)]
    results = [str(tmp_path / f"result-{k}.json") for k in range(2)]
    path = tmp_path / "series.json"
    path.write_text(json.dumps({"points": [json.loads(p.to_json()) for p in points], "results": results,
                                "go_timeout_s": go_timeout_s}))
    return results, path


def start(path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness.loadgen", "--series", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_each_point_starts_when_told_and_has_a_result_of_its_own(tmp_path):
    with EchoServer() as server:
        results, path = plan(tmp_path, server, go_timeout_s=30)
        proc = start(path)
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if '"phase": "done", "point": 0' in line:
                # the first point's result is written before it says so
                assert json.loads(open(results[0]).read())["client_id"] == 1 << 16 | 1
                time.sleep(0.2)  # the second waits meanwhile
                assert not any('"point": 1' in ln for ln in lines)
                proc.send_signal(signal.SIGUSR1)
        assert proc.wait(30) == 0, proc.stderr.read()
    second = json.loads(open(results[1]).read())
    assert second["client_id"] == 2 << 16 | 1 and second["stats"]["ok"] > 0
    assert sum('"phase": "done"' in ln for ln in lines) == 2


def test_without_the_signal_the_series_ends_with_one_line(tmp_path):
    with EchoServer() as server:
        results, path = plan(tmp_path, server, go_timeout_s=0.3)
        proc = start(path)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert err.strip() == "loadgen: error: no signal to start point 2 of 2 within 0.3 s"
    assert json.loads(open(results[0]).read())["stats"]["ok"] > 0
    assert not (tmp_path / "result-1.json").exists()
