"""Turn the tasks an orchestrator yielded into host work: activities, timers, sub-orchestrations.

Task ids come from the SDK itself (`ctx.open_tasks`, DURABLE-NOTES §2.3): an id is assigned when a
task is first yielded, compound tasks (task_all/task_any) contribute their children in order, and
`call_*_with_retry` adds NoOp tasks: a retry timer after each failure, then a rescheduled attempt.
Reading the ids from the SDK instead of re-deriving them from the cumulative action list keeps
the host in lock-step with whatever the SDK assigns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from azure.durable_functions.models.actions.ActionType import ActionType
from azure.durable_functions.models.actions.CompoundAction import CompoundAction
from azure.durable_functions.models.actions.NoOpAction import NoOpAction
from azure.durable_functions.models.Task import TimerTask

RETRY_TIMER = "-WithRetry timer"
RESCHEDULED = "rescheduled task"


@dataclass(frozen=True)
class ActivityWork:
    task_id: int
    name: str
    input: str | None  # JSON text


@dataclass(frozen=True)
class TimerWork:
    task_id: int
    fire_at: dt.datetime


@dataclass(frozen=True)
class SubOrchestrationWork:
    task_id: int
    name: str
    input: str | None
    instance_id: str | None


@dataclass(frozen=True)
class UnsupportedWork:
    task_id: int
    what: str


Work = ActivityWork | TimerWork | SubOrchestrationWork | UnsupportedWork


def _from_action(task_id: int, action: Any) -> Work:
    kind = action.action_type
    if kind in (ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY):
        return ActivityWork(task_id, action.function_name, action.input_)
    if kind in (ActionType.CALL_SUB_ORCHESTRATOR, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY):
        return SubOrchestrationWork(task_id, action.function_name, action._input, action.instance_id)
    if kind == ActionType.CREATE_TIMER:
        fire_at = action.fire_at
        if fire_at.tzinfo is None:
            fire_at = fire_at.replace(tzinfo=dt.timezone.utc)
        return TimerWork(task_id, fire_at)
    return UnsupportedWork(task_id, ActionType(kind).name)


def work_for_task(task_id: int, task: Any, now: dt.datetime) -> Work:
    """The host work that completes the pending SDK task `task` (id `task_id`)."""
    action = task.action_repr[0] if isinstance(task.action_repr, list) else task.action_repr
    if isinstance(action, NoOpAction):
        metadata = action.metadata
        retry = task.parent  # RetryAbleTask
        if metadata == RETRY_TIMER:
            delay_ms = retry.retry_options.first_retry_interval_in_milliseconds
            return TimerWork(task_id, now + dt.timedelta(milliseconds=delay_ms))
        if metadata == RESCHEDULED:
            original = retry.actions[0] if isinstance(retry.actions, list) else retry.actions
            return _from_action(task_id, original)
        return UnsupportedWork(task_id, f"NoOp {metadata!r}")
    return _from_action(task_id, action)


def is_cancelled_timer(task: Any) -> bool:
    return isinstance(task, TimerTask) and task.is_cancelled



def flatten_actions(actions: list) -> list:
    """The extension's view: cumulative V2 actions with WhenAll/WhenAny flattened, in order.

    The host takes task ids from the SDK's open tasks instead; tests use this to check that both
    views agree (the n-th flattened id-taking action is the task with the n-th id).
    """
    flat = []
    for action in actions:
        if isinstance(action, CompoundAction):
            flat.extend(flatten_actions(action.compound_tasks))
        else:
            flat.append(action)
    return flat
