"""PipelineRegistry against Azurite: publish/get/list/status with concurrency, snapshots."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shared.errors import InvalidRequest, NotFound
from shared.fingerprint import hash_directory, zip_snapshot
from shared.registry import PipelineRegistry
from shared.settings import get_settings

DEFINITION = {"name": "iris", "parameters": {"lr": 0.1, "data_path": "iris/raw"},
              "steps": [{"name": "prep", "type": "python", "script_name": "prep.py"}]}
SOURCE_HASH = "a" * 64


@pytest.fixture
def registry(storage_env):
    return PipelineRegistry()


def test_publish_get_and_api_body(registry):
    record = registry.publish(DEFINITION, {"prep": SOURCE_HASH}, name="iris", description="d", version="1")
    got = registry.get(record.Id)
    assert got.Definition == DEFINITION and got.SourceSnapshots == {"prep": SOURCE_HASH}
    assert got.Parameters == {"lr": 0.1, "data_path": "iris/raw"}
    assert got.Status == "Active" and got.etag
    body = got.to_api(endpoint="http://h/api/pipelines/x/submit")
    assert set(body) == {"Id", "Name", "Description", "Version", "Status", "Parameters", "Endpoint",
                         "CreatedTimeUtc"}
    with pytest.raises(NotFound) as info:
        registry.get("00000000-0000-0000-0000-000000000000")
    assert "00000000-0000-0000-0000-000000000000" in info.value.message
    with pytest.raises(NotFound):
        registry.get("../x")


def test_list_newest_first_filters_status_and_private(registry):
    published = []
    for i in range(4):
        published.append(registry.publish(DEFINITION, {}, name=f"p{i}"))
        time.sleep(0.005)
    hidden = registry.publish(DEFINITION, {}, name="cli", private=True)
    registry.set_status(published[1].Id, "Disabled")
    assert [r.Name for r in registry.list()] == ["p3", "p2", "p0"]
    assert [r.Name for r in registry.list("Disabled")] == ["p1"]
    assert [r.Name for r in registry.list("All")] == ["p3", "p2", "p1", "p0"]
    assert hidden.Id in [r.Id for r in registry.list("All", include_private=True)]
    with pytest.raises(InvalidRequest):
        registry.list("Deleted")


def test_concurrent_publish_and_status_changes(registry):
    with ThreadPoolExecutor(8) as pool:
        records = list(pool.map(lambda i: registry.publish(DEFINITION, {}, name=f"c{i}"), range(8)))
    assert len({r.Id for r in records}) == 8
    target = records[0].Id
    barrier = threading.Barrier(6)

    def toggle(i):
        barrier.wait()
        return registry.set_status(target, "Disabled" if i % 2 else "Active").Status

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(toggle, range(6)))
    assert set(results) <= {"Active", "Disabled"}
    final = registry.get(target)
    assert final.Status in ("Active", "Disabled")
    # The record is intact (no lost fields from interleaved writes).
    assert final.Definition == DEFINITION and final.Name == "c0"
    # And list() metadata agrees with the record.
    listed = registry.list(final.Status)
    assert target in [r.Id for r in listed]


def make_source(tmp_path: Path) -> tuple[Path, list[str]]:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "prep.py").write_text("print('prep')\n")
    (src / "pkg" / "util.py").write_text("X = 1\n")
    return src, ["prep.py", "pkg/util.py"]


def test_snapshot_upload_once_and_extract_once(registry, tmp_path):
    src, files = make_source(tmp_path)
    zip_path = zip_snapshot(src, hash_directory(src), tmp_path / "s.zip")
    assert registry.upload_snapshot(SOURCE_HASH, zip_path) is True
    assert registry.upload_snapshot(SOURCE_HASH, zip_path) is False
    assert registry.snapshot_exists(SOURCE_HASH)

    with ThreadPoolExecutor(6) as pool:
        paths = list(pool.map(lambda _: registry.ensure_snapshot_local(SOURCE_HASH), range(6)))
    assert len(set(paths)) == 1
    local = paths[0]
    assert local == get_settings().data_dir / "snapshots" / SOURCE_HASH
    assert (local / "pkg" / "util.py").read_text() == "X = 1\n"
    # No temporary folders are left behind.
    assert [p.name for p in local.parent.iterdir()] == [SOURCE_HASH]
    # A second registry instance (as another worker would have) reuses the folder.
    assert PipelineRegistry().ensure_snapshot_local(SOURCE_HASH) == local
    with pytest.raises(NotFound):
        registry.ensure_snapshot_local("b" * 64)
    with pytest.raises(InvalidRequest):
        registry.ensure_snapshot_local("../../etc")


def test_snapshot_file_list_round_trip(registry):
    assert registry.snapshot_files(SOURCE_HASH) is None
    registry.upload_snapshot_files(SOURCE_HASH, {"prep.py": "ab" * 32})
    registry.upload_snapshot_files(SOURCE_HASH, {"prep.py": "ab" * 32})  # content-addressed: no error
    assert registry.snapshot_files(SOURCE_HASH) == {"prep.py": "ab" * 32}




def test_snapshot_extraction_is_safe_across_processes(registry, tmp_path):
    """Several worker processes asking for the same snapshot at once end with one intact folder."""
    import subprocess
    import sys

    src, _files = make_source(tmp_path)
    for i in range(200):  # enough files that extractions overlap
        (src / "pkg" / f"m{i}.py").write_text(f"V = {i}\n")
    registry.upload_snapshot(SOURCE_HASH, zip_snapshot(src, hash_directory(src), tmp_path / "s.zip"))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from shared.registry import PipelineRegistry; "
            "print(PipelineRegistry().ensure_snapshot_local(sys.argv[2]))")
    repo = str(Path(__file__).resolve().parents[2])
    workers = [subprocess.Popen([sys.executable, "-c", code, repo, SOURCE_HASH], stdout=subprocess.PIPE, text=True)
               for _ in range(4)]
    outputs = {worker.communicate(timeout=120)[0].strip() for worker in workers}
    assert all(worker.returncode == 0 for worker in workers)
    assert len(outputs) == 1
    local = Path(outputs.pop())
    assert (local / "pkg" / "m199.py").read_text() == "V = 199\n"
    assert len(list((local / "pkg").iterdir())) == 201
    assert [p.name for p in local.parent.iterdir()] == [SOURCE_HASH]
