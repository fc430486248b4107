"""data_transfer: server-side copies across containers and storage accounts, for real on Azurite."""

from __future__ import annotations

import json
import os
import uuid

import pytest

from shared.compute import DataRef, StepJobRequest, get_backend
from shared.compute.transfer import TransferBackend
from shared.datastore import default_datastore, get_datastore
from shared.runs import RunStore
from shared.settings import reset_settings
from tests.contract.azurite_accounts import SECOND_KEY, two_account_azurite

ARCHIVE_SETTING = "MLPIPE_TEST_ARCHIVE_CONNECTION"


@pytest.fixture(scope="module")
def accounts(tmp_path_factory):
    with two_account_azurite(tmp_path_factory.mktemp("azurite2")) as started:
        yield started


@pytest.fixture
def transfer_env(accounts, monkeypatch, tmp_path):
    _process, first, second = accounts
    suffix = os.urandom(4).hex()
    monkeypatch.setenv("AzureWebJobsStorage", first)
    monkeypatch.setenv("MLPIPE_BLOBSTORE_CONTAINER", f"ws{suffix}")
    monkeypatch.setenv("MLPIPE_SYSTEM_CONTAINER", f"sys{suffix}")
    monkeypatch.setenv("MLPIPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(ARCHIVE_SETTING, second)
    monkeypatch.setenv("MLPIPE_DATASTORES", json.dumps({
        "archive": {"container": f"arch{suffix}", "connection": ARCHIVE_SETTING},
        "sidecar": {"container": f"side{suffix}"}}))
    reset_settings()
    yield
    reset_settings()


def transfer_request(source: DataRef, **fields) -> StepJobRequest:
    run_id = fields.pop("run_id", f"run{uuid.uuid4().hex[:8]}")
    return StepJobRequest(run_id=run_id, step_name="copy", script="", source_dir="", step_type="data_transfer",
                          inputs={"src": source}, outputs={"dst": f"runs/{run_id}/copy/dst"}, **fields)


def wait_done(backend, handle):
    for _ in range(50):
        status = backend.poll(handle, wait_seconds=1)
        if status.state != "Running":
            return status
    raise AssertionError("copy did not end")


def test_folder_copied_across_storage_accounts_and_committed(transfer_env):
    archive = get_datastore("archive")
    assert archive.account == "archive1"
    archive.upload_bytes("exports/2026/a.csv", b"a,b\n1,2\n")
    archive.upload_bytes("exports/2026/sub/b.csv", b"c\n3\n")
    backend = get_backend("local")  # data_transfer steps run on the built-in compute
    request = transfer_request(DataRef(datastore="archive", path="exports/2026"))
    handle = backend.submit(request)
    assert handle.backend == "data_transfer"
    status = wait_done(backend, handle)
    assert status.state == "Completed", status
    assert status.metrics == {"files_copied": 2, "bytes_copied": 12}
    store = default_datastore()
    prefix = request.outputs["dst"]
    assert sorted(f["name"] for f in store.read_manifest(prefix)["files"]) == ["a.csv", "sub/b.csv"]
    assert store.read_bytes(prefix + "/sub/b.csv") == b"c\n3\n"
    log = RunStore().get_log(request.run_id, "copy")
    assert "archive/exports/2026" in log and "completed" in log
    assert "sig=" not in log and SECOND_KEY not in log
    assert "sig=" not in str(handle.to_dict())


def test_single_blob_and_pipeline_data_between_containers(transfer_env):
    side = get_datastore("sidecar")
    side.upload_bytes("in/model.bin", b"\x00\x01weights")
    backend = TransferBackend()
    first = transfer_request(DataRef(datastore="sidecar", path="in/model.bin"))
    assert wait_done(backend, backend.submit(first)).state == "Completed"
    store = default_datastore()
    assert store.read_bytes(first.outputs["dst"] + "/model.bin") == b"\x00\x01weights"
    # the copy is now PipelineData: a second transfer reads it through its manifest only
    store.upload_bytes(first.outputs["dst"] + "/stray.tmp", b"not committed")
    second = transfer_request(DataRef(path=first.outputs["dst"], is_pipeline_data=True))
    assert wait_done(backend, backend.submit(second)).state == "Completed"
    assert [f["name"] for f in store.read_manifest(second.outputs["dst"])["files"]] == ["model.bin"]


def test_submit_again_is_harmless_and_missing_source_is_not_found(transfer_env):
    get_datastore("sidecar").upload_bytes("x/one.txt", b"1")
    backend = TransferBackend()
    request = transfer_request(DataRef(datastore="sidecar", path="x"))
    first, again = backend.submit(request), backend.submit(request)
    assert first.id == again.id
    assert wait_done(backend, again).state == "Completed"
    backend.cancel(again)  # ended: a no-op
    missing = backend.poll(backend.submit(transfer_request(DataRef(datastore="sidecar", path="nothing/here"))))
    assert missing.state == "Failed" and "sidecar/nothing/here" in missing.error


def test_a_failed_copy_fails_the_step(transfer_env):
    get_datastore("sidecar").upload_bytes("y/one.txt", b"1")
    backend = TransferBackend()
    request = transfer_request(DataRef(datastore="sidecar", path="y"))
    handle = backend.submit(request)
    default_datastore().container_client().delete_blob(request.outputs["dst"] + "/one.txt")
    status = backend.poll(handle, wait_seconds=1)
    assert status.state == "Failed" and "one.txt" in status.error
    assert not default_datastore().is_committed(request.outputs["dst"])


def test_destination_setting_publishes_into_another_account(transfer_env):
    default_datastore().upload_bytes("models/v1/model.bin", b"weights")
    default_datastore().upload_bytes("models/v1/card.md", b"# model")
    backend = TransferBackend()
    request = transfer_request(DataRef(path="models/v1"),
                               step_settings={"destination": {"datastore": "archive", "path": "published/latest"}})
    handle = backend.submit(request)
    status = wait_done(backend, handle)
    assert status.state == "Completed", status
    assert status.metrics["files_copied"] == 2  # the step's own output
    archive = get_datastore("archive")
    assert archive.read_bytes("published/latest/model.bin") == b"weights"
    assert archive.read_bytes("published/latest/card.md") == b"# model"
    assert sorted(f["name"] for f in default_datastore().read_manifest(request.outputs["dst"])["files"]) == \
        ["card.md", "model.bin"]
    assert "archive/published/latest" in RunStore().get_log(request.run_id, "copy")
    bad = backend.poll(backend.submit(transfer_request(DataRef(path="models/v1"),
                                                       step_settings={"destination": {"path": "x"}})))
    assert bad.state == "Failed" and "settings.destination: needs datastore and path" in bad.error
