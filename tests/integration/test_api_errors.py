"""Bad input gets a clear 4xx naming what is wrong, and changes nothing already stored."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from itest_pipelines import error_of, publish, publish_unchecked, raw_request, step, write_pipeline

pytestmark = pytest.mark.integration


@pytest.fixture
def simple_pipeline(client, tmp_path):
    definition = {"name": "simple", "parameters": {"marker_dir": str(tmp_path / "m"), "rate": 0.1, "epochs": 3},
                  "steps": [step("only", outputs=["out"])]}
    return publish(client, write_pipeline(tmp_path / "p", definition))


def test_health_needs_no_key(host):
    status, body = raw_request(host, "GET", "/api/health")
    assert status == 200 and json.loads(body)["status"] == "ok"


@pytest.mark.parametrize("headers", [{}, {"x-functions-key": "wrong"}])
def test_missing_or_wrong_key_is_401(host, headers):
    status, body = raw_request(host, "GET", "/api/pipelines", headers=headers)
    assert status == 401
    assert json.loads(body)["error"]["code"] == "Unauthorized"


def test_key_in_query_string_is_accepted(host, client):
    status, _ = raw_request(host, "GET", f"/api/pipelines?code={client._key}")
    assert status == 200


def test_invalid_definition_is_400_naming_step_and_field(client, tmp_path):
    before = len(client.list_pipelines("All"))
    definition = {"name": "broken", "parameters": {"marker_dir": "x"},
                  "steps": [step("train", inputs={"clean": "prepp.clean"})]}
    write_pipeline(tmp_path / "p", definition)
    error = error_of(lambda: publish_unchecked(client, tmp_path / "p"))
    assert error.status == 400 and error.code == "InvalidRequest"
    assert error.api_message.startswith("pipeline.yaml: ")  # no server paths in errors
    assert "steps[train].inputs.clean" in error.api_message and "prepp" in error.api_message
    assert len(client.list_pipelines("All")) == before


def test_cycle_is_rejected(client, tmp_path):
    definition = {"name": "cycle", "parameters": {"marker_dir": "x"},
                  "steps": [step("a", inputs={"x": "b.out"}, outputs=["out"]),
                            step("b", inputs={"x": "a.out"}, outputs=["out"])]}
    write_pipeline(tmp_path / "p", definition)
    error = error_of(lambda: publish_unchecked(client, tmp_path / "p"))
    assert error.status == 400 and "cycle" in error.api_message.lower()


def test_json_publish_with_bad_body_is_400(host, client):
    status, body = raw_request(host, "POST", "/api/pipelines", b"{not json",
                               {"x-functions-key": client._key, "Content-Type": "application/json"})
    assert status == 400 and "JSON" in json.loads(body)["error"]["message"]
    error = error_of(lambda: client.request("POST", "/api/pipelines", body={"definition": "nope"}))
    assert error.status == 400 and "definition" in error.api_message


def test_unsupported_media_type_is_415(host, client):
    status, body = raw_request(host, "POST", "/api/pipelines", b"hello",
                               {"x-functions-key": client._key, "Content-Type": "text/plain"})
    assert status == 415


def _zip(entries: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_zip_slip_package_is_rejected(client):
    package = _zip({"pipeline.yaml": "name: x\nsteps: [{name: a}]\n", "../../evil.py": "print('owned')"})
    error = error_of(lambda: client.publish_package(package))
    assert error.status == 400 and "evil.py" in error.api_message


def test_package_without_definition_and_garbage_zip_are_400(client):
    assert error_of(lambda: client.publish_package(_zip({"src/a.py": "x"}))).status == 400
    assert error_of(lambda: client.publish_package(b"PK\x03\x04garbage")).status == 400


def test_source_directory_escaping_the_package_is_rejected(client):
    package = _zip({"pipeline.yaml": "name: x\nsteps:\n- {name: a, source_directory: ../outside, script_name: a.py}\n"})
    error = error_of(lambda: client.publish_package(package))
    assert error.status == 400 and "steps[a].source_directory" in error.api_message


def test_submit_validation(client, simple_pipeline):
    pid = simple_pipeline["Id"]
    runs_before = len(client.list_runs(pipelineId=pid))
    unknown = error_of(lambda: client.submit(pid, "x", {"nope": 1}))
    assert unknown.status == 400 and "nope" in unknown.api_message
    wrong_type = error_of(lambda: client.submit(pid, "x", {"epochs": "many"}))
    assert wrong_type.status == 400 and "epochs" in wrong_type.api_message
    no_experiment = error_of(lambda: client.request("POST", f"/api/pipelines/{pid}/submit", body={}))
    assert no_experiment.status == 400 and "ExperimentName" in no_experiment.api_message
    assert len(client.list_runs(pipelineId=pid)) == runs_before


def test_aml_string_parameters_are_accepted_and_typed(client, simple_pipeline):
    run = client.submit(simple_pipeline["Id"], "typed", {"rate": "0.5", "epochs": "7"})
    assert run["ParameterAssignments"]["rate"] == 0.5 and run["ParameterAssignments"]["epochs"] == 7


def test_unknown_things_are_404(client):
    assert error_of(lambda: client.get_pipeline("does-not-exist")).status == 404
    assert error_of(lambda: client.get_run("mlpipe_nope")).status == 404
    assert error_of(lambda: client.submit("does-not-exist", "x")).status == 404


def test_disabled_pipeline_submit_is_409_and_starts_nothing(client, simple_pipeline):
    pid = simple_pipeline["Id"]
    assert client.set_pipeline_enabled(pid, False)["Status"] == "Disabled"
    error = error_of(lambda: client.submit(pid, "x"))
    assert error.status == 409 and error.code == "PipelineDisabled"
    assert client.list_runs(pipelineId=pid) == []
    assert client.set_pipeline_enabled(pid, True)["Status"] == "Active"


def test_get_pipeline_shape(client, simple_pipeline):
    pipeline = client.get_pipeline(simple_pipeline["Id"])
    assert set(pipeline) >= {"Id", "Name", "Description", "Version", "Status", "Parameters", "Endpoint",
                             "CreatedTimeUtc"}
    assert pipeline["Parameters"]["epochs"] == 3
    assert pipeline["Endpoint"].endswith(f"/api/pipelines/{pipeline['Id']}/submit")


def test_datastores_lists_the_default(client):
    stores = client.list_datastores()
    default = [store for store in stores if store["IsDefault"]]
    assert default and default[0]["Name"] == "workspaceblobstore"
