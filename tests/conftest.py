"""Shared fixtures: a real Azurite per test session (no storage mocks)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from devhost.azurite import free_port, start_azurite  # noqa: E402


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """A private Azurite on free ports for the whole test session."""
    process = start_azurite(tmp_path_factory.mktemp("azurite"), blob_port=free_port(), queue_port=free_port())
    yield process
    process.stop()


@pytest.fixture
def storage_env(azurite, monkeypatch, tmp_path):
    """Point mlpipe's settings at the test Azurite with fresh container names per test."""
    from tests.settings_env import use_settings

    suffix = os.urandom(4).hex()
    for _ in use_settings({"AzureWebJobsStorage": azurite.connection_string,
                           "MLPIPE_BLOBSTORE_CONTAINER": f"ws{suffix}", "MLPIPE_SYSTEM_CONTAINER": f"sys{suffix}",
                           "MLPIPE_DATA_DIR": str(tmp_path / "data")}, monkeypatch):
        yield azurite
