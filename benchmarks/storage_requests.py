"""What one storage request costs here: client CPU (azure-core + requests) and Azurite's CPU.

    .venv/bin/python benchmarks/storage_requests.py [--count 400]

A step costs a handful of these (BENCHMARKS.md, "Per-step overhead"): a claim (create-only put),
a step record and a reuse record (puts with metadata) and two run events (queue messages). Each
kind is sent `count` times in a row to a private Azurite through the project's own clients.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import machine
from devhost.azurite import free_port, start_azurite

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
EVENT = '{"specversion": "1.0", "type": "mlpipe.StepCompleted", "data": {"runId": "r", "step": "s"}}'


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-") as scratch:
        azurite = start_azurite(Path(scratch) / "azurite", blob_port=free_port(), queue_port=free_port())
        try:
            os.environ.update({"AzureWebJobsStorage": azurite.connection_string,
                               "MLPIPE_DATA_DIR": str(Path(scratch) / "data")})
            from shared.queues import queue_client
            from shared.storage import ensure_container

            container, queue = ensure_container("benchsystem"), queue_client("bench-events")
            kinds = {
                "create-only put (a claim)": lambda i: container.upload_blob(f"claim/{i}", b"", overwrite=False),
                "put with metadata (a record)": lambda i: container.upload_blob(
                    f"record/{i}", b"{}", overwrite=True, metadata={"record": '{"Name": "s", "Status": "Completed"}'}),
                "queue message (a run event)": lambda i: queue.send_message(EVENT),
            }
            print(f"machine: {machine()}; {args.count} requests of each kind, one after the other")
            print("| request | wall | client CPU | Azurite CPU |")
            print("|---|---:|---:|---:|")
            for label, send in kinds.items():
                azurite_before, wall_before, cpu_before = (process_cpu_seconds(azurite.process.pid),
                                                           time.perf_counter(), time.process_time())
                for i in range(args.count):
                    send(i)
                per = lambda seconds: f"{seconds / args.count * 1000:.2f} ms"  # noqa: E731
                print(f"| {label} | {per(time.perf_counter() - wall_before)} | "
                      f"{per(time.process_time() - cpu_before)} | "
                      f"{per(process_cpu_seconds(azurite.process.pid) - azurite_before)} |")
        finally:
            azurite.stop()


if __name__ == "__main__":
    main()
