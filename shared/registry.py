"""Published pipelines and their content-addressed source snapshots (system container).

Layout:
  pipelines/{id}.json     PipelineRecord JSON; blob metadata {status, private, name} lets
                          list() filter without downloading every record
  snapshots/{hash}.zip    one source_directory, addressed by its content hash (immutable)

A snapshot is extracted once per machine into `<data_dir>/snapshots/{hash}/`, via a temporary
directory renamed into place, so a reader never sees a half-extracted folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient
from pydantic import Field

from shared.errors import InvalidRequest, NotFound
from shared.runs import StoredRecord, utc_now
from shared.safezip import extract_zip
from shared.settings import get_settings
from shared.storage import (
    BLOB_CONCURRENCY,
    BLOCK_SIZE,
    blob_metadata,
    ensure_container,
    modify_json_record,
    parallel_map,
    translate_storage_errors,
)

PipelineStatus = Literal["Active", "Disabled"]
_SOURCE_HASH = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


class PipelineRecord(StoredRecord):
    """A published pipeline. Field names are the API's; `Definition` is an already-validated dict."""

    Id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    Name: str
    Description: str | None = None
    Version: str | None = None
    Status: PipelineStatus = "Active"
    Parameters: dict[str, Any] = Field(default_factory=dict)
    Definition: dict[str, Any] = Field(default_factory=dict)
    SourceSnapshots: dict[str, str] = Field(default_factory=dict)  # step name -> source hash
    CreatedTimeUtc: str = Field(default_factory=utc_now)
    Private: bool = False  # published implicitly by `mlpipe run`; hidden from list() by default

    def to_api(self, endpoint: str | None = None) -> dict:
        """The GET /api/pipelines/{id} body (`Endpoint` is the submit URL the HTTP layer knows)."""
        body = self.model_dump(mode="json", include={"Id", "Name", "Description", "Version", "Status",
                                                     "Parameters", "CreatedTimeUtc"})
        body["Endpoint"] = endpoint
        return body


def _metadata(record: PipelineRecord) -> dict[str, str]:
    return {"status": record.Status, "private": str(record.Private).lower(),
            "name": quote(record.Name, safe="")}


def check_source_hash(source_hash: str) -> str:
    if not isinstance(source_hash, str) or not _SOURCE_HASH.match(source_hash):
        raise InvalidRequest(f"source hash {source_hash!r} is not a valid snapshot id")
    return source_hash


