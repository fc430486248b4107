"""RunStore against Azurite: API field names, create-only, ETag updates, listing, logs."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from shared.errors import Conflict, InvalidRequest, NotFound
from shared.runs import RunRecord, RunStore, StepRecord, new_run_id, to_utc_iso
from shared.settings import get_settings
from shared.storage import ensure_container

RUN_FIELDS = {"Id", "Status", "ExperimentName", "PipelineId", "EndpointName", "RunSource",
              "ParameterAssignments", "DataPathAssignments", "Tags", "Description", "CreatedTimeUtc",
              "StartTimeUtc", "EndTimeUtc", "Error", "RegenerateOutputs", "ContinueOnStepFailure", "Steps"}
STEP_FIELDS = {"Name", "Status", "Reused", "ReusedFromRunId", "Compute", "Fingerprint", "StartTimeUtc",
               "EndTimeUtc", "Outputs", "Metrics", "Error", "Attempt"}


@pytest.fixture
def store(storage_env):
    return RunStore()


def make_run(experiment="exp", created=None, **fields) -> RunRecord:
    return RunRecord(Id=new_run_id(), ExperimentName=experiment, Status="Queued",
                     CreatedTimeUtc=created or datetime.now(timezone.utc), **fields)


def test_run_id_shape():
    run_id = new_run_id(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    assert run_id.startswith("mlpipe_20260102030405_") and len(run_id) == len("mlpipe_20260102030405_") + 8


def test_round_trip_uses_api_field_names(store):
    run = make_run(PipelineId="p1", ParameterAssignments={"lr": 0.1, "n": 3}, Tags={"a": "b"})
    store.create_run(run)
    store.put_step(run.Id, StepRecord(Name="train", Status="Completed", Reused=True, ReusedFromRunId="old",
                                      Compute="local", Fingerprint="f" * 64, StartTimeUtc=datetime.now(timezone.utc),
                                      Outputs={"model": {"Datastore": "workspaceblobstore",
                                                         "Path": "runs/old/train/model"}},
                                      Metrics={"acc": 0.9, "loss": [1.0, 0.5]}))
    store.put_step(run.Id, StepRecord(Name="prep", Status="Failed",
                                      Error={"code": "StepFailed", "message": "exit code 1"}))
    body = store.get_run(run.Id).to_api()
    assert set(body) >= RUN_FIELDS
    assert body["ParameterAssignments"] == {"lr": 0.1, "n": 3}
    assert [s["Name"] for s in body["Steps"]] == ["prep", "train"]
    prep, train = body["Steps"]
    assert set(train) >= STEP_FIELDS
    assert train["Outputs"] == {"model": {"Datastore": "workspaceblobstore", "Path": "runs/old/train/model"}}
    assert train["Metrics"] == {"acc": 0.9, "loss": [1.0, 0.5]}
    assert prep["Error"] == {"code": "StepFailed", "message": "exit code 1"}
    assert body["CreatedTimeUtc"].endswith("Z") and train["StartTimeUtc"].endswith("Z")
    # The stored JSON itself uses the API names (other tools may read the blob).
    raw = ensure_container(get_settings().system_container).download_blob(f"runs/{run.Id}/run.json").readall()
    assert set(json.loads(raw)) >= RUN_FIELDS - {"Steps"}
    assert store.get_run(run.Id, with_steps=False).Steps == []


def test_create_is_create_only_and_missing_is_not_found(store):
    run = make_run()
    store.create_run(run)
    with pytest.raises(Conflict):
        store.create_run(run)
    with pytest.raises(NotFound) as info:
        store.get_run("mlpipe_nope")
    assert "mlpipe_nope" in info.value.message
    with pytest.raises(InvalidRequest):
        store.get_run("../etc")


def test_concurrent_updates_are_not_lost(store):
    run = make_run()
    store.create_run(run)

    def tag(i):
        store.modify_run(run.Id, lambda r: r.Tags.__setitem__(f"t{i}", str(i)))

    threads = [threading.Thread(target=tag, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_run(run.Id).Tags == {f"t{i}": str(i) for i in range(8)}


def test_update_run_validates_and_moves_the_index(store):
    run = make_run()
    store.create_run(run)
    updated = store.update_run(run.Id, Status="Running", StartTimeUtc=datetime.now(timezone.utc))
    assert updated.Status == "Running" and updated.StartTimeUtc.endswith("Z")
    assert [r.Id for r in store.list_runs(status="Running")] == [run.Id]
    with pytest.raises(ValidationError):
        store.update_run(run.Id, Status="Succeeded")  # not an API status
    assert store.get_run(run.Id).Status == "Running"


def test_modify_run_tells_when_run_json_is_written_before_the_index_follows(store):
    run = make_run()
    store.create_run(run)
    seen = []

    def when_written(record: RunRecord) -> None:
        seen.append((record.Status, store.get_run(run.Id, with_steps=False).Status,
                     [r.Id for r in store.list_runs(status="Finished")]))

    def finish(record: RunRecord) -> None:
        record.Status = "Finished"

    store.modify_run(run.Id, finish, when_written=when_written)
    assert seen == [("Finished", "Finished", [])]  # run.json says so; the index did not yet
    assert [r.Id for r in store.list_runs(status="Finished")] == [run.Id]


def test_list_runs_newest_first_with_filters(store):
    base = datetime(2026, 5, 1, tzinfo=timezone.utc)
    runs = [make_run("a" if i % 2 else "b", created=base + timedelta(minutes=i), PipelineId=f"p{i % 3}")
            for i in range(6)]
    for run in runs:
        store.create_run(run)
    assert [r.Id for r in store.list_runs()] == [r.Id for r in reversed(runs)]
    assert [r.Id for r in store.list_runs(experiment="a")] == [runs[5].Id, runs[3].Id, runs[1].Id]
    assert [r.Id for r in store.list_runs(pipeline_id="p0")] == [runs[3].Id, runs[0].Id]
    assert [r.Id for r in store.list_runs(top=2)] == [runs[5].Id, runs[4].Id]
    assert store.list_runs(experiment="none") == []


def test_logs_append_and_replace(store):
    run = make_run()
    store.create_run(run)
    with pytest.raises(NotFound):
        store.get_log(run.Id, "prep")
    store.append_log(run.Id, "prep", "one\n")
    store.append_log(run.Id, "prep", "two\n")
    assert store.get_log(run.Id, "prep") == "one\ntwo\n"
    store.put_log(run.Id, "prep", "replaced\n")
    store.append_log(run.Id, "prep", "more ü\n")
    assert store.get_log(run.Id, "prep") == "replaced\nmore ü\n"


def test_fingerprint_ingredients_round_trip(store):
    run = make_run()
    store.create_run(run)
    ingredients = {"script": {"value": "train.py", "hash": "ab"}, "inputs": {"raw": {"hash": "cd"}}}
    store.put_fingerprints(run.Id, {"train": ingredients, "prep": {"script": {"value": "prep.py", "hash": "ef"}}})
    assert store.get_fingerprint(run.Id, "train") == ingredients
    assert store.get_fingerprint(run.Id, "prep")["script"]["hash"] == "ef"
    with pytest.raises(NotFound):
        store.get_fingerprint(run.Id, "score")


def test_fingerprint_of_a_run_planned_before_fingerprints_json(store):
    """Older runs kept one fingerprint.json per step; `runs explain` still reads them."""
    run = make_run()
    store.create_run(run)
    store._container().upload_blob(f"runs/{run.Id}/steps/train/fingerprint.json", b'{"script": {"hash": "ab"}}')
    assert store.get_fingerprint(run.Id, "train") == {"script": {"hash": "ab"}}


def test_time_normalisation():
    assert to_utc_iso("2026-01-01T01:00:00+01:00") == "2026-01-01T00:00:00.000Z"
    assert to_utc_iso(datetime(2026, 1, 1)) == "2026-01-01T00:00:00.000Z"


def test_index_status_follows_concurrent_status_changes(store):
    run = make_run()
    store.create_run(run)
    statuses = ["Running", "CancelRequested", "Failed", "Finished", "Canceled", "Running"]

    def set_status(status):
        store.update_run(run.Id, Status=status)

    threads = [threading.Thread(target=set_status, args=(s,)) for s in statuses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = store.get_run(run.Id, with_steps=False).Status
    assert [r.Id for r in store.list_runs(status=final)] == [run.Id]
    for other in set(statuses) - {final}:
        assert store.list_runs(status=other) == []


def test_log_file_upload_attempt_logs_and_plan(store, tmp_path):
    run = make_run()
    store.create_run(run)
    log_file = tmp_path / "log.txt"
    log_file.write_text("attempt one failed\n")
    store.upload_log_file(run.Id, "train", log_file)
    store.keep_attempt_log(run.Id, "train", 1)
    log_file.write_text("")
    store.upload_log_file(run.Id, "train", log_file)
    assert store.get_log(run.Id, "train") == ""
    assert store.get_log(run.Id, "train", attempt=1) == "attempt one failed\n"
    store.keep_attempt_log(run.Id, "never-ran", 1)  # nothing to keep is not an error
    store.put_plan(run.Id, {"steps": {"a": []}})
    assert store.get_plan(run.Id) == {"steps": {"a": []}}
