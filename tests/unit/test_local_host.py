"""shared.local_host: the one launcher of `python -m devhost`, as `mlpipe run` uses it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devhost.azurite import free_port
from shared import local_host
from shared.client import HostUnreachable, PipelineClient

DUMMY_STORAGE = "DefaultEndpointsProtocol=http;AccountName=x;AccountKey=eA=="


def test_a_remote_host_that_does_not_answer_is_not_started():
    client = PipelineClient("http://mlpipe.invalid:7071", None, 2)
    with pytest.raises(HostUnreachable), local_host.ensure_local_host(client, quiet=True):
        pass


def test_a_local_host_that_exits_before_ready_names_its_log(tmp_path, monkeypatch):
    app = tmp_path / "app"
    app.mkdir()
    (app / "function_app.py").write_text("raise RuntimeError('broken app on purpose')\n")
    monkeypatch.setattr(local_host, "APP_ROOT", app)
    monkeypatch.setenv("MLPIPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AzureWebJobsStorage", DUMMY_STORAGE)
    client = PipelineClient(f"http://127.0.0.1:{free_port()}", None, 2)
    with pytest.raises(HostUnreachable) as info, local_host.ensure_local_host(client, quiet=True, timeout=30):
        pass
    log_path = tmp_path / "data" / "host.log"
    assert "exited with code" in str(info.value) and str(log_path) in str(info.value)
    assert "broken app on purpose" in local_host.read_log(log_path)


def test_wait_until_ready_sees_the_ready_line_and_an_early_exit(tmp_path):
    log_path = tmp_path / "host.log"
    with open(log_path, "wb") as log:
        script = f"print({local_host.READY_LINE!r} + 'x', flush=True); import time; time.sleep(30)"
        ready = subprocess.Popen([sys.executable, "-c", script], stdout=log)
    try:
        assert local_host.wait_until_ready(ready, log_path, timeout=20)
    finally:
        ready.kill()
        ready.wait()
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert not local_host.wait_until_ready(exited, tmp_path / "never-written.log", timeout=20)
    assert exited.returncode == 3
    assert local_host.read_log(tmp_path / "never-written.log") == ""
