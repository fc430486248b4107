"""Schedules (API.md §3, Azure ML v1 `Schedule`): run a published pipeline or an endpoint on a
recurrence, a six-field NCRONTAB, or when data changes under a datastore path.

Layout (system container):
  schedules/{name}.json   ScheduleRecord JSON; blob metadata {status, kind} lets list() filter

Changes are read-modify-write under If-Match (as endpoints), names are unique (If-None-Match: *).

Time schedules: the scheduler timer (functions/timers.py) asks `due_now(now)` for every active
schedule whose latest due time in (LastDueTimeUtc, now] exists: that one due time gets one run
with a run id derived from (schedule, due time), so a timer firing twice or two hosts start it
once; due times missed while no host ran collapse into that one catch-up run.

Datastore schedules: the blob trigger hands each changed blob to `watching(path)`; the debounce
orchestration (orchestrations/debounce.py) turns a burst into one run via `fire_window`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.endpoints import EndpointRegistry
from shared.errors import Conflict, InvalidRequest, NotFound, validation_message
from shared.pipelines import get_published
from shared.recurrence import Recurrence, cron_next, latest_due, parse_cron, recurrence_next, zone
from shared.registry import PipelineRegistry
from shared.runs import StoredRecord, to_utc_iso, utc_now
from shared.settings import get_settings
from shared.spec import PIPELINE_NAME_PATTERN
from shared.storage import blob_metadata, ensure_container, modify_json_record, parallel_map, translate_storage_errors

ScheduleStatus = Literal["Active", "Disabled"]
_NAME = re.compile(PIPELINE_NAME_PATTERN)
DEFAULT_DEBOUNCE_SECONDS = 30
MAX_DEBOUNCE_SECONDS = 24 * 3600
_WATCH_CACHE_SECONDS = 2.0


def _parse_utc(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.timezone.utc)


class DatastoreWatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "workspaceblobstore"
    pathOnDatastore: str = Field(min_length=1)
    dataPathParameterName: str | None = None
    debounceSeconds: float = Field(default=DEFAULT_DEBOUNCE_SECONDS, ge=0, le=MAX_DEBOUNCE_SECONDS)

    @field_validator("pathOnDatastore")
    @classmethod
    def _path(cls, value: str) -> str:
        from shared.datastore import safe_blob_path
        try:
            return safe_blob_path(value.strip("/"))
        except InvalidRequest as error:
            raise ValueError(error.message) from None


class CreateScheduleRequest(BaseModel):
    """POST /api/schedules (camelCase as API.md §3 spells it)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str | None = None
    pipelineId: str | None = None
    endpointName: str | None = None
    experimentName: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$")
    parameterAssignments: dict[str, Any] = Field(default_factory=dict)
    recurrence: Recurrence | None = None
    cron: str | None = None
    timeZone: str | None = None  # for `cron` (a recurrence has its own)
    datastore: DatastoreWatch | None = None
    continueOnStepFailure: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"schedule name {value!r} must be 1-64 letters, digits, '_', '.', '-', "
                             "starting with a letter or digit")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value):
        if value is not None:
            parse_cron(value)
        return value

    @field_validator("timeZone")
    @classmethod
    def _tz(cls, value):
        zone(value)
        return value

    @model_validator(mode="after")
    def _one_of(self):
        if bool(self.pipelineId) == bool(self.endpointName):
            raise ValueError("give exactly one of pipelineId and endpointName")
        kinds = [k for k in ("recurrence", "cron", "datastore") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of recurrence, cron and datastore")
        if self.recurrence is not None:
            self.recurrence.check_fields_fit()
        return self


class _ScheduleFields(BaseModel):
    """The fields a stored schedule and its API response share (declared once for both)."""

    Name: str
    Description: str | None = None
    Kind: Literal["Recurrence", "Cron", "Datastore"]
    PipelineId: str | None = None
    EndpointName: str | None = None
    ExperimentName: str
    ParameterAssignments: dict[str, Any] = Field(default_factory=dict)
    ContinueOnStepFailure: bool = False
    Recurrence: dict | None = None
    Cron: str | None = None
    TimeZone: str | None = None
    Datastore: dict | None = None
    LastRunId: str | None = None
    LastRunTimeUtc: str | None = None
    LastError: dict | None = None


class ScheduleRecord(StoredRecord, _ScheduleFields):
    """A schedule; API field names (PascalCase, as the other resources)."""

    Status: ScheduleStatus = "Active"
    CreatedTimeUtc: str = Field(default_factory=utc_now)
    LastDueTimeUtc: str | None = None  # time schedules: the last due time that got its run

    def next_due_after(self, after: dt.datetime) -> dt.datetime | None:
        created = _parse_utc(self.CreatedTimeUtc)
        if self.Kind == "Recurrence":
            return recurrence_next(Recurrence.model_validate(self.Recurrence), after, created)
        if self.Kind == "Cron":
            return cron_next(parse_cron(self.Cron), after, self.TimeZone)
        return None

    def to_api(self, now: dt.datetime | None = None) -> dict:
        body = self.model_dump(mode="json", exclude={"LastDueTimeUtc"})
        body["NextRunTimeUtc"] = None
        if self.Status == "Active" and self.Kind != "Datastore":
            now = now or dt.datetime.now(dt.timezone.utc)
            after = max(now, _parse_utc(self.LastDueTimeUtc or self.CreatedTimeUtc))
            body["NextRunTimeUtc"] = to_utc_iso(self.next_due_after(after))
        return body

    def submit_body(self, run_source: str, extra_parameters: dict | None = None) -> dict:
        return {"ExperimentName": self.ExperimentName,
                "ParameterAssignments": {**self.ParameterAssignments, **(extra_parameters or {})},
                "ContinueOnStepFailure": self.ContinueOnStepFailure, "RunSource": run_source,
                "Tags": {"mlpipe.schedule": self.Name}}


def _blob_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise NotFound(f"schedule '{name}' not found")
    return f"schedules/{name}.json"


def _metadata(record: ScheduleRecord) -> dict[str, str]:
    return {"status": record.Status, "kind": record.Kind}


class ScheduleStore:
    def __init__(self, container: str | None = None):
        self._container_name = container

    def _container(self) -> ContainerClient:
        return ensure_container(self._container_name or get_settings().system_container)

    # --- create / read ---------------------------------------------------------------------
    def create(self, body: dict) -> ScheduleRecord:
        try:
            request = CreateScheduleRequest.model_validate(body)
        except ValidationError as error:
            raise InvalidRequest(validation_message(error)) from None
        pipeline_id = self._target_pipeline(request)
        self._check_parameters(request, pipeline_id)
        kind = "Recurrence" if request.recurrence else "Cron" if request.cron else "Datastore"
        record = ScheduleRecord(
            Name=request.name, Description=request.description, Kind=kind, PipelineId=request.pipelineId,
            EndpointName=request.endpointName, ExperimentName=request.experimentName,
            ParameterAssignments=request.parameterAssignments, ContinueOnStepFailure=request.continueOnStepFailure,
            Recurrence=request.recurrence.model_dump(exclude_none=True) if request.recurrence else None,
            Cron=request.cron, TimeZone=request.timeZone,
            Datastore=request.datastore.model_dump() if request.datastore else None)
        record.LastDueTimeUtc = record.CreatedTimeUtc
        blob = self._container().get_blob_client(_blob_name(record.Name))
        with translate_storage_errors(f"schedule '{record.Name}'"):
            try:
                result = blob.upload_blob(record.model_dump_json().encode("utf-8"), overwrite=False,
                                          metadata=_metadata(record))
            except ResourceExistsError:
                raise Conflict(f"name: schedule '{record.Name}' already exists", code="ScheduleExists") from None
        record._etag = result.get("etag")
        _forget_watch_cache()
        return record

    def _target_pipeline(self, request: CreateScheduleRequest) -> str:
        if request.pipelineId:
            try:
                PipelineRegistry().get(request.pipelineId)
            except NotFound:
                raise NotFound(f"pipelineId: pipeline '{request.pipelineId}' not found") from None
            return request.pipelineId
        try:
            endpoint = EndpointRegistry().get(request.endpointName)
        except NotFound:
            raise NotFound(f"endpointName: endpoint '{request.endpointName}' not found") from None
        return endpoint.pipeline_of(endpoint.DefaultVersion)

    def _check_parameters(self, request: CreateScheduleRequest, pipeline_id: str) -> None:
        from shared.spec import validate_parameter_assignments

        definition = get_published(pipeline_id).definition
        try:
            validate_parameter_assignments(definition, request.parameterAssignments)
        except InvalidRequest as error:
            raise InvalidRequest(f"parameterAssignments: {error.message}") from None
        watch = request.datastore
        if watch is not None:
            settings = get_settings()
            if watch.name not in ("workspaceblobstore", settings.blobstore_container):
                raise InvalidRequest(f"datastore.name: only the default datastore 'workspaceblobstore' is watched, "
                                     f"not '{watch.name}'")
            param = watch.dataPathParameterName
            if param is not None:
                if param not in definition.parameters:
                    raise InvalidRequest(f"datastore.dataPathParameterName: the pipeline has no parameter '{param}'")
                if not isinstance(definition.parameters[param], str):
                    raise InvalidRequest(f"datastore.dataPathParameterName: parameter '{param}' is not a "
                                         "path (str) parameter")

    def get(self, name: str) -> ScheduleRecord:
        with translate_storage_errors(f"schedule '{name}'"):
            downloader = self._container().download_blob(_blob_name(name))
            record = ScheduleRecord.model_validate_json(downloader.readall())
        record._etag = downloader.properties.etag
        return record

    def list(self, status: str = "All", kind: str | None = None) -> list[ScheduleRecord]:
        if status not in ("Active", "Disabled", "All"):
            raise InvalidRequest(f"status: {status!r} must be Active, Disabled or All")
        container = self._container()
        with translate_storage_errors("schedule list"):
            names = []
            for name, meta in blob_metadata(container, "schedules/"):
                if (status == "All" or meta.get("status", status) == status) and \
                        (kind is None or meta.get("kind", kind) == kind):
                    names.append(name[len("schedules/"):-len(".json")])
            records = parallel_map(self._get_or_none, names)
        return sorted((r for r in records if r is not None and (status == "All" or r.Status == status)),
                      key=lambda r: r.Name)

    def _get_or_none(self, name: str) -> ScheduleRecord | None:
        try:
            return self.get(name)
        except NotFound:
            return None

    # --- change ----------------------------------------------------------------------------
    def modify(self, name: str, change: Callable[[ScheduleRecord], bool]) -> ScheduleRecord:
        blob = self._container().get_blob_client(_blob_name(name))
        record = modify_json_record(blob, lambda: self.get(name), change, _metadata, f"schedule '{name}'")
        _forget_watch_cache()
        return record

    def set_status(self, name: str, status: ScheduleStatus) -> ScheduleRecord:
        now = utc_now()

        def set_it(record: ScheduleRecord) -> bool:
            if record.Status == status:
                return False
            record.Status = status
            if status == "Active" and record.Kind != "Datastore":
                # Enabling starts afresh: due times that passed while disabled do not run.
                record.LastDueTimeUtc = now
            return True

        return self.modify(name, set_it)

    def delete(self, name: str) -> None:
        with translate_storage_errors(f"schedule '{name}'"):
            self._container().delete_blob(_blob_name(name))
        _forget_watch_cache()

    def record_run(self, name: str, run_id: str, due: dt.datetime | None = None, error: dict | None = None) -> None:
        """LastRunId (and, for time schedules, LastDueTimeUtc) after a due time or a change window fired."""
        now = utc_now()

        def set_it(record: ScheduleRecord) -> bool:
            if due is not None:
                if record.LastDueTimeUtc and _parse_utc(record.LastDueTimeUtc) >= due:
                    return False  # another host recorded this (or a later) due time
                record.LastDueTimeUtc = to_utc_iso(due)
            if run_id:
                record.LastRunId = run_id
                record.LastRunTimeUtc = now
            record.LastError = error
            return True

        try:
            self.modify(name, set_it)
        except NotFound:
            pass  # deleted meanwhile

    # --- time schedules --------------------------------------------------------------------
    def due_now(self, now: dt.datetime) -> list[tuple[ScheduleRecord, dt.datetime]]:
        """Active time schedules with a due time in (LastDueTimeUtc, now]: (schedule, latest such time)."""
        due = []
        for record in self.list("Active"):
            if record.Kind == "Datastore":
                continue
            last = _parse_utc(record.LastDueTimeUtc or record.CreatedTimeUtc)
            when = latest_due(record.next_due_after, last, now)
            if when is not None:
                due.append((record, when))
        return due


# --- datastore schedules: which schedules watch a changed blob -----------------------------------
_watch_cache: dict[str, tuple[float, list[ScheduleRecord]]] = {}
_watch_lock = threading.Lock()


def _forget_watch_cache() -> None:
    with _watch_lock:
        _watch_cache.clear()


def _active_datastore_schedules() -> list[ScheduleRecord]:
    key = get_settings().system_container
    with _watch_lock:
        cached = _watch_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < _WATCH_CACHE_SECONDS:
        return cached[1]
    records = ScheduleStore().list("Active", kind="Datastore")
    with _watch_lock:
        _watch_cache[key] = (time.monotonic(), records)
    return records


def path_is_under(path: str, folder: str) -> bool:
    folder = folder.strip("/")
    return path == folder or path.startswith(folder + "/")


def watching(path: str) -> list[ScheduleRecord]:
    """Active datastore schedules whose pathOnDatastore holds the blob `path` (cached ~2 s)."""
    return [r for r in _active_datastore_schedules() if path_is_under(path, r.Datastore["pathOnDatastore"])]


def common_folder(paths: list[str]) -> str:
    """The changed blob's path, or the deepest folder holding every changed blob (API.md §4)."""
    unique = sorted(set(paths))
    if len(unique) == 1:
        return unique[0]
    split = [p.split("/")[:-1] for p in unique]
    common: list[str] = []
    for parts in zip(*split):
        if len(set(parts)) != 1:
            break
        common.append(parts[0])
    return "/".join(common)


def window_message(schedule: ScheduleRecord, paths: list[str], window_key: str) -> dict:
    """The submission message a datastore schedule's quiet period sends to `pipeline-submissions`.

    Its MessageId is derived from (schedule, the window's first change), so the window starts one
    run however often this is sent (activity retries, a replay after a restart).
    """
    parameters = {}
    param = (schedule.Datastore or {}).get("dataPathParameterName")
    if param:
        parameters[param] = common_folder(paths)
    body = schedule.submit_body("DatastoreSchedule", parameters)
    body["MessageId"] = "schedule:" + schedule.Name + ":" + hashlib.sha256(window_key.encode()).hexdigest()[:32]
    if schedule.EndpointName:
        body["EndpointName"] = schedule.EndpointName
    else:
        body["PipelineId"] = schedule.PipelineId
    return body


def fire_window(schedule_name: str, paths: list[str], window_key: str) -> dict:
    """The debounce activity: the quiet period ended; queue one submission for the window.

    Returns {"runId"} (None if the schedule is gone or disabled). Sending through the submissions
    queue reuses its exactly-once path (message id -> run id) and its poison reporting.
    """
    from shared.queues import send_text
    from shared.submissions import deterministic_run_id

    try:
        schedule = ScheduleStore().get(schedule_name)
    except NotFound:
        return {"runId": None, "reason": "schedule deleted"}
    if schedule.Status != "Active":
        return {"runId": None, "reason": "schedule disabled"}
    message = window_message(schedule, paths, window_key)
    target = f"pipeline:{message['PipelineId']}" if message.get("PipelineId") else f"endpoint:{message['EndpointName']}"
    run_id = deterministic_run_id("msg", f"{target}\n{message['MessageId']}")
    send_text(get_settings().submissions_queue, json.dumps(message))
    ScheduleStore().record_run(schedule_name, run_id)
    return {"runId": run_id, "paths": len(set(paths))}


# --- the API (functions/http_schedules.py is the thin HTTP layer over these) -----------------------
from shared.api_models import _Listing, _Response  # noqa: E402 - response models for OpenAPI


class Schedule(_Response, _ScheduleFields):
    """GET /api/schedules/{name}."""

    Status: ScheduleStatus
    CreatedTimeUtc: str | None = None
    NextRunTimeUtc: str | None = None


class ScheduleList(_Listing):
    value: list[Schedule]


def create_schedule(body: dict) -> dict:
    return ScheduleStore().create(body).to_api()


def list_schedules(status: str = "All") -> list[dict]:
    now = dt.datetime.now(dt.timezone.utc)
    return [record.to_api(now) for record in ScheduleStore().list(status)]


def get_schedule(name: str) -> dict:
    return ScheduleStore().get(name).to_api()


def set_schedule_enabled(name: str, enabled: bool) -> dict:
    return ScheduleStore().set_status(name, "Active" if enabled else "Disabled").to_api()


def delete_schedule(name: str) -> ScheduleRecord:
    store = ScheduleStore()
    record = store.get(name)
    store.delete(name)
    return record
