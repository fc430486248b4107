"""When a completed step's deferred writes start (shared/deferred_writes.py): held until the run's
next step is under way, or HOLD_SECONDS, or the run's flush, whichever comes first."""

from __future__ import annotations

import threading

from shared import deferred_writes


def recording_write(done: list, event: threading.Event | None = None):
    def write():
        done.append(threading.current_thread().name)
        if event is not None:
            event.set()
    return write


def test_held_writes_start_when_the_runs_next_step_is_under_way(monkeypatch):
    monkeypatch.setattr(deferred_writes, "HOLD_SECONDS", 60.0)
    done, ran = [], threading.Event()
    deferred_writes.defer("run-held", "a", [recording_write(done, ran)])
    deferred_writes.release("another-run")
    assert not ran.wait(0.2) and done == []  # held: only this run's next step releases it
    deferred_writes.release("run-held")
    assert ran.wait(5)
    assert deferred_writes.flush("run-held") == {"a"}


def test_held_writes_start_by_themselves_after_the_hold(monkeypatch):
    monkeypatch.setattr(deferred_writes, "HOLD_SECONDS", 0.05)
    done, ran = [], threading.Event()
    deferred_writes.defer("run-timed", "a", [recording_write(done, ran)])
    assert ran.wait(5)  # nothing released it: its hold ran out
    assert done[0].startswith("mlpipe-deferred-writes")
    assert deferred_writes.flush("run-timed") == {"a"}


def test_flush_does_the_held_writes_at_once(monkeypatch):
    monkeypatch.setattr(deferred_writes, "HOLD_SECONDS", 60.0)
    done = []
    deferred_writes.defer("run-flushed", "a", [recording_write(done), recording_write(done)])
    deferred_writes.defer("run-flushed", "b", [recording_write(done)])
    assert deferred_writes.flush("run-flushed") == {"a", "b"}
    assert len(done) == 3


def test_release_all_starts_every_runs_held_writes(monkeypatch):
    monkeypatch.setattr(deferred_writes, "HOLD_SECONDS", 60.0)
    events = [threading.Event(), threading.Event()]
    deferred_writes.defer("run-one", "a", [recording_write([], events[0])])
    deferred_writes.defer("run-two", "a", [recording_write([], events[1])])
    deferred_writes.release_all()
    assert all(event.wait(5) for event in events)
    deferred_writes.flush("run-one"), deferred_writes.flush("run-two")
