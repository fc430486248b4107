"""Datastores: named blob containers, streamed folder transfer, and atomic output commit.

PipelineData commit protocol: a step's output `runs/{run}/{step}/{out}/...` is uploaded file by
file, then `runs/{run}/{step}/{out}.manifest.json` is written LAST. Readers go through the
manifest's file list, so an output whose upload died half way is simply "not there".
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from azure.storage.blob import ContainerClient, ContentSettings

from shared.errors import InvalidRequest, NotFound
from shared.runs import utc_now
from shared.settings import expand_connection_string, get_settings
from shared.storage import (
    BLOB_CONCURRENCY,
    BLOCK_SIZE,
    blob_service,
    ensure_container,
    parallel_map,
    translate_storage_errors,
)

DEFAULT_DATASTORE = "workspaceblobstore"
MANIFEST_SUFFIX = ".manifest.json"
_HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileEntry:
    """One file of an output: `name` relative to the output prefix, `md5` base64 (as Azure's Content-MD5)."""

    name: str
    size: int
    md5: str

    def to_dict(self) -> dict:
        return asdict(self)


def safe_blob_path(path: str) -> str:
    """`path` if it is a relative, normalised blob path; InvalidRequest naming it otherwise.

    Rejects absolute paths, backslashes, `.`/`..` and empty segments (`a//b`); one trailing `/`
    is allowed and dropped, so "folder/" and "folder" are the same prefix.
    """
    if not isinstance(path, str) or not path.strip():
        raise InvalidRequest(f"datastore path {path!r} is empty")
    if "\\" in path:
        raise InvalidRequest(f"datastore path {path!r} contains a backslash")
    if path.startswith("/"):
        raise InvalidRequest(f"datastore path {path!r} is absolute; use a path relative to the datastore")
    trimmed = path[:-1] if path.endswith("/") else path
    for segment in trimmed.split("/"):
        if segment == "":
            raise InvalidRequest(f"datastore path {path!r} has an empty segment")
        if segment in (".", ".."):
            raise InvalidRequest(f"datastore path {path!r} contains '{segment}'")
        if any(ord(ch) < 32 for ch in segment):
            raise InvalidRequest(f"datastore path {path!r} contains a control character")
    return trimmed


def _confined_local_path(local_dir: Path, relative_name: str) -> Path:
    """local_dir / relative_name, refusing names that would land outside local_dir."""
    safe_blob_path(relative_name)
    target = (local_dir / relative_name).resolve()
    root = local_dir.resolve()
    if root not in target.parents:
        raise InvalidRequest(f"blob name {relative_name!r} would be written outside its download folder")
    return target


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # a content checksum (Azure's Content-MD5), not security
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


def _md5_of_properties(properties) -> str | None:
    md5 = properties.content_settings.content_md5 if properties.content_settings else None
    return base64.b64encode(bytes(md5)).decode("ascii") if md5 else None


@dataclass(frozen=True)
class Datastore:
    """A named blob container on one storage account (Azure ML's AzureBlobDatastore)."""

    name: str
    container: str
    account: str
    connection: str = field(repr=False, compare=False)
    is_default: bool = False

    # ----- clients -------------------------------------------------------------------------

    def container_client(self) -> ContainerClient:
        return ensure_container(self.container, self.connection)

    def _where(self, path: str) -> str:
        return f"datastore path '{self.name}/{path}'"

    # ----- small blobs ---------------------------------------------------------------------

    def upload_bytes(self, path: str, data: bytes, overwrite: bool = True) -> None:
        path = safe_blob_path(path)
        with translate_storage_errors(self._where(path)):
            self.container_client().upload_blob(path, data, overwrite=overwrite)

    def read_bytes(self, path: str) -> bytes:
        path = safe_blob_path(path)
        with translate_storage_errors(self._where(path)):
            return self.container_client().download_blob(path).readall()

    def exists(self, path: str) -> bool:
        path = safe_blob_path(path)
        with translate_storage_errors(self._where(path)):
            return self.container_client().get_blob_client(path).exists()

    def list_names(self, prefix: str) -> list[str]:
        """Every blob name under folder `prefix` (full names)."""
        prefix = safe_blob_path(prefix)
        with translate_storage_errors(self._where(prefix)):
            return [b.name for b in self.container_client().list_blobs(name_starts_with=prefix + "/")]

    # ----- files ---------------------------------------------------------------------------

    def upload_file(self, local_file: Path, path: str) -> FileEntry:
        """Stream one file to blob `path` (blocks of BLOCK_SIZE, concurrent when large), with Content-MD5 set."""
        path = safe_blob_path(path)
        size = local_file.stat().st_size
        md5 = file_md5(local_file)
        settings = ContentSettings(content_md5=bytearray(base64.b64decode(md5)))
        with translate_storage_errors(self._where(path)), open(local_file, "rb") as stream:
            self.container_client().upload_blob(
                path, stream, length=size, overwrite=True, content_settings=settings,
                max_concurrency=BLOB_CONCURRENCY if size > BLOCK_SIZE else 1,
            )
        return FileEntry(name=path, size=size, md5=md5)

    def upload_folder(self, local_dir: Path, prefix: str) -> list[FileEntry]:
        """Upload every file below `local_dir` to `prefix/<relative path>`; entries are relative to prefix."""
        prefix = safe_blob_path(prefix)
        local_dir = Path(local_dir)
        if not local_dir.is_dir():
            raise InvalidRequest(f"local folder '{local_dir}' does not exist")
        relative_names = sorted(
            Path(root, name).relative_to(local_dir).as_posix()
            for root, _dirs, files in os.walk(local_dir) for name in files
        )

        def upload(relative: str) -> FileEntry:
            entry = self.upload_file(local_dir / relative, f"{prefix}/{relative}")
            return FileEntry(name=relative, size=entry.size, md5=entry.md5)

        return parallel_map(upload, relative_names)

    def download_blob_to(self, path: str, local_file: Path) -> Path:
        """Stream one blob to `local_file` (ranges of GET_CHUNK_SIZE, concurrent when large)."""
        local_file.parent.mkdir(parents=True, exist_ok=True)
        with translate_storage_errors(self._where(path)), open(local_file, "wb") as handle:
            downloader = self.container_client().download_blob(path, max_concurrency=BLOB_CONCURRENCY)
            downloader.readinto(handle)
        return local_file

    def _download_relative(self, prefix: str, relative_names: list[str], local_dir: Path) -> list[Path]:
        local_dir = Path(local_dir)
        local_dir.mkdir(parents=True, exist_ok=True)
        targets = [(f"{prefix}/{name}", _confined_local_path(local_dir, name)) for name in relative_names]
        return parallel_map(lambda pair: self.download_blob_to(*pair), targets)

    def download_prefix(self, prefix: str, local_dir: Path) -> list[Path]:
        """Download every blob under folder `prefix` into `local_dir`, keeping relative paths."""
        prefix = safe_blob_path(prefix)
        names = [name[len(prefix) + 1:] for name in self.list_names(prefix)]
        return self._download_relative(prefix, names, local_dir)

    def download_path(self, path: str, local_dir: Path) -> Path:
        """Download `path` — a single blob or a folder — below `local_dir`; returns what to hand a script.

        A blob lands at `local_dir/<basename>` and that file is returned; a folder's blobs land
        under `local_dir` and `local_dir` is returned. NotFound if neither exists.
        """
        path = safe_blob_path(path)
        local_dir = Path(local_dir)
        with translate_storage_errors(self._where(path)):
            # One listing answers both "is it a blob?" and "is it a folder?".
            names = [b.name for b in self.container_client().list_blobs(name_starts_with=path)]
        if path in names:
            return self.download_blob_to(path, local_dir / PurePosixPath(path).name)
        children = [name[len(path) + 1:] for name in names if name.startswith(path + "/")]
        if not children:
            raise NotFound(f"{self._where(path)} not found (no blob or folder there)")
        self._download_relative(path, children, local_dir)
        return local_dir

    # ----- PipelineData commit -------------------------------------------------------------

    @staticmethod
    def manifest_path(output_prefix: str) -> str:
        return safe_blob_path(output_prefix) + MANIFEST_SUFFIX

    def commit_output(self, output_prefix: str, files: list[FileEntry]) -> dict:
        """Write the output's manifest; call only after every file in `files` is uploaded."""
        manifest = {
            "files": [entry.to_dict() for entry in sorted(files, key=lambda e: e.name)],
            "committedUtc": utc_now(),
        }
        self.upload_bytes(self.manifest_path(output_prefix), json.dumps(manifest).encode("utf-8"))
        return manifest

    def upload_output(self, local_dir: Path, output_prefix: str) -> dict:
        """Upload a step's output folder and commit it (manifest last); returns the manifest."""
        return self.commit_output(output_prefix, self.upload_folder(local_dir, output_prefix))

    def is_committed(self, output_prefix: str) -> bool:
        return self.exists(self.manifest_path(output_prefix))

    def read_manifest(self, output_prefix: str) -> dict | None:
        """The output's manifest, or None when it was never committed (or was deleted)."""
        try:
            return json.loads(self.read_bytes(self.manifest_path(output_prefix)))
        except NotFound:
            return None

    def download_output(self, output_prefix: str, local_dir: Path) -> Path:
        """Download exactly the files a committed output's manifest lists; NotFound if uncommitted."""
        prefix = safe_blob_path(output_prefix)
        manifest = self.read_manifest(prefix)
        if manifest is None:
            raise NotFound(f"pipeline data '{self.name}/{prefix}' not found (no committed manifest)")
        self._download_relative(prefix, [f["name"] for f in manifest["files"]], local_dir)
        return Path(local_dir)

    # ----- fingerprint ingredients ---------------------------------------------------------

    def dataset_entries(self, path: str) -> list[tuple[str, str]]:
        """[(blob name, Content-MD5 base64 or else ETag)] of a blob or of every blob under a folder.

        Names are full blob names, sorted. NotFound naming the datastore path if nothing is there.
        """
        path = safe_blob_path(path)
        with translate_storage_errors(self._where(path)):
            blobs = [b for b in self.container_client().list_blobs(name_starts_with=path)
                     if b.name == path or b.name.startswith(path + "/")]
        if not blobs:
            raise NotFound(f"{self._where(path)} not found (no blob or folder there)")
        exact = [b for b in blobs if b.name == path]
        chosen = exact or blobs
        return sorted((b.name, _md5_of_properties(b) or str(b.etag).strip('"')) for b in chosen)

    def to_api(self) -> dict:
        return {"Name": self.name, "Container": self.container, "AccountName": self.account,
                "IsDefault": self.is_default}


# ----- resolution --------------------------------------------------------------------------


def _account_name(connection: str) -> str:
    try:
        return blob_service(connection).account_name or ""
    except Exception:  # an account name is only for display; never fail a listing for it
        return ""


def _declared_datastores() -> dict[str, dict]:
    declared = get_settings().extra_datastores or {}
    if not isinstance(declared, dict):
        raise InvalidRequest("setting MLPIPE_DATASTORES must be a JSON object {name: {container, connection}}")
    return declared


def _datastore_from_declaration(name: str, spec: dict) -> Datastore:
    if not isinstance(spec, dict) or not spec.get("container"):
        raise InvalidRequest(f"datastore '{name}' in MLPIPE_DATASTORES needs a 'container'")
    connection = get_settings().storage_connection
    setting = spec.get("connection")
    if setting:
        value = os.environ.get(setting)
        if not value:
            raise InvalidRequest(f"datastore '{name}': setting '{setting}' named by MLPIPE_DATASTORES is not set")
        connection = expand_connection_string(value)
    return Datastore(name=name, container=spec["container"], account=_account_name(connection),
                     connection=connection)


def get_datastore(name: str | None = None) -> Datastore:
    """The datastore called `name` (default `workspaceblobstore`); NotFound for an unknown name."""
    settings = get_settings()
    name = name or DEFAULT_DATASTORE
    if name == DEFAULT_DATASTORE:
        return Datastore(name=DEFAULT_DATASTORE, container=settings.blobstore_container,
                         account=_account_name(settings.storage_connection),
                         connection=settings.storage_connection, is_default=True)
    declared = _declared_datastores()
    if name not in declared:
        raise NotFound(f"datastore '{name}' not found")
    return _datastore_from_declaration(name, declared[name])


def default_datastore() -> Datastore:
    return get_datastore(DEFAULT_DATASTORE)


def list_datastores() -> list[Datastore]:
    """The default datastore first, then the declared ones by name."""
    declared = _declared_datastores()
    return [default_datastore()] + [get_datastore(n) for n in sorted(declared) if n != DEFAULT_DATASTORE]
