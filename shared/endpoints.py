"""Pipeline endpoints (AML v1 PipelineEndpoint): a unique name in front of numbered pipeline versions.

Layout (system container):
  endpoints/{name}.json   EndpointRecord JSON; blob metadata {status} lets list() filter

An endpoint is created from a pipeline, which becomes version "0" and the default; each added
pipeline is the next number (as a string). Every change is a read-modify-write under If-Match,
so concurrent add-version / set-default / disable calls never lose one another's change.
Names are unique: the record is created with If-None-Match: * (create-only).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient
from pydantic import BaseModel, Field

from shared.errors import Conflict, InvalidRequest, NotFound
from shared.fresh_reads import FreshReads
from shared.registry import PipelineRegistry
from shared.runs import StoredRecord, utc_now
from shared.settings import get_settings
from shared.spec import PIPELINE_NAME_PATTERN
from shared.storage import blob_metadata, ensure_container, modify_json_record, parallel_map, translate_storage_errors

EndpointStatus = Literal["Active", "Disabled"]
ENDPOINT_NAME_PATTERN = PIPELINE_NAME_PATTERN
_NAME = re.compile(ENDPOINT_NAME_PATTERN)
MAX_VERSIONS = 1000


class EndpointVersion(BaseModel):
    Version: str
    PipelineId: str


class EndpointRecord(StoredRecord):
    """A pipeline endpoint; field names are the API's (API.md section 3)."""

    Name: str
    Description: str | None = None
    DefaultVersion: str = "0"
    Versions: list[EndpointVersion] = Field(default_factory=list)
    Status: EndpointStatus = "Active"
    CreatedTimeUtc: str = Field(default_factory=utc_now)

    def pipeline_of(self, version: str) -> str | None:
        return next((v.PipelineId for v in self.Versions if v.Version == version), None)

    def next_version(self) -> str:
        return str(max((int(v.Version) for v in self.Versions), default=-1) + 1)

    def to_api(self, endpoint: str | None = None) -> dict:
        """The GET /api/endpoints/{name} body (`Endpoint` is the submit URL the HTTP layer knows)."""
        body = self.model_dump(mode="json", include={"Name", "Description", "DefaultVersion", "Versions", "Status",
                                                     "CreatedTimeUtc"})
        body["Endpoint"] = endpoint
        return body


def check_endpoint_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest(f"{field}: endpoint name {name!r} must be 1-64 letters, digits, '_', '.', '-', "
                             "starting with a letter or digit")
    return name


