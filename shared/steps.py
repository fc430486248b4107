"""The step executor behind the step_start / step_poll activities.

start_step: fingerprint -> reuse lookup -> (reused: done) | submit to compute -> short poll.
poll_step:  poll the compute job -> while running, tell the orchestrator when to ask again;
            when done, the backend has committed the outputs; record reuse, then the step.

Both are idempotent, because Durable runs activities at least once: a step whose record is
terminal is answered from the record; a step recorded Running with a job handle is polled, not
submitted again; a job the compute lost (the host restarted mid-step) is submitted again, which is
safe because outputs are only visible once committed.

Returns a StepProgress dict for the orchestrator:
    {"status": Completed|Failed|Running|Canceled, "handle": {...}|None, "pollAfterSeconds": n,
     "reused": bool, "error": {"code", "message"}|None}
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from shared.compute import get_backend
from shared.compute.base import DataRef, JobHandle, JobStatus, StepJobRequest
from shared.datastore import get_datastore
from shared.errors import InvalidRequest, MlpipeError, NotFound
from shared.fingerprint import (compute_step_fingerprint, dataset_fingerprint, pipeline_data_fingerprint,
                                step_settings)
from shared.pipelines import PublishedPipeline, get_published
from shared.redact import redact
from shared.registry import PipelineRegistry
from shared.reuse import ReuseIndex
from shared.runs import ErrorInfo, OutputRef, RunRecord, RunStore, StepRecord, utc_now
from shared.settings import get_settings
from shared.spec import DEFAULT_DATASTORE, InputRef, StepSpec, resolve_dataset_path, substitute_arguments
from shared.statuses import StepStatus

log = logging.getLogger("mlpipe.steps")

REMOTE_POLL_SECONDS = 15.0


@dataclass
class StepContext:
    run: RunRecord
    published: PublishedPipeline
    step: StepSpec

    @property
    def compute_type(self) -> str:
        return self.published.definition.compute_type(self.step.compute)

    def output_prefix(self, output: str) -> str:
        return f"runs/{self.run.Id}/{self.step.name}/{output}"


def _load(run_id: str, step_name: str) -> StepContext:
    run = RunStore().get_run(run_id, with_steps=False)
    published = get_published(run.PipelineId)
    return StepContext(run, published, published.definition.step(step_name))


def _progress(status: str, *, handle: dict | None = None, poll_after: float | None = None,
              reused: bool = False, error: dict | None = None) -> dict:
    return {"status": status, "handle": handle, "pollAfterSeconds": poll_after, "reused": reused, "error": error}


def _progress_of_record(record: StepRecord) -> dict:
    error = record.Error.model_dump() if record.Error else None
    return _progress(record.Status, reused=record.Reused, error=error)


def _existing_step(run_id: str, step_name: str) -> StepRecord | None:
    try:
        return RunStore().get_step(run_id, step_name)
    except NotFound:
        return None


# --- inputs and fingerprint ---------------------------------------------------------------------
def _dataset_input(ctx: StepContext, dataset_name: str) -> tuple[DataRef, str]:
    definition = ctx.published.definition
    dataset = definition.datasets[dataset_name]
    parameters = ctx.run.ParameterAssignments
    path = resolve_dataset_path(definition, dataset_name, parameters)
    datastore = dataset.datastore
    for parameter, assignment in (ctx.run.DataPathAssignments or {}).items():
        if dataset.path == "{parameters.%s}" % parameter:
            datastore = assignment["DataStoreName"]
    entries = get_datastore(datastore).dataset_entries(path)
    return DataRef(datastore=datastore, path=path, is_pipeline_data=False), dataset_fingerprint(entries)


def _pipeline_data_input(ctx: StepContext, ref: InputRef) -> tuple[DataRef, str]:
    producer = RunStore().get_step(ctx.run.Id, ref.name)
    if producer.Status != StepStatus.COMPLETED or ref.output not in producer.Outputs:
        raise MlpipeError(f"steps[{ctx.step.name}]: input {ref} is not available "
                          f"(step '{ref.name}' is {producer.Status})", code="InputNotReady")
    output = producer.Outputs[ref.output]
    data_ref = DataRef(datastore=output.Datastore, path=output.Path, is_pipeline_data=True)
    return data_ref, pipeline_data_fingerprint(producer.Fingerprint, ref.output)


def _resolve_inputs(ctx: StepContext) -> tuple[dict[str, DataRef], dict[str, str]]:
    refs, fingerprints = {}, {}
    for name, ref in ctx.step.input_refs().items():
        if ref.kind == "dataset":
            refs[name], fingerprints[name] = _dataset_input(ctx, ref.name)
        else:
            refs[name], fingerprints[name] = _pipeline_data_input(ctx, ref)
    return refs, fingerprints


def _fingerprint(ctx: StepContext, input_fingerprints: dict[str, str]):
    settings = step_settings(ctx.step, ctx.run.ParameterAssignments)
    source_hash = ctx.published.record.SourceSnapshots.get(ctx.step.name)
    return compute_step_fingerprint(ctx.step.type, settings, source_hash, input_fingerprints)


# --- reuse --------------------------------------------------------------------------------------
def _try_reuse(ctx: StepContext, fingerprint: str) -> dict | None:
    if not ctx.step.allow_reuse or ctx.run.RegenerateOutputs:
        return None
    hit = ReuseIndex().lookup(fingerprint)
    if hit is None or hit.run_id == ctx.run.Id:
        return None
    metrics = {}
    try:
        metrics = RunStore().get_step(hit.run_id, hit.step).Metrics
    except NotFound:
        pass  # the producing run's records were cleaned up; its committed outputs still count
    now = utc_now()
    RunStore().put_step(ctx.run.Id, StepRecord(
        Name=ctx.step.name, Status=StepStatus.COMPLETED.value, Reused=True, ReusedFromRunId=hit.run_id,
        Compute=ctx.step.compute, Fingerprint=fingerprint, StartTimeUtc=now, EndTimeUtc=now,
        Outputs={name: OutputRef(Datastore=DEFAULT_DATASTORE, Path=path) for name, path in hit.outputs.items()},
        Metrics=metrics))
    return _progress(StepStatus.COMPLETED.value, reused=True)


# --- submit / poll ------------------------------------------------------------------------------
def _job_request(ctx: StepContext, inputs: dict[str, DataRef]) -> StepJobRequest:
    step = ctx.step
    source_hash = ctx.published.record.SourceSnapshots.get(step.name)
    source_dir = PipelineRegistry().ensure_snapshot_local(source_hash) if source_hash else None
    script = (source_dir / step.script_name) if (source_dir and step.script_name) else None
    return StepJobRequest(
        run_id=ctx.run.Id, step_name=step.name, script=str(script or ""), source_dir=str(source_dir or ""),
        arguments=substitute_arguments(step, ctx.run.ParameterAssignments), inputs=inputs,
        outputs={name: ctx.output_prefix(name) for name in step.outputs},
        environment={k: str(v) for k, v in (step.environment or {}).items() if not isinstance(v, (dict, list))},
        compute_name=step.compute, compute_settings=_compute_settings(ctx))


def _compute_settings(ctx: StepContext) -> dict:
    computes = ctx.published.definition.computes
    return computes[ctx.step.compute].settings if ctx.step.compute in computes else {}


def _wait_seconds(ctx: StepContext) -> float:
    return get_settings().local_poll_seconds if ctx.compute_type == "local" else 0.0


def start_step(run_id: str, step_name: str) -> dict:
    existing = _existing_step(run_id, step_name)
    if existing and StepStatus(existing.Status).is_terminal:
        return _progress_of_record(existing)
    if existing and existing.JobHandle:
        return poll_step(run_id, step_name, existing.JobHandle)
    ctx = _load(run_id, step_name)
    try:
        inputs, input_fingerprints = _resolve_inputs(ctx)
    except (InvalidRequest, NotFound) as error:
        return _fail(ctx, None, "InputNotFound", error.message)
    fingerprint = _fingerprint(ctx, input_fingerprints)
    RunStore().put_fingerprint(run_id, step_name, fingerprint.ingredients)
    reused = _try_reuse(ctx, fingerprint.value)
    if reused:
        return reused
    return _submit(ctx, inputs, fingerprint.value, attempt=1)


def _submit(ctx: StepContext, inputs: dict[str, DataRef], fingerprint: str, attempt: int) -> dict:
    backend = get_backend(ctx.compute_type)
    handle = backend.submit(_job_request(ctx, inputs))
    record = StepRecord(Name=ctx.step.name, Status=StepStatus.RUNNING.value, Compute=ctx.step.compute,
                        Fingerprint=fingerprint, StartTimeUtc=utc_now(), JobHandle=handle.to_dict(),
                        Attempt=attempt)
    RunStore().put_step(ctx.run.Id, record)
    return _follow(ctx, record, backend.poll(handle, _wait_seconds(ctx)))


def poll_step(run_id: str, step_name: str, handle: dict) -> dict:
    existing = _existing_step(run_id, step_name)
    if existing and StepStatus(existing.Status).is_terminal:
        return _progress_of_record(existing)
    ctx = _load(run_id, step_name)
    record = existing or StepRecord(Name=step_name, Status=StepStatus.RUNNING.value, JobHandle=handle)
    backend = get_backend(ctx.compute_type)
    return _follow(ctx, record, backend.poll(JobHandle.from_dict(handle), _wait_seconds(ctx)))


def _follow(ctx: StepContext, record: StepRecord, status: JobStatus) -> dict:
    if status.state == "Running":
        poll_after = 0.5 if ctx.compute_type == "local" else REMOTE_POLL_SECONDS
        return _progress(StepStatus.RUNNING.value, handle=record.JobHandle, poll_after=poll_after)
    if status.state == "Lost":
        log.warning("run %s step %s: compute lost the job; submitting it again", ctx.run.Id, ctx.step.name)
        inputs, _ = _resolve_inputs(ctx)
        return _submit(ctx, inputs, record.Fingerprint, attempt=record.Attempt + 1)
    if status.state == "Completed":
        return _complete(ctx, record, status)
    if status.state == "Canceled":
        return _finish(ctx, record, StepStatus.CANCELED, None)
    return _finish(ctx, record, StepStatus.FAILED, {"code": "StepFailed", "message": status.error or "step failed"})


def _complete(ctx: StepContext, record: StepRecord, status: JobStatus) -> dict:
    outputs = {name: ctx.output_prefix(name) for name in ctx.step.outputs}
    if record.Fingerprint:
        ReuseIndex().record(record.Fingerprint, ctx.run.Id, ctx.step.name, ctx.run.PipelineId, outputs)
    record.Outputs = {name: OutputRef(Datastore=DEFAULT_DATASTORE, Path=path) for name, path in outputs.items()}
    record.Metrics = dict(status.metrics or {})
    return _finish(ctx, record, StepStatus.COMPLETED, None)


def _finish(ctx: StepContext, record: StepRecord, status: StepStatus, error: dict | None) -> dict:
    record.Status = status.value
    record.EndTimeUtc = utc_now()
    record.Error = ErrorInfo(code=error["code"], message=redact(error["message"])) if error else None
    record.JobHandle = None
    RunStore().put_step(ctx.run.Id, record)
    return _progress(status.value, error=record.Error.model_dump() if record.Error else None)


def _fail(ctx: StepContext, fingerprint: str | None, code: str, message: str) -> dict:
    record = StepRecord(Name=ctx.step.name, Status=StepStatus.RUNNING.value, Compute=ctx.step.compute,
                        Fingerprint=fingerprint, StartTimeUtc=utc_now())
    return _finish(ctx, record, StepStatus.FAILED, {"code": code, "message": message})
