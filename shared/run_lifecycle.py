"""Run-level record changes made by activities: steps that will not run, the run finished.

(The run is marked Running by the run_plan activity, shared/run_plan.py.)

Each is idempotent (Durable may run an activity twice): a terminal record is never changed back.
"""

from __future__ import annotations

import time

from shared import deferred_writes, events, run_watch
from shared.errors import NotFound
from shared.redact import redact
from shared.reuse import ReuseIndex
from shared.run_plan import load_plan
from shared.runs import ErrorInfo, OutputRef, RunRecord, RunStore, StepRecord, utc_now
from shared.statuses import RunStatus, StepStatus
from shared.storage import parallel_map


def mark_steps_not_run(run_id: str, steps_by_status: dict[str, list[str]]) -> dict:
    """Record Skipped (downstream of a failure) and Canceled (run stopping) steps."""
    store = RunStore()
    now = utc_now()
    recorded = []
    for status, names in steps_by_status.items():
        for name in names:
            store.put_step(run_id, StepRecord(Name=name, Status=StepStatus(status).value, EndTimeUtc=now))
            recorded.append(name)
    return {"recorded": recorded}


def mark_step_failed(run_id: str, step: str, error: dict) -> dict:
    """Record a step Failed whose activity kept raising (infrastructure retries exhausted)."""
    store = RunStore()
    try:
        record = store.get_step(run_id, step)
    except NotFound:
        record = StepRecord(Name=step)
    if StepStatus(record.Status).is_terminal:
        return {"status": record.Status}
    record.Status = StepStatus.FAILED.value
    record.EndTimeUtc = utc_now()
    record.JobHandle = None
    record.Error = ErrorInfo(code=error.get("code", "ActivityFailed"), message=redact(error.get("message", "")))
    store.put_step(run_id, record)
    _give_back_claim(run_id, step)
    return {"status": record.Status}


def _give_back_claim(run_id: str, step: str) -> None:
    """A run waiting on this step's fingerprint computes it itself now, not after the claim expires."""
    try:
        fingerprint = load_plan(run_id)["steps"].get(step, {}).get("fingerprint")
    except NotFound:
        return
    if fingerprint:
        ReuseIndex().release(fingerprint, run_id, step)


def _failure_message(store: RunStore, run_id: str, failed_steps: list[str]) -> str:
    first = failed_steps[0]
    try:
        error = store.get_step(run_id, first).Error
    except Exception:  # noqa: BLE001 - the summary must not fail the run's finish
        error = None
    detail = f": {error.message}" if error else ""
    names = ", ".join(failed_steps)
    return f"step{'s' if len(failed_steps) > 1 else ''} {names} failed{detail}"


def record_completed_steps(run_id: str, completed: dict[str, dict]) -> list[str]:
    """Make sure every step the orchestrator saw complete has its Completed record and event.

    This process's write-behind for the run is waited for first; a step whose record is still
    missing or not terminal (written behind by another process still, or lost with a crashed one)
    is recorded from what the orchestrator knows (its outputs) and its StepCompleted event sent
    again (consumers de-duplicate on the stable event id). Returns the steps recorded here."""
    written_here = deferred_writes.flush(run_id)
    if not completed or set(completed) <= written_here:
        return []  # the common case: no listing needed
    store = RunStore()
    terminal = {record.Name for record in store.read_steps(run_id) if StepStatus(record.Status).is_terminal}
    missing = [name for name in completed if name not in terminal]
    if not missing:
        return []
    run = store.get_run(run_id, with_steps=False)
    now = utc_now()

    def record(name: str) -> bool:
        outputs = {output: OutputRef(**ref) for output, ref in (completed[name] or {}).items()}
        # Unless the step's own (complete) record lands first, e.g. written behind by another instance.
        written = store.put_step_unless_ended(run_id, StepRecord(Name=name, Status=StepStatus.COMPLETED.value,
                                                                 EndTimeUtc=now, Outputs=outputs))
        events.step_event(events.STEP_COMPLETED, run_id, name, run.PipelineId,
                          status=StepStatus.COMPLETED.value)
        return written

    recorded = parallel_map(record, missing)
    return [name for name, written in zip(missing, recorded) if written]


def mark_run_finished(run_id: str, status: str, failed_steps: list[str],
                      completed_steps: dict[str, dict] | None = None) -> dict:
    store = RunStore()
    record_completed_steps(run_id, completed_steps or {})
    error = None
    if failed_steps:
        error = {"code": "StepFailed", "message": _failure_message(store, run_id, failed_steps)}

    ended_before: list[bool] = []

    def finish(run: RunRecord) -> RunRecord | None:
        if RunStatus(run.Status).is_terminal:
            ended_before.append(True)
            return None
        run.Status = RunStatus(status).value
        run.EndTimeUtc = utc_now()
        run.Error = error
        return run

    # Requests waiting on this run here answer as soon as run.json says it ended (or now, if it had).
    run = store.modify_run(run_id, finish, when_written=lambda _: run_watch.mark_ended(run_id))
    if ended_before:  # run again (Durable retried it): the first time may have ended run.json but not its index entry
        store.sync_index(run)
    run_watch.mark_ended(run_id)
    events.run_ended(run)
    return {"status": run.Status}


def _job_handle_of(store: RunStore, run_id: str, step: str, known: dict | None, wait_seconds: float) -> dict | None:
    """The step's compute job handle: the orchestrator's, else the step's Running record's.

    A step whose step_start is still in flight writes its Running record (with the handle) within
    moments of submitting, so wait a little for it rather than miss the job.
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        if known:
            return known
        try:
            record = store.get_step(run_id, step)
            if StepStatus(record.Status).is_terminal:
                return None
            if record.JobHandle:
                return record.JobHandle
        except NotFound:
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def cancel_steps(run_id: str, steps: dict[str, dict | None], wait_seconds: float = 3.0) -> dict:
    """Cancel the compute jobs of steps in flight (run cancel). Idempotent: cancelling an ended job is a no-op."""
    from shared.compute import JobHandle, get_backend  # compute backends load lazily

    store = RunStore()

    def cancel(item: tuple[str, dict | None]) -> str | None:
        step, known = item
        handle = _job_handle_of(store, run_id, step, known, wait_seconds)
        if handle is None:
            return None
        job = JobHandle.from_dict(handle)
        get_backend(job.backend).cancel(job)
        return step

    canceled = [step for step in parallel_map(cancel, list(steps.items())) if step]
    return {"canceled": canceled}
