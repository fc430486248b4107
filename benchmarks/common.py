"""Shared set-up for benchmarks: a private Azurite + local host, and timing helpers."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from devhost.azurite import free_port, start_azurite  # noqa: E402
from devhost.testing import start_host  # noqa: E402
from shared.client import PipelineClient  # noqa: E402

BENCH_KEY = "benchmark-key-0123456789"


@contextlib.contextmanager
def local_stack(extra_env: dict | None = None) -> Iterator[tuple[PipelineClient, dict, object]]:
    """A fresh Azurite and a devhost running the repo's function_app.py; yields (client, env, host)."""
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-") as scratch:
        scratch_path = Path(scratch)
        azurite = start_azurite(scratch_path / "azurite", blob_port=free_port(), queue_port=free_port())
        env = {"AzureWebJobsStorage": azurite.connection_string, "MLPIPE_DATA_DIR": str(scratch_path / "data"),
               "MLPIPE_FUNCTION_KEY": BENCH_KEY, **(extra_env or {})}
        try:
            with start_host(REPO_ROOT, env=env, data_dir=scratch_path / "data") as host:
                os.environ.update(env)
                yield PipelineClient(host.url, BENCH_KEY), env, host
        finally:
            azurite.stop()


def spawn_floor(script: Path, count: int) -> float:
    """Mean seconds to spawn `python script` and wait for it: the raw cost every step pays."""
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        subprocess.run([sys.executable, str(script)], check=True)
        durations.append(time.perf_counter() - started)
    return statistics.mean(durations)


def timed_run(client: PipelineClient, pipeline_id: str, **submit_fields) -> tuple[float, dict]:
    started = time.perf_counter()
    run = client.submit(pipeline_id, "benchmark", **submit_fields)
    final = client.wait_for_run(run["Id"], poll_seconds=0.05, timeout=900)
    return time.perf_counter() - started, final


def epoch_seconds(utc_time: str) -> float:
    """A recorded time (ISO 8601, `Z` for UTC, as runs and steps carry them) as seconds since the epoch."""
    return datetime.fromisoformat(utc_time.replace("Z", "+00:00")).timestamp()


def machine() -> str:
    import platform
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot, all cores (Linux /proc/stat: every
    field of the "cpu" line but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
