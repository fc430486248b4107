"""`make demo-batch`: batch scoring on a schedule with the latest model, on the local host.

1. starts the local host (scheduler every 5 s) unless one already runs,
2. trains the iris model first if no run has produced one, then registers the newest model
   (register_model.py: its train.model output -> workspaceblobstore/models/iris/latest/),
3. uploads 3 CSV files to score to workspaceblobstore/scoring/incoming/,
4. publishes examples/batch-scoring/pipeline.yaml and schedules it with a six-field NCRONTAB
   (`*/15 * * * * *`, every 15 s),
5. shows the first scheduled run scoring the files (predictions on blob), and the next one
   Reused because neither the model nor the data changed; then disables the schedule.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "examples" / "iris"))

os.environ.setdefault("MLPIPE_SCHEDULER_CRON", "*/5 * * * * *")  # for a host this demo starts

from make_data import write_iris_csv  # noqa: E402
from register_model import register  # noqa: E402

from shared import cli  # noqa: E402
from shared.cli import _publish_file  # noqa: E402
from shared.client import DEFAULT_HOST, ApiError, PipelineClient  # noqa: E402
from shared.datastore import get_datastore  # noqa: E402
from shared.local_host import ensure_local_host, local_data_dir, read_local_key  # noqa: E402

SCHEDULE = "iris-batch-scoring"
EXPERIMENT = "iris-batch-scoring"


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def has_model(client: PipelineClient) -> bool:
    for run in client.request("GET", "/api/runs", query={"status": "Finished", "top": 50})["value"]:
        steps = client.request("GET", f"/api/runs/{run['Id']}")["Steps"]
        if any(s["Name"] == "train" and s.get("Outputs") for s in steps):
            return True
    return False


def upload_batches(folder: Path) -> None:
    source = write_iris_csv(folder / "iris.csv")
    with source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    store = get_datastore("workspaceblobstore")
    for index in range(3):
        path = folder / f"batch-{index}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            fields = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows[index::7])
        store.upload_file(path, f"scoring/incoming/{path.name}")


def wait_for_new_run(client: PipelineClient, seen: set[str], timeout: float = 120.0) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in client.request("GET", "/api/runs", query={"experiment": EXPERIMENT})["value"]:
            if run["Id"] not in seen:
                return run
        time.sleep(0.5)
    return None


def main() -> int:
    host = os.environ.get("MLPIPE_HOST", DEFAULT_HOST)
    client = PipelineClient(host, os.environ.get("MLPIPE_FUNCTION_KEY") or read_local_key())
    with ensure_local_host(client) as client:
        os.environ.setdefault("MLPIPE_HOST", client.endpoint)
        if not has_model(client):
            banner("no trained model yet: training the iris pipeline once")
            get_datastore("workspaceblobstore").upload_file(
                write_iris_csv(local_data_dir() / "demo" / "iris.csv"), "iris/raw/iris.csv")
            if cli.main(["run", str(REPO / "examples" / "iris" / "pipeline.yaml"), "--experiment", "iris-demo"]):
                return 1
        banner("registering the newest model at workspaceblobstore/models/iris/latest/")
        register(client)
        banner("uploading 3 CSV files to workspaceblobstore/scoring/incoming/")
        upload_batches(local_data_dir() / "demo-batch")

        pipeline = _publish_file(client, HERE / "pipeline.yaml", name="iris-batch-scoring")
        try:
            client.request("DELETE", f"/api/schedules/{SCHEDULE}")
        except ApiError as error:
            if error.status != 404:
                raise
        schedule = client.request("POST", "/api/schedules", body={
            "name": SCHEDULE, "pipelineId": pipeline["Id"], "experimentName": EXPERIMENT, "cron": "*/15 * * * * *"})
        banner(f"scheduled every 15 s (NCRONTAB '*/15 * * * * *'); next due {schedule['NextRunTimeUtc']}")
        seen = {run["Id"] for run in client.request("GET", "/api/runs", query={"experiment": EXPERIMENT})["value"]}
        try:
            for label in ("first scheduled run", "next scheduled run"):
                run = wait_for_new_run(client, seen)
                if run is None:
                    print("no scheduled run started; is the host's MLPIPE_SCHEDULER_CRON slower than a minute?",
                          file=sys.stderr)
                    return 1
                seen.add(run["Id"])
                final = client.wait_for_run(run["Id"], timeout=300)
                steps = client.request("GET", f"/api/runs/{run['Id']}")["Steps"]
                score = next(s for s in steps if s["Name"] == "score")
                where = score["Outputs"]["predictions"]["Path"]
                state = "Reused (model and data unchanged)" if score["Reused"] else "scored"
                banner(f"{label} {run['Id']}: {final['Status']}, score {state}; "
                       f"{score['Metrics'].get('rows_scored', '?')} rows -> workspaceblobstore/{where}/")
        finally:
            client.request("POST", f"/api/schedules/{SCHEDULE}/disable")
            print(f"schedule {SCHEDULE} disabled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
