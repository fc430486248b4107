"""End to end: one pipeline mixing data_transfer, local and Databricks steps, through devhost on Azurite.

  ingest (data_transfer: archive account -> PipelineData)  ->  prep (local python)
      ->  train (Databricks notebook, on the Jobs API contract server)  ->  publish (data_transfer)

The Databricks "job" reads its input and writes its output through the storage URIs mlpipe hands
it. A second submit reuses every step and sends nothing to Databricks. Afterwards every log the
host wrote, every file under its data folder and every blob in every container is searched for
the credentials used (the Databricks token, the second account's key): none may appear.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from itest_pipelines import publish, write_pipeline

from devhost.testing import start_host
from shared.client import PipelineClient
from shared.datastore import get_datastore
from shared.settings import reset_settings
from tests.contract.azurite_accounts import SECOND_KEY, two_account_azurite
from tests.contract.databricks_service import DatabricksService
from tests.contract.jobs import read_blobs, write_blob
from tests.contract.server import ContractServer
from tests.settings_env import use_settings

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PAT = "dapi" + uuid.uuid4().hex + "e2e"
PAT_SETTING = "MLPIPE_E2E_DATABRICKS_PAT"
ARCHIVE_SETTING = "MLPIPE_E2E_ARCHIVE_CONNECTION"
KEY = "e2e-key-" + uuid.uuid4().hex

PREP = '''
import argparse, pathlib
p = argparse.ArgumentParser(); p.add_argument("--raw"); p.add_argument("--out"); a = p.parse_args()
src = pathlib.Path(a.raw)
rows = [l for f in sorted(src.rglob("*")) if f.is_file() for l in f.read_text().splitlines() if l.strip()]
pathlib.Path(a.out, "clean.csv").write_text("\\n".join(sorted(rows)) + "\\n")
print("prep kept", len(rows), "rows")
'''


@pytest.fixture(scope="module")
def accounts(tmp_path_factory):
    with two_account_azurite(tmp_path_factory.mktemp("azurite-mixed")) as started:
        yield started


@pytest.fixture(scope="module")
def databricks(accounts):
    _process, first, _second = accounts

    def train(run: dict) -> dict:
        params = run["task"]["notebook_task"]["base_parameters"]
        data = read_blobs(first, params["input_clean"])
        write_blob(first, params["output_model"], "model.json",
                   json.dumps({"rows": len(data.splitlines()), "alpha": params["alpha"]}).encode())
        return {"notebook_result": json.dumps({"rows": len(data.splitlines())}), "logs": "fitted"}

    # Runs end at the first runs/get and a cancel takes effect at once: the orchestrator polls remote
    # steps every 15 s (steps.REMOTE_POLL_SECONDS), and the state sequences are covered in tests/compute.
    service = DatabricksService(PAT, behaviour=train, default_script=(("TERMINATED", "SUCCESS"),),
                                cancel_immediately=True)
    with ContractServer(service) as server:
        yield server


@pytest.fixture(scope="module")
def mixed_env(accounts, tmp_path_factory):
    _process, first, second = accounts
    suffix = os.urandom(3).hex()
    return {
        "AzureWebJobsStorage": first,
        "MLPIPE_BLOBSTORE_CONTAINER": f"ws{suffix}",
        "MLPIPE_SYSTEM_CONTAINER": f"sys{suffix}",
        "MLPIPE_DATA_DIR": str(tmp_path_factory.mktemp("mixeddata")),
        "MLPIPE_FUNCTION_KEY": KEY,
        "MLPIPE_DATASTORES": json.dumps({"archive": {"container": f"arch{suffix}", "connection": ARCHIVE_SETTING}}),
        ARCHIVE_SETTING: second,
        PAT_SETTING: PAT,
    }


@pytest.fixture(scope="module")
def mixed_host(mixed_env):
    with start_host(REPO_ROOT, env=mixed_env, data_dir=Path(mixed_env["MLPIPE_DATA_DIR"])) as process:
        yield process


@pytest.fixture
def local_view(mixed_env, monkeypatch):
    yield from use_settings(mixed_env, monkeypatch)


def definition(databricks_url: str) -> dict:
    return {
        "name": "mixed-compute",
        "parameters": {"alpha": 0.5},
        "computes": {"dbx": {"type": "databricks", "host": databricks_url, "token_setting": PAT_SETTING,
                             "existing_cluster_id": "0101-e2e"}},
        "datasets": {"raw": {"datastore": "archive", "path": "exports/iris"}},
        "steps": [
            {"name": "ingest", "type": "data_transfer", "inputs": {"src": "datasets.raw"}, "outputs": ["landed"]},
            {"name": "prep", "source_directory": "src", "script_name": "step.py",
             "arguments": ["--raw", "{inputs.landed}", "--out", "{outputs.clean}"],
             "inputs": {"landed": "ingest.landed"}, "outputs": ["clean"]},
            {"name": "train", "type": "databricks", "compute": "dbx",
             "settings": {"notebook_path": "/Repos/ml/train"}, "arguments": ["--alpha", "{parameters.alpha}"],
             "inputs": {"clean": "prep.clean"}, "outputs": ["model"]},
            {"name": "publish", "type": "data_transfer", "inputs": {"model": "train.model"}, "outputs": ["released"]},
        ],
    }


def publish_mixed(host, databricks, name: str, raw_folder: str, raw_rows: bytes,
                  tmp_path) -> tuple[PipelineClient, dict]:
    """The mixed pipeline published as `name`, reading `raw_rows` uploaded to `raw_folder` of the archive."""
    get_datastore("archive").upload_bytes(f"{raw_folder}/part.csv", raw_rows)
    definition_ = definition(databricks.url)
    definition_["name"] = name
    definition_["datasets"]["raw"]["path"] = raw_folder
    client = PipelineClient(host.url, KEY)
    return client, publish(client, write_pipeline(tmp_path / "p", definition_, script=PREP))


def _text(value) -> str:
    """JSON of an API answer (a dict, or the client's models)."""
    return json.dumps(value, default=lambda o: o.model_dump() if hasattr(o, "model_dump") else str(o))


def _all_blob_text(connection: str) -> bytes:
    service = BlobServiceClient.from_connection_string(connection)
    chunks = []
    for container in service.list_containers():
        client = service.get_container_client(container.name)
        for blob in client.list_blobs(include=["metadata"]):
            chunks.append(blob.name.encode() + json.dumps(blob.metadata or {}).encode())
            chunks.append(client.download_blob(blob.name).readall())
    return b"\n".join(chunks)


def test_mixed_pipeline_runs_reuses_and_leaks_no_credential(mixed_host, databricks, accounts, local_view, tmp_path):
    _process, first, second = accounts
    archive = get_datastore("archive")
    archive.upload_bytes("exports/iris/part-1.csv", b"5.1,3.5,setosa\n")
    archive.upload_bytes("exports/iris/part-2.csv", b"6.2,2.9,versicolor\n")
    client = PipelineClient(mixed_host.url, KEY)
    pipeline = publish(client, write_pipeline(tmp_path / "p", definition(databricks.url), script=PREP))

    run = client.wait_for_run(client.submit(pipeline["Id"], "mixed")["Id"], poll_seconds=0.2, timeout=120)
    assert run["Status"] == "Finished", _text(run)
    steps = {item["Name"]: item for item in run["Steps"]}
    assert all(item["Status"] == "Completed" and not item["Reused"] for item in steps.values())
    assert steps["ingest"]["Metrics"]["files_copied"] == 2
    assert steps["train"]["Metrics"] == {"rows": 2}
    released = steps["publish"]["Outputs"]["released"]["Path"]
    assert json.loads(get_datastore().read_bytes(released + "/model.json")) == {"rows": 2, "alpha": "0.5"}
    assert "fitted" in client.get_step_logs(run["Id"], "train")
    assert "prep kept 2 rows" in client.get_step_logs(run["Id"], "prep")
    submitted = databricks.calls("runs/submit")
    assert len(submitted) == 1
    params = submitted[0].body["tasks"][0]["notebook_task"]["base_parameters"]
    assert params["alpha"] == "0.5" and params["input_clean"].endswith(f"/runs/{run['Id']}/prep/clean/")

    again = client.wait_for_run(client.submit(pipeline["Id"], "mixed")["Id"], poll_seconds=0.2, timeout=60)
    assert again["Status"] == "Finished"
    assert all(item["Reused"] for item in again["Steps"])
    assert len(databricks.calls("runs/submit")) == 1  # nothing sent to Databricks the second time

    # No credential anywhere: host log, the host's data folder, every blob (both accounts).
    secrets = [PAT, SECOND_KEY, KEY]
    places = {"host log": mixed_host.output().encode()}
    for path in Path(mixed_host.data_dir).rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000 and "azurite" not in path.parts:
            places[str(path)] = path.read_bytes()
    places["blobs, first account"] = _all_blob_text(first)
    places["blobs, archive account"] = _all_blob_text(second)
    for where, content in places.items():
        for secret in secrets:
            assert secret.encode() not in content, f"a credential leaked into {where}"


def test_cancelling_the_run_cancels_the_databricks_run(mixed_host, databricks, local_view, tmp_path):
    import time

    client, pipeline = publish_mixed(mixed_host, databricks, "mixed-cancel", "exports/cancel", b"1,2,x\n", tmp_path)
    databricks.service.script_next(*["RUNNING"] * 500)  # train would run "forever"
    submitted_before = len(databricks.calls("runs/submit"))
    run_id = client.submit(pipeline["Id"], "mixed")["Id"]
    deadline = time.monotonic() + 60
    while len(databricks.calls("runs/submit")) == submitted_before:
        assert time.monotonic() < deadline, "train was never submitted to Databricks"
        time.sleep(0.1)
    client.cancel_run(run_id)
    run = client.wait_for_run(run_id, poll_seconds=0.2, timeout=60)
    assert run["Status"] == "Canceled"
    steps = {item["Name"]: item["Status"] for item in run["Steps"]}
    assert steps["train"] == "Canceled" and steps["publish"] in ("Canceled", "Skipped")
    cancels = databricks.calls("runs/cancel")
    assert cancels and {c.body["run_id"] for c in cancels} == {max(databricks.service.runs)}
    assert databricks.service.runs[max(databricks.service.runs)]["state"][1] == "CANCELED"


def test_a_permanent_databricks_error_fails_the_step_with_its_message(mixed_host, databricks, local_view, tmp_path):
    from tests.contract.server import Fault

    client, pipeline = publish_mixed(mixed_host, databricks, "mixed-permanent-error", "exports/bad", b"3,4,y\n",
                                     tmp_path)
    refusal = {"error_code": "INVALID_PARAMETER_VALUE", "message": "Cluster 0101-e2e does not exist"}
    databricks.inject("runs/submit", Fault.http(400, body=refusal))
    try:
        run = client.wait_for_run(client.submit(pipeline["Id"], "mixed")["Id"], poll_seconds=0.2, timeout=90)
    finally:
        databricks.clear_faults()
    assert run["Status"] == "Failed"
    train = {item["Name"]: item for item in run["Steps"]}["train"]
    assert train["Status"] == "Failed"
    assert "Cluster 0101-e2e does not exist" in train["Error"]["message"], train
    assert PAT not in _text(run)


def test_host_killed_mid_submit_resumes_without_a_second_databricks_run(accounts, databricks, mixed_env, tmp_path,
                                                                         monkeypatch):
    """SIGKILL while step_start is inside Databricks calls: on restart Durable runs the activity
    again, which submits again with the same idempotency token and gets the same run back."""
    import time

    from tests.contract.server import Fault

    suffix = os.urandom(3).hex()
    env = {**mixed_env, "MLPIPE_BLOBSTORE_CONTAINER": f"wsk{suffix}", "MLPIPE_SYSTEM_CONTAINER": f"sysk{suffix}",
           "MLPIPE_DATA_DIR": str(tmp_path / "data")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_settings()
    get_datastore().upload_bytes("incoming/rows.csv", b"a\nb\nc\n")
    replay = {
        "name": "mixed-replay", "parameters": {"alpha": 0.7},
        "computes": definition(databricks.url)["computes"],
        "datasets": {"rows": {"path": "incoming/rows.csv"}},
        "steps": [{"name": "train", "type": "databricks", "compute": "dbx",
                   "settings": {"notebook_path": "/Repos/ml/train"}, "arguments": ["--alpha", "{parameters.alpha}"],
                   "inputs": {"clean": "datasets.rows"}, "outputs": ["model"]}],
    }
    path = write_pipeline(tmp_path / "p", replay, script=PREP)
    runs_before, submits_before = set(databricks.service.runs), len(databricks.calls("runs/submit"))
    databricks.inject("runs/get", Fault.delay(4))  # step_start is still waiting on it when the host dies
    with start_host(REPO_ROOT, env=env, data_dir=tmp_path / "data") as host:
        client = PipelineClient(host.url, KEY)
        run_id = client.submit(publish(client, path)["Id"], "replay")["Id"]
        deadline = time.monotonic() + 60
        while len(databricks.calls("runs/submit")) == submits_before:
            assert time.monotonic() < deadline, "train was never submitted"
            time.sleep(0.05)
        time.sleep(0.5)
        host.kill()
    with start_host(REPO_ROOT, env=env, data_dir=tmp_path / "data") as host:
        run = PipelineClient(host.url, KEY).wait_for_run(run_id, poll_seconds=0.2, timeout=90)
    assert run["Status"] == "Finished", _text(run)
    assert len(databricks.calls("runs/submit")) - submits_before == 2  # the activity ran twice...
    assert len(set(databricks.service.runs) - runs_before) == 1  # ...and started one Databricks run
    model = {item["Name"]: item for item in run["Steps"]}["train"]["Outputs"]["model"]["Path"]
    assert json.loads(get_datastore().read_bytes(model + "/model.json")) == {"rows": 3, "alpha": "0.7"}
