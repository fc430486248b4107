"""Trigger benchmarks: trigger-to-run-start latency (blob upload, queue message) and 1,000 queued
submissions drained without loss.

    .venv/bin/python benchmarks/triggers.py [--uploads 5] [--messages 10] [--drain 1000] [--debounce 2]

A private Azurite + devhost (benchmarks/common.py). Latency is measured from the moment the blob
upload / queue send returned to the run's StartTimeUtc (the orchestration's first activity marked
it Running) and to its CreatedTimeUtc (the run record was written, Queued); for blob uploads the
debounce window is subtracted ("overhead"). The drain test sends N submission messages (base64, as
Functions writes them) with distinct MessageIds plus 10% re-sent duplicates, and counts runs: every
id must give exactly one run. The pipeline's one step is reused after the first run, so the drain
measures the trigger path, not compute. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient
from common import epoch_seconds, local_stack, machine

from shared.fingerprint import SourceHasher
from shared.packaging import build_package
from shared.spec import load_definition

SCRIPT = "import sys, pathlib\nfor a in sys.argv[1:]:\n    pass\n"


def publish(client, folder: Path) -> dict:
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "noop.py").write_text("import sys, os, pathlib\n"
                                            "out = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
                                            "out.mkdir(parents=True, exist_ok=True)\n"
                                            "(out / 'done.txt').write_text('ok')\n")
    definition = {"name": "trigger-bench", "parameters": {"data_path": "none", "tag": "x"},
                  "steps": [{"name": "only", "source_directory": "src", "script_name": "noop.py",
                             "arguments": ["--tag", "{parameters.tag}", "--out", "{outputs.out}"],
                             "outputs": ["out"]}]}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    loaded, base_dir = load_definition(path)
    return client.publish_package(build_package(path, loaded, base_dir, SourceHasher(None)))


def runs(client, experiment: str) -> list[dict]:
    return client.request("GET", "/api/runs", query={"experiment": experiment, "top": 1000})["value"]


def wait_started(client, experiment: str, count: int, timeout: float = 120.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = runs(client, experiment)
        if len(found) >= count and all(r.get("StartTimeUtc") for r in found[:count]):
            return found
        time.sleep(0.05)
    raise TimeoutError(f"{experiment}: fewer than {count} runs started")


def blob_latency(client, env, pipeline, uploads: int, debounce: float) -> list[tuple[float, float]]:
    container = BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"]).get_container_client(
        "workspaceblobstore")
    try:
        container.create_container()
    except Exception:  # noqa: BLE001 - exists
        pass
    experiment = "bench-blob"
    client.request("POST", "/api/schedules", body={
        "name": "bench-watch", "pipelineId": pipeline["Id"], "experimentName": experiment,
        "datastore": {"pathOnDatastore": "bench/incoming", "dataPathParameterName": "data_path",
                      "debounceSeconds": debounce}})
    time.sleep(2.5)  # the blob trigger's schedule cache
    results = []
    for index in range(uploads):
        container.upload_blob(f"bench/incoming/{index}/data.csv", b"a,b\n1,2\n")
        sent = time.time()
        found = wait_started(client, experiment, index + 1)
        newest = found[0]
        results.append((epoch_seconds(newest["CreatedTimeUtc"]) - sent, epoch_seconds(newest["StartTimeUtc"]) - sent))
        time.sleep(0.5)
    return results


def queue_client(env) -> QueueClient:
    queue = QueueClient.from_connection_string(env["AzureWebJobsStorage"], "pipeline-submissions")
    try:
        queue.create_queue()
    except Exception:  # noqa: BLE001 - exists
        pass
    return queue


def message(pipeline_id: str, experiment: str, message_id: str) -> str:
    body = {"PipelineId": pipeline_id, "ExperimentName": experiment, "MessageId": message_id}
    return base64.b64encode(json.dumps(body).encode()).decode()


def queue_latency(client, env, pipeline, count: int) -> list[tuple[float, float]]:
    queue = queue_client(env)
    experiment = "bench-queue"
    results = []
    for index in range(count):
        time.sleep(1.5)  # an idle queue: the listener has backed off (up to maxPollingInterval)
        queue.send_message(message(pipeline["Id"], experiment, f"latency-{index}"))
        sent = time.time()
        newest = wait_started(client, experiment, index + 1)[0]
        results.append((epoch_seconds(newest["CreatedTimeUtc"]) - sent, epoch_seconds(newest["StartTimeUtc"]) - sent))
    return results


def drain(client, env, pipeline, count: int) -> dict:
    queue = queue_client(env)
    experiment = "bench-drain"
    ids = [f"drain-{index}" for index in range(count)]
    duplicates = ids[:: 10]
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda mid: queue.send_message(message(pipeline["Id"], experiment, mid)), ids + duplicates))
    sent = time.perf_counter() - started
    deadline = time.monotonic() + 900
    found = []
    while time.monotonic() < deadline:
        found = runs(client, experiment)
        if len(found) >= count:
            break
        time.sleep(0.5)
    created = time.perf_counter() - started
    while time.monotonic() < deadline:
        found = runs(client, experiment)
        if all(r["Status"] in ("Finished", "Failed", "Canceled") for r in found):
            break
        time.sleep(1.0)
    finished = time.perf_counter() - started
    time.sleep(3)
    found = runs(client, experiment)
    poison = QueueClient.from_connection_string(env["AzureWebJobsStorage"], "pipeline-submissions-poison")
    try:
        poisoned = poison.get_queue_properties().approximate_message_count
    except Exception:  # noqa: BLE001 - no poison queue: nothing poisoned
        poisoned = 0
    return {"messages": len(ids) + len(duplicates), "runs": len(found), "distinct": len({r["Id"] for r in found}),
            "finished": sum(r["Status"] == "Finished" for r in found), "send_s": sent, "created_s": created,
            "finished_s": finished, "poisoned": poisoned}


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"{statistics.median(values):.2f} / {p95:.2f} / {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=5)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--drain", type=int, default=1000)
    parser.add_argument("--debounce", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, local_stack() as (client, env, _host):
        pipeline = publish(client, Path(scratch))
        blob = blob_latency(client, env, pipeline, args.uploads, args.debounce)
        queue = queue_latency(client, env, pipeline, args.messages)
        drained = drain(client, env, pipeline, args.drain)
    print(f"\nmachine: {machine()}; devhost + Azurite; seconds as median / p95 / max\n")
    print("| trigger | n | to run created (Queued) | to run started (Running) | started minus debounce |")
    print("|---|---|---|---|---|")
    print(f"| blob upload, debounce {args.debounce:g} s | {len(blob)} | {summary([c for c, _ in blob])} | "
          f"{summary([s for _, s in blob])} | {summary([s - args.debounce for _, s in blob])} |")
    print(f"| queue message | {len(queue)} | {summary([c for c, _ in queue])} | {summary([s for _, s in queue])} | - |")
    print()
    print("| drain | messages sent (incl. 10% duplicates) | runs | distinct run ids | Finished | poisoned "
          "| all runs created | all runs finished |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {args.drain} submissions | {drained['messages']} | {drained['runs']} | {drained['distinct']} | "
          f"{drained['finished']} | {drained['poisoned']} | {drained['created_s']:.1f} s | "
          f"{drained['finished_s']:.1f} s |")


if __name__ == "__main__":
    main()
