"""Content hash of a source directory (DESIGN.md "Reuse") and its deterministic zip.

A snapshot is every regular file the ignore rules keep (see shared/ignore.py), as relative POSIX
paths with their sha256. Its hash covers paths and bytes only: not timestamps, permissions or
empty folders, so a checkout on another machine hashes the same.

Symbolic links are followed when they stay inside the directory (the snapshot holds the target's
bytes under the link's path). A link that leads outside, dangles or loops is rejected with
InvalidRequest: silently leaving it out would make a snapshot that runs differently from the
folder the user sees, and following it would ship files from outside the pipeline folder.
Ignored paths are never examined, so e.g. a `.venv/` listed in .gitignore may hold such links.
Other special files (sockets, FIFOs, devices) are left out.

Speed: unchanged files are not read again (shared/stat_cache.py); the others are hashed on a
small thread pool (hashlib and file reads release the GIL) with large reads.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from shared.errors import Conflict, InvalidRequest
from shared.ignore import IgnoreRules
from shared.stat_cache import RACY_WINDOW_NS, StatCache

__all__ = ["FileEntry", "SourceHasher", "SourceSnapshot", "hash_directory", "sha256_file", "zip_snapshot"]

SNAPSHOT_FORMAT = b"mlpipe-source-v1\n"
READ_SIZE = 1 << 20  # 1 MiB reads: few syscalls, and hashlib releases the GIL for each update
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)  # the earliest zip date: fixed so equal trees zip equally
ZIP_FILE_MODE, ZIP_EXECUTABLE_MODE = 0o644, 0o755  # only the executable bit is kept
ZIP_UNIX_SYSTEM = 3


class FileEntry(NamedTuple):
    """One file of a snapshot: POSIX path relative to the directory, size in bytes, sha256 hex."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class SourceSnapshot:
    hash: str
    files: list[FileEntry]

    @property
    def total_size(self) -> int:
        return sum(entry.size for entry in self.files)

    def file_hashes(self) -> dict[str, str]:
        return {entry.path: entry.sha256 for entry in self.files}

    def to_json(self) -> dict:
        return {"hash": self.hash, "files": [list(entry) for entry in self.files]}

    @classmethod
    def from_json(cls, data: dict) -> SourceSnapshot:
        return cls(hash=data["hash"], files=[FileEntry(*entry) for entry in data["files"]])


def snapshot_hash(files: Iterable[FileEntry]) -> str:
    """sha256 over the sorted (path, file sha256) pairs; the one definition of a snapshot's hash."""
    digest = hashlib.sha256(SNAPSHOT_FORMAT)
    for entry in sorted(files):
        digest.update(entry.path.encode("utf-8") + b"\0" + entry.sha256.encode("ascii") + b"\n")
    return digest.hexdigest()


_buffers = threading.local()


