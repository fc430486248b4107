"""Zip extraction that refuses traversal, links and bombs (packages and snapshots)."""

from __future__ import annotations

import io
import os
import stat
import zipfile

import pytest

from shared.errors import InvalidRequest, PayloadTooLarge
from shared.safezip import extract_zip


def make_zip(entries: dict, modes: dict | None = None) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            archive.writestr(info, data)
    buffer.seek(0)
    return buffer


@pytest.mark.parametrize("entry", ["../evil.py", "/abs.py", "a/../../evil.py", "..\\evil.py", "C:/x.py"])
def test_entries_leaving_the_destination_are_refused(tmp_path, entry):
    with pytest.raises(InvalidRequest) as caught:
        extract_zip(make_zip({"ok.py": "x", entry: "boom"}), tmp_path / "out", what="package")
    assert repr(entry) in caught.value.message and caught.value.message.startswith("package entry")
    assert not (tmp_path / "evil.py").exists()


def test_symbolic_links_are_refused(tmp_path):
    archive = make_zip({"link": "/etc/passwd"}, modes={"link": stat.S_IFLNK | 0o777})
    with pytest.raises(InvalidRequest, match="symbolic links"):
        extract_zip(archive, tmp_path / "out")


def test_size_and_entry_limits(tmp_path):
    with pytest.raises(PayloadTooLarge):
        extract_zip(make_zip({"big.bin": b"0" * 2048}), tmp_path / "a", max_bytes=1024)
    with pytest.raises(PayloadTooLarge):
        extract_zip(make_zip({f"f{i}": "x" for i in range(5)}), tmp_path / "b", max_entries=4)


def test_a_zip_bomb_ratio_is_refused(tmp_path):
    with pytest.raises(InvalidRequest, match="zip bomb"):
        extract_zip(make_zip({"zeros.bin": b"\0" * (80 * 1024**2)}), tmp_path / "c")


def test_files_and_executable_bits_are_extracted(tmp_path):
    archive = make_zip({"run.sh": "echo hi", "pkg/data.txt": "data"},
                       modes={"run.sh": stat.S_IFREG | 0o755, "pkg/data.txt": stat.S_IFREG | 0o644})
    extract_zip(archive, tmp_path / "out")
    assert (tmp_path / "out" / "pkg" / "data.txt").read_text() == "data"
    assert os.access(tmp_path / "out" / "run.sh", os.X_OK)
    assert not os.access(tmp_path / "out" / "pkg" / "data.txt", os.X_OK)


def test_garbage_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidRequest, match="not a valid zip"):
        extract_zip(io.BytesIO(b"PK\x03\x04garbage"), tmp_path / "out", what="package")
