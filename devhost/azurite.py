"""Start Azurite (the Azure Storage emulator, pinned in package.json) for the local host and tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from shared.settings import azurite_connection_string

REPO_ROOT = Path(__file__).resolve().parent.parent


class AzuriteNotInstalled(RuntimeError):
    pass


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def azurite_executable() -> str:
    local = REPO_ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if found:
        return found
    raise AzuriteNotInstalled(
        "Azurite is not installed: run `npm install` in the repository (package.json pins it) "
        "or `make install`."
    )


@dataclass
class AzuriteProcess:
    process: subprocess.Popen
    blob_port: int
    queue_port: int
    location: Path
    scheme: str = "http"

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self.blob_port, self.queue_port, scheme=self.scheme)

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`: Azurite's graceful close can hang for a long time
        (it waits on its background loops); blob data is written as it arrives and metadata is
        autosaved every few seconds."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_azurite(location: Path, blob_port: int = 10000, queue_port: int = 10001,
                  table_port: int | None = None, timeout: float = 30.0,
                  tls: tuple[Path, Path] | None = None) -> AzuriteProcess:
    """Start Azurite with its data under `location` and wait until blob and queue ports answer.
    With `tls` (certificate and key PEM files) it serves HTTPS."""
    location.mkdir(parents=True, exist_ok=True)
    table_port = table_port or free_port()
    command = [
        azurite_executable(), "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
        "--location", str(location),
        "--blobHost", "127.0.0.1", "--blobPort", str(blob_port),
        "--queueHost", "127.0.0.1", "--queuePort", str(queue_port),
        "--tableHost", "127.0.0.1", "--tablePort", str(table_port),
    ]
    if tls:
        command += ["--cert", str(tls[0]), "--key", str(tls[1])]
    log = open(location / "azurite.log", "ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Azurite exited with code {process.returncode}; see {location / 'azurite.log'}")
        if port_is_open(blob_port) and port_is_open(queue_port):
            return AzuriteProcess(process, blob_port, queue_port, location, "https" if tls else "http")
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError(f"Azurite did not open ports {blob_port}/{queue_port} within {timeout:.0f}s")
