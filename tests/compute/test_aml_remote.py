"""AmlBackend through azure-core against the Azure ML contract server; the job really runs (AmlRuntime)."""

from __future__ import annotations

import os
import textwrap
import uuid

import pytest

from shared.compute import DataRef, StepJobRequest
from shared.compute.aml import AmlBackend, map_job_status
from shared.datastore import default_datastore
from shared.runs import RunStore
from shared.settings import reset_settings
from tests.compute.remote_setup import until_done, use_remote_secret
from tests.contract.aml_runtime import AmlRuntime
from tests.contract.aml_service import AmlService
from tests.contract.server import ContractServer, Fault

TOKEN = "aad-" + uuid.uuid4().hex
TOKEN_SETTING = "MLPIPE_TEST_AML_BEARER"
SCRIPT = textwrap.dedent('''
    import argparse, json, os, pathlib, sys
    p = argparse.ArgumentParser()
    p.add_argument("--data"); p.add_argument("--model"); p.add_argument("--fail", default="no")
    a = p.parse_args()
    text = pathlib.Path(a.data).read_text()
    print("training on", len(text), "bytes")
    if a.fail == "yes":
        print("boom: bad data", file=sys.stderr); sys.exit(4)
    pathlib.Path(a.model, "model.txt").write_text("model of " + text)
    with open(os.environ["MLPIPE_METRICS_FILE"], "a") as m:
        m.write(json.dumps({"name": "accuracy", "value": 0.97}) + "\\n")
''')


@pytest.fixture
def aml(storage_env, monkeypatch, tmp_path):
    use_remote_secret(monkeypatch, TOKEN_SETTING, TOKEN)
    runtime = AmlRuntime(storage_env.connection_string,
                         {"workspaceblobstore": os.environ["MLPIPE_BLOBSTORE_CONTAINER"]})
    service = AmlService(TOKEN, behaviour=runtime)
    runtime.codes = service.codes
    with ContractServer(service) as server:
        server.runtime = runtime
        yield server
    reset_settings()


def aml_request(server, tmp_path, **overrides) -> StepJobRequest:
    source = tmp_path / "snapshots" / ("a1b2" + uuid.uuid4().hex)
    source.mkdir(parents=True)
    (source / "train.py").write_text(SCRIPT)
    run_id = overrides.pop("run_id", f"run{uuid.uuid4().hex[:8]}")
    compute = {"endpoint": server.url, "subscription_id": "sub-1", "resource_group": "rg-ml",
               "workspace_name": "ws-ml", "cluster": "cpu-cluster", "token_setting": TOKEN_SETTING,
               "environment": "azureml:AzureML-sklearn-1.5:1"}
    compute.update(overrides.pop("compute", {}))
    fields = dict(run_id=run_id, step_name="train", script=str(source / "train.py"), source_dir=str(source),
                  arguments=["--data", "{inputs.raw}", "--model", "{outputs.model}"],
                  inputs={"raw": DataRef(path="data/raw.txt")}, outputs={"model": f"runs/{run_id}/train/model"},
                  compute_name="cpu", compute_settings=compute, environment={"MODE": "full"})
    fields.update(overrides)
    return StepJobRequest(**fields)


def test_command_job_runs_with_code_inputs_outputs_metrics_and_log(aml, tmp_path):
    default_datastore().upload_bytes("data/raw.txt", b"sepal,petal\n")
    backend = AmlBackend()
    request = aml_request(aml, tmp_path)
    handle = backend.submit(request)
    status = until_done(backend, handle)
    assert status.state == "Completed", (status, RunStore().get_log(request.run_id, "train"))
    assert status.metrics == {"accuracy": 0.97}
    store = default_datastore()
    assert store.read_bytes(request.outputs["model"] + "/model.txt") == b"model of sepal,petal\n"
    assert [f["name"] for f in store.read_manifest(request.outputs["model"])["files"]] == ["model.txt"]
    assert "training on 12 bytes" in RunStore().get_log(request.run_id, "train")

    put = aml.calls("/jobs/", "PUT")[0]
    props = put.body["properties"]
    assert put.path.endswith(f"/workspaces/ws-ml/jobs/{request.run_id}-train-a1")
    assert put.query["api-version"] == "2024-10-01"
    assert props["computeId"].endswith("/workspaces/ws-ml/computes/cpu-cluster")
    assert props["environmentId"] == "azureml://registries/azureml/environments/AzureML-sklearn-1.5/versions/1"
    assert props["inputs"]["raw"] == {"jobInputType": "uri_file", "mode": "ReadOnlyMount",
                                      "uri": "azureml://datastores/workspaceblobstore/paths/data/raw.txt"}
    assert props["outputs"]["model"]["uri"].endswith(f"/paths/{request.outputs['model']}/")
    assert props["environmentVariables"] == {"MODE": "full"}
    assert all(r.header("Authorization") == f"Bearer {TOKEN}" for r in aml.requests)


