"""Find the local host, or start one for the length of a CLI command (API.md section 5).

`mlpipe run` submits to the host at --host/MLPIPE_HOST; when that is the default local address
and nothing answers there, it starts `python -m devhost` for the duration of the command.
`spawn_devhost` and `wait_until_ready` are the one launcher of that host; devhost.testing's
`start_host` (tests, benchmarks) uses them too (shared/ may not import devhost, so they live here).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

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


def read_log(log_path: Path) -> str:
    """What a host started by `spawn_devhost` has written so far ("" before it made its log)."""
    try:
        return log_path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def spawn_devhost(app_root: Path | str, port: int, env: Mapping[str, str], log_path: Path,
                  extra_args: Sequence[str] = ()) -> subprocess.Popen:
    """Start `python -m devhost` for `app_root` on `port`, with exactly `env`, and return at once.

    The one launcher of the local host: `ensure_local_host` (the CLI) and `devhost.testing.start_host`
    (tests, benchmarks) both use it, then `wait_until_ready`. The host gets its own process group,
    so it and whatever it started can be signalled together; its output goes to `log_path`, so a
    chatty host can never block on a full pipe.
    """
    command = [sys.executable, "-m", "devhost", "--port", str(port), "--app-root", str(app_root), *extra_args]
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, cwd=str(app_root), env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def wait_until_ready(process: subprocess.Popen, log_path: Path, timeout: float, ready: str = READY_LINE) -> bool:
    """True once `ready` shows in the host's log; False when the host exited first (its returncode
    is then set) or `timeout` seconds passed. Stops nothing: what to do with a host that is not
    ready is the caller's."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready in read_log(log_path):
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def ensure_local_host(client: PipelineClient, *, quiet: bool = False,
                      timeout: float = 90.0) -> Iterator[PipelineClient]:
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
    process = spawn_devhost(APP_ROOT, port, env, log_path)
    if not quiet:
        print(f"starting a local mlpipe host on port {port} (log: {log_path})", flush=True)
    try:
        if not wait_until_ready(process, log_path, timeout):
            if process.poll() is not None:
                raise HostUnreachable(f"the local host exited with code {process.returncode}; see {log_path}")
            raise HostUnreachable(f"the local host did not become ready within {timeout:.0f}s; see {log_path}")
        key = client._key or os.environ.get("MLPIPE_FUNCTION_KEY") or read_local_key()
        yield PipelineClient(client.endpoint, key, client.timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
