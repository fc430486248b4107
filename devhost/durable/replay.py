"""Run orchestrator episodes through the real Durable Functions SDK.

A cold start builds the context JSON exactly as the extension would (upperSchemaVersion 1,
upperSchemaVersionNew 2, no long-timer keys) and drives the SDK's `TaskOrchestrationExecutor`
the same way `Orchestrator.create(...)`'s handle does, but keeps the context and executor.

Later episodes of the same instance reuse them ("extended session", like the .NET extension's
extendedSessionsEnabled): the new history events are fed to the same executor through its own
`process_event`, so an episode costs O(new events) instead of replaying the whole history. The
observable sequence of `process_event` calls is the same as a full replay. Set
MLPIPE_DURABLE_FULL_REPLAY=1 to replay from scratch every episode instead.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from typing import Any

from azure.durable_functions.models.actions.ContinueAsNewAction import ContinueAsNewAction
from azure.durable_functions.models.DurableOrchestrationContext import DurableOrchestrationContext
from azure.durable_functions.models.history.HistoryEvent import HistoryEvent
from azure.durable_functions.models.TaskOrchestrationExecutor import TaskOrchestrationExecutor
from azure.durable_functions.models.utils.df_serialization import df_dumps

from .history import BOOKKEEPING_TYPES


@dataclass
class EpisodeOutcome:
    """What one episode asks of the host."""

    new_tasks: list[tuple[int, Any]] = field(default_factory=list)  # (task id, SDK task) yielded this episode
    completed: bool = False
    output: str | None = None  # JSON text (df_dumps of the return value)
    failed: bool = False
    error: str | None = None
    error_details: str | None = None
    continue_as_new_input: str | None = None
    continued_as_new: bool = False
    custom_status: str | None = None  # JSON text


class OrchestrationSession:
    """One orchestration execution held in memory between episodes."""

    def __init__(self, orchestrator: Any, instance_id: str, parent_instance_id: str | None,
                 input_text: str | None, history: list[dict]):
        replay_history = [e for e in history if e["EventType"] not in BOOKKEEPING_TYPES]
        body = json.dumps({
            "history": replay_history,
            "instanceId": instance_id,
            "isReplaying": False,
            "parentInstanceId": parent_instance_id,
            "input": input_text,
            "upperSchemaVersion": 1,
            "upperSchemaVersionNew": 2,
        })
        self.function = orchestrator.generator_function
        self.context = DurableOrchestrationContext.from_json(body)
        self.context._input_expected_type = orchestrator.input_type
        self.executor = TaskOrchestrationExecutor()
        self._started = False
        self._internal_error: BaseException | None = None

    def run(self, new_events: list[dict]) -> EpisodeOutcome:
        """Run one episode. On a cold session `new_events` are already part of the constructor history."""
        before = self.context._sequence_number
        if not self._started:
            self._started = True
            try:
                self.executor.execute(self.context, self.context.histories, self.function)
            except Exception as exc:  # the executor raises for orchestrator failures; its state says why
                if self.executor.exception is None:
                    self._internal_error = exc
        else:
            executor = self.executor
            for raw in new_events:
                if raw["EventType"] in BOOKKEEPING_TYPES:
                    continue
                event = HistoryEvent(**raw)
                self.context.histories.append(event)
                executor._is_processing_new_events = True
                try:
                    executor.process_event(event)
                except Exception as exc:
                    self._internal_error = exc
                    break
                if executor.has_execution_completed:
                    break
        return self._outcome(before)

    def _outcome(self, sequence_before: int) -> EpisodeOutcome:
        executor, context = self.executor, self.context
        outcome = EpisodeOutcome()
        status = context.custom_status
        outcome.custom_status = df_dumps(status) if status else None
        if executor.exception is None and executor.orchestrator_returned and executor.output is not None:
            try:  # same check as TaskOrchestrationExecutor.get_orchestrator_state_str
                json.dumps(executor.output)
            except Exception as exc:
                executor.output = None
                executor.exception = exc
        failure = executor.exception or self._internal_error
        if failure is not None:
            outcome.failed = True
            outcome.error = str(failure) or str(type(failure))
            outcome.error_details = "".join(traceback.format_exception(failure)).strip()
            return outcome
        if context.will_continue_as_new:
            action = next(a for a in reversed(context._action_payload_v2) if isinstance(a, ContinueAsNewAction))
            outcome.continued_as_new = True
            outcome.continue_as_new_input = action.input_
            return outcome
        if executor.orchestrator_returned:
            outcome.completed = True
            outcome.output = None if executor.output is None else df_dumps(executor.output)
            return outcome
        open_tasks = context.open_tasks
        for task_id in range(sequence_before, context._sequence_number):
            task = open_tasks.get(task_id)
            if task is not None and not isinstance(task, list):
                outcome.new_tasks.append((task_id, task))
        return outcome

    def open_task(self, task_id: int) -> Any:
        return self.context.open_tasks.get(task_id)
