"""Publish and run pipelines through the HTTP API of a real devhost on Azurite.

Covers the walking skeleton end to end: publish (zip), submit (AML body), step progress,
PipelineData between steps, metrics and logs, reuse across runs and pipelines, and what changes
a fingerprint (parameters, data) and what does not.
"""

from __future__ import annotations

import time

import pytest
from itest_pipelines import publish, run_count, step, write_pipeline

from shared.client import ApiError
from shared.datastore import get_datastore

pytestmark = pytest.mark.integration

WAIT = dict(poll_seconds=0.1, timeout=120)


def diamond(marker_dir, name="diamond") -> dict:
    return {
        "name": name,
        "parameters": {"marker_dir": str(marker_dir), "data_path": "incoming/data.txt", "greeting": "hello"},
        "datasets": {"raw": {"path": "{parameters.data_path}"}},
        "steps": [
            step("prep", inputs={"raw": "datasets.raw"}, outputs=["clean"]),
            step("left", inputs={"clean": "prep.clean"}, outputs=["result"]),
            step("right", inputs={"clean": "prep.clean"}, outputs=["result"]),
            step("join", inputs={"a": "left.result", "b": "right.result"}, outputs=["final"]),
        ],
    }


@pytest.fixture
def uploaded(test_storage):
    get_datastore("workspaceblobstore").upload_bytes("incoming/data.txt", b"line one\n")


def steps_by_name(run: dict) -> dict:
    return {item["Name"]: item for item in run["Steps"]}


def test_run_passes_pipeline_data_between_steps_and_reuses_the_second_time(client, tmp_path, uploaded):
    marker = tmp_path / "marker"
    pipeline = publish(client, write_pipeline(tmp_path / "p", diamond(marker)))
    first = client.submit(pipeline["Id"], "itest")
    assert first["Status"] in ("Queued", "Running")
    assert [item["Status"] for item in first["Steps"]] == ["NotStarted"] * 4

    run = client.wait_for_run(first["Id"], **WAIT)
    assert run["Status"] == "Finished", run
    steps = steps_by_name(run)
    assert all(item["Status"] == "Completed" and not item["Reused"] for item in steps.values())
    final = steps["join"]["Outputs"]["final"]
    assert final["Path"] == f"runs/{run['Id']}/join/final"
    text = get_datastore("workspaceblobstore").read_bytes(final["Path"] + "/data.txt").decode()
    # join saw both branches, each of which saw prep, which saw the uploaded dataset
    assert text.count("line one") == 2 and "left" in text and "right" in text and text.endswith("join\n")
    assert steps["join"]["Metrics"]["lines"] == len(text.splitlines())
    assert "step prep done" in client.get_step_logs(run["Id"], "prep")

    second = client.wait_for_run(client.submit(pipeline["Id"], "itest")["Id"], **WAIT)
    assert second["Status"] == "Finished"
    for item in second["Steps"]:
        assert item["Reused"] and item["ReusedFromRunId"] == run["Id"]
        assert item["Outputs"] == steps[item["Name"]]["Outputs"]
    assert {name: run_count(marker, name) for name in steps} == dict.fromkeys(steps, 1)


def test_changed_parameter_reruns_only_the_steps_it_reaches(client, tmp_path, uploaded):
    marker = tmp_path / "marker"
    definition = diamond(marker, "paramchange")
    definition["steps"][2]["arguments"] += ["--greeting", "{parameters.greeting}"]
    pipeline = publish(client, write_pipeline(tmp_path / "p", definition))
    client.wait_for_run(client.submit(pipeline["Id"], "itest")["Id"], **WAIT)
    run = client.wait_for_run(client.submit(pipeline["Id"], "itest",
                                            {"greeting": "bonjour"})["Id"], **WAIT)
    reused = {item["Name"]: item["Reused"] for item in run["Steps"]}
    assert reused == {"prep": True, "left": True, "right": False, "join": False}
    assert run["ParameterAssignments"]["greeting"] == "bonjour"


def test_changed_dataset_content_reruns_everything(client, tmp_path, test_storage):
    store = get_datastore("workspaceblobstore")
    store.upload_bytes("incoming/data.txt", b"version one\n")
    marker = tmp_path / "marker"
    pipeline = publish(client, write_pipeline(tmp_path / "p", diamond(marker, "datachange")))
    client.wait_for_run(client.submit(pipeline["Id"], "itest")["Id"], **WAIT)
    store.upload_bytes("incoming/data.txt", b"version two\n")
    run = client.wait_for_run(client.submit(pipeline["Id"], "itest")["Id"], **WAIT)
    assert not any(item["Reused"] for item in run["Steps"])
    explained = client.get_step_fingerprint(run["Id"], "prep")
    assert set(explained["inputs"]) == {"raw"}
    assert set(explained["source"]["files"]) == {"step.py"}  # each source file with its own hash
    assert explained["settings"]["arguments"]["hash"]


