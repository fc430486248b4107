"""DatabricksBackend through databricks-sdk against the Databricks contract server, data on Azurite."""

from __future__ import annotations

import json
import uuid

import pytest

from shared.compute import DataRef, StepJobRequest
from shared.compute.databricks import DatabricksBackend, map_run_state
from shared.datastore import default_datastore
from shared.runs import RunStore
from shared.settings import reset_settings
from tests.compute.remote_setup import until_done, use_remote_secret
from tests.contract.databricks_service import DatabricksService
from tests.contract.jobs import read_blobs, write_blob
from tests.contract.server import ContractServer, Fault

PAT = "dapi" + uuid.uuid4().hex  # what a Databricks personal access token looks like
PAT_SETTING = "MLPIPE_TEST_DBX_PAT"  # a name that matches no redaction pattern on purpose


@pytest.fixture
def remote_env(storage_env, monkeypatch):
    use_remote_secret(monkeypatch, PAT_SETTING, PAT)
    yield storage_env
    reset_settings()


def train_behaviour(connection):
    def behave(run: dict) -> dict:
        params = run["task"]["notebook_task"]["base_parameters"]
        data = read_blobs(connection, params["data"])
        write_blob(connection, params["model"], "model.txt", data + b" trained with lr=" + params["lr"].encode())
        return {"notebook_result": json.dumps({"auc": 0.91}), "logs": "epoch 1 done"}
    return behave


@pytest.fixture
def databricks(remote_env):
    service = DatabricksService(PAT, behaviour=train_behaviour(remote_env.connection_string))
    with ContractServer(service) as server:
        yield server


def notebook_request(server, **overrides) -> StepJobRequest:
    run_id = overrides.pop("run_id", f"run{uuid.uuid4().hex[:8]}")
    fields = dict(
        run_id=run_id, step_name="train", script="", source_dir="", step_type="databricks",
        arguments=["--lr", "0.1", "--data", "{inputs.raw}", "--model", "{outputs.model}"],
        inputs={"raw": DataRef(path="data/raw.txt")}, outputs={"model": f"runs/{run_id}/train/model"},
        compute_name="dbx", compute_settings={"host": server.url, "token_setting": PAT_SETTING,
                                              "existing_cluster_id": "0101-cluster"},
        step_settings={"notebook_path": "/Repos/team/train"})
    fields.update(overrides)
    return StepJobRequest(**fields)


def test_notebook_run_reads_input_writes_output_and_commits_it(databricks):
    default_datastore().upload_bytes("data/raw.txt", b"rows")
    backend = DatabricksBackend()
    request = notebook_request(databricks)
    handle = backend.submit(request)
    assert backend.poll(handle).state == "Running"
    status = until_done(backend, handle)
    assert status.state == "Completed", status
    assert status.metrics == {"auc": 0.91}
    store = default_datastore()
    manifest = store.read_manifest(request.outputs["model"])
    assert [f["name"] for f in manifest["files"]] == ["model.txt"]
    assert store.read_bytes(request.outputs["model"] + "/model.txt") == b"rows trained with lr=0.1"
    log = RunStore().get_log(request.run_id, "train")
    assert "TERMINATED SUCCESS" in log and "epoch 1 done" in log

    submitted = databricks.calls("runs/submit")[0].body
    task = submitted["tasks"][0]
    assert task["existing_cluster_id"] == "0101-cluster"
    assert task["notebook_task"]["notebook_path"] == "/Repos/team/train"
    assert task["notebook_task"]["base_parameters"]["input_raw"].endswith("/data/raw.txt")
    assert len(submitted["idempotency_token"]) <= 64
    assert all(r.header("Authorization") == f"Bearer {PAT}" for r in databricks.calls("/jobs/"))


