"""`make demo-trigger`: upload-triggered retraining on the local host.

1. starts the local host (and Azurite) unless one already runs,
2. publishes examples/iris/pipeline.yaml and creates the datastore schedule `iris-retrain-on-upload`
   watching `iris/incoming/` (debounce 5 s, the changed folder goes to parameter `data_path`),
3. uploads the iris data set as 3 CSV files in one burst to `iris/incoming/<timestamp>/`,
4. shows that the burst started exactly one run, follows it to the end, and prints the run.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from make_data import write_iris_csv  # noqa: E402

from shared.cli import _publish_file  # noqa: E402
from shared.client import DEFAULT_HOST, ApiError, PipelineClient  # noqa: E402
from shared.datastore import get_datastore  # noqa: E402
from shared.local_host import ensure_local_host, local_data_dir, read_local_key  # noqa: E402

PIPELINE = HERE / "pipeline.yaml"
SCHEDULE = "iris-retrain-on-upload"
EXPERIMENT = "iris-on-upload"
DEBOUNCE = 5


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def split_csv(source: Path, folder: Path, parts: int) -> list[Path]:
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(parts):
        path = folder / f"part-{index}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(body[index::parts])
        files.append(path)
    return files


def ensure_schedule(client: PipelineClient, pipeline_id: str) -> None:
    try:
        client.request("DELETE", f"/api/schedules/{SCHEDULE}")
    except ApiError as error:
        if error.status != 404:
            raise
    client.request("POST", "/api/schedules", body={
        "name": SCHEDULE, "pipelineId": pipeline_id, "experimentName": EXPERIMENT,
        "datastore": {"name": "workspaceblobstore", "pathOnDatastore": "iris/incoming",
                      "dataPathParameterName": "data_path", "debounceSeconds": DEBOUNCE}})


def main() -> int:
    host = os.environ.get("MLPIPE_HOST", DEFAULT_HOST)
    client = PipelineClient(host, os.environ.get("MLPIPE_FUNCTION_KEY") or read_local_key())
    with ensure_local_host(client) as client:
        banner("publishing examples/iris/pipeline.yaml and watching workspaceblobstore/iris/incoming/")
        pipeline = _publish_file(client, PIPELINE, name="iris-retrain")
        ensure_schedule(client, pipeline["Id"])
        before = {run["Id"] for run in client.request("GET", "/api/runs", query={"experiment": EXPERIMENT})["value"]}

        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        banner(f"uploading 3 CSV files at once to iris/incoming/{stamp}/ (one burst, debounce {DEBOUNCE}s)")
        scratch = local_data_dir() / "demo-trigger"
        parts = split_csv(write_iris_csv(scratch / "iris.csv"), scratch / stamp, 3)
        store = get_datastore("workspaceblobstore")
        uploaded_at = time.monotonic()
        for part in parts:
            store.upload_file(part, f"iris/incoming/{stamp}/{part.name}")

        run = None
        while time.monotonic() - uploaded_at < DEBOUNCE + 60:
            new = [r for r in client.request("GET", "/api/runs", query={"experiment": EXPERIMENT})["value"]
                   if r["Id"] not in before]
            if new:
                run = new[0]
                break
            time.sleep(0.25)
        if run is None:
            print("no run started; see the host log", file=sys.stderr)
            return 1
        banner(f"run {run['Id']} started {time.monotonic() - uploaded_at:.1f}s after the upload "
               f"(debounce {DEBOUNCE}s), data_path = {run['ParameterAssignments']['data_path']}")
        final = client.wait_for_run(run["Id"], timeout=300)
        time.sleep(DEBOUNCE)  # nothing else arrives: still one run for the whole burst
        started = [r for r in client.request("GET", "/api/runs", query={"experiment": EXPERIMENT})["value"]
                   if r["Id"] not in before]
        recorded = client.request("GET", f"/api/runs/{run['Id']}")["Steps"]
        steps = ", ".join(f"{s['Name']} {s['Status']}" for s in recorded)
        banner(f"run {final['Status']}: {steps}; runs started by the burst: {len(started)}")
        schedule = client.request("GET", f"/api/schedules/{SCHEDULE}")
        print(f"schedule {SCHEDULE}: Status {schedule['Status']}, LastRunId {schedule['LastRunId']}")
        return 0 if final["Status"] == "Finished" and len(started) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
