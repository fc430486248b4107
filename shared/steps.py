"""The step executor behind the step_start / step_poll activities.

start_step: claim the plan's fingerprint (shared/reuse.py) -> reused: done | another run computes
            it: wait | ours: submit -> short poll.
poll_step:  poll the compute job; while it runs, tell the orchestrator when to ask again;
            when it is done the backend has committed the outputs: record reuse and the step.

Both are idempotent, because Durable runs activities at least once: a step whose reuse record
names this very run already completed; a job the compute lost (the host restarted mid-step) is
submitted again, which is safe because outputs only become visible once committed.

Storage is kept off the hot path: the plan (fingerprints, dataset locations) is cached per
process, upstream outputs arrive in the activity input, the Running record is written in the
background and only for a step still running after RUNNING_RECORD_GRACE_SECONDS, and a completed
step's records are written behind (shared/deferred_writes.py). A fresh step that prints nothing
costs one request on its critical path: the claim.

Returns a StepProgress dict for the orchestrator:
    {"status": Completed|Failed|Running|Canceled, "handle": {...}|None, "pollAfterSeconds": n,
     "reused": bool, "outputs": {name: {"Datastore", "Path"}}, "error": {"code", "message"}|None}
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from shared import deferred_writes, events
from shared.compute import get_backend
from shared.compute.base import DataRef, Gate, JobHandle, JobStatus, StepJobRequest, submit_gated
from shared.errors import NotFound
from shared.pipelines import PublishedPipeline, get_published
from shared.redact import redact
from shared.registry import PipelineRegistry
from shared.reuse import Claim, Holder, ReuseIndex, ReuseRecord
from shared.run_plan import load_plan, outputs_body, reused_step_record
from shared.runs import ErrorInfo, OutputRef, RunStore, StepRecord, utc_now
from shared.settings import get_settings
from shared.spec import DEFAULT_DATASTORE, StepSpec, substitute_arguments
from shared.statuses import StepStatus

log = logging.getLogger("mlpipe.steps")

REMOTE_POLL_SECONDS = 15.0
LOCAL_POLL_SECONDS = 0.5
MAX_RETRY_DELAY_SECONDS = 3600.0
SINGLE_FLIGHT_POLL_SECONDS = 1.0
RUNNING_RECORD_GRACE_SECONDS = 0.2

# Running records and StepStarted events are written off the hot path; a step's final record
# and end event wait for them. Those run on deferred_writes' pool and may wait on this one
# (never the other way round), so the pools cannot deadlock.
_record_writer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mlpipe-records")
_pending_writes: dict[tuple[str, str], Future] = {}
_pending_lock = threading.Lock()


@dataclass
class StepContext:
    run_id: str
    plan: dict
    published: PublishedPipeline
    step: StepSpec

    @property
    def compute_type(self) -> str:
        return self.published.definition.compute_type(self.step.compute)

    @property
    def fingerprint(self) -> str | None:
        return self.plan["steps"][self.step.name]["fingerprint"]

    @property
    def reuse_allowed(self) -> bool:
        return self.step.allow_reuse and not self.plan["regenerateOutputs"]

    def output_prefix(self, output: str) -> str:
        return f"runs/{self.run_id}/{self.step.name}/{output}"


def _context(run_id: str, step_name: str) -> StepContext:
    plan = load_plan(run_id)
    published = get_published(plan["pipelineId"])
    return StepContext(run_id, plan, published, published.definition.step(step_name))


def _progress(status: str, *, handle: dict | None = None, poll_after: float | None = None,
              reused: bool = False, outputs: dict | None = None, error: dict | None = None,
              retry: dict | None = None) -> dict:
    progress = {"status": status, "handle": handle, "pollAfterSeconds": poll_after, "reused": reused,
                "outputs": outputs or {}, "error": error}
    if retry:
        progress["retry"] = retry  # {"attempt": next attempt, "afterSeconds": backoff}
    return progress


# --- records ------------------------------------------------------------------------------------
def _write_in_background(run_id: str, record: StepRecord) -> None:
    future = _record_writer.submit(RunStore().put_step, run_id, record.model_copy(deep=True))
    with _pending_lock:
        _pending_writes[(run_id, record.Name)] = future


def _write_final(run_id: str, record: StepRecord) -> None:
    with _pending_lock:
        pending = _pending_writes.pop((run_id, record.Name), None)
    if pending is not None:
        try:
            pending.result()
        except Exception as error:  # noqa: BLE001 - the final record supersedes it anyway
            log.warning("run %s step %s: Running record not written: %s", run_id, record.Name, redact(str(error)))
    RunStore().put_step(run_id, record)


# --- run events (shared/events.py): StepStarted off the hot path, the step's end event after it ------
_pending_started: dict[tuple[str, str], Future] = {}


def _step_started_in_background(ctx: StepContext, attempt: int) -> None:
    future = _record_writer.submit(events.step_event, events.STEP_STARTED, ctx.run_id, ctx.step.name,
                                   ctx.plan["pipelineId"], attempt=attempt, status=StepStatus.RUNNING.value)
    with _pending_lock:
        _pending_started[(ctx.run_id, ctx.step.name)] = future


def _step_event(ctx: StepContext, event_type: str, status: StepStatus, **fields) -> None:
    """Send a step's event; StepStarted, if still being sent, goes first (a send error fails the activity,
    which Durable retries, so the events are at least once)."""
    with _pending_lock:
        started = _pending_started.pop((ctx.run_id, ctx.step.name), None)
    if started is not None:
        started.result()
    events.step_event(event_type, ctx.run_id, ctx.step.name, ctx.plan["pipelineId"], status=status.value, **fields)


# --- start --------------------------------------------------------------------------------------
def _inputs(ctx: StepContext, upstream_outputs: dict) -> dict[str, DataRef]:
    datasets = ctx.plan["steps"][ctx.step.name]["datasets"]
    refs = {}
    for name, ref in ctx.step.input_refs().items():
        if ref.kind == "dataset":
            refs[name] = DataRef(datastore=datasets[name]["datastore"], path=datasets[name]["path"])
        else:
            output = upstream_outputs[ref.name][ref.output]
            refs[name] = DataRef(datastore=output["Datastore"], path=output["Path"], is_pipeline_data=True)
    return refs


def start_step(run_id: str, step_name: str, upstream_outputs: dict | None = None, attempt: int = 1) -> dict:
    ctx = _context(run_id, step_name)
    planned_error = ctx.plan["steps"][step_name]["error"]
    if planned_error:
        return _finish(ctx, _new_record(ctx), StepStatus.FAILED, {"code": "InputNotFound", "message": planned_error})
    inputs = _inputs(ctx, upstream_outputs or {})
    if not ctx.reuse_allowed:
        hit = ReuseIndex().lookup(ctx.fingerprint)
        if hit is not None and hit.run_id == run_id and hit.step == step_name:
            return _reuse(ctx, hit)
        return _submit(ctx, inputs, attempt)
    # One request: claim the fingerprint, or learn who computed it (reuse) or computes it (wait).
    # It is the gate of the submit: local compute starts the interpreter meanwhile.
    claims: list[Claim] = []

    def claimed() -> bool:
        claims.append(ReuseIndex().claim(ctx.fingerprint, run_id, step_name))
        return claims[-1].ours

    try:
        progress = _submit(ctx, inputs, attempt, gate=claimed)
    except Exception:
        if claims and claims[-1].ours:  # e.g. an input could not be staged: let other runs try
            _release(ctx)
        raise
    if progress is not None:
        return progress
    if claims[-1].reusable is not None:
        return _reuse(ctx, claims[-1].reusable)
    return _wait_for(ctx, claims[-1].held_by, attempt)


def _reuse(ctx: StepContext, hit: ReuseRecord) -> dict:
    if hit.run_id == ctx.run_id and hit.step == ctx.step.name:  # this step ran already (activity re-run)
        _step_event(ctx, events.STEP_COMPLETED, StepStatus.COMPLETED)  # again: an earlier send may have failed
        return _progress(StepStatus.COMPLETED.value, outputs=outputs_body(hit.outputs))
    RunStore().put_step(ctx.run_id, reused_step_record(ctx.step.name, ctx.step.compute, ctx.fingerprint, hit))
    _step_event(ctx, events.STEP_REUSED, StepStatus.COMPLETED, reused_from=hit.run_id)
    return _progress(StepStatus.COMPLETED.value, reused=True, outputs=outputs_body(hit.outputs))


def _wait_for(ctx: StepContext, holder: Holder, attempt: int) -> dict:
    """Another run is computing this very fingerprint: show Queued, ask again in a moment."""
    log.info("run %s step %s: waiting for run %s, which computes the same step", ctx.run_id, ctx.step.name,
             holder.run_id)
    RunStore().put_step(ctx.run_id, StepRecord(Name=ctx.step.name, Status=StepStatus.QUEUED.value,
                                               Compute=ctx.step.compute, Fingerprint=ctx.fingerprint))
    return _progress(StepStatus.RUNNING.value, retry={"attempt": attempt, "afterSeconds": SINGLE_FLIGHT_POLL_SECONDS})


def _new_record(ctx: StepContext, **fields) -> StepRecord:
    return StepRecord(Name=ctx.step.name, Status=StepStatus.RUNNING.value, Compute=ctx.step.compute,
                      Fingerprint=ctx.fingerprint, StartTimeUtc=utc_now(), **fields)


def _job_request(ctx: StepContext, inputs: dict[str, DataRef], attempt: int = 1) -> StepJobRequest:
    step = ctx.step
    source_hash = ctx.published.record.SourceSnapshots.get(step.name)
    source_dir = PipelineRegistry().ensure_snapshot_local(source_hash) if source_hash else None
    # Steps without a script (databricks notebooks, data_transfer) leave `script` empty.
    script = (source_dir / step.script_name) if (source_dir and step.script_name) else None
    return StepJobRequest(
        run_id=ctx.run_id, step_name=step.name, script=str(script or ""), source_dir=str(source_dir or ""),
        arguments=substitute_arguments(step, ctx.plan["parameters"]), inputs=inputs,
        outputs={name: ctx.output_prefix(name) for name in step.outputs},
        environment={k: str(v) for k, v in (step.environment or {}).items() if not isinstance(v, (dict, list))},
        compute_name=step.compute, compute_settings=_compute_settings(ctx),
        step_type=step.type, step_settings=dict(step.settings), attempt=attempt)


def _compute_settings(ctx: StepContext) -> dict:
    computes = ctx.published.definition.computes
    return computes[ctx.step.compute].settings if ctx.step.compute in computes else {}


def _wait_seconds(ctx: StepContext) -> float:
    return get_settings().local_poll_seconds if ctx.compute_type == "local" else 0.0


def _submit(ctx: StepContext, inputs: dict[str, DataRef], attempt: int, gate: Gate | None = None) -> dict | None:
    """Submit and follow the job; None if the gate said no (nothing ran)."""
    backend = get_backend(ctx.compute_type)
    request = _job_request(ctx, inputs, attempt)
    handle = submit_gated(backend, request, gate)
    deferred_writes.release(ctx.run_id)  # the previous step's records: written while this one runs
    if handle is None:
        return None
    record = _new_record(ctx, JobHandle=handle.to_dict(), Attempt=attempt)
    _step_started_in_background(ctx, attempt)
    wait = _wait_seconds(ctx)
    grace = min(wait, RUNNING_RECORD_GRACE_SECONDS)
    # A step that ends within the grace period never needs its Running record: its final record is
    # the first one written (one storage write per step saved; it shows NotStarted that long).
    status = backend.poll(handle, grace)
    if status.state == "Running":
        _write_in_background(ctx.run_id, record)
        if wait > grace:  # remote compute does not wait: one poll, as before
            status = backend.poll(handle, wait - grace)
    return _follow(ctx, record, status, inputs)


# --- poll ---------------------------------------------------------------------------------------
def poll_step(run_id: str, step_name: str, handle: dict, upstream_outputs: dict | None = None) -> dict:
    ctx = _context(run_id, step_name)
    try:
        record = RunStore().get_step(run_id, step_name)
    except NotFound:
        record = _new_record(ctx, JobHandle=handle)
    if StepStatus(record.Status).is_terminal:
        error = record.Error.model_dump() if record.Error else None
        outputs = {name: ref.model_dump() for name, ref in record.Outputs.items()}
        # A retried poll after the step ended (e.g. its end event failed to send): send it again, same id.
        if record.Status in (StepStatus.COMPLETED.value, StepStatus.FAILED.value) and not record.Reused:
            done = events.STEP_COMPLETED if record.Status == StepStatus.COMPLETED.value else events.STEP_FAILED
            _step_event(ctx, done, StepStatus(record.Status), attempt=record.Attempt or None, error=error)
        return _progress(record.Status, reused=record.Reused, outputs=outputs, error=error)
    backend = get_backend(ctx.compute_type)
    status = backend.poll(JobHandle.from_dict(handle), _wait_seconds(ctx))
    return _follow(ctx, record, status, None, upstream_outputs)


def _follow(ctx: StepContext, record: StepRecord, status: JobStatus, inputs: dict | None,
            upstream_outputs: dict | None = None) -> dict:
    if status.state == "Running":
        if ctx.reuse_allowed:
            ReuseIndex().refresh(ctx.fingerprint, ctx.run_id, ctx.step.name)
        poll_after = LOCAL_POLL_SECONDS if ctx.compute_type == "local" else REMOTE_POLL_SECONDS
        return _progress(StepStatus.RUNNING.value, handle=record.JobHandle, poll_after=poll_after)
    if status.state == "Lost":
        log.warning("run %s step %s: compute lost the job; submitting it again", ctx.run_id, ctx.step.name)
        inputs = inputs if inputs is not None else _inputs(ctx, upstream_outputs or {})
        return _submit(ctx, inputs, attempt=record.Attempt + 1)
    if status.state == "Completed":
        return _complete(ctx, record, status)
    if status.state == "Canceled":
        return _finish(ctx, record, StepStatus.CANCELED, None)
    error = {"code": "StepFailed", "message": status.error or "step failed"}
    if record.Attempt <= ctx.step.max_retries:
        return _retry_later(ctx, record, error)
    return _finish(ctx, record, StepStatus.FAILED, error)


def _retry_later(ctx: StepContext, record: StepRecord, error: dict) -> dict:
    """The attempt failed and retries remain: keep its log, tell the orchestrator when to retry.

    The delay doubles with every attempt (retry_interval_seconds, 2x, 4x, ...), capped at an hour.
    """
    RunStore().keep_attempt_log(ctx.run_id, ctx.step.name, record.Attempt)
    delay = min(ctx.step.retry_interval_seconds * 2 ** (record.Attempt - 1), MAX_RETRY_DELAY_SECONDS)
    record.Error = ErrorInfo(code=error["code"], message=redact(
        f"attempt {record.Attempt} of {ctx.step.max_retries + 1} failed, retrying in {delay:g}s: {error['message']}"))
    record.JobHandle = None
    _write_final(ctx.run_id, record)
    log.info("run %s step %s: attempt %d failed; retry in %gs", ctx.run_id, ctx.step.name, record.Attempt, delay)
    return _progress(StepStatus.RUNNING.value, retry={"attempt": record.Attempt + 1, "afterSeconds": delay},
                     error=record.Error.model_dump())


def _complete(ctx: StepContext, record: StepRecord, status: JobStatus) -> dict:
    outputs = {name: ctx.output_prefix(name) for name in ctx.step.outputs}
    record.Outputs = {name: OutputRef(Datastore=DEFAULT_DATASTORE, Path=path) for name, path in outputs.items()}
    record.Metrics = dict(status.metrics or {})
    pipeline_id = ctx.plan["pipelineId"]
    record.Status = StepStatus.COMPLETED.value
    record.EndTimeUtc = utc_now()
    # The outputs are committed (the backend wrote their manifests). What is left (the reuse
    # record, which replaces this step's claim so waiting runs reuse it, the step record and the
    # StepCompleted event) is written behind: nothing downstream reads it (shared/deferred_writes.py).
    deferred_writes.defer(ctx.run_id, ctx.step.name, [
        lambda: ReuseIndex().record(ctx.fingerprint, ctx.run_id, ctx.step.name, pipeline_id, outputs,
                                    record.Metrics),
        lambda: _finalise(ctx, record.model_copy(deep=True), StepStatus.COMPLETED, None,
                          end_time=record.EndTimeUtc),
        lambda: _step_event(ctx, events.STEP_COMPLETED, StepStatus.COMPLETED, attempt=record.Attempt),
    ])
    return _progress(StepStatus.COMPLETED.value, outputs=outputs_body(outputs))


def _release(ctx: StepContext) -> None:
    if ctx.reuse_allowed and ctx.fingerprint:
        ReuseIndex().release(ctx.fingerprint, ctx.run_id, ctx.step.name)


def _finalise(ctx: StepContext, record: StepRecord, status: StepStatus, error: dict | None,
              end_time: str | None = None) -> StepRecord:
    record.Status = status.value
    record.EndTimeUtc = end_time or utc_now()
    record.Error = ErrorInfo(code=error["code"], message=redact(error["message"])) if error else None
    record.JobHandle = None
    _write_final(ctx.run_id, record)
    return record


def _finish(ctx: StepContext, record: StepRecord, status: StepStatus, error: dict | None) -> dict:
    record = _finalise(ctx, record, status, error)
    _release(ctx)  # failed or canceled: a run waiting on this fingerprint computes it itself
    if status == StepStatus.FAILED:
        _step_event(ctx, events.STEP_FAILED, status, attempt=record.Attempt or None,
                    error=record.Error.model_dump() if record.Error else None)
    return _progress(status.value, error=record.Error.model_dump() if record.Error else None)
