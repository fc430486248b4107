"""What one storage request costs here: client CPU (the storage SDK and its transport) and Azurite's CPU.

    .venv/bin/python benchmarks/storage_requests.py [--count 400]

A step costs a handful of these (BENCHMARKS.md, "Per-step overhead"): a claim (create-only put),
a step record and a reuse record (puts with metadata) and two run events (queue messages). Each
kind is sent `count` times in a row to a private Azurite, once through the project's transport
(shared/http_transport.py, what mlpipe uses) and once through azure-core's RequestsTransport on
the same tuned requests session (what it used before), alternating per kind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from common import machine

from devhost.azurite import free_port, start_azurite

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
EVENT = '{"specversion": "1.0", "type": "mlpipe.StepCompleted", "data": {"runId": "r", "step": "s"}}'


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def sender(kind: str, connection: str, transport, label: str):
    """send(i) for one kind of request, through a client on `transport`."""
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

    prefix = "".join(ch for ch in label if ch.isalnum()).lower()
    if kind.startswith("queue"):
        queue = QueueClient.from_connection_string(connection, f"bench-{prefix}", transport=transport)
        with contextlib.suppress(ResourceExistsError):
            queue.create_queue()
        return lambda i: queue.send_message(EVENT)
    container = BlobServiceClient.from_connection_string(connection, transport=transport).get_container_client(
        f"bench{prefix}")
    if not container.exists():
        container.create_container()
    if kind.startswith("create-only"):
        return lambda i: container.upload_blob(f"claim/{i}", b"", overwrite=False)
    return lambda i: container.upload_blob(f"record/{i}", b"{}", overwrite=True,
                                           metadata={"record": '{"Name": "s", "Status": "Completed"}'})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlpipe-bench-") as scratch:
        azurite = start_azurite(Path(scratch) / "azurite", blob_port=free_port(), queue_port=free_port())
        try:
            os.environ.update({"AzureWebJobsStorage": azurite.connection_string,
                               "MLPIPE_DATA_DIR": str(Path(scratch) / "data")})
            from shared.settings import reset_settings
            from shared.storage import storage_transport

            # Both as mlpipe builds them: the default, then what MLPIPE_HTTP_TRANSPORT=requests gives.
            transports = {"http.client (mlpipe)": storage_transport()}
            os.environ["MLPIPE_HTTP_TRANSPORT"] = "requests"
            reset_settings()
            transports["requests"] = storage_transport()
            print(f"machine: {machine()}; {args.count} requests of each kind, one after the other")
            print("| request | transport | wall | client CPU | Azurite CPU |")
            print("|---|---|---:|---:|---:|")
            for kind in ("create-only put (a claim)", "put with metadata (a record)", "queue message (a run event)"):
                for name, transport in transports.items():
                    send = sender(kind, azurite.connection_string, transport, name)
                    send(-1)  # connect
                    azurite_before, wall_before, cpu_before = (process_cpu_seconds(azurite.process.pid),
                                                               time.perf_counter(), time.process_time())
                    for i in range(args.count):
                        send(i)
                    wall = time.perf_counter() - wall_before
                    client_cpu = time.process_time() - cpu_before
                    azurite_cpu = process_cpu_seconds(azurite.process.pid) - azurite_before
                    print(f"| {kind} | {name} | " + " | ".join(f"{seconds / args.count * 1000:.2f} ms"
                                                              for seconds in (wall, client_cpu, azurite_cpu)) + " |")
        finally:
            azurite.stop()


if __name__ == "__main__":
    main()
