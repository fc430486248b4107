"""A persisted cache of file content hashes keyed by what `stat` says about the file.

An entry is trusted only while (size, mtime_ns, inode, ctime_ns) are all unchanged. ctime cannot
be set from user space, so `touch`, a restore that keeps mtime, or a rename over the file all
miss and the file is read again.

Racy entries: a file modified twice within one timestamp tick keeps its mtime. Like git's
"racily clean" index entries, a file changed within `racy_window_ns` of the moment it was hashed
is hashed but not remembered, so the next run reads it again.

Storage is one SQLite file (the usual place is `<data dir>/cache/stat-cache.sqlite`): several
processes (concurrent activities) can share it; a snapshot loads only the rows under its own
folder (a primary-key range scan) and writes only what changed. The cache is an optimisation:
a locked, corrupt or unwritable file is logged and treated as empty, never as an error.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["RACY_WINDOW_NS", "StatCache", "stat_key"]

log = logging.getLogger(__name__)

RACY_WINDOW_NS = 2_000_000_000  # covers coarse (1-2 s) file system timestamps too
_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_hash (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
) WITHOUT ROWID
"""

StatKey = tuple[int, int, int, int]


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def _prefix_range(root: str) -> tuple[str, str]:
    """[low, high) bounds of every path strictly below `root` (sep sorts just before sep+1)."""
    prefix = root.rstrip(os.sep) + os.sep
    return prefix, prefix[:-1] + chr(ord(os.sep) + 1)


class StatCache:
    """{absolute path: (stat key, sha256)}. `path=None` keeps it in memory only."""

    def __init__(self, path: str | Path | None = None, racy_window_ns: int = RACY_WINDOW_NS):
        self.path = Path(path) if path is not None else None
        self.racy_window_ns = racy_window_ns
        self._entries: dict[str, tuple[StatKey, str]] = {}
        self._loaded_roots: set[str] = set()
        self._changed: dict[str, tuple[StatKey, str]] = {}
        self._removed: set[str] = set()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    # -- persistence ----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        connection.execute(_SCHEMA)
        return connection

    def load_under(self, root: str) -> None:
        """Read the rows for files below `root` (once per root and cache object)."""
        if self.path is None or root in self._loaded_roots:
            return
        self._loaded_roots.add(root)
        low, high = _prefix_range(root)
        try:
            connection = self._connect()
            try:
                rows = connection.execute(
                    "SELECT path, size, mtime_ns, ino, ctime_ns, sha256 FROM file_hash WHERE path >= ? AND path < ?",
                    (low, high),
                ).fetchall()
            finally:
                connection.close()
        except sqlite3.Error as error:
            log.warning("stat cache %s unreadable, hashing without it: %s", self.path, error)
            return
        with self._lock:
            for path, size, mtime_ns, ino, ctime_ns, sha in rows:
                self._entries.setdefault(path, ((size, mtime_ns, ino, ctime_ns), sha))

    def save(self) -> None:
        """Write what changed since the last save (no-op when nothing did or in memory only)."""
        with self._lock:
            changed, removed = self._changed, self._removed
            self._changed, self._removed = {}, set()
        if self.path is None or not (changed or removed):
            return
        try:
            connection = self._connect()
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany("DELETE FROM file_hash WHERE path = ?", [(p,) for p in removed])
                connection.executemany(
                    "INSERT OR REPLACE INTO file_hash VALUES (?, ?, ?, ?, ?, ?)",
                    [(p, *key, sha) for p, (key, sha) in changed.items()],
                )
                connection.execute("COMMIT")
            finally:
                connection.close()
        except sqlite3.Error as error:
            log.warning("stat cache %s not saved (next snapshot hashes more): %s", self.path, error)

    # -- lookups --------------------------------------------------------------------------
    def lookup(self, absolute_path: str, st: os.stat_result) -> str | None:
        entry = self._entries.get(absolute_path)
        if entry is not None and entry[0] == stat_key(st):
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def remember(self, absolute_path: str, st: os.stat_result, sha256: str, hashed_at_ns: int | None = None) -> bool:
        """Store the hash unless the file is racy (changed too close to when it was hashed)."""
        hashed_at_ns = time.time_ns() if hashed_at_ns is None else hashed_at_ns
        if max(st.st_mtime_ns, st.st_ctime_ns) >= hashed_at_ns - self.racy_window_ns:
            return False
        entry = (stat_key(st), sha256)
        with self._lock:
            if self._entries.get(absolute_path) != entry:
                self._entries[absolute_path] = entry
                self._changed[absolute_path] = entry
                self._removed.discard(absolute_path)
        return True

    def forget_missing_under(self, root: str, present: set[str]) -> None:
        """Drop entries below `root` that the last walk did not see (deleted or now ignored)."""
        low, high = _prefix_range(root)
        with self._lock:
            stale = [p for p in self._entries if low <= p < high and p not in present]
            for path in stale:
                del self._entries[path]
                self._changed.pop(path, None)
                self._removed.add(path)
