"""Datastore schedules on devhost + Azurite (API.md §4 Blob upload): a burst of uploads starts one run,
the changed path reaches `dataPathParameterName`, unwatched paths start nothing, and a host killed in
the middle of a debounce window still starts exactly one run after its restart."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from itest_triggers import publish_quick_pipeline, runs_of

from devhost.testing import start_host
from shared.client import PipelineClient

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
DEBOUNCE = 3


def make_env(azurite, data_dir: Path) -> dict:
    suffix = os.urandom(4).hex()
    return {"AzureWebJobsStorage": azurite.connection_string, "MLPIPE_BLOBSTORE_CONTAINER": f"ws{suffix}",
            "MLPIPE_SYSTEM_CONTAINER": f"sys{suffix}", "MLPIPE_DATA_DIR": str(data_dir),
            "MLPIPE_FUNCTION_KEY": "blob-test-key", "MLPIPE_BLOB_SCAN_SECONDS": "0.5",
            "MLPIPE_SUBMISSIONS_QUEUE": f"submissions-{suffix}"}  # hosts of other tests share the Azurite


@pytest.fixture(scope="module")
def host_env(azurite, tmp_path_factory):
    return make_env(azurite, tmp_path_factory.mktemp("blobhost"))


@pytest.fixture
def client(host) -> PipelineClient:
    return PipelineClient(host.url, host.key)


def container_of(env):
    service = BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    container = service.get_container_client(env["MLPIPE_BLOBSTORE_CONTAINER"])
    try:
        container.create_container()
    except Exception:  # noqa: BLE001 - exists
        pass
    return container


def publish_data_pipeline(client, folder: Path) -> dict:
    return publish_quick_pipeline(
        client, folder, name="retrain", extra_params={"data_path": "none"},
        datasets={"raw": {"datastore": "workspaceblobstore", "path": "{parameters.data_path}"}},
        inputs={"raw": "datasets.raw"})


def watch(client, pipeline, path: str, experiment: str, debounce: float = DEBOUNCE) -> str:
    name = f"watch-{os.urandom(3).hex()}"
    client.request("POST", "/api/schedules", body={
        "name": name, "pipelineId": pipeline["Id"], "experimentName": experiment,
        "datastore": {"name": "workspaceblobstore", "pathOnDatastore": path, "dataPathParameterName": "data_path",
                      "debounceSeconds": debounce}})
    return name


def wait_runs(client, experiment, count, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = runs_of(client, experiment)
        if len(runs) >= count:
            return runs
        time.sleep(0.2)
    return runs_of(client, experiment)


def wait_finished(client, run_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.request("GET", f"/api/runs/{run_id}")
        if run["Status"] in ("Finished", "Failed", "Canceled"):
            return run
        time.sleep(0.3)
    return client.request("GET", f"/api/runs/{run_id}")


def test_burst_of_100_uploads_starts_one_run(client, host_env, tmp_path):
    pipeline = publish_data_pipeline(client, tmp_path / "p")
    experiment = f"burst-{os.urandom(3).hex()}"
    name = watch(client, pipeline, "iris/incoming", experiment)
    container = container_of(host_env)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: container.upload_blob(f"iris/incoming/2026/part-{i:03d}.csv", b"x,y\n1,2\n"),
                      range(100)))
    runs = wait_runs(client, experiment, 1, timeout=DEBOUNCE + 20)
    assert len(runs) == 1
    time.sleep(DEBOUNCE + 2)
    runs = runs_of(client, experiment)
    assert len(runs) == 1
    run = wait_finished(client, runs[0]["Id"])
    assert run["Status"] == "Finished", run
    assert run["ParameterAssignments"]["data_path"] == "iris/incoming/2026"  # the folder holding them all
    assert run["RunSource"] == "DatastoreSchedule"
    assert client.request("GET", f"/api/schedules/{name}")["LastRunId"] == run["Id"]


def test_one_upload_passes_its_path_and_unwatched_paths_do_nothing(client, host_env, tmp_path):
    pipeline = publish_data_pipeline(client, tmp_path / "p")
    experiment = f"single-{os.urandom(3).hex()}"
    watch(client, pipeline, "sales/incoming", experiment, debounce=1)
    container = container_of(host_env)
    container.upload_blob("sales/elsewhere/a.csv", b"1")
    container.upload_blob("sales/incoming-not/a.csv", b"1")
    container.upload_blob("sales/incoming/jan.csv", b"1")
    runs = wait_runs(client, experiment, 1, timeout=15)
    assert len(runs) == 1
    assert runs[0]["ParameterAssignments"]["data_path"] == "sales/incoming/jan.csv"
    # a second, later upload is a new window: a second run
    time.sleep(1.5)
    container.upload_blob("sales/incoming/feb.csv", b"2")
    runs = wait_runs(client, experiment, 2, timeout=15)
    assert len(runs) == 2
    assert runs[0]["ParameterAssignments"]["data_path"] == "sales/incoming/feb.csv"


def test_disabled_schedule_starts_nothing(client, host_env, tmp_path):
    pipeline = publish_data_pipeline(client, tmp_path / "p")
    experiment = f"off-{os.urandom(3).hex()}"
    name = watch(client, pipeline, "off/incoming", experiment, debounce=1)
    client.request("POST", f"/api/schedules/{name}/disable")
    container_of(host_env).upload_blob("off/incoming/a.csv", b"1")
    time.sleep(5)
    assert runs_of(client, experiment) == []


def test_restart_in_the_middle_of_a_debounce_window_starts_exactly_one_run(azurite, tmp_path):
    env = make_env(azurite, tmp_path / "data")
    debounce = 6
    host = start_host(REPO_ROOT, env=env, data_dir=tmp_path / "data")
    try:
        client = PipelineClient(host.url, host.key)
        pipeline = publish_data_pipeline(client, tmp_path / "p")
        experiment = f"restart-{os.urandom(3).hex()}"
        watch(client, pipeline, "late/incoming", experiment, debounce=debounce)
        container = container_of(env)
        for i in range(5):
            container.upload_blob(f"late/incoming/{i}.csv", b"1")
        time.sleep(2.5)  # the trigger has seen them; the window is open
        assert runs_of(client, experiment) == []
    finally:
        host.kill()
    container.upload_blob("late/incoming/while-down.csv", b"1")  # seen after the restart, same window
    with start_host(REPO_ROOT, env=env, data_dir=tmp_path / "data") as host:
        client = PipelineClient(host.url, host.key)
        runs = wait_runs(client, experiment, 1, timeout=debounce + 20)
        assert len(runs) == 1
        time.sleep(debounce + 2)
        runs = runs_of(client, experiment)
        assert len(runs) == 1
        run = wait_finished(client, runs[0]["Id"])
        assert run["Status"] == "Finished"
        assert run["ParameterAssignments"]["data_path"] == "late/incoming"
