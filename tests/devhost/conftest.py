"""Fixtures for the devhost suite: one shared sample-app host per session, plus helpers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from devhost.testing import HostProcess, start_host

SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"
TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}
MAX_REQUEST_BYTES = 64 * 1024


def sample_env(azurite, out_dir: Path) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "SAMPLE_OUT_DIR": str(out_dir),
        "SAMPLE_TIMER_SCHEDULE": "*/1 * * * * *",
        "MLPIPE_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
    }


@pytest.fixture(scope="session")
def sample_out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sample-out")


@pytest.fixture(scope="session")
def host(azurite, tmp_path_factory, sample_out) -> HostProcess:
    with start_host(SAMPLE_APP, sample_env(azurite, sample_out), data_dir=tmp_path_factory.mktemp("host-data")) as h:
        yield h


class Api:
    """Tiny client for the sample app's HTTP functions."""

    def __init__(self, host: HostProcess):
        self.host = host
        self.session = requests.Session()
        self.session.headers.update(host.headers)

    def start(self, name: str, payload=None, instance_id: str | None = None) -> requests.Response:
        path = f"/api/start/{name}" + (f"/{instance_id}" if instance_id else "")
        return self.session.post(self.host.url + path, json=payload, timeout=30)

    def status(self, instance_id: str, history: bool = False) -> dict:
        r = self.session.get(f"{self.host.url}/api/status/{instance_id}", params={"history": "1"} if history else {},
                             timeout=30)
        return r.json()

    def wait(self, instance_id: str, timeout: float = 20.0, history: bool = False) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(instance_id, history=history)
            if status.get("runtimeStatus") in TERMINAL:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance_id} still {status} after {timeout}s:\n{self.host.output()[-3000:]}")
            time.sleep(0.05)

    def run(self, name: str, payload=None, instance_id: str | None = None, timeout: float = 20.0) -> dict:
        r = self.start(name, payload, instance_id)
        assert r.status_code == 202, r.text
        return self.wait(r.json()["id"], timeout)


@pytest.fixture(scope="session")
def max_request_bytes() -> int:
    return MAX_REQUEST_BYTES


@pytest.fixture
def api(host) -> Api:
    return Api(host)


@pytest.fixture
def private_host(azurite, tmp_path):
    """Start (and restart) a private sample-app host: `launch(data_dir) -> (HostProcess, Api)`; `launch.out_dir`."""
    started: list[HostProcess] = []
    out_dir = tmp_path / "out"

    def launch(data_dir: Path, extra_env: dict | None = None):
        env = {**sample_env(azurite, out_dir), **(extra_env or {})}
        h = start_host(SAMPLE_APP, env, data_dir=data_dir)
        started.append(h)
        return h, Api(h)

    launch.out_dir = out_dir
    yield launch
    for h in started:
        h.kill()
