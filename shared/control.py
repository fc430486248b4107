"""The control plane behind the HTTP API: publish, pipelines, submit, runs (API.md section 3).

Each function takes plain values and returns API-shaped dicts; HTTP details (routes, status
codes, the Durable client) stay in functions/http_api.py.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared import __version__, run_watch
from shared.api_models import (
    MAX_TAG_KEY,
    MAX_TAG_VALUE,
    MAX_TAGS,
    AddEndpointVersionRequest,
    CreateEndpointRequest,
    SetDefaultVersionRequest,
)
from shared.datastore import get_datastore, safe_blob_path
from shared.datastore import list_datastores as _list_datastores
from shared.endpoints import EndpointRecord, EndpointRegistry, normalise_version
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.packaging import extract_package
from shared.pipelines import PublishedPipeline, from_record, get_current, get_published, remember
from shared.publishing import publish_directory
from shared.read_cache import TtlCache
from shared.registry import PipelineRegistry
from shared.runs import RUN_STATUSES, RunRecord, RunStore, StepRecord, new_run_id
from shared.settings import get_settings
from shared.spec import load_definition, parse_definition, validate_parameter_assignments
from shared.statuses import RunStatus


def health() -> dict:
    return {"status": "ok", "version": __version__}


def list_datastores() -> list[dict]:
    return [datastore.to_api() for datastore in _list_datastores()]


# --- pipelines --------------------------------------------------------------------------------
def _pipeline_api(published_record, base_url: str | None) -> dict:
    endpoint = f"{base_url}/api/pipelines/{published_record.Id}/submit" if base_url else None
    return published_record.to_api(endpoint)


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Optional[str] = None
    description: Optional[str] = None
    version: Optional[str] = None
    definition: dict


def publish_json(body: dict, base_url: str | None = None) -> dict:
    request = PublishRequest.model_validate(body)
    try:
        definition = parse_definition(request.definition)
    except InvalidRequest as error:
        raise InvalidRequest(_prefix_lines("definition.", error.message)) from None
    for step in definition.steps:
        if step.source_directory or step.hash_paths:
            raise InvalidRequest(
                f"definition.steps[{step.name}].source_directory: a JSON publish carries no files; "
                "publish a zip package (Content-Type: application/zip) with pipeline.yaml and its sources")
    record = PipelineRegistry().publish(definition.model_dump(mode="json"), {},
                                        name=request.name or definition.name,
                                        description=request.description if request.description is not None
                                        else definition.description,
                                        version=request.version)
    remember(record, definition)
    return _pipeline_api(record, base_url)


def _prefix_lines(prefix: str, message: str) -> str:
    return "\n".join(prefix + line for line in message.splitlines())


def publish_package(data: bytes, *, name: str | None, description: str | None, version: str | None,
                    private: bool = False, base_url: str | None = None) -> dict:
    if not data:
        raise InvalidRequest("request body: expected a zip package, got an empty body")
    scratch = get_settings().data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(dir=scratch, prefix="publish-"))
    try:
        definition_file = extract_package(data, workspace)
        try:
            definition, base_dir = load_definition(definition_file)
        except InvalidRequest as error:  # name the file as the package does, not our scratch path
            raise InvalidRequest(error.message.replace(str(definition_file), "pipeline.yaml")) from None
        record = publish_directory(definition, base_dir, name=name or definition.name,
                                   description=description if description is not None else definition.description,
                                   version=version, private=private)
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    remember(record, definition)
    return _pipeline_api(record, base_url)


def list_pipelines(status: str = "Active", base_url: str | None = None) -> list[dict]:
    return [_pipeline_api(record, base_url) for record in PipelineRegistry().list(status)]


def get_pipeline(pipeline_id: str, base_url: str | None = None) -> dict:
    return _pipeline_api(PipelineRegistry().get(pipeline_id), base_url)


def set_pipeline_enabled(pipeline_id: str, enabled: bool, base_url: str | None = None) -> dict:
    record = PipelineRegistry().set_status(pipeline_id, "Active" if enabled else "Disabled")
    from_record(record)  # this process's next submit finds the new ETag cached
    return _pipeline_api(record, base_url)


# --- pipeline endpoints (AML PipelineEndpoint) -----------------------------------------------
def _endpoint_api(record: EndpointRecord, base_url: str | None) -> dict:
    endpoint = f"{base_url}/api/endpoints/{record.Name}/submit" if base_url else None
    return record.to_api(endpoint)


def create_endpoint(body: dict, base_url: str | None = None) -> dict:
    request = CreateEndpointRequest.model_validate(body)
    record = EndpointRegistry().create(request.name, request.pipelineId, request.description)
    return _endpoint_api(record, base_url)


def list_endpoints(status: str = "Active", base_url: str | None = None) -> list[dict]:
    return [_endpoint_api(record, base_url) for record in EndpointRegistry().list(status)]


def get_endpoint(name: str, base_url: str | None = None) -> dict:
    return _endpoint_api(EndpointRegistry().get(name), base_url)


def add_endpoint_version(name: str, body: dict, base_url: str | None = None) -> dict:
    request = AddEndpointVersionRequest.model_validate(body)
    return _endpoint_api(EndpointRegistry().add_version(name, request.pipelineId), base_url)


def set_endpoint_default(name: str, body: dict, base_url: str | None = None) -> dict:
    request = SetDefaultVersionRequest.model_validate(body)
    return _endpoint_api(EndpointRegistry().set_default(name, request.version), base_url)


def set_endpoint_enabled(name: str, enabled: bool, base_url: str | None = None) -> dict:
    return _endpoint_api(EndpointRegistry().set_status(name, "Active" if enabled else "Disabled"), base_url)


def submit_to_endpoint(name: str, body: dict, query_version: str | None = None, *,
                       run_id: str | None = None) -> Submission:
    """Submit to the endpoint's default version, or to body `PipelineVersion` / query `pipelineVersion`."""
    EndpointSubmitRequest.model_validate(body)  # body errors first, as for a pipeline submit
    body_version = body.get("PipelineVersion")
    if body_version is not None:
        body_version = normalise_version(body_version, "PipelineVersion")
    if query_version is not None:
        query_version = normalise_version(query_version, "pipelineVersion")
    if body_version is not None and query_version is not None and body_version != query_version:
        raise InvalidRequest(f"PipelineVersion: the body says {body_version!r} but the query "
                             f"pipelineVersion says {query_version!r}")
    field = "PipelineVersion" if body_version is not None else "pipelineVersion"
    pipeline_id, chosen = EndpointRegistry().resolve(name, body_version or query_version, field=field)
    return submit(pipeline_id, body, endpoint_name=name, endpoint_version=chosen, run_id=run_id)


