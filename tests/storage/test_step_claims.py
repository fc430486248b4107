"""The step executor's claim on a fingerprint (shared/steps.py + shared/reuse.py), on Azurite and
local compute, without the orchestrator: the activity functions' work called directly."""

from __future__ import annotations

import pytest
import yaml

from shared import control, deferred_writes, run_plan, steps
from shared.errors import NotFound
from shared.reuse import ReuseIndex
from shared.run_lifecycle import mark_step_failed
from shared.runs import RunRecord, RunStore, new_run_id
from shared.spec import load_definition


@pytest.fixture
def two_steps(storage_env, tmp_path):
    """A published pipeline: `prep` writes an output that `train` reads."""
    source = tmp_path / "p" / "src"
    source.mkdir(parents=True)
    (source / "prep.py").write_text("import sys, pathlib; pathlib.Path(sys.argv[1], 'x.txt').write_text('x')\n")
    (source / "train.py").write_text("print('trained')\n")
    definition = {"name": "claims", "steps": [
        {"name": "prep", "source_directory": "src", "script_name": "prep.py", "outputs": ["out"],
         "arguments": ["{outputs.out}"]},
        {"name": "train", "source_directory": "src", "script_name": "train.py", "inputs": {"x": "prep.out"},
         "arguments": ["{inputs.x}"]},
    ]}
    (tmp_path / "p" / "pipeline.yaml").write_text(yaml.safe_dump(definition))
    parsed, base = load_definition(tmp_path / "p" / "pipeline.yaml")
    return control.publish_directory(parsed, base, name="claims", description=None, version=None).Id


def planned_run(pipeline_id: str) -> str:
    run = RunRecord(Id=new_run_id(), ExperimentName="claims", PipelineId=pipeline_id, Status="Queued")
    RunStore().create_run(run)
    run_plan.plan_run(run.Id)
    return run.Id


def test_a_step_whose_input_cannot_be_staged_gives_its_claim_back(two_steps):
    run_id = planned_run(two_steps)
    fingerprint = run_plan.load_plan(run_id)["steps"]["train"]["fingerprint"]
    gone = {"prep": {"out": {"Datastore": "workspaceblobstore", "Path": f"runs/{run_id}/prep/out"}}}
    with pytest.raises(NotFound):
        steps.start_step(run_id, "train", gone)  # prep never ran: its output is not committed
    assert ReuseIndex().claim(fingerprint, "another-run", "train").ours  # not held for 5 minutes


def test_a_completed_steps_claim_becomes_the_record_the_next_run_reuses(two_steps):
    first = planned_run(two_steps)
    done = steps.start_step(first, "prep")
    assert done["status"] == "Completed" and not done["reused"]
    deferred_writes.flush(first)  # what run_finished does: the claim has become the reuse record
    second = planned_run(two_steps)
    again = steps.start_step(second, "prep")
    assert again["status"] == "Completed" and again["reused"]
    assert again["outputs"] == done["outputs"]


def test_a_step_recorded_failed_after_its_activity_kept_raising_gives_its_claim_back(two_steps):
    run_id = planned_run(two_steps)
    fingerprint = run_plan.load_plan(run_id)["steps"]["prep"]["fingerprint"]
    assert ReuseIndex().claim(fingerprint, run_id, "prep").ours  # what its step_start did before raising
    mark_step_failed(run_id, "prep", {"code": "ActivityFailed", "message": "storage kept timing out"})
    assert ReuseIndex().claim(fingerprint, "another-run", "prep").ours


def test_the_steps_a_plan_records_as_reused_count_as_recorded_in_this_process(two_steps):
    first = planned_run(two_steps)
    prep = steps.start_step(first, "prep")
    steps.start_step(first, "train", {"prep": prep["outputs"]})
    deferred_writes.flush(first)
    second = planned_run(two_steps)  # both steps reused: the plan wrote their records
    assert all(RunStore().get_step(second, name).Reused for name in ("prep", "train"))
    assert deferred_writes.flush(second) == {"prep", "train"}  # run_finished needs no listing
