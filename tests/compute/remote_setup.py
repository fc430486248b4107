"""Set-up shared by the remote backends' tests (tests/compute/test_*_remote.py)."""

from __future__ import annotations

from shared.credentials import forget_credentials
from shared.settings import reset_settings


def use_remote_secret(monkeypatch, setting: str, secret: str) -> None:
    """The backend's secret under `setting`, compute retries made fast, settings and cached
    credentials read afresh."""
    monkeypatch.setenv(setting, secret)
    monkeypatch.setenv("MLPIPE_COMPUTE_RETRY_BASE_SECONDS", "0.01")
    reset_settings()
    forget_credentials()


def until_done(backend, handle, limit: int = 30):
    """Poll until the job is no longer Running (each poll of a contract server moves it on)."""
    for _ in range(limit):
        status = backend.poll(handle)
        if status.state != "Running":
            return status
    raise AssertionError("job did not end")
