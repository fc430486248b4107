"""Write-behind for a completed step's records, so the next step need not wait for them.

When a step's outputs are committed, three writes remain that nothing downstream reads: its
reuse record, its step record and its StepCompleted event. The step_start/step_poll activity
returns at once; the run's steps are ordered by the orchestrator, which already holds the step's
result in its Durable history. The writes wait until the run's next step has its go-ahead
(`release`; at most HOLD_SECONDS), then go to a thread pool: on a small host they would otherwise
compete with the next step's claim for the storage account and the CPU, on the run's critical path.

What keeps this safe:
- run_finished calls `flush(run_id)` first: every write this process deferred for the run is
  waited for, and one that failed is done again there (an error fails that activity, which
  Durable retries), so the run is never marked ended before its step records exist;
- writes deferred by another process (Functions scaled out) or lost with a crashed host are
  found by run_finished's reconciliation (shared/run_lifecycle.py), which writes the missing
  step records and sends their StepCompleted events again (same event ids);
- an orderly stop of the local host starts the held writes (`release_all`) and the interpreter's
  exit finishes the queued ones (concurrent.futures joins its workers).
A lost reuse record only costs a later run a re-computation once the step's claim expires.
Scaled out, run_finished's recovery write can meet a write-behind still in flight on another
instance: the recovery write is conditional (no record, or a non-terminal one, still there when it
lands), and the step's own record, written unconditionally, replaces it if it lands later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from shared.redact import redact

log = logging.getLogger("mlpipe.deferred")

Write = Callable[[], object]

# A completed step's writes wait (at most HOLD_SECONDS) until the run's next step has started its
# work (`release`, called after the go-ahead): the next step's claim then meets an idle storage
# account and an uncontended host, and the writes overlap the step's script instead.
HOLD_SECONDS = 0.03

_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="mlpipe-deferred-writes")
_lock = threading.Lock()
_held_changed = threading.Condition(_lock)


@dataclass(eq=False)
class _Batch:
    step: str
    writes: list[Write]
    due: float
    futures: list[Future] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)


# run id -> batches not yet settled; a batch leaves once all its writes succeeded.
_pending: dict[str, list[_Batch]] = {}
# run id -> batches waiting for the run's next step to start (or for their due time).
_held: dict[str, list[_Batch]] = {}
_releaser: threading.Thread | None = None
# run id -> steps whose deferred writes this process completed (so run_finished can skip a listing);
# bounded, for runs that another process finishes.
_written: "OrderedDict[str, set[str]]" = OrderedDict()
_WRITTEN_RUNS_KEPT = 1024


def defer(run_id: str, step: str, writes: list[Write]) -> None:
    """Do `writes` (idempotent, independent of each other) in the background, soon: when the run's
    next step has started (`release`) or HOLD_SECONDS from now, whichever comes first."""
    global _releaser
    batch = _Batch(step, list(writes), time.monotonic() + HOLD_SECONDS)
    with _lock:
        _pending.setdefault(run_id, []).append(batch)
        _held.setdefault(run_id, []).append(batch)
        if _releaser is None or not _releaser.is_alive():
            _releaser = threading.Thread(target=_release_when_due, name="mlpipe-deferred-release", daemon=True)
            _releaser.start()
        _held_changed.notify()


def release(run_id: str) -> None:
    """Start the run's held writes now (its next step is under way)."""
    with _lock:
        batches = _held.pop(run_id, [])
    for batch in batches:
        _start(run_id, batch)


def release_all() -> None:
    """Start every held write now (the process is stopping; its pool finishes them before exit)."""
    with _lock:
        runs = list(_held)
    for run_id in runs:
        release(run_id)


def _release_when_due() -> None:
    while True:
        with _lock:
            now = time.monotonic()
            due = [(run_id, batch) for run_id, batches in _held.items() for batch in batches if batch.due <= now]
            for run_id, batch in due:
                _held[run_id].remove(batch)
                if not _held[run_id]:
                    del _held[run_id]
            if not due:
                next_due = min((batch.due for batches in _held.values() for batch in batches), default=None)
                _held_changed.wait(None if next_due is None else max(0.0, next_due - now))
                continue
        for run_id, batch in due:
            _start(run_id, batch)


def _start(run_id: str, batch: _Batch) -> None:
    batch.futures = [_pool.submit(write) for write in batch.writes]
    batch.started.set()
    remaining = [len(batch.futures)]

    def settled(_future: Future) -> None:
        with _lock:
            remaining[0] -= 1
            if remaining[0] or any(f.exception() is not None for f in batch.futures):
                return
            batches = _pending.get(run_id)
            if batches is not None and batch in batches:
                batches.remove(batch)
                _remember_written(run_id, [batch.step])
                if not batches:
                    del _pending[run_id]

    for future in batch.futures:
        future.add_done_callback(settled)


def note_written(run_id: str, steps: list[str]) -> None:
    """Steps whose records this process wrote in the foreground (the plan's reused prefix), so
    run_finished here need not list the run's steps to find them."""
    with _lock:
        _remember_written(run_id, steps)


def _remember_written(run_id: str, steps) -> None:
    _written.setdefault(run_id, set()).update(steps)
    _written.move_to_end(run_id)
    while len(_written) > _WRITTEN_RUNS_KEPT:
        _written.popitem(last=False)


def flush(run_id: str) -> set[str]:
    """Wait for the run's deferred writes in this process, redoing any that failed (raises if one
    fails again). Returns the steps whose writes this process completed, and forgets the run."""
    release(run_id)
    with _lock:
        batches = _pending.pop(run_id, [])
    for batch in batches:
        batch.started.wait()  # the releaser may be starting it right now
        for write, future in zip(batch.writes, batch.futures):
            error = future.exception()
            if error is not None:
                log.warning("run %s step %s: a deferred write failed (%s); writing it again", run_id, batch.step,
                            redact(str(error)))
                write()
    with _lock:
        written = _written.pop(run_id, set())
    return written | {batch.step for batch in batches}
