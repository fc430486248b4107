"""devhost's storage-queue and blob triggers behave as the Functions host's (tested on Azurite with a tiny app)."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from itest_triggers import drain, queue

from devhost.testing import start_host

pytestmark = pytest.mark.integration

APP = Path(__file__).resolve().parent / "trigger_app"


@pytest.fixture
def app_env(azurite, tmp_path):
    suffix = os.urandom(3).hex()
    return {"AzureWebJobsStorage": azurite.connection_string, "WORK_QUEUE": f"work{suffix}",
            "WATCHED_CONTAINER": f"watched{suffix}", "TRIGGER_LOG": str(tmp_path / "log.jsonl"),
            "MLPIPE_BLOB_SCAN_SECONDS": "0.3"}


def records(env, kind: str) -> list[dict]:
    path = Path(env["TRIGGER_LOG"])
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == kind]


def wait_until(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


def test_queue_message_is_decoded_retried_and_poisoned_after_five(app_env, azurite, tmp_path):
    conn = azurite.connection_string
    with start_host(APP, env=app_env, data_dir=tmp_path / "data"):
        work = queue(conn, app_env["WORK_QUEUE"])
        work.send_message(base64.b64encode(b"hello").decode())
        work.send_message("please fail")  # not base64: passed as is
        assert wait_until(lambda: len(records(app_env, "queue")) >= 6)
        poisoned = drain(conn, app_env["WORK_QUEUE"] + "-poison", wait=10, expect=1)
    queue_records = records(app_env, "queue")
    assert [r["body"] for r in queue_records if r["body"] == "hello"] == ["hello"]
    failing = [r for r in queue_records if r["body"] == "please fail"]
    assert [r["dequeue_count"] for r in failing] == [1, 2, 3, 4, 5]
    assert poisoned == ["please fail"]


def test_blob_versions_trigger_once_across_restarts(app_env, azurite, tmp_path):
    conn = azurite.connection_string
    service = BlobServiceClient.from_connection_string(conn)
    container = service.get_container_client(app_env["WATCHED_CONTAINER"])
    container.create_container()
    container.upload_blob("in/a.csv", b"one")
    container.upload_blob("elsewhere/b.csv", b"not watched")
    with start_host(APP, env=app_env, data_dir=tmp_path / "data") as host:
        assert wait_until(lambda: records(app_env, "blob"))
        container.upload_blob("in/c.csv", b"two")
        assert wait_until(lambda: len(records(app_env, "blob")) >= 2)
        time.sleep(1.0)
        host.kill()  # no graceful stop: receipts are all that is left
    with start_host(APP, env=app_env, data_dir=tmp_path / "data"):
        time.sleep(1.5)
        assert len(records(app_env, "blob")) == 2  # nothing again after the restart
        container.upload_blob("in/a.csv", b"one, changed", overwrite=True)  # a new version triggers
        assert wait_until(lambda: len(records(app_env, "blob")) >= 3)
        time.sleep(1.0)
    names = [(r["name"], r["data"]) for r in records(app_env, "blob")]
    assert sorted(names) == sorted([(f"{app_env['WATCHED_CONTAINER']}/in/a.csv", "one"),
                                    (f"{app_env['WATCHED_CONTAINER']}/in/c.csv", "two"),
                                    (f"{app_env['WATCHED_CONTAINER']}/in/a.csv", "one, changed")])
