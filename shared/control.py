"""The control plane behind the HTTP API: publish, pipelines, submit, runs (API.md section 3).

Each function takes plain values and returns API-shaped dicts; HTTP details (routes, status
codes, the Durable client) stay in functions/http_api.py.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared import __version__
from shared.datastore import get_datastore, list_datastores as _list_datastores, safe_blob_path
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.packaging import extract_package
from shared.pipelines import PublishedPipeline, from_record, get_published, remember
from shared.publishing import publish_directory
from shared.registry import PipelineRegistry
from shared.runs import RunRecord, RunStore, StepRecord, new_run_id
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
    return _pipeline_api(record, base_url)


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


def submit(pipeline_id: str, body: dict, *, endpoint_name: str | None = None) -> Submission:
    request = SubmitRequest.model_validate(body)
    record = PipelineRegistry().get(pipeline_id)  # fresh: Status may have changed
    if record.Status != "Active":
        raise Conflict(f"pipeline '{pipeline_id}' is disabled; enable it to submit", code="PipelineDisabled")
    published = from_record(record)
    parameters = validate_parameter_assignments(published.definition, request.ParameterAssignments)
    parameters = _apply_data_paths(published, request, parameters)
    run = RunRecord(
        Id=new_run_id(), Status="Queued", ExperimentName=request.ExperimentName, PipelineId=record.Id,
        EndpointName=endpoint_name, RunSource=request.RunSource or "API", ParameterAssignments=parameters,
        DataPathAssignments={k: v.model_dump() for k, v in request.DataPathAssignments.items()},
        Tags=request.Tags, Description=request.Description, RegenerateOutputs=request.RegenerateOutputs,
        ContinueOnStepFailure=request.ContinueOnStepFailure)
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


def get_run(run_id: str) -> dict:
    run = RunStore().get_run(run_id, with_steps=True)
    published = None
    if run.PipelineId:
        try:
            published = get_published(run.PipelineId)
        except NotFound:
            published = None
    return _run_api(run, published)


def list_runs(experiment: str | None = None, status: str | None = None, pipeline_id: str | None = None,
              top: str | int | None = None) -> list[dict]:
    if top is not None:
        try:
            top = int(top)
        except (TypeError, ValueError):
            raise InvalidRequest(f"top: expected a whole number, got {top!r}") from None
        if not 1 <= top <= 1000:
            raise InvalidRequest("top: must be between 1 and 1000")
    runs = RunStore().list_runs(experiment=experiment, status=status, pipeline_id=pipeline_id, top=top or 100)
    return [_run_api(run, None) for run in runs]


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
