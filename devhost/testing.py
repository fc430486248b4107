"""Run the devhost as a subprocess, for integration tests and benchmarks.

    with start_host(app_root, env={"AzureWebJobsStorage": conn}, data_dir=tmp / "data") as host:
        requests.get(f"{host.url}/api/x", headers={"x-functions-key": host.key})
        host.kill()       # SIGKILL the whole process group (crash test)
    host = start_host(app_root, env, data_dir=same_dir)  # restart on the same task hub

The host runs in its own process group; output goes to a log file (`.output()`), so a chatty host
can never block on a full pipe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from shared.local_host import read_log, spawn_devhost, wait_until_ready

from .azurite import free_port
from .host import READY_MESSAGE

REPO_ROOT = Path(__file__).resolve().parent.parent


class HostStartError(RuntimeError):
    pass


class HostProcess:
    def __init__(self, process: subprocess.Popen, port: int, key: str, data_dir: Path, log_path: Path):
        self.process = process
        self.port = port
        self.key = key
        self.data_dir = data_dir
        self.log_path = log_path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-functions-key": self.key}

    def output(self) -> str:
        return read_log(self.log_path)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the host and everything it started (simulates a crash)."""
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (graceful stop); SIGKILL if it does not exit within `timeout`. Returns the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def __enter__(self) -> "HostProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_host(app_root: Path | str, env: dict[str, str] | None = None, port: int | None = None,
               data_dir: Path | str | None = None, *, function_key: str | None = None,
               timeout: float = 30.0, extra_args: list[str] | None = None) -> HostProcess:
    """Launch `python -m devhost` for `app_root` and wait for its ready line.

    `env` is added on top of the current environment. The function key is `function_key`, else
    env's MLPIPE_FUNCTION_KEY, else a random one; pass env={"MLPIPE_FUNCTION_KEY": ""} to let the
    host generate its own (read back from `<data_dir>/function-key`). `data_dir` defaults to a new
    temporary folder.
    """
    app_root = Path(app_root).resolve()
    port = port or free_port()
    data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="devhost-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, **(env or {})}
    host_generates_key = function_key is None and (env or {}).get("MLPIPE_FUNCTION_KEY") == ""
    key = "" if host_generates_key else (function_key or full_env.get("MLPIPE_FUNCTION_KEY") or os.urandom(16).hex())
    if host_generates_key:
        full_env.pop("MLPIPE_FUNCTION_KEY", None)
    else:
        full_env["MLPIPE_FUNCTION_KEY"] = key
    full_env["MLPIPE_DATA_DIR"] = str(data_dir)
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), full_env.get("PYTHONPATH")]))
    log_path = data_dir / f"host-{port}-{int(time.time() * 1000)}.log"
    process = spawn_devhost(app_root, port, full_env, log_path, extra_args or ())
    host = HostProcess(process, port, key, data_dir, log_path)
    if wait_until_ready(process, log_path, timeout, READY_MESSAGE.format(port=port)):
        if host_generates_key:
            host.key = (data_dir / "function-key").read_text(encoding="utf-8").strip()
        return host
    if not host.alive():
        raise HostStartError(f"devhost exited with code {process.returncode} before it was ready:\n"
                             f"{host.output()}")
    host.kill()
    raise HostStartError(f"devhost was not ready within {timeout:.0f}s:\n{host.output()}")
