"""Datastore schedules: one singleton orchestration per schedule turns a burst of blob changes into one run.

Instance id `debounce-<schedule>`. The blob trigger raises `BlobChanged` events on it (starting it
with the first change if it is not running). The orchestration collects changes until no new one
has arrived for `debounceSeconds` (a durable timer, restarted by every change), then calls the
activity `datastore_window_fire`, which queues one submission for the window (its message id, and
so its run id, derived from the window's first change), and waits for the next change. Timers,
events and the collected changes are durable state, so a host restart in the middle of a window
still ends in exactly one run. The instance never completes (a completed instance would drop an
event raised while it finishes).

Continue-as-new drops raised events that arrive in the same episode (Durable's default without
preserveUnprocessedEvents, which the Python SDK cannot ask for), so it happens only rarely
(every EVENTS_PER_EXECUTION changes) and only with no window open; history grows by ~2-3 events per
change until then.

Deterministic: only context time, timers and events.
"""

from __future__ import annotations

import json
from datetime import timedelta

import azure.durable_functions as df

bp = df.Blueprint()

DEBOUNCE_ORCHESTRATOR = "datastore_debounce"
FIRE_ACTIVITY = "datastore_window_fire"
CHANGE_EVENT = "BlobChanged"
# History grows by ~2-3 events per change; continue as new once this many changes were handled, at
# a moment with no open window (see the module docstring for why only then).
EVENTS_PER_EXECUTION = 500
MAX_PATHS = 1000  # paths kept per window (the common folder needs them, not every one)
RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2000, max_number_of_attempts=5)


def instance_id_for(schedule: str) -> str:
    return f"debounce-{schedule}"


def _change(payload) -> dict:
    """An event payload: the SDK hands raised events over as JSON text (DURABLE-NOTES §4.2)."""
    while isinstance(payload, str):
        payload = json.loads(payload)
    return payload or {}


def _add(window: dict, change: dict) -> None:
    if not window:
        window.update({"key": f"{change.get('path')}@{change.get('etag')}", "paths": [], "count": 0})
    if len(window["paths"]) < MAX_PATHS and change.get("path") not in window["paths"]:
        window["paths"].append(change.get("path"))
    window["count"] = window.get("count", 0) + 1
    window["debounce"] = float(change.get("debounceSeconds", window.get("debounce", 30)))


@bp.orchestration_trigger(context_name="context", orchestration=DEBOUNCE_ORCHESTRATOR)
def datastore_debounce(context: df.DurableOrchestrationContext):
    state = _change(context.get_input())
    schedule = state["schedule"]
    window: dict = dict(state.get("window") or {})
    for change in state.get("changes") or []:
        _add(window, change)
    handled = 0

    # One live waiter for changes at all times (a waiter left open and replaced would swallow an
    # event), one quiet-period timer while a window is open, and the fire activity of the window
    # that just closed; a new window can open while the previous one is being fired.
    changed = context.wait_for_external_event(CHANGE_EVENT)
    quiet = None
    firing = None
    while True:
        if window and quiet is None and firing is None:
            quiet = context.create_timer(context.current_utc_datetime + timedelta(seconds=window["debounce"]))
        waits = [changed] + ([quiet] if quiet is not None else []) + ([firing] if firing is not None else [])
        winner = yield context.task_any(waits)
        if winner is changed:
            _add(window, _change(changed.result))
            handled += 1
            changed = context.wait_for_external_event(CHANGE_EVENT)
            if quiet is not None:
                quiet.cancel()
                quiet = None
            continue
        if winner is quiet:
            quiet = None
            firing = context.call_activity_with_retry(FIRE_ACTIVITY, RETRY, {
                "schedule": schedule, "paths": window["paths"], "windowKey": window["key"]})
            window = {}
            continue
        firing = None  # the window is fired (its run queued)
        if not window and handled >= EVENTS_PER_EXECUTION:
            context.continue_as_new({"schedule": schedule})
            return None
