"""Completed steps' records written behind (shared/deferred_writes.py) and made sure of when the
run finishes (run_lifecycle.record_completed_steps), against Azurite."""

from __future__ import annotations

import base64
import json
import os
import threading

from shared import deferred_writes
from shared.queues import queue_client
from shared.run_lifecycle import record_completed_steps
from shared.runs import RunRecord, RunStore, StepRecord, new_run_id
from shared.settings import get_settings, reset_settings

OUT = {"clean": {"Datastore": "workspaceblobstore", "Path": "runs/r/prep/clean"}}


def new_run(store: RunStore) -> str:
    run = RunRecord(Id=new_run_id(), ExperimentName="exp", PipelineId="p1", Status="Running")
    store.create_run(run)
    return run.Id


def steps_by_name(store: RunStore, run_id: str) -> dict[str, StepRecord]:
    return {record.Name: record for record in store.read_steps(run_id)}


def test_flush_waits_for_deferred_writes_and_redoes_a_failed_one(storage_env):
    store = RunStore()
    run_id = new_run(store)
    release = threading.Event()
    attempts = []

    def slow_write():
        release.wait(5)
        store.put_step(run_id, StepRecord(Name="a", Status="Completed"))

    def flaky_write():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("storage hiccup")
        store.put_step(run_id, StepRecord(Name="b", Status="Completed"))

    deferred_writes.defer(run_id, "a", [slow_write])
    deferred_writes.defer(run_id, "b", [flaky_write])
    threading.Timer(0.2, release.set).start()
    assert deferred_writes.flush(run_id) == {"a", "b"}
    assert {n: r.Status for n, r in steps_by_name(store, run_id).items()} == {"a": "Completed", "b": "Completed"}
    assert len(attempts) == 2
    assert deferred_writes.flush(run_id) == set()  # the run is forgotten


def test_steps_written_elsewhere_or_lost_are_recorded_at_run_end(storage_env, monkeypatch):
    monkeypatch.setenv("MLPIPE_RUN_EVENTS_QUEUE", f"events-{os.urandom(4).hex()}")
    reset_settings()
    store = RunStore()
    run_id = new_run(store)
    store.put_step(run_id, StepRecord(Name="done", Status="Completed", Metrics={"acc": 0.9}))
    store.put_step(run_id, StepRecord(Name="lost", Status="Running"))  # its final record never landed
    recorded = record_completed_steps(run_id, {"done": {}, "lost": OUT, "absent": {}})
    assert sorted(recorded) == ["absent", "lost"]
    steps = steps_by_name(store, run_id)
    assert steps["done"].Metrics == {"acc": 0.9}  # a written record is left alone
    assert steps["lost"].Status == "Completed" and steps["lost"].Outputs["clean"].Path == "runs/r/prep/clean"
    assert steps["absent"].Status == "Completed" and steps["absent"].EndTimeUtc
    sent = [json.loads(base64.b64decode(m.content))
            for m in queue_client(get_settings().run_events_queue).peek_messages(max_messages=32)]
    assert sorted(e["data"]["step"] for e in sent if e["type"] == "mlpipe.StepCompleted") == ["absent", "lost"]


def test_no_listing_when_this_process_wrote_every_completed_step(storage_env):
    store = RunStore()
    run_id = new_run(store)
    deferred_writes.defer(run_id, "a", [lambda: store.put_step(run_id, StepRecord(Name="a", Status="Completed"))])
    # "a" was written here; nothing to check or record
    assert record_completed_steps(run_id, {"a": {}}) == []
    assert steps_by_name(store, run_id)["a"].Status == "Completed"


def test_a_recovery_record_never_replaces_a_terminal_one(storage_env):
    store = RunStore()
    run_id = new_run(store)
    store.put_step(run_id, StepRecord(Name="done", Status="Completed", Metrics={"acc": 0.9}))
    store.put_step(run_id, StepRecord(Name="running", Status="Running"))
    recovery = {"Status": "Completed", "EndTimeUtc": "2026-01-01T00:00:00Z"}
    assert store.put_step_unless_ended(run_id, StepRecord(Name="done", **recovery)) is False
    assert store.put_step_unless_ended(run_id, StepRecord(Name="running", **recovery)) is True
    assert store.put_step_unless_ended(run_id, StepRecord(Name="absent", **recovery)) is True
    steps = steps_by_name(store, run_id)
    assert steps["done"].Metrics == {"acc": 0.9}
    assert steps["running"].Status == steps["absent"].Status == "Completed"
