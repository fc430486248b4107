"""One contract, every compute backend: local, Databricks, Azure ML, ADLA and data_transfer.

Each backend runs the same scenarios through its real client stack (subprocess; databricks-sdk
or azure-core against a contract server; Azure Storage on Azurite):
  - a job reads its input and writes its output; poll reaches Completed; the output is committed
    (manifest) and holds what the job wrote; the handle survives a JSON round trip (durable state);
  - a failing job ends Failed with a message and leaves no committed output;
  - cancel is idempotent and a cancelled job ends Canceled (transfer copies on Azurite end at once,
    so there cancel of a finished copy must simply be harmless);
  - remote submits are idempotent: the same request twice is one job;
  - the handle carries no secret.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared.compute import DataRef, JobHandle, StepJobRequest
from shared.credentials import forget_credentials
from shared.datastore import default_datastore, get_datastore
from shared.runs import RunStore, StepRecord
from shared.settings import reset_settings
from tests.contract.adla_service import AdlaService, usql_copy_behaviour
from tests.contract.aml_runtime import AmlRuntime
from tests.contract.aml_service import AmlService
from tests.contract.databricks_service import DatabricksService
from tests.contract.jobs import read_blobs, write_blob
from tests.contract.server import ContractServer

SECRET = "contract-" + uuid.uuid4().hex
SECRET_SETTING = "MLPIPE_CONTRACT_SECRET"
BACKENDS = ["local", "databricks", "aml", "adla", "data_transfer"]

# The same step script for local and Azure ML (where AmlRuntime really runs it).
SCRIPT = textwrap.dedent('''
    import argparse, pathlib, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--data"); p.add_argument("--out"); p.add_argument("--mode", default="ok")
    a = p.parse_args()
    if a.mode == "fail":
        print("failing on purpose", file=sys.stderr); sys.exit(2)
    if a.mode == "long":
        time.sleep(60)
    src = pathlib.Path(a.data)
    text = src.read_text() if src.is_file() else "".join(x.read_text() for x in sorted(src.rglob("*")) if x.is_file())
    pathlib.Path(a.out, "result.txt").write_text(text.upper())
    print("done")
''')


@dataclass
class Harness:
    name: str
    backend: object
    make: Callable[[str], StepJobRequest]          # mode: ok | fail | long
    break_job: Callable[[StepJobRequest, JobHandle], None] = lambda request, handle: None
    server: ContractServer | None = None
    cancel_reaches_running_job: bool = True
    idempotent_submit: bool = True
    wait_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def _request(run_id: str, **fields) -> StepJobRequest:
    fields.setdefault("inputs", {"data": DataRef(path="contract/in.txt")})
    fields.setdefault("outputs", {"out": f"runs/{run_id}/step/out"})
    return StepJobRequest(run_id=run_id, step_name="step", **fields)


def _script_dir(tmp_path: Path, name: str, text: str) -> Path:
    folder = tmp_path / "snapshots" / (uuid.uuid4().hex + uuid.uuid4().hex)
    folder.mkdir(parents=True)
    (folder / name).write_text(text)
    return folder


def _local(tmp_path, connection):
    from shared.compute.local import LocalBackend

    source = _script_dir(tmp_path, "step.py", SCRIPT)

    def make(mode: str) -> StepJobRequest:
        run_id = f"run{uuid.uuid4().hex[:8]}"
        return _request(run_id, script=str(source / "step.py"), source_dir=str(source),
                        arguments=["--data", "{inputs.data}", "--out", "{outputs.out}", "--mode", mode])

    return Harness("local", LocalBackend(cancel_grace_seconds=1), make, idempotent_submit=False, wait_seconds=1)


def _databricks(tmp_path, connection, stack):
    from shared.compute.databricks import DatabricksBackend

    def behave(run: dict) -> dict:
        params = run["task"]["notebook_task"]["base_parameters"]
        write_blob(connection, params["output_out"], "result.txt", read_blobs(connection, params["input_data"]).upper())
        return {"notebook_result": "{}"}

    server = stack(ContractServer(DatabricksService(SECRET, behaviour=behave)))

    def make(mode: str) -> StepJobRequest:
        if mode == "fail":
            server.service.script_next("RUNNING", ("TERMINATED", "FAILED", "failing on purpose"))
        if mode == "long":
            server.service.script_next(*["RUNNING"] * 200)
        return _request(f"run{uuid.uuid4().hex[:8]}", script="", source_dir="", step_type="databricks",
                        compute_name="dbx", compute_settings={"host": server.url, "token_setting": SECRET_SETTING,
                                                              "existing_cluster_id": "c-1"},
                        step_settings={"notebook_path": "/Shared/upper"})

    return Harness("databricks", DatabricksBackend(), make, server=server)


def _aml(tmp_path, connection, stack):
    from shared.compute.aml import AmlBackend

    runtime = AmlRuntime(connection, {"workspaceblobstore": os.environ["MLPIPE_BLOBSTORE_CONTAINER"]})
    service = AmlService(SECRET, behaviour=runtime)
    runtime.codes = service.codes
    server = stack(ContractServer(service))
    source = _script_dir(tmp_path, "step.py", SCRIPT)

    def make(mode: str) -> StepJobRequest:
        if mode == "long":
            service.script_next(*["Running"] * 200)
        return _request(f"run{uuid.uuid4().hex[:8]}", script=str(source / "step.py"), source_dir=str(source),
                        arguments=["--data", "{inputs.data}", "--out", "{outputs.out}", "--mode", mode],
                        compute_name="cpu", compute_settings={
                            "endpoint": server.url, "subscription_id": "s", "resource_group": "rg",
                            "workspace_name": "ws", "cluster": "cpu-cluster", "token_setting": SECRET_SETTING,
                            "environment": "azureml:team-env:3"})

    return Harness("aml", AmlBackend(), make, server=server)


def _adla(tmp_path, connection, stack):
    from shared.compute.adla import AdlaBackend

    server = stack(ContractServer(AdlaService(SECRET, behaviour=usql_copy_behaviour(read_blobs, write_blob,
                                                                                       connection))))
    source = _script_dir(tmp_path, "q.usql", '@r = EXTRACT l string FROM "{inputs.data}" USING Extractors.Text();\n'
                                             'OUTPUT @r TO "{outputs.out}/result.txt" USING Outputters.Text();\n')

    def make(mode: str) -> StepJobRequest:
        if mode == "fail":
            server.service.script_next("Compiling", ("Ended", "Failed"))
        if mode == "long":
            server.service.script_next(*["Running"] * 200)
        return _request(f"run{uuid.uuid4().hex[:8]}", script=str(source / "q.usql"), source_dir=str(source),
                        step_type="adla", compute_name="lake",
                        compute_settings={"account": "lake", "endpoint": server.url, "token_setting": SECRET_SETTING})

    return Harness("adla", AdlaBackend(), make, server=server)


def _transfer(tmp_path, connection):
    from shared.compute.transfer import TransferBackend

    def make(mode: str) -> StepJobRequest:
        return _request(f"run{uuid.uuid4().hex[:8]}", script="", source_dir="", step_type="data_transfer",
                        inputs={"data": DataRef(datastore="sidecar", path="contract/in.txt")},
                        outputs={"out": f"runs/run{uuid.uuid4().hex[:8]}/step/out"})

    def break_job(request: StepJobRequest, handle: JobHandle) -> None:
        # A copy that cannot complete: its destination vanishes (as if the copy was never accepted).
        default_datastore().container_client().delete_blob(request.outputs["out"] + "/in.txt")

    return Harness("data_transfer", TransferBackend(), make, break_job=break_job,
                   cancel_reaches_running_job=False, wait_seconds=1)


@pytest.fixture(params=BACKENDS)
def harness(request, storage_env, monkeypatch, tmp_path):
    monkeypatch.setenv(SECRET_SETTING, SECRET)
    monkeypatch.setenv("MLPIPE_COMPUTE_RETRY_BASE_SECONDS", "0.01")
    monkeypatch.setenv("MLPIPE_DATASTORES", json.dumps({"sidecar": {"container": "side" + os.urandom(3).hex()}}))
    reset_settings()
    forget_credentials()
    default_datastore().upload_bytes("contract/in.txt", b"contract data\n")
    get_datastore("sidecar").upload_bytes("contract/in.txt", b"contract data\n")
    servers: list[ContractServer] = []

    def stack(server: ContractServer) -> ContractServer:
        servers.append(server.__enter__())
        return server

    connection = storage_env.connection_string
    builders = {"local": lambda: _local(tmp_path, connection),
                "databricks": lambda: _databricks(tmp_path, connection, stack),
                "aml": lambda: _aml(tmp_path, connection, stack),
                "adla": lambda: _adla(tmp_path, connection, stack),
                "data_transfer": lambda: _transfer(tmp_path, connection)}
    yield builders[request.param]()
    for server in servers:
        server.__exit__(None, None, None)
    _assert_no_secret_stored(request.param, servers)
    reset_settings()


def _assert_no_secret_stored(backend: str, servers: list[ContractServer]) -> None:
    """Every blob the scenario left in the test's containers (step logs, outputs, code, manifests)
    and every request a contract server recorded outside its Authorization header is free of the
    credential."""
    for store in (default_datastore(), get_datastore("sidecar")):
        client = store.container_client()
        for blob in client.list_blobs(include=["metadata"]):
            content = client.download_blob(blob.name).readall()
            assert SECRET.encode() not in content + json.dumps(blob.metadata or {}).encode(), (backend, blob.name)
    from shared.runs import RunStore

    system = RunStore()._container()  # noqa: SLF001 - the system container: run records, step logs
    for blob in system.list_blobs():
        assert SECRET.encode() not in system.download_blob(blob.name).readall(), (backend, blob.name)
    for server in servers:
        for recorded in server.requests:
            assert SECRET not in recorded.path + json.dumps(recorded.query), (backend, recorded.path)
            assert SECRET.encode() not in recorded.raw, (backend, recorded.path)


def _until_terminal(harness: Harness, handle: JobHandle, limit: float = 60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status = harness.backend.poll(JobHandle.from_dict(json.loads(json.dumps(handle.to_dict()))),
                                      harness.wait_seconds)
        if status.terminal:
            return status
    raise AssertionError(f"{harness.name}: job did not end")


def test_success_commits_what_the_job_wrote(harness):
    request = harness.make("ok")
    handle = harness.backend.submit(request)
    assert SECRET not in json.dumps(handle.to_dict())
    status = _until_terminal(harness, handle)
    assert status.state == "Completed", (harness.name, status)
    prefix = request.outputs["out"]
    store = default_datastore()
    manifest = store.read_manifest(prefix)
    assert manifest is not None and manifest["files"], harness.name
    written = b"".join(store.read_bytes(f"{prefix}/{f['name']}") for f in manifest["files"])
    assert written.lower() == b"contract data\n", harness.name
    assert isinstance(harness.backend.fetch_logs(handle), str)


def test_failure_has_a_message_and_no_output(harness):
    request = harness.make("fail")
    handle = harness.backend.submit(request)
    harness.break_job(request, handle)
    status = _until_terminal(harness, handle)
    assert status.state == "Failed", (harness.name, status)
    assert status.error
    assert SECRET not in status.error
    assert not default_datastore().is_committed(request.outputs["out"])


def test_cancel_is_idempotent(harness):
    request = harness.make("long")
    handle = harness.backend.submit(request)
    harness.backend.cancel(handle)
    harness.backend.cancel(handle)
    status = _until_terminal(harness, handle)
    expected = {"Canceled"} if harness.cancel_reaches_running_job else {"Canceled", "Completed"}
    assert status.state in expected, (harness.name, status)
    harness.backend.cancel(handle)  # ended: still no error


def test_submitting_the_same_request_twice_is_one_job(harness):
    if not harness.idempotent_submit:
        pytest.skip(f"{harness.name}: a re-submit restarts the local process by design (its handle is process-bound)")
    request = harness.make("ok")
    first, second = harness.backend.submit(request), harness.backend.submit(request)
    assert first.id == second.id
    if harness.server is not None:
        jobs = getattr(harness.server.service, "runs", None) or getattr(harness.server.service, "jobs", None)
        assert len(jobs) == 1
    assert _until_terminal(harness, second).state == "Completed"


def test_a_permanent_error_while_polling_fails_the_job_with_the_message(harness):
    if harness.server is None:
        pytest.skip(f"{harness.name}: no remote service to refuse")
    request = harness.make("long")
    handle = harness.backend.submit(request)
    harness.server.service.token = "revoked"  # the credential stops working while the job runs
    status = harness.backend.poll(handle)
    assert status.state == "Failed" and ("401" in status.error or "UNAUTHENTICATED" in status.error), status
    assert SECRET not in status.error
    harness.server.service.token = SECRET
    harness.backend.cancel(handle)


def test_a_running_steps_record_does_not_hide_its_live_log(harness):
    """A step record with no stored log yet (the step runs): the log comes from the job, as without a record."""
    request = harness.make("long")
    handle = harness.backend.submit(request)
    try:
        without_record = harness.backend.fetch_logs(handle)
        RunStore().put_step(request.run_id, StepRecord(Name=request.step_name, Status="Running",
                                                       JobHandle=handle.to_dict()))
        assert harness.backend.fetch_logs(handle).startswith(without_record), harness.name  # a live log only grows
    finally:
        harness.backend.cancel(handle)
