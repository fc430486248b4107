"""PipelineClient against a tiny in-process HTTP server: credentials, typed models, errors, poller."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.core.credentials import AzureKeyCredential

from shared.api_models import Run
from shared.client import (
    ApiError,
    ClientAuthenticationError,
    PipelineClient,
    ResourceExistsError,
    ResourceNotFoundError,
    RunPoller,
    to_plain,
)

RUN = {"Id": "mlpipe_1", "Status": "Queued", "ExperimentName": "e", "PipelineId": "p", "EndpointName": None,
       "RunSource": "API", "ParameterAssignments": {"rate": 0.5}, "DataPathAssignments": {}, "Tags": {"a": "b"},
       "CreatedTimeUtc": "2026-11-23T10:00:00.000Z", "StartTimeUtc": None, "EndTimeUtc": None, "Error": None,
       "Steps": [{"Name": "train", "Status": "Queued", "Reused": False, "Outputs": {
           "model": {"Datastore": "workspaceblobstore", "Path": "runs/x/train/model"}}, "Metrics": {}}],
       "PipelineVersion": "1"}


class _Api(BaseHTTPRequestHandler):
    seen: list = []
    polls = 0

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        type(self).seen.append((self.command, self.path, self.headers.get("x-functions-key"), body))
        if self.headers.get("x-functions-key") not in ("k1", "k2"):
            return self._send(401, {"error": {"code": "Unauthorized", "message": "key"}})
        if self.path.startswith("/api/runs/mlpipe_1"):
            type(self).polls += 1
            return self._send(200, {**RUN, "Status": "Finished" if type(self).polls >= 3 else "Running"})
        if self.path.startswith("/api/pipelines/p/submit"):
            return self._send(202, RUN)
        if self.path == "/api/endpoints" and (body or {}).get("name") == "taken":
            return self._send(409, {"error": {"code": "EndpointExists", "message": "name: taken"}})
        if self.path.startswith("/api/runs"):
            return self._send(200, {"value": [RUN], "nextLink": None})
        self._send(404, {"error": {"code": "NotFound", "message": "nothing here"}})

    do_GET = do_POST = do_PATCH = do_PUT = _handle


@pytest.fixture
def server():
    _Api.seen, _Api.polls = [], 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_string_and_key_credentials_and_rotation(server):
    assert PipelineClient(server, "k1").get_run("mlpipe_1").Id == "mlpipe_1"
    credential = AzureKeyCredential("k1")
    client = PipelineClient(server, credential=credential)
    client.get_run("mlpipe_1")
    credential.update("k2")
    client.get_run("mlpipe_1")
    assert [key for _m, _p, key, _b in _Api.seen[-2:]] == ["k1", "k2"]
    with pytest.raises(TypeError):
        PipelineClient(server, credential=object())


def test_key_never_in_repr_url_or_error(server):
    client = PipelineClient(server, "wrong-secret-key")
    assert "wrong-secret-key" not in repr(client)
    with pytest.raises(ClientAuthenticationError) as caught:
        client.list_runs()
    assert caught.value.status_code == 401 and caught.value.code == "Unauthorized"
    assert "wrong-secret-key" not in str(caught.value)
    assert all("wrong-secret-key" not in path for _m, path, _k, _b in _Api.seen)


def test_typed_models_with_mapping_access(server):
    client = PipelineClient(server, "k1")
    run = client.submit("p", "e", {"rate": 0.5}, Tags={"a": "b"})
    assert isinstance(run, Run) and run.Status == "Queued" and run["Status"] == "Queued"
    assert run.Steps[0].Outputs["model"].Path == run["Steps"][0]["Outputs"]["model"]["Path"]
    assert run["PipelineVersion"] == "1" and run.get("Nope") is None and "Tags" in run
    assert run["Steps"][0]["Outputs"] == {"model": {"Datastore": "workspaceblobstore", "Path": "runs/x/train/model"}}
    assert to_plain(run) == RUN and json.dumps(to_plain([run]))
    runs = client.list_runs(pipeline_id="p", tag="a:b", top=5)
    assert runs == [RUN]
    assert _Api.seen[-1][1] == "/api/runs?pipelineId=p&tag=a%3Ab&top=5"
    assert _Api.seen[0][3] == {"ExperimentName": "e", "ParameterAssignments": {"rate": 0.5}, "Tags": {"a": "b"}}


def test_errors_are_typed_and_carry_the_api_code(server):
    client = PipelineClient(server, "k1")
    with pytest.raises(ResourceExistsError) as conflict:
        client.create_endpoint("taken", "p")
    assert conflict.value.code == "EndpointExists" and conflict.value.error["message"] == "name: taken"
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_pipeline("nope")
    assert isinstance(missing.value, ApiError) and missing.value.status == 404


def test_begin_submit_returns_a_poller(server):
    client = PipelineClient(server, "k1")
    poller = client.begin_submit_pipeline("p", "e", poll_seconds=0.01)
    assert isinstance(poller, RunPoller) and poller.run_id == "mlpipe_1" and poller.initial.Status == "Queued"
    assert poller.status() == "Running"
    final = poller.result(timeout=10)
    assert final.Status == "Finished" and poller.done()
