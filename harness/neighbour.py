"""A CPU-bound neighbour application for colocation runs: it does fixed
units of work (a pure-Python arithmetic loop) as fast as the cores it is
pinned to let it, and prints `progress <CLOCK_MONOTONIC ns> <units done>`
every 50 ms, so its work rate over any interval (the idle servers before
the clients start, the measured window) can be read from its log.

    python -m harness.neighbour
"""
from __future__ import annotations

import signal
import sys
import time

UNIT = 20_000          # loop iterations per unit of work
REPORT_NS = 50_000_000


def unit() -> int:
    x = 0
    for i in range(UNIT):
        x = (x + i * i) & 0xFFFF
    return x


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    done, last = 0, 0
    print(f"progress {time.monotonic_ns()} 0", flush=True)
    print("ready", flush=True)
    try:
        while True:
            unit()
            done += 1
            now = time.monotonic_ns()
            if now - last >= REPORT_NS:
                print(f"progress {now} {done}", flush=True)
                last = now
    except KeyboardInterrupt:
        return 0


def progress(log_text: str) -> list[tuple[int, int]]:
    """[(ns, units)] from a neighbour's log."""
    out = []
    for line in log_text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "progress":
            try:
                out.append((int(parts[1]), int(parts[2])))
            except ValueError:
                pass
    return out


def rate(points: list[tuple[int, int]], start_ns: int, end_ns: int) -> float | None:
    """Units per second between the first report at or after start_ns and
    the last at or before end_ns; None if the interval holds fewer than two."""
    inside = [p for p in points if start_ns <= p[0] <= end_ns]
    if len(inside) < 2 or inside[-1][0] == inside[0][0]:
        return None
    (t0, u0), (t1, u1) = inside[0], inside[-1]
    return (u1 - u0) / ((t1 - t0) / 1e9)


if __name__ == "__main__":
    sys.exit(main())
