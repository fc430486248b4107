"""`make demo`: the iris pipeline end to end on the local host, twice.

1. starts the local Functions + Durable host (and Azurite) unless one already runs,
2. uploads scikit-learn's iris data set as CSV to the default datastore (iris/raw/iris.csv),
3. `mlpipe run examples/iris/pipeline.yaml`: publish, submit over HTTP, live step progress,
4. runs it again: every step is Reused, nothing is sent to compute.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from make_data import write_iris_csv  # noqa: E402

from shared import cli  # noqa: E402
from shared.client import DEFAULT_HOST, PipelineClient  # noqa: E402
from shared.datastore import get_datastore  # noqa: E402
from shared.local_host import ensure_local_host, local_data_dir, read_local_key  # noqa: E402

PIPELINE = HERE / "pipeline.yaml"


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def main() -> int:
    host = os.environ.get("MLPIPE_HOST", DEFAULT_HOST)
    client = PipelineClient(host, os.environ.get("MLPIPE_FUNCTION_KEY") or read_local_key())
    with ensure_local_host(client) as client:
        os.environ.setdefault("MLPIPE_HOST", client.endpoint)
        banner("uploading the iris data set to workspaceblobstore/iris/raw/iris.csv")
        csv_path = write_iris_csv(local_data_dir() / "demo" / "iris.csv")
        get_datastore("workspaceblobstore").upload_file(csv_path, "iris/raw/iris.csv")

        banner("first run: every step runs on local compute")
        first = cli.main(["run", str(PIPELINE), "--experiment", "iris-demo"])
        if first != 0:
            return first

        banner("second run: nothing changed, so every step is Reused")
        second = cli.main(["run", str(PIPELINE), "--experiment", "iris-demo"])
        if second != 0:
            return second
        runs = client.list_runs(experiment="iris-demo", top=1)
        latest = client.get_run(runs[0]["Id"])
        reused = [step["Name"] for step in latest["Steps"] if step["Reused"]]
        if len(reused) != len(latest["Steps"]):
            print(f"expected every step Reused on the second run, got {reused}", file=sys.stderr)
            return 1
        banner(f"done: model at workspaceblobstore/{_output(latest, 'train', 'model')}, "
               f"report at workspaceblobstore/{_output(latest, 'evaluate', 'report')}")
    return 0


def _output(run: dict, step: str, output: str) -> str:
    for item in run["Steps"]:
        if item["Name"] == step:
            return item["Outputs"][output]["Path"]
    return "?"


if __name__ == "__main__":
    sys.exit(main())
