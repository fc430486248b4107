"""The task hub on SQLite: a write-through log behind the engine's in-memory state.

Crash safety comes from transaction boundaries:
- an episode commits its history events, consumed inbox rows, new work items, timers, child
  instances and the message to a parent in ONE transaction;
- an activity result (or a fired timer) is committed as "delete work item + insert inbox row".
So after a SIGKILL, unfinished work items are re-run (at-least-once), committed results are
never lost, and no history event is written twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    parent_id TEXT,
    parent_task_id INTEGER,
    parent_execution_id TEXT,
    execution_id TEXT NOT NULL,
    version TEXT
);
CREATE INDEX IF NOT EXISTS instances_by_status ON instances(status);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_by_instance ON inbox(instance_id);
CREATE TABLE IF NOT EXISTS work_items (
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT,
    PRIMARY KEY (instance_id, execution_id, task_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timers (
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    fire_at TEXT NOT NULL,
    PRIMARY KEY (instance_id, execution_id, task_id)
) WITHOUT ROWID;
"""

INSTANCE_COLUMNS = ("instance_id", "name", "status", "input", "output", "custom_status", "created", "updated",
                    "parent_id", "parent_task_id", "parent_execution_id", "execution_id", "version")


@dataclass
class InboxMessage:
    instance_id: str
    execution_id: str | None
    event: dict
    row_id: int | None = None


@dataclass
class Batch:
    """Everything one transaction writes. Built by the engine, applied by `TaskHubStore.commit`."""

    instances: list[dict] = field(default_factory=list)  # full rows (upsert)
    history_resets: list[str] = field(default_factory=list)  # instance ids whose history is cleared first
    history: list[tuple[str, int, dict]] = field(default_factory=list)
    consumed_inbox: list[int] = field(default_factory=list)
    new_inbox: list[InboxMessage] = field(default_factory=list)
    work_items: list[tuple[str, str, int, str, str | None]] = field(default_factory=list)
    done_work_items: list[tuple[str, str, int]] = field(default_factory=list)
    timers: list[tuple[str, str, int, str]] = field(default_factory=list)
    done_timers: list[tuple[str, str, int]] = field(default_factory=list)
    clear_pending: list[str] = field(default_factory=list)  # instance ids: drop all work items and timers
    purge: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return any((self.instances, self.history_resets, self.history, self.consumed_inbox, self.new_inbox,
                    self.work_items, self.done_work_items, self.timers, self.done_timers, self.clear_pending,
                    self.purge))


class TaskHubLocked(RuntimeError):
    """Another host process already owns this task hub."""


class TaskHubStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One owner per task hub: two engines on one file would both resume and dispatch the same work.
        # The OS drops the lock when the process dies, so a SIGKILLed host never blocks its restart.
        self._lock_fd = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise TaskHubLocked(f"another devhost is already using the task hub {path}; "
                                "stop it or use a different MLPIPE_DATA_DIR") from None
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=OFF")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()
        os.close(self._lock_fd)

    # -- writes ---------------------------------------------------------------------------------
    def commit(self, batch: Batch) -> None:
        """Apply `batch` atomically. Assigns row ids to `batch.new_inbox` messages."""
        if not batch:
            return
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            for instance_id in batch.purge:
                for table in ("instances", "history", "inbox", "work_items", "timers"):
                    c.execute(f"DELETE FROM {table} WHERE instance_id = ?", (instance_id,))
            if batch.instances:
                c.executemany(
                    f"INSERT OR REPLACE INTO instances ({','.join(INSTANCE_COLUMNS)}) "
                    f"VALUES ({','.join('?' * len(INSTANCE_COLUMNS))})",
                    [tuple(row[k] for k in INSTANCE_COLUMNS) for row in batch.instances])
            for instance_id in batch.history_resets:
                c.execute("DELETE FROM history WHERE instance_id = ?", (instance_id,))
            for instance_id in batch.clear_pending:
                c.execute("DELETE FROM work_items WHERE instance_id = ?", (instance_id,))
                c.execute("DELETE FROM timers WHERE instance_id = ?", (instance_id,))
            if batch.history:
                c.executemany("INSERT INTO history (instance_id, seq, event) VALUES (?, ?, ?)",
                              [(i, s, json.dumps(e)) for i, s, e in batch.history])
            if batch.consumed_inbox:
                c.executemany("DELETE FROM inbox WHERE id = ?", [(i,) for i in batch.consumed_inbox])
            for message in batch.new_inbox:
                cursor = c.execute("INSERT INTO inbox (instance_id, execution_id, event) VALUES (?, ?, ?)",
                                   (message.instance_id, message.execution_id, json.dumps(message.event)))
                message.row_id = cursor.lastrowid
            if batch.done_work_items:
                c.executemany("DELETE FROM work_items WHERE instance_id = ? AND execution_id = ? AND task_id = ?",
                              batch.done_work_items)
            if batch.work_items:
                c.executemany("INSERT OR REPLACE INTO work_items (instance_id, execution_id, task_id, name, input) "
                              "VALUES (?, ?, ?, ?, ?)", batch.work_items)
            if batch.done_timers:
                c.executemany("DELETE FROM timers WHERE instance_id = ? AND execution_id = ? AND task_id = ?",
                              batch.done_timers)
            if batch.timers:
                c.executemany("INSERT OR REPLACE INTO timers (instance_id, execution_id, task_id, fire_at) "
                              "VALUES (?, ?, ?, ?)", batch.timers)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    # -- reads ----------------------------------------------------------------------------------
    def _rows(self, sql: str, args: Iterable[Any] = ()) -> list[dict]:
        cursor = self.conn.execute(sql, tuple(args))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def instance(self, instance_id: str) -> dict | None:
        rows = self._rows("SELECT * FROM instances WHERE instance_id = ?", (instance_id,))
        return rows[0] if rows else None

    def unfinished_instances(self, statuses: Iterable[str]) -> list[dict]:
        statuses = list(statuses)
        return self._rows(f"SELECT * FROM instances WHERE status IN ({','.join('?' * len(statuses))}) "
                          "ORDER BY created", statuses)

    def query_instances(self, *, created_from: str | None = None, created_to: str | None = None,
                        statuses: list[str] | None = None, prefix: str | None = None) -> list[dict]:
        where, args = [], []
        if created_from:
            where.append("created >= ?")
            args.append(created_from)
        if created_to:
            where.append("created <= ?")
            args.append(created_to)
        if statuses:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        if prefix:
            where.append("substr(instance_id, 1, ?) = ?")
            args.extend([len(prefix), prefix])
        sql = "SELECT * FROM instances" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created"
        return self._rows(sql, args)

    def history(self, instance_id: str) -> list[dict]:
        return [json.loads(r["event"]) for r in
                self._rows("SELECT event FROM history WHERE instance_id = ? ORDER BY seq", (instance_id,))]

    def inbox(self, instance_id: str) -> list[InboxMessage]:
        return [InboxMessage(r["instance_id"], r["execution_id"], json.loads(r["event"]), r["id"]) for r in
                self._rows("SELECT * FROM inbox WHERE instance_id = ? ORDER BY id", (instance_id,))]

    def work_items(self, instance_id: str) -> list[dict]:
        return self._rows("SELECT * FROM work_items WHERE instance_id = ? ORDER BY task_id", (instance_id,))

    def timers(self, instance_id: str) -> list[dict]:
        return self._rows("SELECT * FROM timers WHERE instance_id = ? ORDER BY task_id", (instance_id,))
