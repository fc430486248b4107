"""The step every compared tool runs, and its raw cost (the spawn floor), for prefect_dags.py and
dagster_dags.py. Those run in .bench-venv/, which cannot import benchmarks/common.py (that needs
the project's own dependencies), hence this small stdlib-only module."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

COMMAND = [sys.executable, "-c", "pass"]
# With --warm-up dags, each tool waits this long after its warm-up DAGs before it is measured, so
# background work they left (event writes, deferred records) does not land in the timings.
SETTLE_SECONDS = 3.0


def spawn() -> None:
    subprocess.run(COMMAND, check=True)


def spawn_floor(count: int = 20) -> float:
    """Mean seconds to spawn `python -c pass` with this interpreter and wait for it."""
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        spawn()
        durations.append(time.perf_counter() - started)
    return statistics.mean(durations)


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started
