"""Register the newest trained iris model: copy the `train.model` output of the newest Finished iris run
to `models/iris/latest/` on the default datastore (a folder the batch-scoring pipeline reads).

    python examples/batch-scoring/register_model.py [--experiment iris-demo]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

from shared.client import DEFAULT_HOST, PipelineClient  # noqa: E402
from shared.datastore import get_datastore  # noqa: E402
from shared.local_host import read_local_key  # noqa: E402

MODEL_PATH = "models/iris/latest"


def latest_model_path(client: PipelineClient, experiment: str | None) -> tuple[str, str]:
    """(run id, datastore path of its train.model output) of the newest Finished run with a train step."""
    query = {"status": "Finished", "top": 50, **({"experiment": experiment} if experiment else {})}
    for run in client.request("GET", "/api/runs", query=query)["value"]:
        full = client.request("GET", f"/api/runs/{run['Id']}")
        for step in full["Steps"]:
            if step["Name"] == "train" and "model" in (step.get("Outputs") or {}):
                return run["Id"], step["Outputs"]["model"]["Path"]
    raise SystemExit("no Finished run with a train.model output; run `make demo` first")


def register(client: PipelineClient, experiment: str | None = None) -> str:
    run_id, path = latest_model_path(client, experiment)
    store = get_datastore("workspaceblobstore")
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / "model"
        store.download_output(path, local)
        store.upload_folder(local, MODEL_PATH)  # model.pkl, overwritten
    print(f"registered the model of run {run_id} ({path}) at workspaceblobstore/{MODEL_PATH}")
    return run_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default=None)
    args = parser.parse_args()
    client = PipelineClient(os.environ.get("MLPIPE_HOST", DEFAULT_HOST),
                            os.environ.get("MLPIPE_FUNCTION_KEY") or read_local_key())
    register(client, args.experiment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
