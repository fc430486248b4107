"""Run tags: recorded at submit, changed later, found with GET /api/runs?tag=key[:value]."""

from __future__ import annotations

import os

import pytest
from itest_pipelines import error_of, publish, step, write_pipeline

pytestmark = pytest.mark.integration


@pytest.fixture
def pipeline(client, tmp_path):
    definition = {"name": "tagged", "parameters": {"marker_dir": str(tmp_path / "m"), "data_path": "x/y"},
                  "steps": [step("only")]}
    return publish(client, write_pipeline(tmp_path / "p", definition))


def test_submit_records_tags_data_paths_and_run_source(client, pipeline):
    team = os.urandom(3).hex()
    run = client.submit(pipeline["Id"], "tags", Tags={"team": team, "kind": "nightly"}, RunSource="SDK",
                        DataPathAssignments={"data_path": {"DataStoreName": "workspaceblobstore",
                                                           "RelativePath": "iris/2026-11"}})
    stored = client.get_run(run["Id"])
    assert stored["Tags"] == {"team": team, "kind": "nightly"} and stored["RunSource"] == "SDK"
    assert stored["DataPathAssignments"]["data_path"]["RelativePath"] == "iris/2026-11"
    assert stored["ParameterAssignments"]["data_path"] == "iris/2026-11"
    assert [r["Id"] for r in client.list_runs(tag="team")][:1] == [run["Id"]]
    assert [r["Id"] for r in client.list_runs(tag=f"team:{team}")] == [run["Id"]]
    assert client.list_runs(tag=f"team:{team}-other") == []


def test_tags_added_changed_and_removed_later(client, pipeline):
    run = client.submit(pipeline["Id"], "tags", Tags={"stage": "dev"})
    key = "reviewed" + os.urandom(3).hex()
    assert client.list_runs(tag=key) == []
    updated = client.update_run_tags(run["Id"], {key: "yes", "stage": "prod"})
    assert updated["Tags"] == {key: "yes", "stage": "prod"} and updated["Id"] == run["Id"]
    assert [r["Id"] for r in client.list_runs(tag=key)] == [run["Id"]]
    assert [r["Id"] for r in client.list_runs(tag=f"{key}:yes", pipelineId=pipeline["Id"])] == [run["Id"]]
    # POST works as PATCH does; a null value removes a tag
    removed = client.request("POST", f"/api/runs/{run['Id']}/tags", body={key: None})
    assert removed["Tags"] == {"stage": "prod"}
    assert client.list_runs(tag=key) == []
    # tags survive the run finishing (the orchestrator's own updates keep them)
    final = client.wait_for_run(run["Id"], timeout=120)
    assert final["Status"] == "Finished" and final["Tags"] == {"stage": "prod"}


def test_bad_tags_are_400_and_change_nothing(client, pipeline):
    run = client.submit(pipeline["Id"], "tags", Tags={"a": "1"})
    for body, field in [({"n": 5}, "n"), ({"x:y": "v"}, "x:y"), ({"long": "v" * 300}, "long"),
                        ({f"k{i}": "v" for i in range(60)}, "tags")]:
        error = error_of(lambda body=body: client.update_run_tags(run["Id"], body))
        assert error.status == 400 and field in error.api_message, (body, error.api_message)
    bad_submit = error_of(lambda: client.submit(pipeline["Id"], "tags", Tags={"a": 1}))
    assert bad_submit.status == 400 and "Tags" in bad_submit.api_message
    assert client.get_run(run["Id"])["Tags"] == {"a": "1"}
    assert error_of(lambda: client.update_run_tags("mlpipe_nope", {"a": "b"})).status == 404
    error = error_of(lambda: client.request("GET", "/api/runs", query={"tag": ":v"}))
    assert error.status == 400 and "tag" in error.api_message
    error = error_of(lambda: client.request("GET", "/api/runs", query={"status": "Done"}))
    assert error.status == 400 and "status" in error.api_message
