"""The pipeline-run orchestrator: starts each step as soon as its inputs are ready.

Deterministic by construction (Durable replays it): no I/O, no clock but
context.current_utc_datetime, no randomness. Everything it carries is ids and statuses;
the data lives in blob storage and the run record.

First the run_plan activity fingerprints every step and settles the reused prefix (steps
reused together with all of their upstream); those complete without an activity of their own.
Each other step is a small state machine of Durable tasks:
    step_start ──Completed/Failed──► done
        └─Running─► durable timer ─► step_poll ──Running─► timer ─► ...
All steps' current tasks wait together in one task_any, so a fast branch never waits for a
slow one (no level-by-level scheduling). Step outputs travel as paths (never data) from a step's
result to its consumers' step_start input.
"""

from __future__ import annotations

from datetime import timedelta

import azure.durable_functions as df

from shared.graph import ReadyPlanner
from shared.statuses import RunStatus, StepStatus

bp = df.Blueprint()

ORCHESTRATOR_NAME = "pipeline_run"
CANCEL_EVENT = "CancelRequested"
DEFAULT_POLL_SECONDS = 5.0
# An activity that raises hit infrastructure trouble (storage timeouts, compute API 429/5xx):
# Durable retries it without counting a step attempt. A step's own failure is a returned result.
INFRASTRUCTURE_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2000, max_number_of_attempts=4)
# Continue as new (between steps) once this many steps settled in one execution.
CONTINUE_AS_NEW_AFTER_STEPS = 16


class _StepTasks:
    """The current Durable task of every step in flight, and what it is (start/poll/timer/retry)."""

    def __init__(self):
        self.task_of: dict[str, object] = {}
        self.stage_of: dict[str, tuple[str, dict | None]] = {}
        self.step_of: dict[int, str] = {}  # id(task) -> step: finding a finished task is O(1)

    def put(self, step: str, task, stage: str, handle: dict | None = None) -> None:
        self.task_of[step] = task
        self.stage_of[step] = (stage, handle)
        self.step_of[id(task)] = step

    def pop(self, task) -> tuple[str, str, dict | None]:
        step = self.step_of[id(task)]
        stage, handle = self.stage_of[step]
        self._pop_step(step)
        return step, stage, handle

    def __bool__(self) -> bool:
        return bool(self.task_of)

    def tasks(self) -> list:
        return list(self.task_of.values())

    def handles(self) -> dict[str, dict | None]:
        """{step: compute job handle, or None while its step_start is still in flight}."""
        return {step: handle if stage in ("timer", "poll") else None for step, (stage, handle) in self.stage_of.items()}

    def pop_stage(self, stage: str) -> list[tuple[str, object]]:
        steps = [step for step, (current, _) in self.stage_of.items() if current == stage]
        return [(step, self._pop_step(step)) for step in steps]

    def _pop_step(self, step: str):
        del self.stage_of[step]
        task = self.task_of.pop(step)
        del self.step_of[id(task)]
        return task


def _progress_of(task) -> dict:
    """The activity's StepProgress, or a Failed one when the activity itself raised."""
    if isinstance(task.result, Exception):  # nothing recorded the step: step_failed will
        return {"status": StepStatus.FAILED, "unrecorded": True,
                "error": {"code": "ActivityFailed", "message": str(task.result).strip()}}
    return task.result


