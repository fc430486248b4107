"""Plays an Azure ML compute node for the AML contract server: runs a submitted command job for real.

Downloads the registered code (codeUri) and the inputs (azureml://datastores/{ds}/paths/... on
Azurite), substitutes ${{inputs.X}} / ${{outputs.Y}} with local folders as Azure ML's mounts
would, runs the command with bash, uploads the outputs, and marks the job Failed on a non-zero
exit. So the command line, the code snapshot and the data URIs mlpipe builds are all exercised.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from azure.storage.blob import BlobServiceClient

URI = re.compile(r"^azureml://datastores/(?P<ds>[^/]+)/paths/(?P<path>.*)$")


class AmlRuntime:
    def __init__(self, connection: str, containers: dict[str, str]):
        self.service = BlobServiceClient.from_connection_string(connection)
        self.containers = containers  # Azure ML datastore name -> Azurite container
        self.codes: dict[str, dict] = {}
        self.exit_codes: list[int] = []

    def _locate(self, uri: str) -> tuple[str, str]:
        match = URI.match(uri)
        assert match, f"not a datastore URI: {uri}"
        return self.containers[match["ds"]], match["path"].rstrip("/")

    def _download(self, container: str, path: str, target: Path, as_file: bool) -> Path:
        client = self.service.get_container_client(container)
        if as_file:
            target.mkdir(parents=True, exist_ok=True)
            local = target / Path(path).name
            local.write_bytes(client.download_blob(path).readall())
            return local
        for blob in client.list_blobs(name_starts_with=path + "/"):
            local = target / blob.name[len(path) + 1:]
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(client.download_blob(blob.name).readall())
        target.mkdir(parents=True, exist_ok=True)
        return target

    def __call__(self, job: dict) -> None:
        props = job["properties"]
        with tempfile.TemporaryDirectory() as work:
            work = Path(work)
            code_uri = self.codes[props["codeId"]]["properties"]["codeUri"]
            parts = unquote(urlparse(code_uri).path).lstrip("/").split("/", 2)
            self._download(parts[1], parts[2], work / "code", as_file=False)
            mounts = {}
            for name, spec in (props.get("inputs") or {}).items():
                container, path = self._locate(spec["uri"])
                mounts[f"inputs.{name}"] = self._download(container, path, work / "in" / name,
                                                          as_file=spec["jobInputType"] == "uri_file")
            for name in props.get("outputs") or {}:
                mounts[f"outputs.{name}"] = work / "out" / name
                (work / "out" / name).mkdir(parents=True)
            command = re.sub(r"\$\{\{([^}]+)\}\}", lambda m: str(mounts[m.group(1)]), props["command"])
            env = {**os.environ, **(props.get("environmentVariables") or {}),
                   "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
            code = subprocess.run(["bash", "-c", command], cwd=work / "code", env=env, timeout=60).returncode
            self.exit_codes.append(code)
            for name, spec in (props.get("outputs") or {}).items():
                container, path = self._locate(spec["uri"])
                client = self.service.get_container_client(container)
                for local in sorted((work / "out" / name).rglob("*")):
                    if local.is_file():
                        client.upload_blob(f"{path}/{local.relative_to(work / 'out' / name).as_posix()}",
                                           local.read_bytes(), overwrite=True)
            if code != 0:
                job["status"] = "Failed"
                job["script"] = []