# --- submit -----------------------------------------------------------------------------------
class DataPathAssignment(BaseModel):
    model_config = ConfigDict(extra="allow")
    DataStoreName: str = Field(min_length=1)
    RelativePath: str = Field(min_length=1)


class SubmitRequest(BaseModel):
    """The Azure ML published-pipeline submit body; other AML fields are accepted and kept."""

    model_config = ConfigDict(extra="allow")
    ExperimentName: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\- ]*$")
    ParameterAssignments: dict[str, Any] = Field(default_factory=dict)
    DataPathAssignments: dict[str, DataPathAssignment] = Field(default_factory=dict)
    RunSource: Optional[str] = None
    RegenerateOutputs: bool = False
    ContinueOnStepFailure: bool = False
    Description: Optional[str] = None
    ParentRunId: Optional[str] = None
    Tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("Tags")
    @classmethod
    def _check_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        check_tags(tags)
        return tags


def check_tags(tags: dict, field: str = "Tags") -> None:
    """Tag limits: at most MAX_TAGS tags, keys 1-MAX_TAG_KEY characters without ':', values up to MAX_TAG_VALUE."""
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags, got {len(tags)}")
    for key, value in tags.items():
        if not key or len(key) > MAX_TAG_KEY or ":" in key or any(ord(ch) < 32 for ch in key):
            raise ValueError(f"tag key {key!r} must be 1-{MAX_TAG_KEY} characters, no ':' or control characters")
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TAG_VALUE):
            raise ValueError(f"tag {key!r}: the value must be a string of at most {MAX_TAG_VALUE} characters")


class EndpointSubmitRequest(SubmitRequest):
    """A submit to a pipeline endpoint: the pipeline submit body, plus the version to run."""

    PipelineVersion: Optional[Union[str, int]] = Field(
        default=None, description='the endpoint version to run (default: its DefaultVersion), e.g. "1"')


@dataclass(frozen=True)
class Submission:
    run: dict
    orchestration_input: dict

    @property
    def run_id(self) -> str:
        return self.run["Id"]


def _apply_data_paths(published: PublishedPipeline, request: SubmitRequest, parameters: dict) -> dict:
    """DataPathAssignments swap a str parameter's datastore path (as AML's DataPath parameters)."""
    assignments = dict(parameters)
    for name, data_path in request.DataPathAssignments.items():
        where = f"DataPathAssignments.{name}"
        if name not in published.definition.parameters:
            raise InvalidRequest(f"{where}: unknown parameter")
        if not isinstance(published.definition.parameters[name], str):
            raise InvalidRequest(f"{where}: parameter is not a path (str) parameter")
        try:
            get_datastore(data_path.DataStoreName)
        except NotFound:
            raise InvalidRequest(f"{where}.DataStoreName: unknown datastore '{data_path.DataStoreName}'") from None
        try:
            assignments[name] = safe_blob_path(data_path.RelativePath)
        except InvalidRequest as error:
            raise InvalidRequest(f"{where}.RelativePath: {error.message}") from None
    return assignments