@bp.orchestration_trigger(context_name="context", orchestration=ORCHESTRATOR_NAME)
def pipeline_run(context: df.DurableOrchestrationContext):
    def call(activity: str, payload: dict):
        return context.call_activity_with_retry(activity, INFRASTRUCTURE_RETRY, payload)

    plan = context.get_input()
    run_id = plan["runId"]
    continue_on_failure = bool(plan.get("continueOnStepFailure", False))
    dependencies = plan["steps"]
    resumed = plan.get("resume")  # state carried over by continue-as-new
    in_flight = _StepTasks()
    if resumed:
        planner = ReadyPlanner.restore(dependencies, resumed["planner"])
        outputs_of: dict[str, dict] = resumed["outputs"]
        failed_steps: list[str] = resumed["failedSteps"]
    else:
        planner = ReadyPlanner.from_dependencies(dependencies)
        outputs_of, failed_steps = {}, []
    settled_here = 0

    def step_input(step: str, **extra) -> dict:
        upstream = {name: outputs_of.get(name, {}) for name in dependencies[step]}
        return {"runId": run_id, "step": step, "upstream": upstream, **extra}

    def start_ready_steps() -> None:
        ready = planner.ready()
        while ready:
            for step in ready:
                if step in reused:  # settled by run_plan: no activity needed
                    outputs_of[step] = reused[step]
                    planner.mark_done(step)
                else:
                    in_flight.put(step, call("step_start", step_input(step)), "start")
            ready = planner.ready()

    if resumed:
        reused, canceled = resumed["reused"], resumed["canceled"]
    else:
        reused, canceled = (yield call("run_plan", {"runId": run_id}))["reused"], False
    start_ready_steps()
    cancel_requested = context.wait_for_external_event(CANCEL_EVENT)

    while in_flight:
        waiting_on = in_flight.tasks() + ([] if canceled else [cancel_requested])
        finished_task = yield context.task_any(waiting_on)
        if finished_task is cancel_requested:
            canceled = True
            not_started = planner.cancel()
            for step, retry_timer in in_flight.pop_stage("retry"):  # waiting to retry: nothing runs
                retry_timer.cancel()
                planner.mark_canceled(step)
                not_started.append(step)
            if not_started:
                yield call("steps_not_run", {"runId": run_id, "steps": {StepStatus.CANCELED: not_started}})
            # Stop what runs on compute; each step's own task then reports it Canceled.
            yield call("cancel_steps", {"runId": run_id, "steps": in_flight.handles()})
            continue
        step, stage, handle = in_flight.pop(finished_task)

        if stage == "timer":
            poll = call("step_poll", step_input(step, handle=handle))
            in_flight.put(step, poll, "poll", handle)
            continue
        if stage == "retry":
            attempt = call("step_start", step_input(step, attempt=handle["attempt"]))
            in_flight.put(step, attempt, "start")
            continue

        progress = _progress_of(finished_task)
        status = progress["status"]
        if status == StepStatus.RUNNING and progress.get("retry"):
            retry = progress["retry"]
            timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=float(retry["afterSeconds"])))
            in_flight.put(step, timer, "retry", retry)
            continue
        if status == StepStatus.RUNNING:
            wait = float(progress.get("pollAfterSeconds") or DEFAULT_POLL_SECONDS)
            timer = context.create_timer(context.current_utc_datetime + timedelta(seconds=wait))
            in_flight.put(step, timer, "timer", progress.get("handle"))
            continue

        if status == StepStatus.COMPLETED:
            outputs_of[step] = progress.get("outputs") or {}
            planner.mark_done(step)
        else:
            if status == StepStatus.CANCELED:
                outcome = planner.mark_canceled(step)
            else:
                failed_steps.append(step)
                outcome = planner.mark_failed(step, continue_on_failure=continue_on_failure)
                if progress.get("unrecorded"):
                    yield call("step_failed", {"runId": run_id, "step": step, "error": progress["error"]})
            not_run = {StepStatus.SKIPPED: outcome.skipped, StepStatus.CANCELED: outcome.canceled}
            if outcome.skipped or outcome.canceled:
                yield call("steps_not_run", {"runId": run_id, "steps": not_run})
        settled_here += 1
        if not in_flight and settled_here >= CONTINUE_AS_NEW_AFTER_STEPS and not planner.finished:
            # Between steps with nothing in flight: start afresh with a short history, so replay
            # cost stays linear in the number of steps (a long chain would otherwise be quadratic).
            carried = {"planner": planner.snapshot(), "outputs": outputs_of, "failedSteps": failed_steps,
                       "reused": {k: v for k, v in reused.items() if planner.state(k) == "NotStarted"},
                       "canceled": canceled}
            context.continue_as_new({**plan, "resume": carried})
            return None
        start_ready_steps()

    final = RunStatus.CANCELED if canceled else RunStatus.FAILED if failed_steps else RunStatus.FINISHED
    # The completed steps and their outputs: run_finished makes sure each has its record (completed
    # steps' records are written behind, shared/deferred_writes.py).
    yield call("run_finished", {"runId": run_id, "status": final, "failedSteps": failed_steps,
                                "completedSteps": outputs_of})
    return {"runId": run_id, "status": final, "failedSteps": failed_steps}
