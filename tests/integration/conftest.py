"""A real local host (devhost) running the repo's unmodified function_app.py on the test Azurite."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest

from devhost.testing import start_host
from shared.client import PipelineClient
from tests.settings_env import use_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # itest_pipelines (importlib import mode)
TEST_KEY = "test-key-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def host_env(azurite, tmp_path_factory):
    suffix = os.urandom(4).hex()
    data_dir = tmp_path_factory.mktemp("hostdata")
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "MLPIPE_BLOBSTORE_CONTAINER": f"ws{suffix}",
        "MLPIPE_SYSTEM_CONTAINER": f"sys{suffix}",
        "MLPIPE_DATA_DIR": str(data_dir),
        "MLPIPE_FUNCTION_KEY": TEST_KEY,
    }


@pytest.fixture(scope="module")
def host(host_env):
    with start_host(REPO_ROOT, env=host_env, data_dir=Path(host_env["MLPIPE_DATA_DIR"])) as process:
        yield process


@pytest.fixture
def client(host) -> PipelineClient:
    return PipelineClient(host.url, TEST_KEY)


@pytest.fixture
def test_storage(host_env, monkeypatch):
    """This test process talks to the same containers as the host (to upload data, inspect blobs)."""
    yield from use_settings(host_env, monkeypatch)