def test_python_script_on_a_new_cluster(databricks):
    backend = DatabricksBackend()
    databricks.service.behaviour = None
    request = notebook_request(databricks, step_settings={
        "python_script_path": "dbfs:/jobs/score.py", "parameters": ["--mode", "batch"],
        "new_cluster": {"spark_version": "15.4.x-scala2.12", "node_type": "Standard_DS3_v2", "num_workers": 2},
        "timeout_seconds": 600, "run_name": "nightly score"},
        compute_settings={"host": databricks.url, "token_setting": PAT_SETTING}, inputs={},
        arguments=["--out", "{outputs.model}"])
    assert until_done(backend, backend.submit(request)).state == "Completed"
    body = databricks.calls("runs/submit")[0].body
    task = body["tasks"][0]
    assert task["spark_python_task"]["python_file"] == "dbfs:/jobs/score.py"
    assert task["spark_python_task"]["parameters"][:3] == ["--mode", "batch", "--out"]
    assert task["new_cluster"] == {"spark_version": "15.4.x-scala2.12", "node_type_id": "Standard_DS3_v2",
                                   "num_workers": 2}
    assert body["timeout_seconds"] == 600 and body["run_name"] == "nightly score"
    # nothing written: the output is committed empty, as a local step that writes nothing
    assert default_datastore().read_manifest(request.outputs["model"])["files"] == []


@pytest.mark.parametrize("final, expected", [
    (("TERMINATED", "FAILED", "Notebook raised ValueError"), "Failed"),
    (("TERMINATED", "TIMEDOUT", "Run timed out"), "Failed"),
    (("INTERNAL_ERROR", None, "Cluster terminated"), "Failed"),
    (("TERMINATED", "CANCELED", "Canceled by user"), "Canceled"),
])
def test_failed_runs_carry_the_service_message(databricks, final, expected):
    databricks.service.script_next("RUNNING", final)
    backend = DatabricksBackend()
    request = notebook_request(databricks)
    status = until_done(backend, backend.submit(request))
    assert status.state == expected
    assert final[2] in status.error
    assert not default_datastore().is_committed(request.outputs["model"])


def test_map_run_state_is_defensive():
    assert map_run_state("SOME_NEW_STATE", None)[0] == "Running"
    assert map_run_state("TERMINATED", "SOME_NEW_RESULT")[0] == "Failed"
    assert map_run_state("SKIPPED", None)[0] == "Failed"
    assert map_run_state("TERMINATED", "SUCCESS_WITH_FAILURES")[0] == "Completed"
    assert map_run_state("TERMINATED", "UPSTREAM_CANCELED")[0] == "Canceled"


def test_cancel_is_asynchronous_and_idempotent(databricks):
    databricks.service.script_next(*["RUNNING"] * 50)
    backend = DatabricksBackend()
    handle = backend.submit(notebook_request(databricks))
    assert backend.poll(handle).state == "Running"
    backend.cancel(handle)
    backend.cancel(handle)
    status = until_done(backend, handle)
    assert status.state == "Canceled"
    backend.cancel(handle)  # ended: still fine
    assert len(databricks.calls("runs/cancel")) == 3


def test_submit_is_idempotent_even_when_the_answer_is_lost(databricks):
    backend = DatabricksBackend()
    request = notebook_request(databricks)
    databricks.inject("runs/submit", Fault.drop(after=True))  # the run starts, the answer is lost
    first = backend.submit(request)
    second = backend.submit(request)  # a replayed activity
    assert first.id == second.id
    assert len(databricks.service.runs) == 1
    assert len(databricks.calls("runs/submit")) == 3
    retry = backend.submit(request.model_copy(update={"attempt": 2}))  # a step retry is a new run
    assert retry.id != first.id


def test_transient_errors_are_retried(databricks):
    backend = DatabricksBackend()
    databricks.inject("runs/submit", Fault.http(429, retry_after="0"), Fault.http(500), Fault.drop())
    handle = backend.submit(notebook_request(databricks))
    databricks.inject("runs/get", Fault.http(503, retry_after="0"), Fault.http(502))
    assert until_done(backend, handle).state == "Completed"
    assert len(databricks.service.runs) == 1


