"""Datastore against a real Azurite: streamed transfer, commit protocol, path confinement."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from shared.datastore import (
    FileEntry,
    default_datastore,
    get_datastore,
    list_datastores,
    safe_blob_path,
)
from shared.errors import InvalidRequest, NotFound


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def store(storage_env):
    return default_datastore()


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "src"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_text("alpha")
    (root / "sub" / "b.bin").write_bytes(os.urandom(1000))
    (root / "sub" / "deeper" / "c.txt").write_text("gamma")
    return root


@pytest.mark.parametrize("bad", ["/abs/path", "a/../b", "..", "a\\b", "a//b", "", "./a", "a/./b"])
def test_safe_blob_path_rejects_and_names_the_path(bad):
    with pytest.raises(InvalidRequest) as info:
        safe_blob_path(bad)
    assert repr(bad) in info.value.message


def test_safe_blob_path_accepts_relative_and_drops_one_trailing_slash():
    assert safe_blob_path("iris/raw/") == "iris/raw"
    assert safe_blob_path("iris/raw/iris.csv") == "iris/raw/iris.csv"


def test_large_file_round_trip_is_streamed_and_intact(store, tmp_path):
    big = tmp_path / "up" / "big.bin"
    big.parent.mkdir()
    with open(big, "wb") as handle:  # 20 MiB + a ragged tail, written in chunks
        for _ in range(20):
            handle.write(os.urandom(1 << 20))
        handle.write(b"tail" * 1001)
    entries = store.upload_folder(big.parent, "data/large")
    assert [e.name for e in entries] == ["big.bin"]
    assert entries[0].size == big.stat().st_size

    out = store.download_prefix("data/large", tmp_path / "down")
    assert out == [(tmp_path / "down" / "big.bin").resolve()]
    assert sha256_file(tmp_path / "down" / "big.bin") == sha256_file(big)
    # Content-MD5 was stored with the blob even though it was uploaded in blocks.
    assert store.dataset_entries("data/large/big.bin") == [("data/large/big.bin", entries[0].md5)]


def test_upload_folder_keeps_relative_paths_and_reports_md5(store, folder, tmp_path):
    entries = store.upload_folder(folder, "runs/r1/prep/clean")
    assert [e.name for e in entries] == ["a.txt", "sub/b.bin", "sub/deeper/c.txt"]
    assert entries[0] == FileEntry("a.txt", 5, md5_b64(b"alpha"))
    store.download_prefix("runs/r1/prep/clean", tmp_path / "copy")
    for entry in entries:
        assert (tmp_path / "copy" / entry.name).read_bytes() == (folder / entry.name).read_bytes()


def test_output_is_invisible_until_its_manifest_is_written(store, folder, tmp_path):
    prefix = "runs/r2/prep/clean"
    files = store.upload_folder(folder, prefix)
    assert not store.is_committed(prefix)
    assert store.read_manifest(prefix) is None
    with pytest.raises(NotFound):
        store.download_output(prefix, tmp_path / "early")

    manifest = store.commit_output(prefix, files)
    assert store.is_committed(prefix)
    stored = json.loads(store.read_bytes(prefix + ".manifest.json"))
    assert stored == manifest
    assert stored["committedUtc"].endswith("Z")
    assert {f["name"] for f in stored["files"]} == {"a.txt", "sub/b.bin", "sub/deeper/c.txt"}


def test_readers_use_the_manifest_file_list_not_the_listing(store, folder, tmp_path):
    prefix = "runs/r3/prep/clean"
    store.upload_output(folder, prefix)
    # A stray blob (e.g. from a retried, half-finished attempt) is not part of the output.
    store.upload_bytes(prefix + "/stray.tmp", b"partial")
    local = store.download_output(prefix, tmp_path / "in")
    names = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    assert names == ["a.txt", "sub/b.bin", "sub/deeper/c.txt"]


def test_download_path_handles_a_blob_and_a_folder(store, folder, tmp_path):
    store.upload_folder(folder, "iris/raw")
    single = store.download_path("iris/raw/a.txt", tmp_path / "one")
    assert single == tmp_path / "one" / "a.txt" and single.read_text() == "alpha"
    whole = store.download_path("iris/raw", tmp_path / "all")
    assert whole == tmp_path / "all"
    assert (whole / "sub" / "deeper" / "c.txt").read_text() == "gamma"
    with pytest.raises(NotFound) as info:
        store.download_path("iris/nothing", tmp_path / "none")
    assert "workspaceblobstore/iris/nothing" in info.value.message


def test_download_refuses_blob_names_escaping_the_folder(store, tmp_path):
    # Azure keeps such names verbatim; a careless reader would write outside its folder.
    store.container_client().upload_blob("evil/..\\..\\x.txt", b"x")
    with pytest.raises(InvalidRequest):
        store.download_prefix("evil", tmp_path / "in")
    assert not (tmp_path / "x.txt").exists()


def test_dataset_entries_of_a_folder_and_missing_path(store, folder):
    store.upload_folder(folder, "ds")
    entries = store.dataset_entries("ds")
    assert [name for name, _ in entries] == ["ds/a.txt", "ds/sub/b.bin", "ds/sub/deeper/c.txt"]
    assert entries[0][1] == md5_b64(b"alpha")
    # A blob written without Content-MD5 falls back to its ETag.
    store.container_client().upload_blob("ds2/nomd5.txt", b"abc", validate_content=False)
    name, marker = store.dataset_entries("ds2")[0]
    assert name == "ds2/nomd5.txt" and marker
    with pytest.raises(NotFound) as info:
        store.dataset_entries("nope/here")
    assert "nope/here" in info.value.message


def test_datastores_list_default_and_declared(storage_env, monkeypatch):
    from shared.settings import reset_settings

    monkeypatch.setenv("MLPIPE_DATASTORES", json.dumps({
        "archive": {"container": "archive-x", "connection": "ARCHIVE_STORAGE"},
        "same": {"container": "same-account"},
    }))
    monkeypatch.setenv("ARCHIVE_STORAGE", storage_env.connection_string)
    reset_settings()
    listed = [d.to_api() for d in list_datastores()]
    assert listed[0]["Name"] == "workspaceblobstore" and listed[0]["IsDefault"] is True
    assert listed[0]["Container"] == os.environ["MLPIPE_BLOBSTORE_CONTAINER"]
    assert listed[0]["AccountName"] == "devstoreaccount1"
    assert [d["Name"] for d in listed[1:]] == ["archive", "same"]
    assert all(d["IsDefault"] is False for d in listed[1:])
    archive = get_datastore("archive")
    archive.upload_bytes("x/y.txt", b"hello")
    assert archive.read_bytes("x/y.txt") == b"hello"
    with pytest.raises(NotFound):
        get_datastore("unknown")
    assert storage_env.connection_string not in repr(archive)


def test_storage_errors_are_ours_and_never_carry_the_key(storage_env, monkeypatch):
    from shared.errors import StorageError
    from shared.settings import AZURITE_KEY, reset_settings

    wrong_key = base64.b64encode(b"not-the-key-" * 4).decode()
    monkeypatch.setenv("AzureWebJobsStorage", storage_env.connection_string.replace(AZURITE_KEY, wrong_key))
    reset_settings()
    with pytest.raises(StorageError) as info:
        default_datastore().read_bytes("a/b")
    assert wrong_key not in str(info.value) and "AccountKey" not in str(info.value)
    assert info.value.__cause__ is not None  # the azure error is kept as the cause


def test_transfer_memory_does_not_grow_with_file_size(store, tmp_path):
    """Streaming, not buffering: moving a 4x larger file needs about the same peak memory."""
    import tracemalloc

    def write(path: Path, mib: int) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            for _ in range(mib):
                handle.write(os.urandom(1 << 20))
        return path

    peaks = {}
    for mib in (20, 60):
        source = write(tmp_path / f"up{mib}" / "f.bin", mib)
        tracemalloc.start()
        try:
            store.upload_folder(source.parent, f"mem/{mib}")
            upload_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            store.download_prefix(f"mem/{mib}", tmp_path / f"down{mib}")
            download_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        peaks[mib] = (upload_peak, download_peak)
        assert sha256_file(tmp_path / f"down{mib}" / "f.bin") == sha256_file(source)
    # Buffering would make the peak grow with the file (by >= 40 MiB) and exceed its 60 MiB.
    # Streaming keeps it near a constant set by the transfer concurrency (4 ranges in flight,
    # each briefly ~9x its 1 MiB size in the SDK); how many overlap varies with timing, so allow
    # half the file's growth rather than a tight bound that flakes on a busy machine.
    growth_allowed = 20 << 20
    for upload_or_download in (0, 1):
        assert peaks[60][upload_or_download] - peaks[20][upload_or_download] < growth_allowed, peaks
        assert peaks[60][upload_or_download] < 60 << 20, peaks


def test_upload_folder_of_a_missing_folder_is_an_error(store, tmp_path):
    with pytest.raises(InvalidRequest):
        store.upload_folder(tmp_path / "nope", "x")
