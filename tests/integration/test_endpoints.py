"""Pipeline endpoints (API.md section 3, AML PipelineEndpoint): versions, default, submit, disable."""

from __future__ import annotations

import os

import pytest
from itest_pipelines import error_of, publish, step, write_pipeline

from shared.client import PipelineClient

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{os.urandom(3).hex()}"


@pytest.fixture(scope="module")
def two_pipelines(host, tmp_path_factory):
    client = PipelineClient(host.url, host.key)
    folder = tmp_path_factory.mktemp("endpoint-pipelines")
    published = []
    for label in ("v0", "v1"):
        definition = {"name": f"ep-{label}", "parameters": {"marker_dir": str(folder / "m"), "rate": 0.1},
                      "steps": [step(f"only_{label}", outputs=["out"])]}
        published.append(publish(client, write_pipeline(folder / label, definition), version=label))
    return published


def test_create_makes_version_zero_the_default(client, two_pipelines):
    first = two_pipelines[0]
    name = unique("ep")
    endpoint = client.create_endpoint(name, first["Id"], description="nightly retrain")
    assert endpoint["Name"] == name and endpoint["DefaultVersion"] == "0" and endpoint["Status"] == "Active"
    assert endpoint["Versions"] == [{"Version": "0", "PipelineId": first["Id"]}]
    assert endpoint["Endpoint"].endswith(f"/api/endpoints/{name}/submit")
    assert endpoint["Description"] == "nightly retrain"
    shown = client.get_endpoint(name)
    assert set(shown) >= {"Name", "DefaultVersion", "Versions", "Status", "Endpoint"}
    assert shown["Versions"] == endpoint["Versions"]
    assert name in [item["Name"] for item in client.list_endpoints()]


def test_names_are_unique(client, two_pipelines):
    name = unique("dup")
    client.create_endpoint(name, two_pipelines[0]["Id"])
    error = error_of(lambda: client.create_endpoint(name, two_pipelines[1]["Id"]))
    assert error.status == 409 and error.code == "EndpointExists" and name in error.api_message
    assert client.get_endpoint(name)["Versions"][0]["PipelineId"] == two_pipelines[0]["Id"]


def test_add_version_and_set_default(client, two_pipelines):
    name = unique("ver")
    client.create_endpoint(name, two_pipelines[0]["Id"])
    endpoint = client.add_endpoint_version(name, two_pipelines[1]["Id"])
    assert endpoint["Versions"] == [{"Version": "0", "PipelineId": two_pipelines[0]["Id"]},
                                    {"Version": "1", "PipelineId": two_pipelines[1]["Id"]}]
    assert endpoint["DefaultVersion"] == "0"  # adding a version does not change the default
    assert client.set_endpoint_default(name, "1")["DefaultVersion"] == "1"
    assert client.get_endpoint(name)["DefaultVersion"] == "1"
    # the same pipeline may be added again: versions only grow
    assert client.add_endpoint_version(name, two_pipelines[0]["Id"])["Versions"][-1]["Version"] == "2"


def test_submit_to_default_body_version_and_query_version(client, two_pipelines):
    v0, v1 = two_pipelines
    name = unique("sub")
    client.create_endpoint(name, v0["Id"])
    client.add_endpoint_version(name, v1["Id"])
    client.set_endpoint_default(name, "1")

    default_run = client.submit_endpoint(name, "endpoints", {"rate": "0.5"}, Tags={"via": "endpoint"})
    assert default_run["PipelineId"] == v1["Id"] and default_run["EndpointName"] == name
    assert default_run["PipelineVersion"] == "1"
    assert default_run["ParameterAssignments"]["rate"] == 0.5
    assert [s["Name"] for s in default_run["Steps"]] == ["only_v1"]

    body_run = client.submit_endpoint(name, "endpoints", pipeline_version="0")
    assert body_run["PipelineId"] == v0["Id"] and body_run["PipelineVersion"] == "0"

    query_run = client.request("POST", f"/api/endpoints/{name}/submit", query={"pipelineVersion": "0"},
                               body={"ExperimentName": "endpoints"})
    assert query_run["PipelineId"] == v0["Id"]

    final = client.wait_for_run(default_run["Id"], timeout=120)
    assert final["Status"] == "Finished" and final["EndpointName"] == name
    assert final["Steps"][0]["Status"] == "Completed"
    listed = client.list_runs(endpointName=name)
    assert {run["Id"] for run in listed} == {default_run["Id"], body_run["Id"], query_run["Id"]}
    for run_id in (body_run["Id"], query_run["Id"]):
        assert client.wait_for_run(run_id, timeout=120)["Status"] == "Finished"


