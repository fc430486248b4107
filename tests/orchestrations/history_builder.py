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


class ReplayedHistory:
    """A growing history of one orchestrator, and the real SDK's replay of the orchestrator over it.

    Subclasses set the orchestrator (its registered function) and the input; the event methods chain.
    """

    def __init__(self, orchestrator, input_: dict):
        self._orchestrator = orchestrator
        self.builder = HistoryBuilder(orchestrator._function._name)
        self.builder.input_ = json.dumps(input_)

    def complete(self, task_id: int, result):
        self.builder.add_orchestrator_started_event()
        self.builder.add_task_completed_event(task_id, json.dumps(result))
        return self

    def fail(self, task_id: int, reason: str):
        self.builder.add_orchestrator_started_event()
        self.builder.add_task_failed_event(task_id, reason, "details")
        return self

    def raise_event(self, name: str, payload_text: str = "{}"):
        self.builder.add_orchestrator_started_event()
        self.builder.add_event_raised_event(name, -1, payload_text)
        return self

    def fire_timer(self, task_id: int, fire_at: str = "2026-01-01T00:00:00.000000Z"):
        self.builder.add_orchestrator_started_event()
        self.builder.add_timer_fired_event(task_id, fire_at)
        return self

    def replay(self) -> dict:
        return json.loads(self._orchestrator._function._func(self.builder.to_json_string()))

    def actions(self) -> list[tuple]:
        """Activities and timers asked for so far, flattened in id order: ("activity", name, decoded
        input) and ("timer", fireAt, isCanceled)."""
        flat = []

        def walk(action):
            if "compoundActions" in action:
                for child in action["compoundActions"]:
                    walk(child)
            elif action["actionType"] in (0, 1):  # CallActivity, CallActivityWithRetry
                flat.append(("activity", action["functionName"], json.loads(action["input"])))
            elif action["actionType"] == 5:  # CreateTimer
                flat.append(("timer", action["fireAt"], action.get("isCanceled")))

        for group in self.replay()["actions"]:
            for action in group:
                walk(action)
        return flat
