"""What every peer-bench client prints: the answer of one run (cold start), or CPU per run over many."""

from __future__ import annotations

import json
import statistics
import time
from typing import Callable, List


def measure(run_once: Callable[[], str], args: List[str]) -> None:
    """`--once`: one run, its answer printed. Otherwise `RUNS`: JSON with the median CPU and wall
    microseconds per run over five batches (after 20 warm-up runs)."""
    if args and args[0] == "--once":
        print(run_once())
        return
    runs = int(args[0]) if args else 200
    for _ in range(20):
        assert "5" in run_once()
    cpu, wall = [], []
    for _ in range(5):
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        for _ in range(runs):
            run_once()
        cpu.append((time.process_time() - cpu_start) / runs * 1e6)
        wall.append((time.perf_counter() - wall_start) / runs * 1e6)
    print(json.dumps({"cpu_us_per_run": statistics.median(cpu), "wall_us_per_run": statistics.median(wall)}))
