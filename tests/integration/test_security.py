"""Secrets stay secret, big bodies are refused, user paths stay confined.

After driving the API through success and failure paths (including a step that prints its whole
environment, and requests carrying the key in the query string), every file the host wrote (its
log, work folders, Durable store) and every blob (content and metadata) in the containers this
host used is searched for the function key and the storage account key.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from itest_pipelines import error_of, publish, raw_request, step, write_pipeline

from shared.client import to_plain

pytestmark = pytest.mark.integration

MAX_BYTES = 64 * 1024

ENV_DUMP_SCRIPT = textwrap.dedent('''
    import os, pathlib, sys
    for name, value in sorted(os.environ.items()):
        print(name + "=" + value)
    print("stderr line", file=sys.stderr)
    out = [a for a in sys.argv if a.startswith("--out=")]
    if out:
        pathlib.Path(out[0][6:]).mkdir(parents=True, exist_ok=True)
        (pathlib.Path(out[0][6:]) / "env.txt").write_text("\\n".join(sorted(os.environ)))
    if "--fail" in sys.argv:
        sys.exit(4)
''')


@pytest.fixture(scope="module")
def containers_before(azurite) -> set[str]:
    """Containers other test modules made before this module's host started (not searched)."""
    return {container.name for container in BlobServiceClient.from_connection_string(
        azurite.connection_string).list_containers()}


@pytest.fixture(scope="module")
def host_env(host_env, containers_before):
    """The shared host settings plus a small request limit (for the 413 tests)."""
    return {**host_env, "MLPIPE_MAX_REQUEST_BYTES": str(MAX_BYTES)}


def _account_key(connection_string: str) -> str:
    parts = dict(part.split("=", 1) for part in connection_string.split(";") if "=" in part)
    return parts["AccountKey"]


def _env_pipeline(folder: Path) -> dict:
    src = folder / "src"
    src.mkdir(parents=True)
    (src / "env.py").write_text(ENV_DUMP_SCRIPT)
    definition = {"name": "envdump", "parameters": {"fail": "--no-fail"}, "steps": [
        {"name": "dump", "source_directory": "src", "script_name": "env.py",
         "arguments": ["--out={outputs.env}", "{parameters.fail}"], "outputs": ["env"]}]}
    import yaml

    (folder / "pipeline.yaml").write_text(yaml.safe_dump(definition))
    return definition


def test_request_bodies_over_the_limit_are_413_and_change_nothing(host, client):
    before = len(client.list_pipelines("All"))
    big = json.dumps({"name": "big", "definition": {"name": "big", "steps": [], "pad": "x" * (MAX_BYTES + 10)}})
    status, body = raw_request(host, "POST", "/api/pipelines", big.encode(),
                       {"x-functions-key": host.key, "Content-Type": "application/json"})
    assert status == 413 and json.loads(body)["error"]["code"] == "PayloadTooLarge"
    status, body = raw_request(host, "POST", "/api/pipelines", b"PK" + b"\0" * (MAX_BYTES + 1),
                       {"x-functions-key": host.key, "Content-Type": "application/zip"})
    assert status == 413
    too_long = json.dumps({"ExperimentName": "x" * MAX_BYTES}).encode()
    status, _ = raw_request(host, "POST", "/api/endpoints/x/submit", too_long,
                            {"x-functions-key": host.key, "Content-Type": "application/json"})
    assert status == 413
    assert len(client.list_pipelines("All")) == before


@pytest.mark.parametrize("path", [
    "/api/runs/..%2F..%2Fetc",
    "/api/runs/%2E%2E",
    "/api/runs/mlpipe_x/steps/..%2F..%2Frun.json/logs",
    "/api/runs/mlpipe_x/steps/%2E%2E/fingerprint",
    "/api/pipelines/..%2Fsecret",
    "/api/pipelines/%2E%2E",
    "/api/endpoints/..%2Fpipelines%2Fx",
    "/api/endpoints/%2E%2E",
])
def test_path_segments_cannot_leave_their_folder(host, path):
    status, body = raw_request(host, "GET", path, headers={"x-functions-key": host.key})
    assert status in (400, 404), (path, status, body)
    assert "error" in json.loads(body)