def _pipeline_blob(pipeline_id: str) -> str:
    if not isinstance(pipeline_id, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", pipeline_id) \
            or pipeline_id in (".", ".."):
        raise NotFound(f"pipeline '{pipeline_id}' not found")
    return f"pipelines/{pipeline_id}.json"


class PipelineRegistry:
    def __init__(self, container: str | None = None):
        self._container_name = container
        self._extract_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _container(self) -> ContainerClient:
        return ensure_container(self._container_name or get_settings().system_container)

    # ----- pipelines -----------------------------------------------------------------------

    def publish(self, definition: dict, source_snapshots: dict[str, str], name: str,
                description: str | None = None, version: str | None = None,
                private: bool = False) -> PipelineRecord:
        """Store a new pipeline (a new Id every time: publishing is never an update)."""
        parameters = dict(definition.get("parameters") or {})
        record = PipelineRecord(Name=name, Description=description, Version=version, Parameters=parameters,
                                Definition=definition, SourceSnapshots=dict(source_snapshots), Private=private)
        with translate_storage_errors(f"pipeline '{record.Id}'"):
            blob = self._container().get_blob_client(_pipeline_blob(record.Id))
            result = blob.upload_blob(record.model_dump_json().encode("utf-8"), overwrite=False,
                                      metadata=_metadata(record))
        record._etag = result.get("etag")
        return record

    def get(self, pipeline_id: str) -> PipelineRecord:
        with translate_storage_errors(f"pipeline '{pipeline_id}'"):
            downloader = self._container().download_blob(_pipeline_blob(pipeline_id))
            record = PipelineRecord.model_validate_json(downloader.readall())
        record._etag = downloader.properties.etag
        return record

    def etag(self, pipeline_id: str) -> str:
        """The record's current ETag (one small request: no body, no parsing); NotFound if absent."""
        with translate_storage_errors(f"pipeline '{pipeline_id}'"):
            return self._container().get_blob_client(_pipeline_blob(pipeline_id)).get_blob_properties().etag

    def list(self, status: str = "Active", include_private: bool = False) -> list[PipelineRecord]:
        """Pipelines with `status` (Active, Disabled or All), newest first."""
        if status not in ("Active", "Disabled", "All"):
            raise InvalidRequest(f"status {status!r} must be Active, Disabled or All")
        container = self._container()
        with translate_storage_errors("pipeline list"):
            names = []
            for name, meta in blob_metadata(container, "pipelines/"):
                if status != "All" and meta.get("status", status) != status:
                    continue
                if not include_private and meta.get("private") == "true":
                    continue
                names.append(name[len("pipelines/"):-len(".json")])
            records = parallel_map(self._get_or_none, names)
        records = [r for r in records if r is not None
                   and (status == "All" or r.Status == status) and (include_private or not r.Private)]
        return sorted(records, key=lambda r: (r.CreatedTimeUtc, r.Id), reverse=True)

    def _get_or_none(self, pipeline_id: str) -> PipelineRecord | None:
        try:
            return self.get(pipeline_id)
        except NotFound:
            return None

    def set_status(self, pipeline_id: str, status: PipelineStatus) -> PipelineRecord:
        """Enable/disable under If-Match, retrying on a concurrent change."""
        if status not in ("Active", "Disabled"):
            raise InvalidRequest(f"status {status!r} must be Active or Disabled")
        def set_to(record: PipelineRecord) -> bool:
            if record.Status == status:
                return False
            record.Status = status
            return True

        blob = self._container().get_blob_client(_pipeline_blob(pipeline_id))
        return modify_json_record(blob, lambda: self.get(pipeline_id), set_to, _metadata, f"pipeline '{pipeline_id}'")

    # ----- snapshots -----------------------------------------------------------------------

    def upload_snapshot(self, source_hash: str, zip_path: Path) -> bool:
        """Upload `snapshots/{hash}.zip` unless it is already there; True if this call uploaded it."""
        blob = self._container().get_blob_client(f"snapshots/{check_source_hash(source_hash)}.zip")
        with translate_storage_errors(f"snapshot '{source_hash}'"):
            if blob.exists():
                return False
            size = Path(zip_path).stat().st_size
            with open(zip_path, "rb") as stream:
                try:
                    blob.upload_blob(stream, length=size, overwrite=False,
                                     max_concurrency=BLOB_CONCURRENCY if size > BLOCK_SIZE else 1)
                except ResourceExistsError:
                    return False  # a concurrent publisher uploaded the same content
        return True

    def upload_snapshot_files(self, source_hash: str, files: dict[str, str]) -> None:
        """`snapshots/{hash}.files.json`: {relative path: sha256}, shown per file in fingerprints."""
        blob = self._container().get_blob_client(f"snapshots/{check_source_hash(source_hash)}.files.json")
        # content-addressed: an existing list is the same list
        with translate_storage_errors(f"snapshot '{source_hash}'"), contextlib.suppress(ResourceExistsError):
            blob.upload_blob(json.dumps(files, sort_keys=True).encode("utf-8"), overwrite=False)

    def snapshot_files(self, source_hash: str) -> dict[str, str] | None:
        blob = self._container().get_blob_client(f"snapshots/{check_source_hash(source_hash)}.files.json")
        with translate_storage_errors(f"snapshot '{source_hash}'"):
            try:
                return json.loads(blob.download_blob().readall())
            except ResourceNotFoundError:
                return None

    def snapshot_exists(self, source_hash: str) -> bool:
        blob = self._container().get_blob_client(f"snapshots/{check_source_hash(source_hash)}.zip")
        with translate_storage_errors(f"snapshot '{source_hash}'"):
            return blob.exists()

    def ensure_snapshot_local(self, source_hash: str) -> Path:
        """`<data_dir>/snapshots/{hash}/`, downloaded and extracted on first use (atomically)."""
        check_source_hash(source_hash)
        root = get_settings().data_dir / "snapshots"
        final = root / source_hash
        if final.is_dir():
            return final
        with self._extract_lock(source_hash):
            if final.is_dir():
                return final
            root.mkdir(parents=True, exist_ok=True)
            workspace = Path(tempfile.mkdtemp(dir=root, prefix=f".{source_hash}."))
            try:
                zip_file = workspace / "snapshot.zip"
                with translate_storage_errors(f"snapshot '{source_hash}'"), open(zip_file, "wb") as handle:
                    self._container().download_blob(f"snapshots/{source_hash}.zip",
                                                    max_concurrency=BLOB_CONCURRENCY).readinto(handle)
                extracted = workspace / "tree"
                extract_zip(zip_file, extracted, what="snapshot")
                try:
                    os.rename(extracted, final)
                except OSError:
                    if not final.is_dir():  # not "another process won the race"
                        raise
            finally:
                shutil.rmtree(workspace, ignore_errors=True)
        return final

    def _extract_lock(self, source_hash: str) -> threading.Lock:
        with self._locks_guard:
            return self._extract_locks.setdefault(source_hash, threading.Lock())
