"""The submit path against Azurite: status changes seen at once from any process, run index
entries written behind without losing or clobbering anything."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import control
from shared.endpoints import EndpointRegistry
from shared.errors import Conflict
from shared.registry import PipelineRegistry
from shared.runs import RunStore, _create_index_entry, _index_metadata, _index_name
from shared.settings import get_settings
from shared.storage import ensure_container

DEFINITION = {"name": "one", "parameters": {"n": 1},
              "steps": [{"name": "s1", "type": "python", "script_name": "x.py", "compute": "local"}]}


@pytest.fixture
def pipeline_id(storage_env) -> str:
    return control.publish_json({"definition": DEFINITION})["Id"]


def index_entries() -> dict[str, dict]:
    container = ensure_container(get_settings().system_container)
    return {blob.name: {k.lower(): v for k, v in (blob.metadata or {}).items()}
            for blob in container.list_blobs(name_starts_with="runindex/", include=["metadata"])}


def test_a_disable_by_another_process_is_a_409_on_the_very_next_submit(pipeline_id):
    control.submit(pipeline_id, {"ExperimentName": "x"})  # this process now has the record cached
    other_host = PipelineRegistry()  # writes storage without telling this process's caches
    other_host.set_status(pipeline_id, "Disabled")
    with pytest.raises(Conflict) as error:
        control.submit(pipeline_id, {"ExperimentName": "x"})
    assert error.value.code == "PipelineDisabled"
    other_host.set_status(pipeline_id, "Active")
    assert control.submit(pipeline_id, {"ExperimentName": "x"}).run["Status"] == "Queued"


def test_a_disable_through_this_process_is_seen_by_concurrent_submits_after_it(pipeline_id):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: control.submit(pipeline_id, {"ExperimentName": "x"}), range(16)))
        control.set_pipeline_enabled(pipeline_id, False)
        outcomes = list(pool.map(lambda _: _submit_outcome(pipeline_id), range(16)))
    assert outcomes == ["PipelineDisabled"] * 16


def _submit_outcome(pipeline_id: str) -> str:
    try:
        control.submit(pipeline_id, {"ExperimentName": "x"})
        return "accepted"
    except Conflict as error:
        return error.code


def test_an_endpoint_disabled_by_another_process_is_a_409_at_once(pipeline_id):
    control.create_endpoint({"name": "ep", "pipelineId": pipeline_id})
    control.submit_to_endpoint("ep", {"ExperimentName": "x"})
    EndpointRegistry().set_status("ep", "Disabled")
    with pytest.raises(Conflict) as error:
        control.submit_to_endpoint("ep", {"ExperimentName": "x"})
    assert error.value.code == "EndpointDisabled"


def test_submitted_runs_are_listed_at_once_with_their_index_entries(pipeline_id):
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: control.submit(pipeline_id, {"ExperimentName": "burst"}).run_id, range(40)))
    listed = {run["Id"] for run in control.list_runs(experiment="burst", top=1000)}
    assert listed == ids
    assert len([name for name in index_entries() if name.split("_", 1)[1] in ids]) == 40


def test_an_index_entry_lost_in_a_crash_is_written_by_the_runs_first_status_change(pipeline_id):
    run_id = control.submit(pipeline_id, {"ExperimentName": "crash"}).run_id
    store = RunStore()
    store.list_runs(top=1)  # the entry is written...
    record = store.get_run(run_id, with_steps=False)
    ensure_container(get_settings().system_container).delete_blob(_index_name(record))  # ...and lost
    assert control.list_runs(experiment="crash") == []
    store.update_run(run_id, Status="Running")
    assert [run["Id"] for run in control.list_runs(experiment="crash", status="Running")] == [run_id]


def test_a_late_index_write_never_replaces_a_newer_entry(pipeline_id):
    run_id = control.submit(pipeline_id, {"ExperimentName": "late"}).run_id
    store = RunStore()
    queued = store.get_run(run_id, with_steps=False)
    store.update_run(run_id, Status="Running")  # indexes Running (creating the entry if needed)
    container = ensure_container(get_settings().system_container)
    _create_index_entry(container, _index_name(queued), _index_metadata(queued))  # the Queued write, late
    assert index_entries()[_index_name(queued)]["status"] == "Running"
    assert [run["Id"] for run in control.list_runs(experiment="late", status="Running")] == [run_id]


def test_a_run_finished_again_after_its_index_write_failed_brings_the_index_in_line(pipeline_id):
    """run_finished writes run.json, then the run's index entry; when the second write fails, Durable
    runs the activity again: run.json already says Finished, and the entry must follow all the same."""
    from shared.errors import MlpipeError
    from shared.run_lifecycle import mark_run_finished

    run_id = control.submit(pipeline_id, {"ExperimentName": "finish-again"}).run_id
    store = RunStore()
    store.update_run(run_id, Status="Running")
    entry = ensure_container(get_settings().system_container).get_blob_client(
        _index_name(store.get_run(run_id, with_steps=False)))
    lease = entry.acquire_lease(lease_duration=-1)  # nobody may write the entry meanwhile
    with pytest.raises(MlpipeError):
        mark_run_finished(run_id, "Finished", [])
    assert store.get_run(run_id, with_steps=False).Status == "Finished"
    assert control.list_runs(experiment="finish-again", status="Finished") == []  # the entry lags
    lease.release()
    mark_run_finished(run_id, "Finished", [])
    assert [run["Id"] for run in control.list_runs(experiment="finish-again", status="Finished")] == [run_id]