def test_data_paths_and_sources_are_confined(client, tmp_path):
    definition = {"name": "confined", "parameters": {"marker_dir": str(tmp_path / "m"), "data_path": "a/b"},
                  "steps": [step("only")]}
    pipeline = publish(client, write_pipeline(tmp_path / "p", definition))
    for relative in ("../../etc/passwd", "/abs/path", "a/../../b"):
        error = error_of(lambda relative=relative: client.submit(pipeline["Id"], "x", DataPathAssignments={
            "data_path": {"DataStoreName": "workspaceblobstore", "RelativePath": relative}}))
        assert error.status == 400 and "DataPathAssignments.data_path.RelativePath" in error.api_message
    assert client.list_runs(pipelineId=pipeline["Id"]) == []


def test_no_secret_in_logs_records_or_blobs(host, host_env, containers_before, client, azurite, tmp_path):
    function_key = host.key
    account_key = _account_key(azurite.connection_string)
    assert function_key and account_key

    _env_pipeline(tmp_path / "env")
    pipeline = publish(client, tmp_path / "env" / "pipeline.yaml")
    ok = client.wait_for_run(client.submit(pipeline["Id"], "secrets", Tags={"t": "v"})["Id"], timeout=120)
    assert ok["Status"] == "Finished"
    failed = client.wait_for_run(client.submit(pipeline["Id"], "secrets", {"fail": "--fail"},
                                               RegenerateOutputs=True)["Id"], timeout=120)
    assert failed["Status"] == "Failed"
    log = client.get_step_logs(ok["Id"], "dump")
    assert "MLPIPE_RUN_ID=" in log  # the step's environment really is in its log ...
    assert function_key not in log and account_key not in log  # ... without the secrets

    endpoint = f"sec-{os.urandom(3).hex()}"
    client.create_endpoint(endpoint, pipeline["Id"])
    client.update_run_tags(ok["Id"], {"checked": "yes"})
    # errors, with the key in the query string as well as the header
    for method, path in [("GET", f"/api/runs/nope?code={function_key}"), ("GET", f"/api/nothing?code={function_key}"),
                         ("POST", f"/api/endpoints/{endpoint}/submit?code={function_key}"),
                         ("GET", f"/api/pipelines?status=Bad&code={function_key}")]:
        status, body = raw_request(host, method, path, b"{}" if method == "POST" else None,
                           {"Content-Type": "application/json"})
        assert 400 <= status < 500 and function_key.encode() not in body and account_key.encode() not in body
    status, body = raw_request(host, "GET", "/api/runs", headers={"x-functions-key": function_key + "x"})
    assert status == 401 and function_key.encode() not in body
    for body in (client.get_run(ok["Id"]), client.get_run(failed["Id"]), client.get_pipeline(pipeline["Id"]),
                 client.get_endpoint(endpoint), client.get_openapi(), client.list_datastores()):
        text = json.dumps(to_plain(body))
        assert function_key not in text and account_key not in text

    secrets = [function_key.encode(), account_key.encode()]
    leaks = []
    for path in Path(host.data_dir).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaks += [f"{path}: {s[:6]!r}..." for s in secrets if s in data]
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    before = containers_before
    ours = {host_env["MLPIPE_SYSTEM_CONTAINER"], host_env["MLPIPE_BLOBSTORE_CONTAINER"]}
    checked = 0
    for container in service.list_containers():
        if container.name in before and container.name not in ours:
            continue
        client_ = service.get_container_client(container.name)
        for blob in client_.list_blobs(include=["metadata"]):
            data = client_.download_blob(blob.name).readall() + json.dumps(blob.metadata or {}).encode()
            checked += 1
            leaks += [f"{container.name}/{blob.name}: {s[:6]!r}..." for s in secrets if s in data]
    assert checked > 10
    assert not leaks, "secrets found:\n" + "\n".join(leaks)
