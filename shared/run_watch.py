"""Waiting for a run to end without polling storage (`GET /api/runs/{id}?waitSeconds=N`).

The run_finished activity (shared/run_lifecycle.py) tells this process the moment it marks a
run ended; a request waiting on that run answers at once. A run that ends in another process
(Functions scaled out) is seen by re-reading its record every RECHECK_SECONDS.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

RECHECK_SECONDS = 1.0
MAX_WAIT_SECONDS = 30.0  # a waiting request holds a worker thread: keep waits short
_REMEMBERED = 4096

_ended: "OrderedDict[str, None]" = OrderedDict()
_changed = threading.Condition()


def mark_ended(run_id: str) -> None:
    with _changed:
        _ended[run_id] = None
        while len(_ended) > _REMEMBERED:
            _ended.popitem(last=False)
        _changed.notify_all()


def wait_ended_here(run_id: str, timeout: float) -> bool:
    """True as soon as this process marks the run ended; False after `timeout` seconds."""
    with _changed:
        return _changed.wait_for(lambda: run_id in _ended, timeout=max(0.0, timeout))
