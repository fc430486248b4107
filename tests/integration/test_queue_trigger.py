"""Queue submissions on devhost + Azurite (API.md §4): base64 and plain JSON, duplicates, poison."""

from __future__ import annotations

import os
import time

import pytest
from itest_triggers import drain, publish_quick_pipeline, runs_of, send_json, wait_finished, wait_for_runs

pytestmark = pytest.mark.integration

QUEUE = "pipeline-submissions"
POISON = "pipeline-submissions-poison"


@pytest.fixture(scope="module")
def pipeline(host, tmp_path_factory):
    from shared.client import PipelineClient
    return publish_quick_pipeline(PipelineClient(host.url, host.key), tmp_path_factory.mktemp("queue-pipeline"))


@pytest.fixture(autouse=True, scope="module")
def clean_queues(azurite):
    drain(azurite.connection_string, QUEUE)
    drain(azurite.connection_string, POISON)


def experiment() -> str:
    return f"queue-{os.urandom(3).hex()}"


def test_base64_message_starts_a_run(azurite, client, pipeline):
    name = experiment()
    send_json(azurite.connection_string, QUEUE, {"PipelineId": pipeline["Id"], "ExperimentName": name,
                                                 "MessageId": f"m-{name}"})
    runs = wait_for_runs(client, name, 1, timeout=30)
    assert len(runs) == 1
    assert runs[0]["RunSource"] == "Queue"
    assert wait_finished(client, runs[0]["Id"])["Status"] == "Finished"


def test_plain_json_message_starts_a_run(azurite, client, pipeline):
    name = experiment()
    send_json(azurite.connection_string, QUEUE, {"PipelineId": pipeline["Id"], "ExperimentName": name},
              encoding="none")
    assert len(wait_for_runs(client, name, 1, timeout=30)) == 1


def test_duplicate_delivery_starts_one_run(azurite, client, pipeline):
    name = experiment()
    body = {"PipelineId": pipeline["Id"], "ExperimentName": name, "MessageId": f"dup-{name}"}
    for _ in range(3):
        send_json(azurite.connection_string, QUEUE, body)
    runs = wait_for_runs(client, name, 1, timeout=30)
    assert wait_finished(client, runs[0]["Id"])["Status"] == "Finished"
    send_json(azurite.connection_string, QUEUE, body)  # again after the run finished: not restarted
    time.sleep(3)
    runs = runs_of(client, name)
    assert len(runs) == 1 and runs[0]["Status"] == "Finished"


def test_endpoint_target(azurite, client, pipeline):
    endpoint = f"ep-{os.urandom(3).hex()}"
    client.request("POST", "/api/endpoints", body={"name": endpoint, "pipelineId": pipeline["Id"]})
    name = experiment()
    send_json(azurite.connection_string, QUEUE, {"EndpointName": endpoint, "ExperimentName": name})
    runs = wait_for_runs(client, name, 1, timeout=30)
    assert runs[0]["EndpointName"] == endpoint and runs[0]["PipelineId"] == pipeline["Id"]


@pytest.mark.parametrize("body, reason", [
    ("{not json", "not valid JSON"),
    ({"ExperimentName": "x"}, "PipelineId"),
    ({"PipelineId": "no-such-pipeline", "ExperimentName": "x"}, "no-such-pipeline"),
    (None, "ParameterAssignments.nope"),
])
def test_message_that_can_never_succeed_is_poisoned_at_once(azurite, client, pipeline, body, reason):
    import json
    if body is None:
        body = {"PipelineId": pipeline["Id"], "ExperimentName": experiment(), "ParameterAssignments": {"nope": 1}}
    text = body if isinstance(body, str) else json.dumps(body)
    send_json(azurite.connection_string, QUEUE, text)
    poisoned = drain(azurite.connection_string, POISON, wait=20, expect=1)
    assert len(poisoned) == 1
    entry = json.loads(poisoned[0])
    assert set(entry) == {"reason", "message"}
    assert reason in entry["reason"]
    assert entry["message"] == text
