"""AdlaBackend (legacy: ADLA retired 2024-02-29) through azure-core against the ADLA job API contract server."""

from __future__ import annotations

import textwrap
import uuid

import pytest

from shared.compute import DataRef, StepJobRequest
from shared.compute.adla import AdlaBackend, map_job_state
from shared.datastore import default_datastore
from shared.errors import InvalidRequest
from shared.runs import RunStore
from shared.settings import reset_settings
from tests.compute.remote_setup import until_done, use_remote_secret
from tests.contract.adla_service import AdlaService, usql_copy_behaviour
from tests.contract.jobs import read_blobs, write_blob
from tests.contract.server import ContractServer, Fault

TOKEN = "adla-" + uuid.uuid4().hex
TOKEN_SETTING = "MLPIPE_TEST_ADLA_BEARER"
USQL = textwrap.dedent('''
    @rows = EXTRACT line string FROM "{inputs.raw}" USING Extractors.Text(delimiter: '\\t');
    OUTPUT @rows TO "{outputs.result}/upper.txt" USING Outputters.Text();
''')


@pytest.fixture
def adla(storage_env, monkeypatch):
    use_remote_secret(monkeypatch, TOKEN_SETTING, TOKEN)
    service = AdlaService(TOKEN, behaviour=usql_copy_behaviour(read_blobs, write_blob, storage_env.connection_string))
    with ContractServer(service) as server:
        yield server
    reset_settings()


def adla_request(server, tmp_path, **overrides) -> StepJobRequest:
    source = tmp_path / uuid.uuid4().hex
    source.mkdir()
    (source / "query.usql").write_text(USQL)
    run_id = overrides.pop("run_id", f"run{uuid.uuid4().hex[:8]}")
    fields = dict(run_id=run_id, step_name="usql", script=str(source / "query.usql"), source_dir=str(source),
                  step_type="adla", arguments=["--region", 'EU "west"'],
                  inputs={"raw": DataRef(path="lake/raw.tsv")}, outputs={"result": f"runs/{run_id}/usql/result"},
                  compute_name="lake", compute_settings={"account": "myadla", "endpoint": server.url,
                                                         "token_setting": TOKEN_SETTING},
                  step_settings={"degree_of_parallelism": 4, "priority": 100})
    fields.update(overrides)
    return StepJobRequest(**fields)


def test_usql_job_runs_and_its_output_is_committed(adla, tmp_path):
    default_datastore().upload_bytes("lake/raw.tsv", b"alpha\nbeta\n")
    backend = AdlaBackend()
    request = adla_request(adla, tmp_path)
    handle = backend.submit(request)
    uuid.UUID(handle.id)
    status = until_done(backend, handle)
    assert status.state == "Completed", status
    prefix = request.outputs["result"]
    assert default_datastore().read_bytes(prefix + "/upper.txt") == b"ALPHA\nBETA\n"
    assert [f["name"] for f in default_datastore().read_manifest(prefix)["files"]] == ["upper.txt"]
    body = adla.calls("/Jobs/", "PUT")[0].body
    assert body["degreeOfParallelism"] == 4 and body["priority"] == 100 and body["type"] == "USql"
    assert body["properties"]["script"].startswith('DECLARE @region string = "EU \\"west\\"";\n')
    assert body["related"]["recurrenceId"]
    assert "Ended Succeeded" in RunStore().get_log(request.run_id, "usql")


def test_failed_job_carries_the_compiler_message(adla, tmp_path):
    adla.service.script_next("Compiling", ("Ended", "Failed"))
    backend = AdlaBackend()
    request = adla_request(adla, tmp_path)
    status = until_done(backend, backend.submit(request))
    assert status.state == "Failed"
    assert "syntax error" in status.error and "line 3" in status.error


def test_idempotent_submit_resilience_and_cancel(adla, tmp_path):
    adla.service.script_next(*["Running"] * 30)
    backend = AdlaBackend()
    request = adla_request(adla, tmp_path)
    adla.inject("/Jobs/", Fault.http(503, retry_after="0"), Fault.drop(), method="GET")
    adla.inject("/Jobs/", Fault.drop(after=True), method="PUT")
    first = backend.submit(request)  # GET 503, GET dropped, GET 404, PUT done but answer lost, PUT 409 -> GET
    assert [r.method for r in adla.calls("/Jobs/")] == ["GET", "GET", "GET", "PUT", "PUT", "GET"]
    again = backend.submit(request)
    assert first.id == again.id and len(adla.service.jobs) == 1
    assert backend.poll(first).state == "Running"
    backend.cancel(first)
    assert until_done(backend, first).state == "Canceled"
    backend.cancel(first)


def test_errors_and_state_mapping(adla, tmp_path):
    backend = AdlaBackend()
    adla.service.token = "other"
    status = backend.poll(backend.submit(adla_request(adla, tmp_path)))
    assert status.state == "Failed" and "Authentication failed" in status.error and TOKEN not in status.error
    with pytest.raises(InvalidRequest, match="'--name value' pairs"):
        AdlaBackend().job_body(adla_request(adla, tmp_path, arguments=["loose"]))
    assert map_job_state("Running", "None") == "Running"
    assert map_job_state("Ended", "Cancelled") == "Canceled"
    assert map_job_state("Ended", "Failed") == "Failed"
    assert map_job_state("WaitingForCapacity", None) == "Running"
