"""shared/run_plan.py against Azurite: what the run_plan activity leaves, and how it fails."""

from __future__ import annotations

import pytest

from shared import run_plan
from shared.errors import TransientError
from shared.runs import RunRecord, RunStore, new_run_id
from shared.settings import reset_settings
from tests.storage.test_step_claims import two_steps  # noqa: F401 - the fixture


def queued_run(pipeline_id: str) -> str:
    run = RunRecord(Id=new_run_id(), ExperimentName="plans", PipelineId=pipeline_id, Status="Queued")
    RunStore().create_run(run)
    return run.Id


def test_a_plan_whose_run_started_event_cannot_be_sent_fails_and_a_retry_completes_it(two_steps, monkeypatch):  # noqa: F811
    """The run's first events go out while the plan is made; a send that fails still fails the activity
    (Durable then retries it), and the retry writes the same plan."""
    run_id = queued_run(two_steps)
    monkeypatch.setenv("MLPIPE_RUN_EVENTS", "servicebus")  # without MLPIPE_SERVICEBUS_CONNECTION: cannot send
    monkeypatch.delenv("MLPIPE_SERVICEBUS_CONNECTION", raising=False)
    reset_settings()
    with pytest.raises(TransientError, match="RunQueued"):
        run_plan.plan_run(run_id)
    first = RunStore().get_plan(run_id)

    monkeypatch.setenv("MLPIPE_RUN_EVENTS", "queue")
    reset_settings()
    assert run_plan.plan_run(run_id) == {"reused": {}}
    assert RunStore().get_plan(run_id) == first
    assert set(first["steps"]) == {"prep", "train"} and all(step["fingerprint"] for step in first["steps"].values())
    assert RunStore().get_run(run_id, with_steps=False).Status == "Running"