def test_identical_step_is_reused_across_published_pipelines(client, tmp_path, uploaded):
    marker = tmp_path / "marker"
    first = publish(client, write_pipeline(tmp_path / "one", diamond(marker, "first")))
    client.wait_for_run(client.submit(first["Id"], "itest")["Id"], **WAIT)
    second = publish(client, write_pipeline(tmp_path / "two", diamond(marker, "second")))
    run = client.wait_for_run(client.submit(second["Id"], "itest")["Id"], **WAIT)
    assert all(item["Reused"] for item in run["Steps"])
    assert run_count(marker, "prep") == 1


def test_allow_reuse_false_and_regenerate_outputs_run_again(client, tmp_path, uploaded):
    marker = tmp_path / "marker"
    definition = diamond(marker, "noreuse")
    definition["steps"][0]["allow_reuse"] = False
    pipeline = publish(client, write_pipeline(tmp_path / "p", definition))
    client.wait_for_run(client.submit(pipeline["Id"], "itest")["Id"], **WAIT)
    run = client.wait_for_run(client.submit(pipeline["Id"], "itest")["Id"], **WAIT)
    reused = {item["Name"]: item["Reused"] for item in run["Steps"]}
    # prep re-ran but produced the same fingerprint, so its consumers are still reused
    assert reused == {"prep": False, "left": True, "right": True, "join": True}
    regenerated = client.wait_for_run(
        client.submit(pipeline["Id"], "itest", RegenerateOutputs=True)["Id"], **WAIT)
    assert not any(item["Reused"] for item in regenerated["Steps"])
    assert run_count(marker, "left") == 2


def test_failing_step_fails_the_run_and_skips_downstream(client, tmp_path, uploaded):
    marker = tmp_path / "marker"
    definition = diamond(marker, "failing")
    definition["parameters"]["fail_left"] = True
    definition["steps"][1] = step("left", inputs={"clean": "prep.clean"}, outputs=["result"], fail_param=True)
    pipeline = publish(client, write_pipeline(tmp_path / "p", definition))
    run = client.wait_for_run(client.submit(pipeline["Id"], "itest")["Id"], **WAIT)
    assert run["Status"] == "Failed"
    steps = steps_by_name(run)
    assert steps["left"]["Status"] == "Failed"
    assert "exit" in steps["left"]["Error"]["message"].lower()
    assert steps["join"]["Status"] == "Skipped"
    assert steps["right"]["Status"] == "Completed"  # already running when left failed
    assert "left" in run["Error"]["message"]
    assert "failing on purpose" in client.get_step_logs(run["Id"], "left")


def test_cancel_stops_the_running_step_and_cancels_the_rest(client, tmp_path, uploaded):
    marker = tmp_path / "marker"
    definition = diamond(marker, "cancel")
    definition["parameters"]["sleep_prep"] = 30.0
    definition["steps"][0] = step("prep", inputs={"raw": "datasets.raw"}, outputs=["clean"], sleep_param=True)
    pipeline = publish(client, write_pipeline(tmp_path / "p", definition))
    run_id = client.submit(pipeline["Id"], "itest")["Id"]
    deadline = time.monotonic() + 30
    while steps_by_name(client.get_run(run_id))["prep"]["Status"] != "Running":
        assert time.monotonic() < deadline, "prep never started"
        time.sleep(0.1)
    requested = client.cancel_run(run_id)
    assert requested["Status"] in ("CancelRequested", "Canceled")
    run = client.wait_for_run(run_id, poll_seconds=0.1, timeout=30)
    assert run["Status"] == "Canceled"
    statuses = {name: item["Status"] for name, item in steps_by_name(run).items()}
    assert statuses["prep"] == "Canceled"
    assert {statuses["left"], statuses["right"], statuses["join"]} <= {"Canceled", "Skipped"}
    assert run_count(marker, "prep") == 1 and not (marker / "prep.done").exists()  # killed mid-sleep
    # cancelling again, once it ended, changes nothing
    assert client.cancel_run(run_id)["Status"] == "Canceled"


def test_failed_attempts_are_retried_with_their_logs_kept(client, tmp_path, uploaded):
    marker = tmp_path / "marker"
    definition = diamond(marker, "retries")
    definition["steps"][0]["arguments"] += ["--fail-until", "3"]  # attempts 1 and 2 fail
    definition["steps"][0].update(max_retries=2, retry_interval_seconds=0.1)
    pipeline = publish(client, write_pipeline(tmp_path / "p", definition))
    run = client.wait_for_run(client.submit(pipeline["Id"], "itest")["Id"], **WAIT)
    assert run["Status"] == "Finished", run
    prep = steps_by_name(run)["prep"]
    assert prep["Status"] == "Completed" and prep["Attempt"] == 3 and prep["Error"] is None
    assert run_count(marker, "prep") == 3
    assert "failing on purpose" in client.get_step_logs(run["Id"], "prep", attempt=1)
    assert "step prep done" in client.get_step_logs(run["Id"], "prep")