def submit(pipeline_id: str, body: dict, *, endpoint_name: str | None = None,
           endpoint_version: str | None = None, run_id: str | None = None) -> Submission:
    """Create the run record (Queued). `run_id`: a deterministic id (schedule due time, queue message id),
    so a second submit of the same thing is a Conflict instead of a second run."""
    request = SubmitRequest.model_validate(body)
    published = get_current(pipeline_id)  # Status as stored now, whichever host changed it
    record = published.record
    if record.Status != "Active":
        raise Conflict(f"pipeline '{pipeline_id}' is disabled; enable it to submit", code="PipelineDisabled")
    parameters = validate_parameter_assignments(published.definition, request.ParameterAssignments)
    parameters = _apply_data_paths(published, request, parameters)
    run = RunRecord(
        Id=run_id or new_run_id(), Status="Queued", ExperimentName=request.ExperimentName, PipelineId=record.Id,
        EndpointName=endpoint_name, RunSource=request.RunSource or "API", ParameterAssignments=parameters,
        DataPathAssignments={k: v.model_dump() for k, v in request.DataPathAssignments.items()},
        Tags=request.Tags, Description=request.Description, RegenerateOutputs=request.RegenerateOutputs,
        ContinueOnStepFailure=request.ContinueOnStepFailure)
    if endpoint_name is not None:
        run.PipelineVersion = endpoint_version
    RunStore().create_run(run)
    orchestration_input = {"runId": run.Id, "steps": published.definition.dependencies(),
                           "continueOnStepFailure": request.ContinueOnStepFailure}
    return Submission(_run_api(run, published), orchestration_input)


# --- runs -------------------------------------------------------------------------------------
def _run_api(run: RunRecord, published: PublishedPipeline | None) -> dict:
    """The run body with every step of the pipeline, NotStarted where nothing was recorded yet."""
    body = run.to_api()
    recorded = {step.Name: step for step in run.Steps}
    names = published.definition.step_names if published else list(recorded)
    steps = []
    for name in names:
        step = recorded.get(name) or StepRecord(Name=name, Compute=_compute_of(published, name))
        step_body = step.to_api()
        step_body.pop("JobHandle", None)
        steps.append(step_body)
    body["Steps"] = steps
    return body


def _compute_of(published: PublishedPipeline | None, step: str) -> str | None:
    return published.definition.step(step).compute if published else None


ENDED_RUN_TTL_SECONDS = 2.0
_run_reads = TtlCache()


def _read_run(run_id: str, record: RunRecord | None = None) -> dict:
    """The run's API body with its steps; `record`, if given, is its run.json as just read."""
    store = RunStore()
    run = store.with_steps(record) if record is not None else store.get_run(run_id, with_steps=True)
    published = None
    if run.PipelineId:
        try:
            published = get_published(run.PipelineId)
        except NotFound:
            published = None
    return _run_api(run, published)


def _run_ttl(body: dict) -> float:
    """Only an ended run is cached: it changes no more but for tags (invalidated on write). A run
    in progress is read fresh; pollers read it without its steps (one storage read)."""
    return ENDED_RUN_TTL_SECONDS if RunStatus(body["Status"]).is_terminal else 0.0


def get_run(run_id: str, include_steps: str | bool = True, wait_seconds: str | float | None = None) -> dict:
    """The run with its steps; polled often, so served from a short-lived cache (shared/read_cache.py).

    `include_steps=false` reads the run record alone (one storage read, whatever the number of
    steps): what a client polling for the end of a large run needs. Steps is then an empty list.
    `wait_seconds` (up to 30): answer once the run has ended or that long has passed, whichever
    comes first (shared/run_watch.py) — one request instead of many polls.
    """
    if str(include_steps).lower() not in ("true", "false"):
        raise InvalidRequest(f"includeSteps: expected true or false, got {include_steps!r}")
    wait = _wait_seconds(wait_seconds)
    ended = _wait_until_ended(run_id, wait) if wait else None
    if str(include_steps).lower() == "false":
        body = (ended or RunStore().get_run(run_id, with_steps=False)).to_api()
        body["Steps"] = []
        return body
    return copy.deepcopy(_run_reads.get_or_load(run_id, lambda: _read_run(run_id, ended), _run_ttl))


