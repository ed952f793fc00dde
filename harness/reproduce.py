"""`make reproduce`: the evaluation. For now the echo calibration of the three
systems (concurrency 1 and 32, both NAPI placements) into
results/<run-id>/, with a table printed and saved beside the points, and
its figure."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from . import RESULTS_DIR, inventory
from .config import SYSTEMS, RunConfig
from .run import execute, one_line
from .testbed import Testbed

TABLE_COLUMNS = ["system", "napi", "concurrency", "throughput_per_s", "p50_us", "p99_us", "mean_us",
                 "errors", "client_cpu_util", "client_saturated"]


def points(duration_s: float, warmup_s: float) -> list[RunConfig]:
    return [RunConfig(system=s, workload="echo", concurrency=c, napi=n, duration_s=duration_s, warmup_s=warmup_s)
            for s in SYSTEMS for n in ("inline", "pinned") for c in (1, 32)]


def table(run_dir: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(run_dir.glob("*/summary.json")):
        s = json.loads(path.read_text())
        lat = s["latency_us"]
        rows.append({"system": s["system"], "napi": s["napi"], "concurrency": s["concurrency"],
                     "throughput_per_s": s["throughput_per_s"], "p50_us": lat["p50"], "p99_us": lat["p99"],
                     "mean_us": lat["mean"], "errors": s["errors"], "client_cpu_util": s["client_cpu_util"],
                     "client_saturated": s["client_saturated"]})
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    order = {name: i for i, name in enumerate(SYSTEMS)}
    return df.sort_values(["system", "napi", "concurrency"], key=lambda c: c.map(order) if c.name == "system" else c)


def reproduce(run_id: str | None = None, inventory_path: str | None = None, duration_s: float = 5.0,
              warmup_s: float = 1.0) -> Path:
    run_id = run_id or time.strftime("%Y%m%d-%H%M%S")
    run_dir = RESULTS_DIR / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    inv = inventory.load(inventory_path)
    with Testbed(inv) as tb:
        for cfg in points(duration_s, warmup_s):
            if inventory_path:
                cfg.inventory = str(inventory_path)
            out = run_dir / f"echo-{cfg.system}-{cfg.napi}-c{cfg.concurrency}"
            if (out / "summary.json").exists():
                print(f"done before: {out.name}")
                continue
            print(one_line(execute(cfg, out, testbed=tb)), flush=True)
    df = table(run_dir)
    df.to_csv(run_dir / "echo_calibration.csv", index=False)
    text = df.to_string(index=False)
    (run_dir / "echo_calibration.txt").write_text(text + "\n")
    print(f"\nEcho calibration ({run_dir}):\n{text}")
    from plots.__main__ import echo_calibration
    for path in echo_calibration(run_dir / "echo_calibration.csv", run_dir):
        print(f"figure: {path}")
    return run_dir
