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