def test_failed_job_reports_the_output_tail(aml, tmp_path):
    default_datastore().upload_bytes("data/raw.txt", b"x")
    backend = AmlBackend()
    request = aml_request(aml, tmp_path, arguments=["--data", "{inputs.raw}", "--model", "{outputs.model}",
                                                    "--fail", "yes"])
    status = until_done(backend, backend.submit(request))
    assert status.state == "Failed"
    assert "boom: bad data" in status.error and "Failed" in status.error
    assert aml.runtime.exit_codes == [4]  # pipefail kept the script's exit code through tee
    assert not default_datastore().is_committed(request.outputs["model"])


def test_submit_is_idempotent_and_cancel_is_asynchronous(aml, tmp_path):
    backend = AmlBackend()
    aml.service.script_next(*["Running"] * 40)
    request = aml_request(aml, tmp_path)
    aml.inject("/jobs/", Fault.drop(after=False))  # the GET before the PUT is dropped: retried
    aml.inject("/jobs/" + request.run_id, Fault.http(429, retry_after="0"))
    first = backend.submit(request)
    again = backend.submit(request)  # a replayed activity: finds the job, creates nothing
    assert first.id == again.id and len(aml.service.jobs) == 1
    assert len(aml.calls("/jobs/", "PUT")) == 1
    assert backend.poll(first).state == "Running"
    backend.cancel(first)
    backend.cancel(first)
    assert until_done(backend, first).state == "Canceled"
    backend.cancel(first)  # ended: still fine


def test_cluster_is_provisioned_when_missing(aml, tmp_path):
    default_datastore().upload_bytes("data/raw.txt", b"abc")
    backend = AmlBackend()
    request = aml_request(aml, tmp_path, compute={
        "cluster": "gpu-new", "provision": {"vm_size": "STANDARD_NC6S_V3", "min_nodes": 0, "max_nodes": 2,
                                            "idle_seconds": 300, "location": "westeurope"}})
    handle = backend.submit(request)
    assert handle.data["phase"] == "provisioning"
    compute_put = aml.calls("/computes/gpu-new", "PUT")[0].body
    assert compute_put["properties"]["properties"] == {
        "vmSize": "STANDARD_NC6S_V3", "vmPriority": "Dedicated",
        "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 2, "nodeIdleTimeBeforeScaleDown": "PT300S"}}
    assert until_done(backend, handle).state == "Completed"
    assert len(aml.calls("/jobs/", "PUT")) == 1


def test_permanent_errors_carry_the_service_message_without_secrets(aml, tmp_path):
    backend = AmlBackend()
    status = backend.poll(backend.submit(aml_request(aml, tmp_path, compute={"cluster": "no-such-cluster"})))
    assert status.state == "Failed"
    assert "Compute no-such-cluster not found" in status.error and TOKEN not in status.error
    status = backend.poll(backend.submit(aml_request(aml, tmp_path, compute={"workspace_name": ""})))
    assert "an aml compute needs workspace_name" in status.error
    aml.service.token = "someone-else"
    status = backend.poll(backend.submit(aml_request(aml, tmp_path)))
    assert "401" in status.error and TOKEN not in status.error


def test_status_mapping():
    assert [map_job_status(s) for s in ("Queued", "Finalizing", "CancelRequested", "NotResponding", "Brand-new",
                                        "Completed", "Failed", "Canceled")] == \
        ["Running"] * 5 + ["Completed", "Failed", "Canceled"]


def test_a_running_jobs_console_output_is_the_step_log_so_far(aml, tmp_path):
    backend = AmlBackend()
    aml.service.script_next(*["Running"] * 10)
    request = aml_request(aml, tmp_path)
    handle = backend.submit(request)
    # what the job's tee has written so far into the hidden read-write mount
    default_datastore().upload_bytes(handle.data["logPrefix"] + "/log.txt", b"epoch 1/10\n")
    assert backend.poll(handle).state == "Running"
    assert "epoch 1/10" in RunStore().get_log(request.run_id, "train")
    backend.cancel(handle)
