"""Run and step records (API.md §3 field names) and their store in the system container.

Layout (system container):
  runs/{runId}/run.json                  run record without Steps (ETag-guarded updates)
  runs/{runId}/steps/{step}.json         one step record
  runs/{runId}/steps/{step}/log.txt      step log (append blob)
  runs/{runId}/fingerprints.json        {step: fingerprint ingredients}
  runindex/{invertedCreatedMs}_{runId}   empty blob, metadata {experiment, status, pipelineid,
                                         endpoint, tags (URL-quoted JSON, "*" when too long)}:
                                         listing it ascending gives runs newest first, and the
                                         filters need no record downloads.

Model fields are spelled exactly as the API spells them (PascalCase), so `model_dump()` is
the API body with no alias bookkeeping.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import ContainerClient
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from shared.api_models import RunFields, StepFields
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.settings import get_settings
from shared.statuses import RunStatus, StepStatus
from shared.storage import (
    BLOB_CONCURRENCY,
    BLOCK_SIZE,
    blob_metadata,
    ensure_container,
    parallel_map,
    translate_storage_errors,
)
from shared.write_behind import WriteBehind

# The spellings live in shared/statuses.py; records validate against them as Literal strings.
RUN_STATUSES: tuple[str, ...] = tuple(status.value for status in RunStatus)
STEP_STATUSES: tuple[str, ...] = tuple(status.value for status in StepStatus)
TERMINAL_RUN_STATUSES = frozenset(status.value for status in RunStatus if status.is_terminal)
TERMINAL_STEP_STATUSES = frozenset(status.value for status in StepStatus if status.is_terminal)
RunStatusName = Literal[RUN_STATUSES]
StepStatusName = Literal[STEP_STATUSES]

_MAX_ETAG_ATTEMPTS = 20
_RECORD_METADATA = "record"
_MAX_INLINE_RECORD = 7 * 1024  # blob metadata is 8 KiB in all
_APPEND_BLOCK_LIMIT = 4 * 1024 * 1024


# ----- time and ids ------------------------------------------------------------------------


def to_utc_iso(value: datetime | str | None) -> str | None:
    """UTC ISO 8601 with milliseconds and `Z`; naive datetimes are taken as UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def utc_now() -> str:
    return to_utc_iso(datetime.now(timezone.utc))


def new_run_id(now: datetime | None = None) -> str:
    """`mlpipe_<yyyymmddHHMMSS>_<8 hex>`: readable, unique, and sorts by creation second."""
    now = now or datetime.now(timezone.utc)
    return f"mlpipe_{now.astimezone(timezone.utc):%Y%m%d%H%M%S}_{secrets.token_hex(4)}"


def check_path_segment(value: str, what: str) -> str:
    """A run id or step name used as one blob path segment: no '/', '\\', '.', '..' or emptiness."""
    if (not isinstance(value, str) or not value or value in (".", "..") or "/" in value or "\\" in value
            or any(ord(ch) < 32 for ch in value)):
        raise InvalidRequest(f"{what} {value!r} is not usable as a name")
    return value


# ----- records -----------------------------------------------------------------------------


class ErrorInfo(BaseModel):
    code: str
    message: str


class OutputRef(BaseModel):
    Datastore: str = "workspaceblobstore"
    Path: str


Number = int | float
_TIME_FIELDS = ("CreatedTimeUtc", "StartTimeUtc", "EndTimeUtc")


class StoredRecord(BaseModel):
    """A record kept as a JSON blob: API field names, times as UTC ISO 8601, the blob's ETag
    (for read-modify-write under If-Match, `shared.storage.modify_json_record`)."""

    model_config = ConfigDict(extra="allow")
    _etag: str | None = PrivateAttr(default=None)

    @field_validator(*_TIME_FIELDS, mode="before", check_fields=False)
    @classmethod
    def _normalise_time(cls, value):
        return to_utc_iso(value)

    @property
    def etag(self) -> str | None:
        return self._etag


