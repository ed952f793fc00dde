"""The calibration table and figure, from summaries written as runs write them."""
from __future__ import annotations

import json

import pandas as pd

from harness.reproduce import TABLE_COLUMNS, table
from plots.__main__ import echo_calibration, main as plots_main


def write_point(run_dir, system, napi, conc, tput, p50, saturated):
    d = run_dir / f"echo-{system}-{napi}-c{conc}"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps({
        "system": system, "napi": napi, "concurrency": conc, "throughput_per_s": tput,
        "latency_us": {"p50": p50, "p99": p50 * 2, "mean": p50 * 1.1}, "errors": 0,
        "client_cpu_util": 0.99 if saturated else 0.4, "client_saturated": saturated}))


def make_run(tmp_path):
    for s, base in (("kernel", 200e3), ("dint", 400e3), ("bypass", 300e3)):
        for napi in ("inline", "pinned"):
            write_point(tmp_path, s, napi, 1, base / 20, 1e6 / base, False)
            write_point(tmp_path, s, napi, 32, base, 32e6 / base, s == "dint")
    return tmp_path


def test_table_has_every_point_in_system_order(tmp_path):
    df = table(make_run(tmp_path))
    assert list(df.columns) == TABLE_COLUMNS and len(df) == 12
    assert list(dict.fromkeys(df["system"])) == ["dint", "kernel", "bypass"]
    row = df[(df.system == "dint") & (df.napi == "pinned") & (df.concurrency == 32)].iloc[0]
    assert row.throughput_per_s == 400e3 and bool(row.client_saturated)


def test_figure_is_written_as_png_and_pdf(tmp_path):
    run = make_run(tmp_path)
    table(run).to_csv(run / "echo_calibration.csv", index=False)
    paths = echo_calibration(run / "echo_calibration.csv", run)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert all(p.stat().st_size > 5000 for p in paths)
    assert (run / "echo_calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_command_explains_a_missing_run(tmp_path, capsys):
    assert plots_main([str(tmp_path)]) == 1
    assert "not found" in capsys.readouterr().err
    pd.DataFrame(columns=TABLE_COLUMNS).to_csv(tmp_path / "echo_calibration.csv", index=False)
    assert plots_main([str(tmp_path)]) == 1
    assert "no points" in capsys.readouterr().err