def test_a_poll_that_keeps_failing_is_still_running(databricks, monkeypatch):
    monkeypatch.setenv("MLPIPE_COMPUTE_RETRY_ATTEMPTS", "2")
    reset_settings()
    backend = DatabricksBackend()
    handle = backend.submit(notebook_request(databricks))
    databricks.inject("runs/get", *[Fault.http(500)] * 2)
    assert backend.poll(handle).state == "Running"
    assert until_done(backend, handle).state == "Completed"


def test_permanent_errors_fail_with_the_message_and_no_secret(databricks, monkeypatch):
    """A refused submit is not an exception for the activity: the step fails with the service's words."""
    backend = DatabricksBackend()
    databricks.service.token = "another-token"
    refused = backend.submit(notebook_request(databricks))
    status = backend.poll(refused)
    assert status.state == "Failed"
    assert "Invalid access token" in status.error and PAT not in status.error
    assert "Invalid access token" in backend.fetch_logs(refused)
    backend.cancel(refused)  # nothing was started: a no-op
    databricks.service.token = PAT
    databricks.inject("runs/submit", Fault.http(400, body={"error_code": "INVALID_PARAMETER_VALUE",
                                                           "message": "Cluster 0101-cluster does not exist"}))
    request = notebook_request(databricks)
    status = backend.poll(backend.submit(request))
    assert status.state == "Failed" and "INVALID_PARAMETER_VALUE: Cluster 0101-cluster does not exist" in status.error
    assert "Cluster 0101-cluster does not exist" in RunStore().get_log(request.run_id, "train")
    status = backend.poll(backend.submit(notebook_request(databricks, compute_settings={
        "host": databricks.url, "token_setting": PAT_SETTING})))
    assert "existing_cluster_id or new_cluster" in status.error
    monkeypatch.delenv(PAT_SETTING)
    status = DatabricksBackend().poll(DatabricksBackend().submit(notebook_request(databricks)))
    assert f"app setting '{PAT_SETTING}'" in status.error


def test_submit_still_failing_after_retries_raises_for_the_activity_to_retry(databricks, monkeypatch):
    from shared.errors import TransientError

    monkeypatch.setenv("MLPIPE_COMPUTE_RETRY_ATTEMPTS", "2")
    reset_settings()
    databricks.inject("runs/submit", *[Fault.http(500)] * 2)
    with pytest.raises(TransientError, match="still failing after 2 attempts"):
        DatabricksBackend().submit(notebook_request(databricks))


def test_azure_ad_tokens_reach_databricks_through_the_sdk(databricks):
    """Without token_setting the backend authenticates with an azure-identity credential: the SDK
    asks our strategy for headers, which asks the credential for an Azure Databricks token."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config
    from databricks.sdk.credentials_provider import CredentialsStrategy

    from shared.compute.databricks import AZURE_DATABRICKS_SCOPE, _AzureIdentityStrategy
    from shared.credentials import StaticTokenCredential

    class Recording(StaticTokenCredential):
        scopes: list = []

        def get_token(self, *scopes, **kwargs):
            Recording.scopes.extend(scopes)
            return super().get_token(*scopes, **kwargs)

    CredentialsStrategy.register(_AzureIdentityStrategy)
    client = WorkspaceClient(config=Config(host=databricks.url, credentials_strategy=_AzureIdentityStrategy(
        Recording(PAT))))
    backend = DatabricksBackend(client_factory=lambda settings, compute: client)
    status = until_done(backend, backend.submit(notebook_request(databricks)))
    assert status.state in ("Completed", "Failed")  # the input blob may be absent; auth is what counts
    assert Recording.scopes and set(Recording.scopes) == {AZURE_DATABRICKS_SCOPE}