class _Record(StoredRecord):
    # StoredRecord's extra="allow": fields another module adds (e.g. ParentRunId) survive a
    # read-modify-write; assignments are validated too.
    model_config = ConfigDict(validate_assignment=True)

    def to_api(self) -> dict:
        return self.model_dump(mode="json")


class StepRecord(_Record, StepFields):
    """The API's step fields (shared/api_models.StepFields) as stored, plus the attempt and job handle."""

    Status: StepStatusName = "NotStarted"
    Outputs: dict[str, OutputRef] = Field(default_factory=dict)
    Error: ErrorInfo | None = None
    Attempt: int = 0
    # The compute backend's JobHandle as a dict while the step runs (for cancel and resume).
    JobHandle: dict | None = None


class RunRecord(_Record, RunFields):
    """The API's run fields (shared/api_models.RunFields) as stored (run.json; steps are kept beside it)."""

    Status: RunStatusName = "NotStarted"
    CreatedTimeUtc: str = Field(default_factory=utc_now)
    Error: ErrorInfo | None = None
    Steps: list[StepRecord] = Field(default_factory=list)

    def step(self, name: str) -> StepRecord | None:
        return next((s for s in self.Steps if s.Name == name), None)


# ----- the store ---------------------------------------------------------------------------


def _step_blob(step: StepRecord) -> tuple[bytes, dict[str, str] | None]:
    """A step record's blob body, and its metadata: the record rides there too (ASCII JSON), so
    reading a whole run is one listing instead of a download per step; a record too large for
    metadata is only in the body."""
    body = step.model_dump_json()
    inline = json.dumps(json.loads(body), ensure_ascii=True, separators=(",", ":"))
    return body.encode("utf-8"), ({_RECORD_METADATA: inline} if len(inline) <= _MAX_INLINE_RECORD else None)


def _run_prefix(run_id: str) -> str:
    return f"runs/{check_path_segment(run_id, 'run id')}"


def _step_prefix(run_id: str, step: str) -> str:
    return f"{_run_prefix(run_id)}/steps/{check_path_segment(step, 'step name')}"


def _index_name(run: RunRecord) -> str:
    created = datetime.fromisoformat(run.CreatedTimeUtc.replace("Z", "+00:00"))
    inverted = 10**13 - 1 - int(created.timestamp() * 1000)
    return f"runindex/{inverted:013d}_{run.Id}"


_MAX_INDEXED_TAGS = 4096  # bytes of quoted tag JSON kept in index metadata (the whole set is ≤ 8 KiB)


def _index_metadata(run: RunRecord) -> dict[str, str]:
    """Filterable fields, URL-quoted (metadata must be ASCII); empty values are left out.

    Tags are one quoted JSON value; a tag set too long for metadata is indexed as "*" (every tag
    filter then reads that run's record to decide).
    """
    fields = {"experiment": run.ExperimentName, "status": run.Status, "pipelineid": run.PipelineId,
              "endpoint": run.EndpointName}
    metadata = {key: quote(value, safe="") for key, value in fields.items() if value}
    if run.Tags:
        tags = quote(json.dumps(run.Tags, sort_keys=True, separators=(",", ":")), safe="")
        metadata["tags"] = tags if len(tags) <= _MAX_INDEXED_TAGS else "*"
    return metadata


def tags_match(tags: dict | None, tag: tuple[str, str | None] | None) -> bool:
    """`tag` is (key, None): the run has the key; (key, value): with that value."""
    if tag is None:
        return True
    key, value = tag
    tags = tags or {}
    return key in tags and (value is None or str(tags[key]) == value)


def _indexed_tags(meta: dict[str, str]) -> dict | None:
    """Tags from index metadata (already unquoted); None when the record must decide."""
    raw = meta.get("tags")
    if not raw:
        return {}
    if raw == "*":
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _create_index_entry(container: ContainerClient, name: str, metadata: dict[str, str]) -> None:
    """Create-only: an entry already there was written by `sync_index` from a newer record."""
    with translate_storage_errors(f"run index entry {name}"), contextlib.suppress(ResourceExistsError):
        container.upload_blob(name, b"", overwrite=False, metadata=metadata)