def normalise_version(value: object, field: str = "version") -> str:
    """A version as the API spells it: a string of a whole number ("0", "1", ...); 1 and "1" both work."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidRequest(f"{field}: expected a version number such as \"1\", got {value!r}")
    text = str(value).strip()
    if not text.isdigit() or len(text) > 6:
        raise InvalidRequest(f"{field}: expected a version number such as \"1\", got {value!r}")
    return str(int(text))


def _blob_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise NotFound(f"endpoint '{name}' not found")
    return f"endpoints/{name}.json"


def _metadata(record: EndpointRecord) -> dict[str, str]:
    return {"status": record.Status}


class EndpointRegistry:
    def __init__(self, container: str | None = None, pipelines: PipelineRegistry | None = None):
        self._container_name = container
        self._pipelines = pipelines or PipelineRegistry(container)

    def _container(self) -> ContainerClient:
        return ensure_container(self._container_name or get_settings().system_container)

    def _require_pipeline(self, pipeline_id: object, field: str) -> str:
        if not isinstance(pipeline_id, str) or not pipeline_id:
            raise InvalidRequest(f"{field}: expected a pipeline id")
        try:
            self._pipelines.get(pipeline_id)
        except NotFound:
            raise NotFound(f"{field}: pipeline '{pipeline_id}' not found") from None
        return pipeline_id

    def create(self, name: str, pipeline_id: str, description: str | None = None) -> EndpointRecord:
        """A new endpoint whose version "0" (the default) is `pipeline_id`; Conflict if the name is taken."""
        check_endpoint_name(name)
        self._require_pipeline(pipeline_id, "pipelineId")
        record = EndpointRecord(Name=name, Description=description, DefaultVersion="0",
                                Versions=[EndpointVersion(Version="0", PipelineId=pipeline_id)])
        blob = self._container().get_blob_client(_blob_name(name))
        with translate_storage_errors(f"endpoint '{name}'"):
            try:
                result = blob.upload_blob(record.model_dump_json().encode("utf-8"), overwrite=False,
                                          metadata=_metadata(record))
            except ResourceExistsError:
                raise Conflict(f"name: endpoint '{name}' already exists", code="EndpointExists") from None
        record._etag = result.get("etag")
        return record

    def get(self, name: str) -> EndpointRecord:
        with translate_storage_errors(f"endpoint '{name}'"):
            downloader = self._container().download_blob(_blob_name(name))
            record = EndpointRecord.model_validate_json(downloader.readall())
        record._etag = downloader.properties.etag
        return record

    def list(self, status: str = "Active") -> list[EndpointRecord]:
        """Endpoints with `status` (Active, Disabled or All), by name."""
        if status not in ("Active", "Disabled", "All"):
            raise InvalidRequest(f"status: {status!r} must be Active, Disabled or All")
        container = self._container()
        with translate_storage_errors("endpoint list"):
            names = []
            for name, meta in blob_metadata(container, "endpoints/"):
                if status == "All" or meta.get("status", status) == status:
                    names.append(name[len("endpoints/"):-len(".json")])
            records = parallel_map(self._get_or_none, names)
        return sorted((r for r in records if r is not None and (status == "All" or r.Status == status)),
                      key=lambda r: r.Name)

    def _get_or_none(self, name: str) -> EndpointRecord | None:
        try:
            return self.get(name)
        except NotFound:
            return None

    def _modify(self, name: str, change: Callable[[EndpointRecord], bool]) -> EndpointRecord:
        """Read-modify-write under If-Match; `change` mutates the record, returns False if nothing changed."""
        blob = self._container().get_blob_client(_blob_name(name))
        return modify_json_record(blob, lambda: self.get(name), change, _metadata, f"endpoint '{name}'")

    def add_version(self, name: str, pipeline_id: str) -> EndpointRecord:
        """Add `pipeline_id` as the next version (the default does not change)."""
        self.get(name)  # NotFound before a 404 about the pipeline
        self._require_pipeline(pipeline_id, "pipelineId")

        def add(record: EndpointRecord) -> bool:
            if len(record.Versions) >= MAX_VERSIONS:
                raise Conflict(f"endpoint '{name}' already has {MAX_VERSIONS} versions")
            record.Versions.append(EndpointVersion(Version=record.next_version(), PipelineId=pipeline_id))
            return True

        return self._modify(name, add)

    def set_default(self, name: str, version: object) -> EndpointRecord:
        version = normalise_version(version)

        def set_it(record: EndpointRecord) -> bool:
            if record.pipeline_of(version) is None:
                raise InvalidRequest(f"version: endpoint '{name}' has no version '{version}' "
                                     f"(versions: {', '.join(v.Version for v in record.Versions)})")
            if record.DefaultVersion == version:
                return False
            record.DefaultVersion = version
            return True

        return self._modify(name, set_it)

    def set_status(self, name: str, status: EndpointStatus) -> EndpointRecord:
        if status not in ("Active", "Disabled"):
            raise InvalidRequest(f"status: {status!r} must be Active or Disabled")

        def set_it(record: EndpointRecord) -> bool:
            if record.Status == status:
                return False
            record.Status = status
            return True

        return self._modify(name, set_it)

    def resolve(self, name: str, version: object | None = None, field: str = "PipelineVersion") -> tuple[str, str]:
        """(pipeline id, version) a submit to this endpoint runs; 409 EndpointDisabled if disabled.

        The record is read fresh (a change that completed before this call is seen); concurrent
        submits to one endpoint share the read (shared/fresh_reads.py)."""
        record = _current.get((self._container_name or get_settings().system_container, name))
        if record.Status != "Active":
            raise Conflict(f"endpoint '{name}' is disabled; enable it to submit", code="EndpointDisabled")
        chosen = record.DefaultVersion if version is None else normalise_version(version, field)
        pipeline_id = record.pipeline_of(chosen)
        if pipeline_id is None:
            raise InvalidRequest(f"{field}: endpoint '{name}' has no version '{chosen}' "
                                 f"(versions: {', '.join(v.Version for v in record.Versions)})")
        return pipeline_id, chosen


def _read_endpoint(key: tuple[str, str]) -> EndpointRecord:
    container, name = key
    return EndpointRegistry(container).get(name)


_current: FreshReads[tuple[str, str], EndpointRecord] = FreshReads(_read_endpoint)