def test_a_step_out_of_retries_fails(client, tmp_path, uploaded):
    marker = tmp_path / "marker"
    definition = diamond(marker, "noretriesleft")
    definition["steps"][0]["arguments"] += ["--fail-until", "9"]
    definition["steps"][0].update(max_retries=1, retry_interval_seconds=0.1)
    pipeline = publish(client, write_pipeline(tmp_path / "p", definition))
    run = client.wait_for_run(client.submit(pipeline["Id"], "itest")["Id"], **WAIT)
    assert run["Status"] == "Failed"
    assert run_count(marker, "prep") == 2


def test_concurrent_runs_compute_a_shared_step_once(client, tmp_path, uploaded):
    marker = tmp_path / "marker"
    definition = diamond(marker, "singleflight")
    definition["parameters"]["sleep_prep"] = 1.5
    definition["steps"][0] = step("prep", inputs={"raw": "datasets.raw"}, outputs=["clean"], sleep_param=True)
    pipeline = publish(client, write_pipeline(tmp_path / "p", definition))
    first = client.submit(pipeline["Id"], "itest")["Id"]
    second = client.submit(pipeline["Id"], "itest")["Id"]
    runs = [client.wait_for_run(run_id, **WAIT) for run_id in (first, second)]
    assert [run["Status"] for run in runs] == ["Finished", "Finished"]
    assert run_count(marker, "prep") == 1  # executed once for both runs
    preps = [steps_by_name(run)["prep"] for run in runs]
    assert sorted(prep["Reused"] for prep in preps) == [False, True]


def test_when_the_computing_run_fails_the_waiting_run_computes_the_step_itself(client, tmp_path, uploaded):
    marker = tmp_path / "marker"
    definition = diamond(marker, "singleflightfail")
    definition["parameters"]["sleep_prep"] = 1.5
    definition["steps"][0] = step("prep", inputs={"raw": "datasets.raw"}, outputs=["clean"], sleep_param=True)
    definition["steps"][0]["arguments"] += ["--fail-until", "2"]  # the first execution fails
    pipeline = publish(client, write_pipeline(tmp_path / "p", definition))
    first = client.submit(pipeline["Id"], "itest")["Id"]
    second = client.submit(pipeline["Id"], "itest")["Id"]
    statuses = sorted(client.wait_for_run(run_id, **WAIT)["Status"] for run_id in (first, second))
    assert statuses == ["Failed", "Finished"]
    assert run_count(marker, "prep") == 2


def test_run_can_be_read_without_its_steps_for_cheap_polling(client, tmp_path, uploaded):
    pipeline = publish(client, write_pipeline(tmp_path / "p", diamond(tmp_path / "marker", "nosteps")))
    run = client.wait_for_run(client.submit(pipeline["Id"], "itest")["Id"], **WAIT)
    assert len(run["Steps"]) == 4  # the final answer of wait_for_run has the steps
    light = client.request("GET", f"/api/runs/{run['Id']}", query={"includeSteps": "false"})
    assert light["Status"] == "Finished" and light["Steps"] == [] and light["Id"] == run["Id"]
    with pytest.raises(ApiError) as caught:
        client.request("GET", f"/api/runs/{run['Id']}", query={"includeSteps": "maybe"})
    assert caught.value.status == 400 and "includeSteps" in caught.value.api_message


def test_a_waiting_read_answers_when_the_run_ends(client, tmp_path, uploaded):
    definition = diamond(tmp_path / "marker", "longpoll")
    definition["parameters"]["sleep_prep"] = 1.0
    definition["steps"][0] = step("prep", inputs={"raw": "datasets.raw"}, outputs=["clean"], sleep_param=True)
    pipeline = publish(client, write_pipeline(tmp_path / "p", definition))
    run_id = client.submit(pipeline["Id"], "itest")["Id"]
    # Still running after half a second: the answer comes when the wait is over, not finished.
    early = client.request("GET", f"/api/runs/{run_id}", query={"includeSteps": "false", "waitSeconds": "0.5"})
    assert early["Status"] in ("Queued", "Running")
    # A long wait is answered when the run ends, well before it is over.
    started = time.monotonic()
    done = client.request("GET", f"/api/runs/{run_id}", query={"includeSteps": "false", "waitSeconds": "30"})
    assert done["Status"] == "Finished" and time.monotonic() - started < 25
    for bad in ("soon", "-1", "31", "nan"):
        with pytest.raises(ApiError) as caught:
            client.request("GET", f"/api/runs/{run_id}", query={"waitSeconds": bad})
        assert caught.value.status == 400 and "waitSeconds" in caught.value.api_message