_index_writes = WriteBehind("run index")


def _conflict_pause(attempt: int) -> None:
    time.sleep(random.uniform(0, 0.01 * (2 ** min(attempt, 6))))


class RunStore:
    """Runs, steps, logs and fingerprint ingredients in the system container."""

    def __init__(self, container: str | None = None):
        self._container_name = container

    def _container(self) -> ContainerClient:
        return ensure_container(self._container_name or get_settings().system_container)

    # ----- runs ----------------------------------------------------------------------------

    def create_run(self, record: RunRecord) -> RunRecord:
        """Write a new run; Conflict if a run with this id exists (create-only).

        The index entry is written behind (after a burst of submissions, shared/write_behind.py);
        list_runs in this process waits for it, and if the process dies first, the run's first
        status change writes it (`sync_index`)."""
        body = record.model_dump_json(exclude={"Steps"}).encode("utf-8")
        container = self._container()
        with translate_storage_errors(f"run '{record.Id}'"):
            try:
                container.upload_blob(f"{_run_prefix(record.Id)}/run.json", body, overwrite=False)
            except ResourceExistsError as exc:
                raise Conflict(f"run '{record.Id}' already exists") from exc
        name, metadata = _index_name(record), _index_metadata(record)
        _index_writes.submit(lambda: _create_index_entry(container, name, metadata))
        return record

    def _read_run(self, run_id: str) -> RunRecord:
        with translate_storage_errors(f"run '{run_id}'"):
            downloader = self._container().download_blob(f"{_run_prefix(run_id)}/run.json")
            record = RunRecord.model_validate_json(downloader.readall())
        record._etag = downloader.properties.etag
        return record

    def read_steps(self, run_id: str) -> list[StepRecord]:
        """Every step record of the run: one listing (records ride in blob metadata), plus a
        download only for a record too large for metadata."""
        prefix = f"{_run_prefix(run_id)}/steps/"
        container = self._container()
        with translate_storage_errors(f"steps of run '{run_id}'"):
            listed = [(name, metadata) for name, metadata in blob_metadata(container, prefix, delimiter="/")
                      if name.endswith(".json")]

        def download(name: str) -> StepRecord | None:
            try:
                return StepRecord.model_validate_json(container.download_blob(name).readall())
            except ResourceNotFoundError:
                return None

        records = [StepRecord.model_validate_json(metadata[_RECORD_METADATA]) for _, metadata in listed
                   if metadata.get(_RECORD_METADATA)]
        with translate_storage_errors(f"steps of run '{run_id}'"):
            too_large = [name for name, metadata in listed if not metadata.get(_RECORD_METADATA)]
            downloaded = parallel_map(download, too_large)
        return records + [record for record in downloaded if record is not None]

    def get_run(self, run_id: str, with_steps: bool = True) -> RunRecord:
        """The run; with its step records (sorted by name) when `with_steps`. NotFound if absent."""
        record = self._read_run(run_id)
        # Two round trips in a row: threads measured slower than sequence on a small host.
        return self.with_steps(record) if with_steps else record

    def with_steps(self, record: RunRecord) -> RunRecord:
        """`record` (as read, without steps) with its run's step records, sorted by name."""
        record.Steps = sorted(self.read_steps(record.Id), key=lambda s: s.Name)
        return record

    def modify_run(self, run_id: str, change: Callable[[RunRecord], RunRecord | None],
                   when_written: Callable[[RunRecord], None] | None = None) -> RunRecord:
        """Read-modify-write run.json under If-Match, re-reading and re-applying on a conflict.

        `change` gets the current record (without Steps) and mutates it or returns a new one;
        it may run more than once, so it must only depend on the record it is given.
        `when_written(record)` is called once run.json holds it, before the run index is brought
        in line (so whoever waits on run.json hears of it a few milliseconds sooner).
        """
        blob = self._container().get_blob_client(f"{_run_prefix(run_id)}/run.json")
        for attempt in range(_MAX_ETAG_ATTEMPTS):
            current = self._read_run(run_id)
            before = _index_metadata(current)
            working = current.model_copy(deep=True)
            returned = change(working)
            # A returned record wins; None means `change` mutated `working` in place.
            updated = RunRecord.model_validate((returned if returned is not None else working).model_dump())
            body = updated.model_dump_json(exclude={"Steps"}).encode("utf-8")
            with translate_storage_errors(f"run '{run_id}'"):
                try:
                    result = blob.upload_blob(body, overwrite=True, etag=current.etag,
                                              match_condition=MatchConditions.IfNotModified)
                except ResourceModifiedError:
                    _conflict_pause(attempt)
                    continue
            updated._etag = result.get("etag")
            if when_written is not None:
                when_written(updated)
            if _index_metadata(updated) != before:
                self.sync_index(updated)
            return updated
        raise Conflict(f"run '{run_id}' kept changing; gave up after {_MAX_ETAG_ATTEMPTS} attempts")

    def update_run(self, run_id: str, **fields: Any) -> RunRecord:
        """Set run fields (API names, e.g. Status="Running", StartTimeUtc=...) with optimistic concurrency."""
        if "Id" in fields or "Steps" in fields:
            raise ValueError("update_run cannot change Id or Steps (steps have their own records)")

        def apply(record: RunRecord) -> RunRecord:
            return RunRecord.model_validate({**record.model_dump(), **fields})

        return self.modify_run(run_id, apply)

    def sync_index(self, record: RunRecord) -> None:
        """Make the index entry show `record`, which this process just wrote with ETag record.etag.

        Two updaters may write their index entries in the opposite order of their run.json writes.
        So after writing, check run.json is still the version indexed; if not, index the newer one.
        Whoever indexes last has then seen the latest run.json, so the entry converges.
        """
        run_blob = self._container().get_blob_client(f"{_run_prefix(record.Id)}/run.json")
        for _attempt in range(_MAX_ETAG_ATTEMPTS):
            index_blob = self._container().get_blob_client(_index_name(record))
            with translate_storage_errors(f"run index of '{record.Id}'"):
                try:
                    index_blob.set_blob_metadata(_index_metadata(record))
                except ResourceNotFoundError:
                    index_blob.upload_blob(b"", overwrite=True, metadata=_index_metadata(record))
                if run_blob.get_blob_properties().etag == record.etag:
                    return
            record = self._read_run(record.Id)

    def list_runs(self, experiment: str | None = None, status: str | None = None,
                  pipeline_id: str | None = None, top: int = 100, tag: tuple[str, str | None] | None = None,
                  endpoint_name: str | None = None) -> list[RunRecord]:
        """Runs newest first (without Steps) matching every given filter; at most `top`.

        The index metadata narrows the candidates without downloading records; each candidate is
        then checked against its record too, since an index entry is written just after its record.
        """
        if top <= 0:
            return []
        _index_writes.flush()  # entries of runs this process created are listed at once

        def matches(experiment_value, status_value, pipeline_value, endpoint_value=None, tags=None) -> bool:
            return ((experiment is None or experiment_value == experiment)
                    and (status is None or status_value == status)
                    and (pipeline_id is None or pipeline_value == pipeline_id)
                    and (endpoint_name is None or endpoint_value == endpoint_name)
                    and (tags is None or tags_match(tags, tag)))

        def candidates():
            for name, metadata in blob_metadata(self._container(), "runindex/"):
                meta = {key: unquote(value) for key, value in metadata.items()}
                if matches(meta.get("experiment"), meta.get("status"), meta.get("pipelineid") or None,
                           meta.get("endpoint") or None, _indexed_tags(meta)):
                    yield name.split("_", 1)[1]

        def read(run_id: str) -> RunRecord | None:
            try:
                return self._read_run(run_id)
            except NotFound:
                return None

        found: list[RunRecord] = []
        with translate_storage_errors("run index"):
            def confirmed(run_ids: list[str]) -> list[RunRecord]:
                return [r for r in parallel_map(read, run_ids)
                        if r and matches(r.ExperimentName, r.Status, r.PipelineId, r.EndpointName, r.Tags)]

            batch: list[str] = []
            for run_id in candidates():
                batch.append(run_id)
                if len(batch) < top - len(found):
                    continue
                found += confirmed(batch)
                batch = []
                if len(found) >= top:
                    return found[:top]
            found += confirmed(batch)
        return found[:top]

    # ----- steps ---------------------------------------------------------------------------

    def put_step(self, run_id: str, step: StepRecord) -> StepRecord:
        body, metadata = _step_blob(step)
        with translate_storage_errors(f"step '{step.Name}' of run '{run_id}'"):
            self._container().upload_blob(f"{_step_prefix(run_id, step.Name)}.json", body,
                                          overwrite=True, metadata=metadata)
        return step

    def put_step_unless_ended(self, run_id: str, step: StepRecord) -> bool:
        """Write the record only if the step has none or a non-terminal one, and only if that is still
        so when the write lands (create-only / If-Match). False when a terminal record is, or gets, there."""
        blob = self._container().get_blob_client(f"{_step_prefix(run_id, step.Name)}.json")
        body, metadata = _step_blob(step)
        with translate_storage_errors(f"step '{step.Name}' of run '{run_id}'"):
            try:
                current = blob.download_blob()
                if StepStatus(StepRecord.model_validate_json(current.readall()).Status).is_terminal:
                    return False
                condition = {"etag": current.properties.etag, "match_condition": MatchConditions.IfNotModified}
            except ResourceNotFoundError:
                condition = {}
            try:
                blob.upload_blob(body, overwrite=bool(condition), metadata=metadata, **condition)
            except (ResourceExistsError, ResourceModifiedError):
                return False
        return True

    def get_step(self, run_id: str, step: str) -> StepRecord:
        with translate_storage_errors(f"step '{step}' of run '{run_id}'"):
            data = self._container().download_blob(f"{_step_prefix(run_id, step)}.json").readall()
        return StepRecord.model_validate_json(data)

    # ----- logs ----------------------------------------------------------------------------

    def put_log(self, run_id: str, step: str, text: str) -> None:
        """Replace the step's log with `text`."""
        with translate_storage_errors(f"log of step '{step}' in run '{run_id}'"):
            self._container().upload_blob(f"{_step_prefix(run_id, step)}/log.txt", text.encode("utf-8"),
                                          overwrite=True)

    def upload_log_file(self, run_id: str, step: str, local_file: Path, *, replaces_earlier: bool = True) -> None:
        """Replace the step's log with a local file, streamed (logs can be large).

        An empty log is not uploaded unless it replaces an earlier attempt's (`replaces_earlier`):
        get_log answers "" for a step that has a record but no log."""
        size = local_file.stat().st_size if local_file.exists() else 0
        if size == 0 and not replaces_earlier:
            return
        blob = self._container().get_blob_client(f"{_step_prefix(run_id, step)}/log.txt")
        with translate_storage_errors(f"log of step '{step}' in run '{run_id}'"):
            if size == 0:
                blob.upload_blob(b"", overwrite=True)
                return
            with open(local_file, "rb") as stream:
                blob.upload_blob(stream, length=size, overwrite=True,
                                 max_concurrency=BLOB_CONCURRENCY if size > BLOCK_SIZE else 1)

    def append_log(self, run_id: str, step: str, text: str) -> None:
        """Append `text` to the step's log (an append blob; a log written by put_log is converted).

        One round trip when the log exists; a step log has a single writer, so conversion races
        are not a concern.
        """
        blob = self._container().get_blob_client(f"{_step_prefix(run_id, step)}/log.txt")
        data = text.encode("utf-8")
        if not data:
            return
        with translate_storage_errors(f"log of step '{step}' in run '{run_id}'"):
            try:
                self._append_blocks(blob, data)
                return
            except ResourceNotFoundError:
                previous = b""
            except HttpResponseError as exc:
                if getattr(exc, "error_code", None) != "InvalidBlobType":
                    raise
                previous = blob.download_blob().readall()
            blob.create_append_blob()
            self._append_blocks(blob, previous + data)

    @staticmethod
    def _append_blocks(blob, data: bytes) -> None:
        for start in range(0, len(data), _APPEND_BLOCK_LIMIT):
            blob.append_block(data[start:start + _APPEND_BLOCK_LIMIT])

    def get_log(self, run_id: str, step: str, attempt: int | None = None) -> str:
        """The step's log; with `attempt`, the kept log of that (failed, retried) attempt."""
        name = "log.txt" if attempt is None else f"log.attempt{int(attempt)}.txt"
        try:
            with translate_storage_errors(f"log of step '{step}' in run '{run_id}'"):
                data = self._container().download_blob(f"{_step_prefix(run_id, step)}/{name}").readall()
        except NotFound:
            if attempt is None and self._has_step(run_id, step):
                return ""  # the step started (or ended) without writing a line yet
            raise
        return data.decode("utf-8", errors="replace")

    def _has_step(self, run_id: str, step: str) -> bool:
        try:
            self.get_step(run_id, step)
        except NotFound:
            return False
        return True

    def keep_attempt_log(self, run_id: str, step: str, attempt: int) -> None:
        """Keep a failed attempt's log before the retry overwrites log.txt (no error if none)."""
        try:
            text = self.get_log(run_id, step)
        except NotFound:
            return
        with translate_storage_errors(f"log of step '{step}' in run '{run_id}'"):
            self._container().upload_blob(f"{_step_prefix(run_id, step)}/log.attempt{int(attempt)}.txt",
                                          text.encode("utf-8"), overwrite=True)

    # ----- run plan (immutable once written) ------------------------------------------------

    def put_plan(self, run_id: str, plan: dict) -> None:
        with translate_storage_errors(f"plan of run '{run_id}'"):
            self._container().upload_blob(f"{_run_prefix(run_id)}/plan.json",
                                          json.dumps(plan, sort_keys=True).encode("utf-8"), overwrite=True)

    def get_plan(self, run_id: str) -> dict:
        with translate_storage_errors(f"plan of run '{run_id}'"):
            data = self._container().download_blob(f"{_run_prefix(run_id)}/plan.json").readall()
        return json.loads(data)

    # ----- fingerprint ingredients (one blob per run: a step's share is read by `runs explain`) -----

    def put_fingerprints(self, run_id: str, ingredients_by_step: dict[str, dict]) -> None:
        """Every step's fingerprint ingredients in one write (a 1,000-step run is one request, not 1,000)."""
        with translate_storage_errors(f"fingerprints of run '{run_id}'"):
            self._container().upload_blob(f"{_run_prefix(run_id)}/fingerprints.json",
                                          json.dumps(ingredients_by_step, sort_keys=True).encode("utf-8"),
                                          overwrite=True)

    def get_fingerprint(self, run_id: str, step: str) -> dict:
        with translate_storage_errors(f"fingerprints of run '{run_id}'"):
            try:
                data = self._container().download_blob(f"{_run_prefix(run_id)}/fingerprints.json").readall()
            except ResourceNotFoundError:
                data = None
        if data is not None:
            ingredients = json.loads(data).get(check_path_segment(step, "step name"))
            if ingredients is None:
                raise NotFound(f"fingerprint of step '{step}' in run '{run_id}' was not found")
            return ingredients
        # Runs planned before fingerprints.json kept one blob per step.
        with translate_storage_errors(f"fingerprint of step '{step}' in run '{run_id}'"):
            data = self._container().download_blob(f"{_step_prefix(run_id, step)}/fingerprint.json").readall()
        return json.loads(data)