def _wait_seconds(value: str | float | None) -> float:
    if value is None or value == "":
        return 0.0
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 <= seconds <= run_watch.MAX_WAIT_SECONDS:  # also refuses nan
        raise InvalidRequest(f"waitSeconds: expected a number of seconds from 0 to "
                             f"{run_watch.MAX_WAIT_SECONDS:g}, got {value!r}")
    return seconds


def _wait_until_ended(run_id: str, seconds: float) -> RunRecord | None:
    """The run's record (without steps) once it has ended; None if it had not within `seconds`."""
    deadline = time.monotonic() + seconds
    store = RunStore()
    while not RunStatus((record := store.get_run(run_id, with_steps=False)).Status).is_terminal:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        run_watch.wait_ended_here(run_id, min(remaining, run_watch.RECHECK_SECONDS))
    return record


def list_runs(experiment: str | None = None, status: str | None = None, pipeline_id: str | None = None,
              top: str | int | None = None, tag: str | None = None, endpoint_name: str | None = None) -> list[dict]:
    """Runs newest first; `tag` is `key` (the run has the tag) or `key:value` (with that value)."""
    if top is not None:
        try:
            top = int(top)
        except (TypeError, ValueError):
            raise InvalidRequest(f"top: expected a whole number, got {top!r}") from None
        if not 1 <= top <= 1000:
            raise InvalidRequest("top: must be between 1 and 1000")
    if status is not None and status not in RUN_STATUSES:
        raise InvalidRequest(f"status: {status!r} is not a run status ({', '.join(RUN_STATUSES)})")
    tag_filter = None
    if tag is not None:
        key, sep, value = tag.partition(":")
        if not key:
            raise InvalidRequest(f"tag: expected KEY or KEY:VALUE, got {tag!r}")
        tag_filter = (key, value if sep else None)
    runs = RunStore().list_runs(experiment=experiment, status=status, pipeline_id=pipeline_id, top=top or 100,
                                tag=tag_filter, endpoint_name=endpoint_name)
    return [_run_api(run, None) for run in runs]


def update_run_tags(run_id: str, body: dict, *, replace: bool = False) -> dict:
    """Merge `body` ({key: value}; a null value removes the key) into the run's Tags; the run after.

    With `replace` the body becomes the whole tag set. Tags live on run.json and in its index
    entry, so `GET /api/runs?tag=key[:value]` finds the run at once.
    """
    for key, value in body.items():
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"{key}: a tag value must be a string or null, got {type(value).__name__}")
    try:
        check_tags(body)
    except ValueError as error:
        raise InvalidRequest(f"request body: {error}") from None

    def change(run: RunRecord) -> None:
        tags = {} if replace else dict(run.Tags)
        for key, value in body.items():
            if value is None:
                tags.pop(key, None)
            else:
                tags[key] = value
        try:
            check_tags(tags)
        except ValueError as error:
            raise InvalidRequest(f"request body: {error}") from None
        run.Tags = tags

    RunStore().modify_run(run_id, change)
    _run_reads.invalidate(run_id)
    return get_run(run_id)


def request_cancel(run_id: str) -> tuple[dict, bool]:
    """Mark the run CancelRequested; (run body, whether the orchestration must be told).

    Cancelling a run that already ended changes nothing (as in Azure ML) and is not an error.
    """
    def mark(run: RunRecord) -> None:
        if not RunStatus(run.Status).is_terminal:
            run.Status = RunStatus.CANCEL_REQUESTED.value

    before = RunStore().get_run(run_id, with_steps=False)
    if RunStatus(before.Status).is_terminal:
        return get_run(run_id), False
    RunStore().modify_run(run_id, mark)
    _run_reads.invalidate(run_id)
    return get_run(run_id), True


def get_step_logs(run_id: str, step: str, attempt: str | None = None) -> str:
    """The step's log, or with `attempt` the kept log of an earlier, failed attempt."""
    _require_step(run_id, step)
    if attempt is not None:
        if not str(attempt).isdigit() or int(attempt) < 1:
            raise InvalidRequest(f"attempt: expected a positive whole number, got {attempt!r}")
        return RunStore().get_log(run_id, step, int(attempt))
    return RunStore().get_log(run_id, step)


def get_step_fingerprint(run_id: str, step: str) -> dict:
    _require_step(run_id, step)
    return RunStore().get_fingerprint(run_id, step)


def _require_step(run_id: str, step: str) -> None:
    run = RunStore().get_run(run_id, with_steps=False)
    if run.PipelineId:
        get_published(run.PipelineId).definition.step(step)  # NotFound naming the step
