"""Run events (API.md §4) on devhost + Azurite: CloudEvents 1.0 JSON on the run-events storage queue,
one per run/step transition, `subject` = run id, stable ids; reused, failed and canceled runs too."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from itest_pipelines import publish, step, write_pipeline
from itest_triggers import drain, wait_finished

from shared.client import PipelineClient

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def host_env(azurite, tmp_path_factory):
    suffix = os.urandom(4).hex()
    return {"AzureWebJobsStorage": azurite.connection_string, "MLPIPE_BLOBSTORE_CONTAINER": f"ws{suffix}",
            "MLPIPE_SYSTEM_CONTAINER": f"sys{suffix}", "MLPIPE_DATA_DIR": str(tmp_path_factory.mktemp("evhost")),
            "MLPIPE_FUNCTION_KEY": "events-test-key", "MLPIPE_RUN_EVENTS_QUEUE": f"run-events-{suffix}"}


@pytest.fixture
def client(host) -> PipelineClient:
    return PipelineClient(host.url, host.key)


@pytest.fixture(scope="module")
def pipeline(host, tmp_path_factory):
    folder = tmp_path_factory.mktemp("events-pipeline")
    definition = {"name": "events", "parameters": {"marker_dir": str(folder / "m"), "fail_b": False, "sleep_a": 0.0,
                                                    "salt": "x"},
                  "steps": [step("a", outputs=["out"], sleep_param=True),
                            step("b", inputs={"x": "a.out"}, outputs=["out"], fail_param=True)]}
    definition["steps"][0]["arguments"] += ["--salt", "{parameters.salt}"]  # a new salt: nothing to reuse
    return publish(PipelineClient(host.url, host.key), write_pipeline(Path(folder), definition))


class Events:
    """Every event read so far from the module's queue, by run id."""

    def __init__(self, connection: str, queue: str):
        self.connection, self.queue, self.by_run = connection, queue, {}

    def of(self, run_id: str, until_type: str, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            for text in drain(self.connection, self.queue):
                event = json.loads(text)
                self.by_run.setdefault(event["subject"], []).append(event)
            found = self.by_run.get(run_id, [])
            if any(e["type"] == until_type for e in found) or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


@pytest.fixture(scope="module")
def events(host_env):
    return Events(host_env["AzureWebJobsStorage"], host_env["MLPIPE_RUN_EVENTS_QUEUE"])


def submit(client, pipeline, **params) -> str:
    run = client.request("POST", f"/api/pipelines/{pipeline['Id']}/submit",
                         body={"ExperimentName": "events", "ParameterAssignments": params})
    return run["Id"]


def types(found: list[dict]) -> list[str]:
    return [e["type"].removeprefix("mlpipe.") + (f":{e['data']['step']}" if "step" in e["data"] else "")
            for e in sorted(found, key=lambda e: e["time"])]


def test_a_run_sends_one_event_per_transition(client, pipeline, events):
    run_id = submit(client, pipeline, salt=os.urandom(3).hex())
    assert wait_finished(client, run_id)["Status"] == "Finished"
    found = events.of(run_id, "mlpipe.RunFinished")
    assert sorted(types(found)) == sorted(["RunQueued", "RunStarted", "StepStarted:a", "StepCompleted:a",
                                           "StepStarted:b", "StepCompleted:b", "RunFinished"])
    assert types(found)[:2] == ["RunQueued", "RunStarted"] and types(found)[-1] == "RunFinished"
    for event in found:
        assert event["specversion"] == "1.0" and event["subject"] == run_id
        assert event["source"] == f"/mlpipe/pipelines/{pipeline['Id']}"
        assert event["datacontenttype"] == "application/json" and event["data"]["runId"] == run_id
    assert len({e["id"] for e in found}) == len(found)


def test_reused_failed_and_canceled_runs(client, pipeline, events):
    salt = os.urandom(3).hex()
    first = submit(client, pipeline, salt=salt)
    wait_finished(client, first)
    again = submit(client, pipeline, salt=salt)
    assert wait_finished(client, again)["Status"] == "Finished"
    assert sorted(types(events.of(again, "mlpipe.RunFinished"))) == sorted(
        ["RunQueued", "RunStarted", "StepReused:a", "StepReused:b", "RunFinished"])

    failing = submit(client, pipeline, salt=os.urandom(3).hex(), fail_b=True)
    assert wait_finished(client, failing)["Status"] == "Failed"
    found = events.of(failing, "mlpipe.RunFailed")
    assert "StepFailed:b" in types(found) and types(found)[-1] == "RunFailed"
    failed = next(e for e in found if e["type"] == "mlpipe.StepFailed")
    assert failed["data"]["error"]["code"] == "StepFailed"

    slow = submit(client, pipeline, salt=os.urandom(3).hex(), sleep_a=30.0)
    deadline = time.monotonic() + 20
    while client.request("GET", f"/api/runs/{slow}")["Status"] != "Running" and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    client.request("POST", f"/api/runs/{slow}/cancel")
    assert wait_finished(client, slow)["Status"] == "Canceled"
    assert types(events.of(slow, "mlpipe.RunCanceled"))[-1] == "RunCanceled"
