"""Status payloads in the extension's StatusResponsePayload shape (DURABLE-NOTES §4.2)."""

from __future__ import annotations

import json
from typing import Any

from . import history as h

RUNNING_HTTP_STATUSES = {"Running": 202, "Pending": 202, "ContinuedAsNew": 202, "Suspended": 202}


def _json_value(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _seconds(text: str) -> str:
    return h.iso_seconds(h.parse_iso(text))


def status_payload(row: dict, *, show_input: bool = True, history: list[dict] | None = None,
                   show_history_output: bool = False) -> dict:
    """`input` stays JSON text (the extension's double-encoding quirk); `output`/`customStatus` are JSON values."""
    payload = {
        "name": row["name"],
        "instanceId": row["instance_id"],
        "runtimeStatus": row["status"],
        "input": row["input"] if show_input else None,
        "customStatus": _json_value(row["custom_status"]),
        "output": _json_value(row["output"]),
        "createdTime": _seconds(row["created"]),
        "lastUpdatedTime": _seconds(row["updated"]),
    }
    if history is not None:
        payload["historyEvents"] = history_payload(history, show_history_output)
    return payload


def http_status_for(row: dict, return_500_on_failure: bool = False) -> int:
    if row["status"] == "Failed" and return_500_on_failure:
        return 500
    return RUNNING_HTTP_STATUSES.get(row["status"], 200)


def history_payload(events: list[dict], show_output: bool) -> list[dict]:
    """A readable history, like the extension's: no OrchestratorStarted/Completed markers."""
    scheduled: dict[int, dict] = {}
    out = []
    for e in events:
        t = e["EventType"]
        if t in (h.ORCHESTRATOR_STARTED, h.ORCHESTRATOR_COMPLETED):
            continue
        item: dict[str, Any] = {"EventType": h.EVENT_NAMES.get(t, str(t)), "Timestamp": e["Timestamp"]}
        if t in (h.TASK_SCHEDULED, h.SUB_ORCHESTRATION_CREATED, h.TIMER_CREATED):
            scheduled[e["EventId"]] = e
            if t == h.TIMER_CREATED:
                item["FireAt"] = e.get("FireAt")
            else:
                item["FunctionName"] = e.get("Name")
            item["EventId"] = e["EventId"]
        elif t in (h.TASK_COMPLETED, h.TASK_FAILED, h.SUB_ORCHESTRATION_COMPLETED, h.SUB_ORCHESTRATION_FAILED):
            origin = scheduled.get(e.get("TaskScheduledId"), {})
            item["FunctionName"] = origin.get("Name")
            item["TaskScheduledId"] = e.get("TaskScheduledId")
            item["ScheduledTime"] = origin.get("Timestamp")
            if show_output and "Result" in e:
                item["Result"] = _maybe_json(e.get("Result"))
            if "Reason" in e:
                item["Reason"], item["Details"] = e.get("Reason"), e.get("Details")
        elif t == h.TIMER_FIRED:
            item["TimerId"], item["FireAt"] = e.get("TimerId"), e.get("FireAt")
        elif t == h.EVENT_RAISED:
            item["Name"] = e.get("Name")
            if show_output:
                item["Input"] = e.get("Input")
        elif t == h.EXECUTION_STARTED:
            item["FunctionName"] = e.get("Name")
        elif t == h.EXECUTION_COMPLETED:
            item["OrchestrationStatus"] = "Completed"
            if show_output:
                item["Result"] = _maybe_json(e.get("Result"))
        elif t == h.EXECUTION_FAILED:
            item["OrchestrationStatus"] = "Failed"
            item["Reason"], item["Details"] = e.get("Reason"), e.get("Details")
        elif t == h.EXECUTION_TERMINATED:
            item["Input"] = e.get("Input")
        out.append(item)
    return out


def _maybe_json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
