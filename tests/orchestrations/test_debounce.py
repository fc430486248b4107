"""The datastore debounce orchestrator replayed by the real SDK over built histories."""

from __future__ import annotations

import json

from history_builder import ReplayedHistory

from orchestrations.debounce import CHANGE_EVENT, FIRE_ACTIVITY, datastore_debounce


def change(path: str, etag: str = "e1", debounce: float = 30) -> dict:
    return {"path": path, "etag": etag, "debounceSeconds": debounce}


class History(ReplayedHistory):
    def __init__(self, first: dict):
        super().__init__(datastore_debounce, {"schedule": "s", "changes": [first]})

    def event(self, payload: dict) -> History:
        # as the extension delivers it: the JSON text of the JSON text (DURABLE-NOTES §4.2)
        return self.raise_event(CHANGE_EVENT, json.dumps(json.dumps(payload)))

    def fire_timer(self, task_id: int) -> History:
        return super().fire_timer(task_id, "2026-01-01T00:00:30.000000Z")


def timers(actions):
    return [a for a in actions if a[0] == "timer"]


def test_first_change_opens_a_quiet_period():
    actions = History(change("in/a.csv", debounce=30)).actions()
    (timer,) = timers(actions)
    assert timer[1].startswith("2026-01-01T00:00:3")  # debounceSeconds after the episode's time
    assert not [a for a in actions if a[0] == "activity"]


def test_each_change_restarts_the_quiet_period_and_the_end_fires_one_window():
    history = History(change("in/x/a.csv")).event(change("in/y/b.csv", "e2")).event(change("in/x/a.csv", "e3"))
    actions = history.actions()
    assert len(timers(actions)) == 3  # one per change; the earlier ones were cancelled
    assert not [a for a in actions if a[0] == "activity"]
    history.fire_timer(2)
    fired = [a for a in history.actions() if a[0] == "activity"]
    assert len(fired) == 1
    _, name, payload = fired[0]
    assert name == FIRE_ACTIVITY
    assert payload == {"schedule": "s", "paths": ["in/x/a.csv", "in/y/b.csv"], "windowKey": "in/x/a.csv@e1"}


def test_a_cancelled_timer_firing_late_changes_nothing():
    history = History(change("in/a.csv")).event(change("in/b.csv", "e2")).fire_timer(0)
    assert not [a for a in history.actions() if a[0] == "activity"]


def test_changes_during_the_fire_open_the_next_window():
    history = History(change("in/a.csv")).fire_timer(0)
    history.event(change("in/c.csv", "e9"))  # arrives while the fire activity runs
    history.complete(1, {"runId": "r1"})
    actions = history.actions()
    assert len([a for a in actions if a[0] == "activity"]) == 1
    assert not history.replay().get("isDone")
    history.fire_timer(2)
    fired = [a for a in history.actions() if a[0] == "activity"]
    assert len(fired) == 2 and fired[1][2]["paths"] == ["in/c.csv"] and fired[1][2]["windowKey"] == "in/c.csv@e9"
