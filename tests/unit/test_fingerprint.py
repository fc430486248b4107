"""shared/fingerprint.py, source_snapshot.py, ignore.py, stat_cache.py."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import zipfile
from pathlib import Path

import pytest

from shared.errors import Conflict, InvalidRequest
from shared.fingerprint import (
    SourceHasher,
    SourceSnapshot,
    canonical_json,
    compute_step_fingerprint,
    dataset_fingerprint,
    diff_ingredients,
    fingerprint_from_ingredients,
    pipeline_data_fingerprint,
    step_settings,
    zip_snapshot,
)
from shared.spec import parse_definition


def write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def hasher(tmp_path: Path, **kwargs) -> SourceHasher:
    """A hasher with a persisted cache and no racy window (files in tests are seconds old)."""
    kwargs.setdefault("racy_window_ns", 0)
    return SourceHasher(tmp_path / "cache" / "stat-cache.sqlite", **kwargs)


def paths(snapshot: SourceSnapshot) -> list[str]:
    return [entry.path for entry in snapshot.files]


@pytest.fixture
def source(tmp_path) -> Path:
    return write(tmp_path / "src", {"prep.py": "print('prep')\n", "lib/util.py": "X = 1\n"})


# -- what a snapshot holds ---------------------------------------------------------------------


def test_snapshot_lists_relative_posix_paths_with_sizes_and_hashes(source, tmp_path):
    snapshot = hasher(tmp_path).hash_directory(source)
    assert paths(snapshot) == ["lib/util.py", "prep.py"]
    util = snapshot.files[0]
    assert util.size == 6 and len(util.sha256) == 64
    assert SourceSnapshot.from_json(json.loads(json.dumps(snapshot.to_json()))) == snapshot


def test_gitignore_is_honoured_and_git_folder_never_included(tmp_path):
    root = write(
        tmp_path / "src",
        {
            ".gitignore": "*.log\n!keep.log\nbuild/\n/top.txt\n",
            "a.log": "", "keep.log": "", "build/out.bin": "", "sub/top.txt": "", "top.txt": "",
            ".git/HEAD": "ref", "__pycache__/m.pyc": "", "main.py": "", "sub/.git": "gitdir: ../x",
        },
    )
    assert paths(SourceHasher().hash_directory(root)) == [".gitignore", "keep.log", "main.py", "sub/top.txt"]


def test_amlignore_wins_over_gitignore(tmp_path):
    root = write(tmp_path / "src", {".gitignore": "data/\n", ".amlignore": "*.csv\n", "data/x.txt": "", "y.csv": ""})
    assert paths(SourceHasher().hash_directory(root)) == [".amlignore", ".gitignore", "data/x.txt"]


def test_nested_ignore_files_apply_below_their_folder_and_override(tmp_path):
    root = write(
        tmp_path / "src",
        {
            ".gitignore": "*.tmp\n",
            "pkg/.gitignore": "!important.tmp\nlocal.txt\n",
            "pkg/important.tmp": "", "pkg/other.tmp": "", "pkg/local.txt": "",
            "local.txt": "", "x.tmp": "",
        },
    )
    assert paths(SourceHasher().hash_directory(root)) == [
        ".gitignore", "local.txt", "pkg/.gitignore", "pkg/important.tmp"
    ]


def test_ignored_folder_cannot_be_reincluded(tmp_path):
    root = write(tmp_path / "src", {".gitignore": "out/\n!out/keep.txt\n", "out/keep.txt": "", "a.py": ""})
    assert paths(SourceHasher().hash_directory(root)) == [".gitignore", "a.py"]


def test_not_a_folder(tmp_path):
    with pytest.raises(InvalidRequest, match="not a folder"):
        SourceHasher().hash_directory(tmp_path / "missing")


# -- what changes the hash ---------------------------------------------------------------------


def test_content_change_changes_hash(source, tmp_path):
    before = hasher(tmp_path).hash_directory(source).hash
    (source / "prep.py").write_text("print('PREP')\n")
    assert hasher(tmp_path).hash_directory(source).hash != before


def test_rename_changes_hash(source, tmp_path):
    before = hasher(tmp_path).hash_directory(source).hash
    (source / "prep.py").rename(source / "prep2.py")
    assert hasher(tmp_path).hash_directory(source).hash != before


def test_added_and_removed_files_change_hash(source, tmp_path):
    before = hasher(tmp_path).hash_directory(source).hash
    (source / "new.py").write_text("")
    added = hasher(tmp_path).hash_directory(source).hash
    (source / "new.py").unlink()
    assert added != before
    assert hasher(tmp_path).hash_directory(source).hash == before


def test_touch_does_not_change_hash(source, tmp_path):
    before = hasher(tmp_path).hash_directory(source)
    os.utime(source / "prep.py", ns=(10**18, 10**18))
    after = hasher(tmp_path).hash_directory(source)
    assert after == before


def test_same_tree_elsewhere_hashes_the_same(source, tmp_path):
    copy = write(tmp_path / "elsewhere", {"lib/util.py": "X = 1\n", "prep.py": "print('prep')\n"})
    assert SourceHasher().hash_directory(copy).hash == SourceHasher().hash_directory(source).hash


# -- stat cache ------------------------------------------------------------------------------


def test_warm_cache_hits_every_unchanged_file(source, tmp_path):
    cold = hasher(tmp_path)
    first = cold.hash_directory(source)
    assert (cold.cache.hits, cold.cache.misses) == (0, 2)
    warm = hasher(tmp_path)  # a new process: the cache comes from the SQLite file
    assert warm.hash_directory(source) == first
    assert (warm.cache.hits, warm.cache.misses) == (2, 0)


def test_cache_detects_same_size_change_with_restored_mtime(source, tmp_path):
    first = hasher(tmp_path).hash_directory(source)
    target = source / "prep.py"
    st = target.stat()
    target.write_text("print('PR0P')\n")  # same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored, ctime moves
    assert hasher(tmp_path).hash_directory(source).hash != first.hash


def test_racy_files_are_not_remembered(source, tmp_path):
    fresh = SourceHasher(tmp_path / "cache.sqlite")  # default window: files just written are racy
    fresh.hash_directory(source)
    again = SourceHasher(tmp_path / "cache.sqlite")
    again.hash_directory(source)
    assert again.cache.hits == 0 and again.cache.misses == 2


def test_corrupt_cache_file_is_a_cold_start(source, tmp_path):
    cache = tmp_path / "cache" / "stat-cache.sqlite"
    cache.parent.mkdir()
    cache.write_bytes(b"not sqlite at all" * 100)
    h = hasher(tmp_path)
    assert paths(h.hash_directory(source)) == ["lib/util.py", "prep.py"]


def test_deleted_files_leave_the_cache(source, tmp_path):
    hasher(tmp_path).hash_directory(source)
    (source / "prep.py").unlink()
    hasher(tmp_path).hash_directory(source)
    with sqlite3.connect(tmp_path / "cache" / "stat-cache.sqlite") as db:
        stored = [Path(row[0]).name for row in db.execute("SELECT path FROM file_hash")]
    assert stored == ["util.py"]


def test_many_files_hashed_concurrently_match_serial(tmp_path):
    root = write(tmp_path / "src", {f"d{i % 7}/f{i}.txt": str(i) * (i * 97 % 5000) for i in range(300)})
    parallel = SourceHasher(workers=4).hash_directory(root)
    serial = SourceHasher(workers=1).hash_directory(root)
    assert parallel == serial and len(parallel.files) == 300


# -- symbolic links ----------------------------------------------------------------------------


def test_symlink_inside_is_followed(source):
    os.symlink("prep.py", source / "alias.py")
    os.symlink("lib", source / "lib2")
    snapshot = SourceHasher().hash_directory(source)
    assert paths(snapshot) == ["alias.py", "lib/util.py", "lib2/util.py", "prep.py"]
    hashes = snapshot.file_hashes()
    assert hashes["alias.py"] == hashes["prep.py"]


def test_symlink_outside_is_rejected(source, tmp_path):
    (tmp_path / "secret.txt").write_text("s")
    os.symlink(tmp_path / "secret.txt", source / "leak.txt")
    with pytest.raises(InvalidRequest, match="'leak.txt' is a symbolic link leading outside"):
        SourceHasher().hash_directory(source)


def test_ignored_symlink_outside_is_fine(source, tmp_path):
    (source / ".venv").mkdir()
    os.symlink("/usr/bin", source / ".venv" / "bin")
    (source / ".gitignore").write_text(".venv/\n")
    assert ".venv/bin" not in " ".join(paths(SourceHasher().hash_directory(source)))


def test_broken_symlink_and_loop_rejected(source):
    os.symlink("missing.py", source / "broken.py")
    with pytest.raises(InvalidRequest, match="'broken.py' is a broken symbolic link"):
        SourceHasher().hash_directory(source)
    (source / "broken.py").unlink()
    os.symlink("..", source / "lib" / "up")
    with pytest.raises(InvalidRequest, match="symbolic link loop"):
        SourceHasher().hash_directory(source)


# -- zip ---------------------------------------------------------------------------------------


def test_zip_is_deterministic_and_holds_the_snapshot(source, tmp_path):
    snapshot = SourceHasher().hash_directory(source)
    first = zip_snapshot(source, snapshot, tmp_path / "a" / "snap.zip")
    os.utime(source / "prep.py", ns=(1, 1))
    stream = io.BytesIO()
    assert zip_snapshot(source, snapshot, stream) is None
    assert first.read_bytes() == stream.getvalue()
    with zipfile.ZipFile(first) as archive:
        assert archive.namelist() == ["lib/util.py", "prep.py"]
        assert archive.read("prep.py") == b"print('prep')\n"
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_zip_refuses_a_file_changed_since_the_snapshot(source, tmp_path):
    snapshot = SourceHasher().hash_directory(source)
    (source / "prep.py").write_text("changed")
    with pytest.raises(Conflict, match="'prep.py' changed"):
        zip_snapshot(source, snapshot, tmp_path / "snap.zip")
    assert not list(tmp_path.glob("*snap.zip*"))  # no partial zip left behind


def test_hash_paths_hash_files_and_folders(source, tmp_path):
    h = hasher(tmp_path)
    hashes = h.hash_paths(source, ["prep.py", "lib"])
    assert hashes["lib"] == SourceHasher().hash_directory(source / "lib").hash
    assert len(hashes["prep.py"]) == 64


# -- step fingerprints -------------------------------------------------------------------------

PIPELINE = {
    "name": "p",
    "parameters": {"lr": 0.1},
    "datasets": {"raw": {"path": "iris"}},
    "steps": [
        {"name": "prep", "script_name": "prep.py", "arguments": ["--lr", "{parameters.lr}", "--in", "{inputs.raw}"],
         "inputs": {"raw": "datasets.raw"}, "outputs": ["clean"]},
        {"name": "train", "script_name": "train.py", "inputs": {"clean": "prep.clean"}, "outputs": ["model"]},
    ],
}


def fingerprint_pipeline(lr: float, blobs: list[tuple[str, str]], source_hash: str = "src1") -> dict[str, str]:
    """Fingerprint both steps the way the step executor chains them."""
    defn = parse_definition(PIPELINE)
    parameters = {"lr": lr}
    prep = compute_step_fingerprint(
        "python", step_settings(defn.step("prep"), parameters), source_hash, {"raw": dataset_fingerprint(blobs)}
    )
    train = compute_step_fingerprint(
        "python", step_settings(defn.step("train"), parameters), source_hash,
        {"clean": pipeline_data_fingerprint(prep.value, "clean")},
    )
    return {"prep": prep.value, "train": train.value}


BLOBS = [("iris/a.csv", "md5-a"), ("iris/b.csv", "md5-b")]


def test_same_ingredients_same_fingerprint():
    assert fingerprint_pipeline(0.1, BLOBS) == fingerprint_pipeline(0.1, list(reversed(BLOBS)))


def test_parameter_substitution_changes_fingerprint():
    base, changed = fingerprint_pipeline(0.1, BLOBS), fingerprint_pipeline(0.2, BLOBS)
    assert base["prep"] != changed["prep"]
    assert base["train"] != changed["train"]  # through prep's PipelineData


def test_input_change_propagates_downstream():
    base = fingerprint_pipeline(0.1, BLOBS)
    changed = fingerprint_pipeline(0.1, [("iris/a.csv", "md5-a"), ("iris/b.csv", "md5-B")])
    assert changed["prep"] != base["prep"] and changed["train"] != base["train"]


def test_source_change_changes_fingerprint():
    assert fingerprint_pipeline(0.1, BLOBS, "src2")["prep"] != fingerprint_pipeline(0.1, BLOBS)["prep"]


def test_data_placeholders_stay_literal_in_settings():
    settings = step_settings(parse_definition(PIPELINE).step("prep"), {"lr": 0.3})
    assert settings["arguments"] == ["--lr", "0.3", "--in", "{inputs.raw}"]


def test_dataset_fingerprint_accepts_md5_bytes():
    assert dataset_fingerprint([("a", b"\x00\x01")]) == dataset_fingerprint([("a", "AAE=")])
    assert dataset_fingerprint([]) != dataset_fingerprint([("a", "x")])


def test_pipeline_data_fingerprint_depends_on_step_and_output():
    assert pipeline_data_fingerprint("fp", "a") != pipeline_data_fingerprint("fp", "b")
    assert pipeline_data_fingerprint("fp", "a") != pipeline_data_fingerprint("fp2", "a")


def test_ingredients_are_json_and_reproduce_the_value(source):
    snapshot = SourceHasher().hash_directory(source)
    fp = compute_step_fingerprint("python", {"script_name": "prep.py"}, snapshot.hash, {"raw": "d1"}, snapshot.files)
    stored = json.loads(json.dumps(fp.ingredients))
    assert fingerprint_from_ingredients(stored) == fp.value
    assert stored["source"]["files"] == snapshot.file_hashes()
    assert stored["settings"]["script_name"]["hash"] and stored["inputs"]["raw"]["fingerprint"] == "d1"
    value, ingredients = fp  # unpacks like a (value, ingredients) pair
    assert value == fp.value


def test_per_file_detail_does_not_change_the_value():
    with_files = compute_step_fingerprint("python", {}, "h", {}, {"a.py": "1"})
    without = compute_step_fingerprint("python", {}, "h", {})
    assert with_files.value == without.value


def test_diff_names_the_differing_ingredients():
    old = compute_step_fingerprint("python", {"arguments": ["1"], "script_name": "a.py"}, "s1", {"raw": "d1"},
                                   {"a.py": "1", "b.py": "2"})
    new = compute_step_fingerprint("python", {"arguments": ["2"], "script_name": "a.py"}, "s2", {"raw": "d2", "x": "3"},
                                   {"a.py": "1", "b.py": "9", "c.py": "3"})
    assert diff_ingredients(old.ingredients, new.ingredients) == [
        "settings.arguments: changed",
        "source.files[b.py]: changed",
        "source.files[c.py]: added",
        "inputs.raw: changed",
        "inputs.x: added",
    ]
    assert diff_ingredients(old.ingredients, old.ingredients) == []
    no_files = compute_step_fingerprint("python", {"arguments": ["1"], "script_name": "a.py"}, "s3", {"raw": "d1"})
    assert diff_ingredients(old.ingredients, no_files.ingredients) == ["source: changed"]


def test_canonical_json_is_stable():
    assert canonical_json({"b": 1, "a": [1.5, "é"]}) == '{"a":[1.5,"\\u00e9"],"b":1}'
    with pytest.raises(ValueError):
        canonical_json(float("nan"))


def test_zip_to_a_new_temporary_file(source):
    snapshot = SourceHasher().hash_directory(source)
    path = zip_snapshot(source, snapshot)
    try:
        with zipfile.ZipFile(path) as archive:
            assert archive.namelist() == ["lib/util.py", "prep.py"]
    finally:
        path.unlink()


def test_parent_ignore_files_do_not_apply(tmp_path):
    (tmp_path / ".gitignore").write_text("*.py\n")
    root = write(tmp_path / "src", {"a.py": ""})
    assert paths(SourceHasher().hash_directory(root)) == ["a.py"]


def test_zip_keeps_only_the_executable_bit(source, tmp_path):
    os.chmod(source / "prep.py", 0o700)
    snapshot = SourceHasher().hash_directory(source)
    with zipfile.ZipFile(zip_snapshot(source, snapshot, tmp_path / "s.zip")) as archive:
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
    assert modes == {"lib/util.py": 0o644, "prep.py": 0o755}


def test_one_cache_file_serves_sibling_folders(tmp_path):
    first = write(tmp_path / "src", {"a.py": "1"})
    second = write(tmp_path / "src2", {"b.py": "2"})  # shares the "src" prefix as text
    hasher(tmp_path).hash_directory(first)
    hasher(tmp_path).hash_directory(second)  # must not forget src/a.py as "missing"
    warm = hasher(tmp_path)
    warm.hash_directory(first)
    warm.hash_directory(second)
    assert (warm.cache.hits, warm.cache.misses) == (2, 0)


def test_stat_cache_remembers_only_settled_files(tmp_path):
    from shared.stat_cache import RACY_WINDOW_NS, StatCache

    path = write(tmp_path, {"f.txt": "x"}) / "f.txt"
    st = path.stat()
    cache = StatCache(None)
    assert not cache.remember(str(path), st, "h", hashed_at_ns=st.st_ctime_ns + RACY_WINDOW_NS // 2)
    assert cache.lookup(str(path), st) is None
    assert cache.remember(str(path), st, "h", hashed_at_ns=st.st_ctime_ns + 2 * RACY_WINDOW_NS)
    assert cache.lookup(str(path), st) == "h"