def sha256_file(path: str | Path) -> tuple[str, int, os.stat_result]:
    """(sha256 hex, bytes read, fstat taken after reading) of one file."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        buffer = getattr(_buffers, "buffer", None)
        if buffer is None:
            buffer = _buffers.buffer = bytearray(READ_SIZE)
        view = memoryview(buffer)
        size = 0
        while count := handle.readinto(buffer):
            digest.update(view[:count])
            size += count
        return digest.hexdigest(), size, os.fstat(handle.fileno())


class _Found(NamedTuple):
    relative: str
    real_path: str
    stat: os.stat_result


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _walk(root: str, label: str) -> list[_Found]:
    """Every kept regular file below the real path `root`; see the module docstring for links."""
    found: list[_Found] = []
    stack = [(root, "", IgnoreRules().for_folder(Path(root), ""), (root,))]
    while stack:
        folder, relative_folder, rules, ancestors = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                relative = f"{relative_folder}/{entry.name}" if relative_folder else entry.name
                is_link = entry.is_symlink()
                real_path = os.path.realpath(entry.path) if is_link else entry.path
                is_dir = os.path.isdir(real_path) if is_link else entry.is_dir(follow_symlinks=False)
                if rules.is_ignored(relative, is_dir):
                    continue
                if is_link:
                    _check_link(relative, real_path, root, label)
                if is_dir:
                    if real_path in ancestors:
                        raise InvalidRequest(f"{label}: '{relative}' is a symbolic link loop")
                    rules_below = rules.for_folder(Path(real_path), relative)
                    stack.append((real_path, relative, rules_below, ancestors + (real_path,)))
                    continue
                st = os.stat(real_path) if is_link else entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    found.append(_Found(relative, real_path, st))
    return found


def _check_link(relative: str, real_path: str, root: str, label: str) -> None:
    if not os.path.exists(real_path):
        raise InvalidRequest(f"{label}: '{relative}' is a broken symbolic link")
    if not _inside(real_path, root):
        raise InvalidRequest(f"{label}: '{relative}' is a symbolic link leading outside the source directory")


def _utf8_path(relative: str, label: str) -> str:
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{label}: file name {relative!r} is not valid UTF-8") from None
    return relative


class SourceHasher:
    """Hashes source directories, reusing hashes of unchanged files from a stat cache.

    `cache_path` is the SQLite stat cache (None: remember only within this object). One hasher
    may be reused for many directories; it is not meant to be shared between threads.
    """

    def __init__(
        self,
        cache_path: str | Path | None = None,
        *,
        workers: int | None = None,
        racy_window_ns: int = RACY_WINDOW_NS,
    ):
        self.cache = StatCache(cache_path, racy_window_ns=racy_window_ns)
        self.workers = workers or min(4, (os.cpu_count() or 1) + 1)

    def hash_directory(self, directory: str | Path) -> SourceSnapshot:
        directory = Path(directory)
        label = f"source directory '{directory.name or directory}'"
        if not directory.is_dir():
            raise InvalidRequest(f"{label}: not a folder")
        root = os.path.realpath(directory)
        found = _walk(root, label)
        self.cache.load_under(root)
        files = self._hash_files(found, label)
        self.cache.forget_missing_under(root, {item.real_path for item in found})
        self.cache.save()
        files.sort()
        return SourceSnapshot(hash=snapshot_hash(files), files=files)

    def hash_file(self, path: str | Path) -> str:
        """sha256 of one file through the same cache (used for hash_paths)."""
        real_path = os.path.realpath(path)
        (entry,) = self._hash_files([_Found(Path(path).name, real_path, os.stat(real_path))], str(path))
        self.cache.save()
        return entry.sha256

    def hash_paths(self, root: str | Path, paths: Iterable[str]) -> dict[str, str]:
        """{path: hash} for a step's hash_paths (relative to `root`): a file's sha256, a folder's
        snapshot hash. Confinement to the pipeline folder is checked by shared.spec."""
        root = Path(root)
        hashes = {}
        for relative in sorted(set(paths)):
            target = root / relative
            is_dir = target.is_dir()
            hashes[relative] = self.hash_directory(target).hash if is_dir else self.hash_file(target)
        return hashes

    def _hash_files(self, found: list[_Found], label: str) -> list[FileEntry]:
        files: list[FileEntry] = []
        misses: list[_Found] = []
        for item in found:
            sha = self.cache.lookup(item.real_path, item.stat)
            if sha is None:
                misses.append(item)
            else:
                files.append(FileEntry(_utf8_path(item.relative, label), item.stat.st_size, sha))
        misses.sort(key=lambda item: item.stat.st_size, reverse=True)  # big files first: even load
        if len(misses) > 1 and self.workers > 1:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="source-hash") as pool:
                files.extend(pool.map(lambda item: self._hash_miss(item, label), misses))
        else:
            files.extend(self._hash_miss(item, label) for item in misses)
        return files

    def _hash_miss(self, item: _Found, label: str) -> FileEntry:
        started_ns = time.time_ns()
        try:
            sha, size, after = sha256_file(item.real_path)
        except OSError as error:
            raise InvalidRequest(f"{label}: cannot read '{item.relative}': {error.strerror}") from None
        if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (
            item.stat.st_size,
            item.stat.st_mtime_ns,
            item.stat.st_ctime_ns,
        ):  # unchanged while we read it: safe to remember
            self.cache.remember(item.real_path, item.stat, sha, hashed_at_ns=started_ns)
        return FileEntry(_utf8_path(item.relative, label), size, sha)


def hash_directory(directory: str | Path, cache_path: str | Path | None = None) -> SourceSnapshot:
    return SourceHasher(cache_path).hash_directory(directory)


# -------------------------------------------------------------------------------------------------
# Deterministic zip


def zip_snapshot(
    directory: str | Path, snapshot: SourceSnapshot, destination: str | Path | BinaryIO | None = None
) -> Path | None:
    """Write the snapshot's files into a deterministic zip (sorted names, fixed timestamps, modes
    0644 or 0755 after the file's executable bit), streaming each file.

    `destination` is a path (written to a temp file beside it, then renamed: never a partial zip
    under the final name; returns the path), a binary stream (returns None), or None: a new
    temporary file whose path is returned (the caller deletes it).

    Every file is hashed again while it is copied; if one changed since the snapshot was taken
    the zip would not match its content-addressed name, so Conflict is raised instead.
    """
    if destination is None:
        handle, temp_name = tempfile.mkstemp(prefix=f"snapshot-{snapshot.hash[:16]}-", suffix=".zip")
        os.close(handle)
        destination = temp_name
    elif not isinstance(destination, (str, Path)):
        _write_zip(Path(directory), snapshot, destination)
        return None
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            _write_zip(Path(directory), snapshot, stream)
        os.replace(temp_name, destination)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return destination


def _write_zip(directory: Path, snapshot: SourceSnapshot, stream: BinaryIO) -> None:
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for entry in sorted(snapshot.files):
            info = zipfile.ZipInfo(entry.path, date_time=ZIP_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = ZIP_UNIX_SYSTEM
            digest = hashlib.sha256()
            with open(directory / entry.path, "rb", buffering=0) as source:
                executable = os.fstat(source.fileno()).st_mode & 0o111
                info.external_attr = (ZIP_EXECUTABLE_MODE if executable else ZIP_FILE_MODE) << 16
                with archive.open(info, "w", force_zip64=entry.size >= zipfile.ZIP64_LIMIT) as target:
                    while count := source.readinto(buffer):
                        digest.update(view[:count])
                        target.write(view[:count])
            if digest.hexdigest() != entry.sha256:
                raise Conflict(f"'{entry.path}' changed while its source snapshot was being zipped; try again")
