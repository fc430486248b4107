"""History events in the wire shape the Python SDK reads (DURABLE-NOTES §2.2).

Events are plain dicts, stored as JSON. Every event has EventType, EventId, IsPlayed and a
`Z`-suffixed Timestamp; the rest are the keys the SDK (or the status API) reads.
"""

from __future__ import annotations

import datetime as dt
import time

EXECUTION_STARTED = 0
EXECUTION_COMPLETED = 1
EXECUTION_FAILED = 2
EXECUTION_TERMINATED = 3
TASK_SCHEDULED = 4
TASK_COMPLETED = 5
TASK_FAILED = 6
SUB_ORCHESTRATION_CREATED = 7
SUB_ORCHESTRATION_COMPLETED = 8
SUB_ORCHESTRATION_FAILED = 9
TIMER_CREATED = 10
TIMER_FIRED = 11
ORCHESTRATOR_STARTED = 12
ORCHESTRATOR_COMPLETED = 13
EVENT_SENT = 14
EVENT_RAISED = 15
CONTINUE_AS_NEW = 16
EXECUTION_SUSPENDED = 19
EXECUTION_RESUMED = 20

EVENT_NAMES = {
    0: "ExecutionStarted", 1: "ExecutionCompleted", 2: "ExecutionFailed", 3: "ExecutionTerminated",
    4: "TaskScheduled", 5: "TaskCompleted", 6: "TaskFailed", 7: "SubOrchestrationInstanceCreated",
    8: "SubOrchestrationInstanceCompleted", 9: "SubOrchestrationInstanceFailed", 10: "TimerCreated",
    11: "TimerFired", 12: "OrchestratorStarted", 13: "OrchestratorCompleted", 14: "EventSent",
    15: "EventRaised", 16: "ContinueAsNew", 17: "GenericEvent", 18: "HistoryState",
    19: "ExecutionSuspended", 20: "ExecutionResumed",
}

# Events that only document what was scheduled; the SDK ignores them on replay (DURABLE-NOTES §2.2),
# so the replay copy of the history leaves them out.
BOOKKEEPING_TYPES = frozenset({TASK_SCHEDULED, SUB_ORCHESTRATION_CREATED, TIMER_CREATED, ORCHESTRATOR_COMPLETED,
                               EXECUTION_COMPLETED, EXECUTION_FAILED, EXECUTION_TERMINATED,
                               EXECUTION_SUSPENDED, EXECUTION_RESUMED})

# Completion events that belong to one execution (a ContinueAsNew makes older ones stale).
COMPLETION_TYPES = frozenset({TASK_COMPLETED, TASK_FAILED, SUB_ORCHESTRATION_COMPLETED,
                              SUB_ORCHESTRATION_FAILED, TIMER_FIRED})

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime(TIMESTAMP_FORMAT)


def iso_seconds(moment: dt.datetime) -> str:
    """The status API's `yyyy-MM-ddTHH:mm:ssZ`."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


class Clock:
    """Strictly increasing timestamps, so OrchestratorStarted times never go backwards."""

    def __init__(self) -> None:
        self._last = 0.0

    def now(self) -> dt.datetime:
        value = max(time.time(), self._last + 1e-6)
        self._last = value
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)


def event(event_type: int, timestamp: str, event_id: int = -1, **fields) -> dict:
    return {"EventType": event_type, "EventId": event_id, "IsPlayed": False, "Timestamp": timestamp, **fields}
