"""Durable activities: thin and idempotent (Durable runs them at least once); the work is in shared/."""

from __future__ import annotations

import azure.durable_functions as df

from shared import run_lifecycle, steps
from shared import run_plan as run_plan_module

bp = df.Blueprint()


@bp.activity_trigger(input_name="payload")
def run_plan(payload: dict) -> dict:
    return run_plan_module.plan_run(payload["runId"])


@bp.activity_trigger(input_name="payload")
def step_start(payload: dict) -> dict:
    return steps.start_step(payload["runId"], payload["step"], payload.get("upstream"), payload.get("attempt", 1))


@bp.activity_trigger(input_name="payload")
def step_poll(payload: dict) -> dict:
    return steps.poll_step(payload["runId"], payload["step"], payload["handle"], payload.get("upstream"))


@bp.activity_trigger(input_name="payload")
def steps_not_run(payload: dict) -> dict:
    return run_lifecycle.mark_steps_not_run(payload["runId"], payload["steps"])


@bp.activity_trigger(input_name="payload")
def step_failed(payload: dict) -> dict:
    return run_lifecycle.mark_step_failed(payload["runId"], payload["step"], payload["error"])


@bp.activity_trigger(input_name="payload")
def cancel_steps(payload: dict) -> dict:
    return run_lifecycle.cancel_steps(payload["runId"], payload["steps"])


@bp.activity_trigger(input_name="payload")
def run_finished(payload: dict) -> dict:
    return run_lifecycle.mark_run_finished(payload["runId"], payload["status"], payload.get("failedSteps") or [],
                                           payload.get("completedSteps"))
