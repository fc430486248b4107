"""ReuseIndex against Azurite: lookups only while outputs exist; create-only records."""

from __future__ import annotations

import threading

import pytest

from shared.datastore import default_datastore
from shared.reuse import ReuseIndex

FP = "f" * 64


@pytest.fixture
def index(storage_env):
    return ReuseIndex()


def commit(prefix: str, tmp_path) -> str:
    folder = tmp_path / prefix.replace("/", "_")
    folder.mkdir()
    (folder / "data.txt").write_text(prefix)
    default_datastore().upload_output(folder, prefix)
    return prefix


def test_lookup_returns_the_record_while_outputs_are_committed(index, tmp_path):
    outputs = {"clean": commit("runs/r1/prep/clean", tmp_path), "stats": commit("runs/r1/prep/stats", tmp_path)}
    assert index.lookup(FP) is None
    assert index.record(FP, "r1", "prep", "p1", outputs) is True
    found = index.lookup(FP)
    assert (found.run_id, found.step, found.pipeline_id, found.outputs) == ("r1", "prep", "p1", outputs)
    assert found.created_utc.endswith("Z")


def test_lookup_is_none_when_an_output_manifest_was_deleted(index, tmp_path):
    outputs = {"clean": commit("runs/r1/prep/clean", tmp_path), "stats": commit("runs/r1/prep/stats", tmp_path)}
    index.record(FP, "r1", "prep", None, outputs)
    default_datastore().container_client().delete_blob("runs/r1/prep/stats.manifest.json")
    assert index.lookup(FP) is None


def test_concurrent_writers_first_one_wins_without_error(index, tmp_path):
    outputs = {"o": commit("runs/r1/prep/o", tmp_path)}
    barrier = threading.Barrier(2)
    results = {}

    def write(run_id):
        barrier.wait()
        results[run_id] = index.record(FP, run_id, "prep", None, outputs)

    threads = [threading.Thread(target=write, args=(r,)) for r in ("rA", "rB")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()) == [False, True]
    winner = next(r for r, created in results.items() if created)
    assert index.lookup(FP).run_id == winner


def test_step_without_outputs_is_reusable(index):
    index.record(FP, "r1", "notify", None, {})
    assert index.lookup(FP).outputs == {}


# ----- single flight: claims on the same blob ----------------------------------------------------


def test_first_claim_wins_and_the_second_learns_who_computes(index):
    assert index.claim(FP, "rA", "prep").ours
    assert index.claim(FP, "rA", "prep").ours  # the same step again (its activity re-ran)
    second = index.claim(FP, "rB", "prep")
    assert not second.ours and second.held_by.run_id == "rA" and second.reusable is None
    assert index.lookup(FP) is None  # a claim is not a reuse record


def test_recording_replaces_the_claim_and_the_waiter_then_reuses(index, tmp_path):
    assert index.claim(FP, "rA", "prep").ours
    outputs = {"clean": commit("runs/rA/prep/clean", tmp_path)}
    assert index.record(FP, "rA", "prep", "p1", outputs) is True
    waiter = index.claim(FP, "rB", "prep")
    assert waiter.reusable is not None and waiter.reusable.run_id == "rA" and waiter.reusable.outputs == outputs


def test_a_released_claim_lets_the_waiter_compute_it(index):
    assert index.claim(FP, "rA", "prep").ours
    index.release(FP, "rA", "prep")
    assert index.claim(FP, "rB", "prep").ours
    index.release(FP, "rA", "prep")  # not rA's any more: left alone
    assert index.claim(FP, "rC", "prep").held_by.run_id == "rB"


def test_an_expired_claim_is_taken_over(index):
    import shared.reuse as reuse

    index._blob(FP).upload_blob(b"", metadata={"state": "inflight", "runid": "dead", "step": "prep",
                                               "expires": "2020-01-01T00:00:00+00:00"})
    assert index.claim(FP, "rB", "prep").ours
    assert reuse.Holder("rB", "prep") == index.claim(FP, "rC", "prep").held_by


def test_a_record_whose_outputs_are_gone_is_computed_again_and_replaced(index, tmp_path):
    outputs = {"clean": commit("runs/rA/prep/clean", tmp_path)}
    index.record(FP, "rA", "prep", None, outputs)
    default_datastore().container_client().delete_blob("runs/rA/prep/clean.manifest.json")
    assert index.claim(FP, "rB", "prep").ours
    fresh = {"clean": commit("runs/rB/prep/clean", tmp_path)}
    assert index.record(FP, "rB", "prep", None, fresh) is True
    assert index.lookup(FP).run_id == "rB"


def test_a_step_that_did_not_claim_leaves_another_runs_claim_alone(index):
    assert index.claim(FP, "rA", "prep").ours
    assert index.record(FP, "rX", "prep", None, {}) is False  # e.g. regenerate_outputs: it never claimed
    assert index.claim(FP, "rB", "prep").held_by.run_id == "rA"