def test_submit_version_errors_name_the_field_and_start_nothing(client, two_pipelines):
    name = unique("bad")
    client.create_endpoint(name, two_pipelines[0]["Id"])
    unknown = error_of(lambda: client.submit_endpoint(name, "x", pipeline_version="9"))
    assert unknown.status == 400 and "PipelineVersion" in unknown.api_message and "'9'" in unknown.api_message
    junk = error_of(lambda: client.request("POST", f"/api/endpoints/{name}/submit",
                                           query={"pipelineVersion": "latest"}, body={"ExperimentName": "x"}))
    assert junk.status == 400 and "pipelineVersion" in junk.api_message
    both = error_of(lambda: client.request("POST", f"/api/endpoints/{name}/submit", query={"pipelineVersion": "1"},
                                           body={"ExperimentName": "x", "PipelineVersion": "0"}))
    assert both.status == 400 and "PipelineVersion" in both.api_message
    no_experiment = error_of(lambda: client.request("POST", f"/api/endpoints/{name}/submit", body={}))
    assert no_experiment.status == 400 and "ExperimentName" in no_experiment.api_message
    bad_param = error_of(lambda: client.submit_endpoint(name, "x", {"nope": 1}))
    assert bad_param.status == 400 and "nope" in bad_param.api_message
    assert client.list_runs(endpointName=name) == []


def test_disabled_endpoint_is_409_and_starts_nothing(client, two_pipelines):
    name = unique("off")
    client.create_endpoint(name, two_pipelines[0]["Id"])
    assert client.set_endpoint_enabled(name, False)["Status"] == "Disabled"
    error = error_of(lambda: client.submit_endpoint(name, "x"))
    assert error.status == 409 and error.code == "EndpointDisabled"
    assert client.list_runs(endpointName=name) == []
    assert name not in [item["Name"] for item in client.list_endpoints()]
    assert name in [item["Name"] for item in client.list_endpoints("Disabled")]
    assert name in [item["Name"] for item in client.list_endpoints("All")]
    assert client.set_endpoint_enabled(name, True)["Status"] == "Active"
    assert client.submit_endpoint(name, "x")["EndpointName"] == name


def test_disabled_pipeline_behind_an_endpoint_is_409(client, tmp_path):
    definition = {"name": "behind", "parameters": {"marker_dir": str(tmp_path / "m")}, "steps": [step("only")]}
    pipeline = publish(client, write_pipeline(tmp_path / "p", definition))
    name = unique("behind")
    client.create_endpoint(name, pipeline["Id"])
    client.set_pipeline_enabled(pipeline["Id"], False)
    error = error_of(lambda: client.submit_endpoint(name, "x"))
    assert error.status == 409 and error.code == "PipelineDisabled"
    assert client.list_runs(endpointName=name) == []


def test_bad_requests_name_the_field(client, two_pipelines):
    pid = two_pipelines[0]["Id"]
    cases = [
        ({"name": "has space", "pipelineId": pid}, "name"),
        ({"name": unique("x")}, "pipelineId"),
        ({"name": unique("x"), "pipelineId": pid, "colour": "red"}, "colour"),
        ({"name": 5, "pipelineId": pid}, "name"),
    ]
    for body, field in cases:
        error = error_of(lambda body=body: client.request("POST", "/api/endpoints", body=body))
        assert error.status == 400 and field in error.api_message, (body, error.api_message)
    missing = error_of(lambda: client.create_endpoint(unique("x"), "no-such-pipeline"))
    assert missing.status == 404 and "pipelineId" in missing.api_message
    assert error_of(lambda: client.get_endpoint("no-such-endpoint")).status == 404
    assert error_of(lambda: client.submit_endpoint("no-such-endpoint", "x")).status == 404
    assert error_of(lambda: client.add_endpoint_version("no-such-endpoint", pid)).status == 404
    name = unique("val")
    client.create_endpoint(name, pid)
    for version in ("5", "one", "-1"):
        error = error_of(lambda version=version: client.set_endpoint_default(name, version))
        assert error.status == 400 and "version" in error.api_message
    error = error_of(lambda: client.request("PUT", f"/api/endpoints/{name}/default", body={"version": None}))
    assert error.status == 400 and "version" in error.api_message
    error = error_of(lambda: client.request("GET", "/api/endpoints", query={"status": "Sleeping"}))
    assert error.status == 400 and "status" in error.api_message
    assert client.get_endpoint(name).as_dict()["Versions"] == [{"Version": "0", "PipelineId": pid}]


def test_body_and_query_versions_that_mean_the_same_agree(client, two_pipelines):
    name = unique("same")
    client.create_endpoint(name, two_pipelines[0]["Id"])
    run = client.request("POST", f"/api/endpoints/{name}/submit", query={"pipelineVersion": "00"},
                         body={"ExperimentName": "x", "PipelineVersion": 0})
    assert run["PipelineVersion"] == "0" and run["PipelineId"] == two_pipelines[0]["Id"]
