"""Write-behind for a completed step's records, so the next step need not wait for them.

When a step's outputs are committed, three writes remain that nothing downstream reads: its
reuse record, its step record and its StepCompleted event. They go to a thread pool and the
step_start/step_poll activity returns at once; the run's steps are ordered by the orchestrator,
which already holds the step's result in its Durable history.

What keeps this safe:
- run_finished calls `flush(run_id)` first: every write this process deferred for the run is
  waited for, and one that failed is done again there (an error fails that activity, which
  Durable retries), so the run is never marked ended before its step records exist;
- writes deferred by another process (Functions scaled out) or lost with a crashed host are
  found by run_finished's reconciliation (shared/run_lifecycle.py), which writes the missing
  step records and sends their StepCompleted events again (same event ids);
- an orderly interpreter exit finishes the queued writes (concurrent.futures joins its workers).
A lost reuse record only costs a later run a re-computation once the step's claim expires.
Scaled out, run_finished's recovery write can meet a write-behind still in flight on another
instance: the recovery write is conditional (no record, or a non-terminal one, still there when it
lands), and the step's own record, written unconditionally, replaces it if it lands later.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from shared.redact import redact

log = logging.getLogger("mlpipe.deferred")

Write = Callable[[], object]

_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="mlpipe-deferred-writes")
_lock = threading.Lock()
# run id -> {batch id: (step, writes, futures)}; a batch leaves once all its writes succeeded.
_pending: dict[str, dict[int, tuple[str, list[Write], list[Future]]]] = {}
# run id -> steps whose deferred writes this process completed (so run_finished can skip a listing);
# bounded, for runs that another process finishes.
_written: "OrderedDict[str, set[str]]" = OrderedDict()
_WRITTEN_RUNS_KEPT = 1024
_batch_ids = iter(range(1, 1 << 62))


def defer(run_id: str, step: str, writes: list[Write]) -> None:
    """Start `writes` (idempotent, independent of each other) in the background."""
    futures = [_pool.submit(write) for write in writes]
    with _lock:
        batch = next(_batch_ids)
        _pending.setdefault(run_id, {})[batch] = (step, writes, futures)
    remaining = [len(futures)]

    def settled(_future: Future) -> None:
        with _lock:
            remaining[0] -= 1
            if remaining[0] or any(f.exception() is not None for f in futures):
                return
            batches = _pending.get(run_id)
            if batches is not None and batches.pop(batch, None) is not None:
                _remember_written(run_id, [step])
                if not batches:
                    del _pending[run_id]

    for future in futures:
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
    with _lock:
        batches = list(_pending.pop(run_id, {}).values())
    for step, writes, futures in batches:
        for write, future in zip(writes, futures):
            error = future.exception()
            if error is not None:
                log.warning("run %s step %s: a deferred write failed (%s); writing it again", run_id, step,
                            redact(str(error)))
                write()
    with _lock:
        written = _written.pop(run_id, set())
    return written | {step for step, _, _ in batches}
