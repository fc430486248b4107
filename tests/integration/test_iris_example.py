"""The iris example (`make demo`'s pipeline) end to end on the local host: real scikit-learn steps on
local compute (forked from the template by default), then every step Reused on a second run."""

from __future__ import annotations

import sys
from pathlib import Path

from itest_pipelines import publish

from shared.datastore import get_datastore

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "iris"
sys.path.insert(0, str(EXAMPLE))

from make_data import write_iris_csv  # noqa: E402


def test_the_iris_example_trains_evaluates_and_is_reused_the_second_time(client, test_storage, tmp_path):
    get_datastore("workspaceblobstore").upload_file(write_iris_csv(tmp_path / "iris.csv"), "iris/raw/iris.csv")
    pipeline = publish(client, EXAMPLE / "pipeline.yaml")

    first = client.wait_for_run(client.submit(pipeline["Id"], "iris-itest")["Id"], timeout=180)
    assert first["Status"] == "Finished", (first["Error"], [(s["Name"], s["Error"]) for s in first["Steps"]])
    steps = {step["Name"]: step for step in first["Steps"]}
    assert set(steps) == {"prep", "train", "evaluate"} and not any(step["Reused"] for step in steps.values())
    assert steps["prep"]["Metrics"]["rows"] == 150
    assert 0.8 < steps["evaluate"]["Metrics"]["accuracy"] <= 1.0
    report = get_datastore("workspaceblobstore").list_names(steps["evaluate"]["Outputs"]["report"]["Path"])
    assert report, "the evaluate step wrote no report"

    second = client.wait_for_run(client.submit(pipeline["Id"], "iris-itest")["Id"], timeout=60)
    assert second["Status"] == "Finished" and all(step["Reused"] for step in second["Steps"])
    assert {step["ReusedFromRunId"] for step in second["Steps"]} == {first["Id"]}
