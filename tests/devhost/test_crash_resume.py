"""SIGKILL mid-run, restart on the same data dir: everything unfinished resumes, nothing completed re-runs."""

import collections
import json
import sqlite3
import time
from pathlib import Path

N = 24


def _events(db: Path, sql: str, *args) -> list[dict]:
    conn = sqlite3.connect(db)
    try:
        return [json.loads(r[0]) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


def committed_completions(db: Path, instance_id: str) -> set[int]:
    """Task ids whose results were durably recorded before the crash (in history or still in the inbox)."""
    events = _events(db, "SELECT event FROM history WHERE instance_id = ? UNION ALL "
                         "SELECT event FROM inbox WHERE instance_id = ?", instance_id, instance_id)
    return {e["TaskScheduledId"] for e in events if e["EventType"] == 5}


def history(db: Path, instance_id: str) -> list[dict]:
    return _events(db, "SELECT event FROM history WHERE instance_id = ? ORDER BY seq", instance_id)


def lines(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_kill_mid_fan_out_then_restart(private_host, tmp_path):
    data_dir = tmp_path / "data"
    db = data_dir / "durable" / "SampleHub.sqlite"
    host, api = private_host(data_dir)
    out = private_host.out_dir / "crash.txt"
    assert api.start("fan_out", {"n": N, "sleep": 0.25, "file": "crash.txt"}, instance_id="crash").status_code == 202
    assert api.start("timer_orch", instance_id="crash-timer").status_code == 202
    assert api.start("wait_event", instance_id="crash-event").status_code == 202
    assert api.start("parent_of_slow", {"n": 10, "sleep": 0.15, "file": "child.txt"},
                     instance_id="crash-parent").status_code == 202
    deadline = time.monotonic() + 20
    while len(lines(out)) < 6:
        assert time.monotonic() < deadline, host.output()
        time.sleep(0.02)
    host.kill()

    done_before = committed_completions(db, "crash")
    assert 0 < len(done_before) < N, "the kill should land mid fan-out"

    host, api = private_host(data_dir)
    status = api.wait("crash", timeout=30)
    assert status["runtimeStatus"] == "Completed" and status["output"] == N
    assert api.wait("crash-timer")["runtimeStatus"] == "Completed"  # timer re-armed after the restart
    api.session.post(f"{host.url}/api/raise/crash-event/approve", json="yes", timeout=10)
    assert api.wait("crash-event")["output"] == {"approved": '"yes"'}
    assert api.wait("crash-parent")["output"] == 10  # the child resumed and reported to its parent
    assert set(lines(private_host.out_dir / "child.txt")) == set(range(10))

    counts = collections.Counter(lines(out))
    assert set(counts) == set(range(N))  # every item ran
    # at-least-once only for unfinished work: what had completed before the kill never ran again
    assert all(counts[i] == 1 for i in done_before), (sorted(done_before), counts)

    events = history(db, "crash")
    scheduled = collections.Counter(e["EventId"] for e in events if e["EventType"] == 4)
    completed = collections.Counter(e["TaskScheduledId"] for e in events if e["EventType"] == 5)
    assert scheduled == completed == collections.Counter(range(N))  # no event lost or duplicated
    assert [e["EventType"] for e in events].count(0) == 1
    assert events[-1]["EventType"] == 1


def test_sigterm_then_restart_resumes(private_host, tmp_path):
    data_dir = tmp_path / "data"
    host, api = private_host(data_dir)
    started = api.start("slow_sequence", {"n": 8, "sleep": 0.1, "file": "seq.txt"}, instance_id="graceful")
    assert started.status_code == 202
    time.sleep(0.35)
    assert host.stop() == 0
    assert "mlpipe host ready" in host.output()
    host, api = private_host(data_dir)
    assert api.wait("graceful")["output"] == 8
    counts = collections.Counter(lines(private_host.out_dir / "seq.txt"))
    assert set(counts) == set(range(8)) and max(counts.values()) <= 2
