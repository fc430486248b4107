"""Find the local host, or start one for the length of a CLI command (API.md section 5).

`mlpipe run` submits to the host at --host/MLPIPE_HOST; when that is the default local address
and nothing answers there, it starts `python -m devhost` for the duration of the command.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Iterator

from shared.client import HostUnreachable, PipelineClient

APP_ROOT = Path(__file__).resolve().parent.parent
READY_LINE = "mlpipe host ready on "
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def local_data_dir() -> Path:
    return Path(os.environ.get("MLPIPE_DATA_DIR") or APP_ROOT / ".mlpipe")


def read_local_key() -> str | None:
    """The local host's generated function key, if it made one (never printed)."""
    path = local_data_dir() / "function-key"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _is_local(endpoint: str) -> tuple[bool, int]:
    parts = urllib.parse.urlsplit(endpoint)
    return parts.hostname in LOCAL_HOSTS, parts.port or 80


def _wait_for_ready(process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HostUnreachable(f"the local host exited with code {process.returncode}; see {log_path}")
        if READY_LINE in log_path.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(0.1)
    raise HostUnreachable(f"the local host did not become ready within {timeout:.0f}s; see {log_path}")


@contextlib.contextmanager
def ensure_local_host(client: PipelineClient, *, quiet: bool = False, timeout: float = 90.0) -> Iterator[PipelineClient]:
    """Yield a client of a running host, starting a local one (and stopping it after) if needed."""
    try:
        client.health()
        yield client
        return
    except HostUnreachable:
        is_local, port = _is_local(client.endpoint)
        if not is_local:
            raise
    data_dir = local_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "host.log"
    env = {**os.environ, "MLPIPE_DATA_DIR": str(data_dir)}
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--port", str(port), "--app-root", str(APP_ROOT)],
            cwd=APP_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    if not quiet:
        print(f"starting a local mlpipe host on port {port} (log: {log_path})", flush=True)
    try:
        _wait_for_ready(process, log_path, timeout)
        key = client._key or os.environ.get("MLPIPE_FUNCTION_KEY") or read_local_key()
        yield PipelineClient(client.endpoint, key, client.timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
