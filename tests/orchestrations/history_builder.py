"""Orchestration histories as a Durable host records them, for replaying orchestrators in tests.

The same event shapes the azure-functions-durable SDK reads (DURABLE-NOTES §2.2) and the same
method names as the SDK's own tests' ContextBuilder, which the wheel ships only as an unreliable
top-level `tests` package.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

ORCHESTRATOR_STARTED, EXECUTION_STARTED = 12, 0
TASK_COMPLETED, TASK_FAILED, TIMER_FIRED, EVENT_RAISED = 5, 6, 11, 15
REPLAY_SCHEMA_V2 = 1  # upperSchemaVersion for the V2 action format the real extension uses


class HistoryBuilder:
    def __init__(self, name: str, starting_time: datetime = datetime(2026, 1, 1)):
        self.name = name
        self.input_: str | None = None
        self.now = starting_time
        self.history: list[dict] = []
        self.add_orchestrator_started_event()
        self.history.append(self._event(EXECUTION_STARTED, Name=name, Version="", IsPlayed=True))

    def _event(self, event_type: int, event_id: int = -1, **fields) -> dict:
        self.now += timedelta(seconds=1)
        event = {"EventType": event_type, "EventId": event_id, "IsPlayed": False,
                 "Timestamp": self.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        event.update(fields)
        return event

    def add_orchestrator_started_event(self) -> None:
        self.history.append(self._event(ORCHESTRATOR_STARTED))

    def add_task_completed_event(self, id_: int, result: str) -> None:
        self.history.append(self._event(TASK_COMPLETED, TaskScheduledId=id_, Result=result))

    def add_task_failed_event(self, id_: int, reason: str, details: str) -> None:
        self.history.append(self._event(TASK_FAILED, TaskScheduledId=id_, Reason=reason, Details=details))

    def add_timer_fired_event(self, id_: int, fire_at: str) -> None:
        self.history.append(self._event(TIMER_FIRED, TimerId=id_, FireAt=fire_at))

    def add_event_raised_event(self, name: str, id_: int = -1, input_: str | None = None) -> None:
        self.history.append(self._event(EVENT_RAISED, id_, Name=name, Input=input_))

    def to_json_string(self) -> str:
        self.history[1]["Input"] = self.input_
        return json.dumps({"history": self.history, "instanceId": "test-instance", "isReplaying": False,
                           "parentInstanceId": None, "input": self.input_,
                           "upperSchemaVersion": REPLAY_SCHEMA_V2})
