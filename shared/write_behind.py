"""Writes that may wait while a burst of requests lasts, done on one background thread.

A burst of submissions is CPU-bound on a small host (each storage round trip costs milliseconds
of client and server CPU), so a write that nobody reads at once is worth doing after the burst:
`WriteBehind.submit` queues it; the writer does it once writes come slower than BURST_RATE per
second, or when it has waited MAX_DELAY_SECONDS (so a steady stream of writes still gets done). `flush()`
does the queued writes now, for a reader in this process that must see them; `flush_all()` does
every queued write of the process (a host calls it when it stops, while storage is still there).

Only writes whose loss on a crash is repaired elsewhere belong here (the run index entry: the
run's first status change writes a missing entry, shared/runs.py `sync_index`).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable

log = logging.getLogger("mlpipe.write_behind")

BURST_RATE = 10.0  # arrivals per second (over the last second) from which a burst is on
MAX_DELAY_SECONDS = 10.0
POLL_SECONDS = 0.05


class BurstGate:
    """Arrivals at BURST_RATE per second or faster are a burst; work held back during a burst is due
    when the rate falls below it, or once it has waited `max_delay`. Not thread-safe by itself."""

    def __init__(self, *, rate: float = BURST_RATE, window: float = 1.0, max_delay: float = MAX_DELAY_SECONDS):
        self.window = window
        self.threshold = max(1, round(rate * window))
        self.max_delay = max_delay
        self._arrivals: collections.deque[float] = collections.deque()

    def arrive(self, now: float) -> None:
        self._arrivals.append(now)
        self._trim(now)

    def in_burst(self, now: float) -> bool:
        self._trim(now)
        return len(self._arrivals) >= self.threshold

    def delay(self, held_since: float, now: float) -> float:
        """Seconds to go on holding work held since `held_since` (0: do it now)."""
        if now - held_since >= self.max_delay or not self.in_burst(now):
            return 0.0
        return min(POLL_SECONDS, held_since + self.max_delay - now)

    def _trim(self, now: float) -> None:
        while self._arrivals and self._arrivals[0] <= now - self.window:
            self._arrivals.popleft()
        while len(self._arrivals) > self.threshold:  # only whether the threshold is reached matters
            self._arrivals.popleft()


class CpuMeter:
    """This process's CPU use over about the last `window` seconds, as a share of one CPU (Python
    code of one process runs one thread at a time, so ~1.0 is saturated). Not thread-safe."""

    def __init__(self, window: float = 1.0, clock: Callable[[], float] = time.process_time):
        self.window = window
        self._clock = clock
        self._samples: collections.deque[tuple[float, float]] = collections.deque()

    def share(self, now: float) -> float:
        """The share since the last sample at least `window` old; 1.0 (busy) while there is no
        such sample spanning window/4 to 2 windows (just started, or idle for a while), so that
        callers asking with each arrival catch a burst from its start."""
        self._samples.append((now, self._clock()))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()
        (since, used_then), (_now, used) = self._samples[0], self._samples[-1]
        if not self.window / 4 <= now - since <= 2 * self.window:
            return 1.0
        return (used - used_then) / (now - since)


class WriteBehind:
    def __init__(self, name: str, gate: BurstGate | None = None):
        self.name = name
        self._gate = gate or BurstGate()
        self._pending: collections.deque[tuple[float, Callable[[], None]]] = collections.deque()
        self._in_progress = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        with _instances_lock:
            _instances.append(self)

    def submit(self, write: Callable[[], None]) -> None:
        now = time.monotonic()
        with self._cond:
            self._pending.append((now, write))
            self._gate.arrive(now)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"write-behind-{self.name}", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + self._in_progress

    def flush(self) -> None:
        """Do every queued write now (in this thread) and wait for the one the writer is doing.

        After a failed write (storage unreachable: the SDK has retried already) the rest stay
        queued for the writer thread instead of each failing slowly here."""
        with self._cond:
            writes = list(self._pending)
            self._pending.clear()
            self._in_progress += len(writes)
        for index, (_at, write) in enumerate(writes):
            if not self._do(write):
                with self._cond:
                    self._pending.extendleft(reversed(writes[index + 1:]))
                    self._in_progress -= len(writes) - index - 1
                    self._cond.notify_all()
                return
        with self._cond:
            self._cond.wait_for(lambda: self._in_progress == 0, timeout=30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._pending:
                        self._cond.wait()
                        continue
                    delay = self._gate.delay(self._pending[0][0], time.monotonic())
                    if delay <= 0:
                        break
                    self._cond.wait(delay)
                _at, write = self._pending.popleft()
                self._in_progress += 1
            self._do(write)

    def _do(self, write: Callable[[], None]) -> bool:
        try:
            write()
            return True
        except Exception as error:  # noqa: BLE001 - a deferred write is repaired elsewhere; say so, go on
            log.warning("deferred %s write failed (%s); it is repaired later", self.name, error)
            return False
        finally:
            with self._cond:
                self._in_progress -= 1
                self._cond.notify_all()


_instances: list[WriteBehind] = []
_instances_lock = threading.Lock()


def flush_all(timeout: float = 10.0) -> bool:
    """Flush every WriteBehind of this process, giving up after `timeout` seconds; True if all done."""
    with _instances_lock:
        instances = list(_instances)
    worker = threading.Thread(target=lambda: [instance.flush() for instance in instances],
                              name="write-behind-flush", daemon=True)
    worker.start()
    worker.join(timeout)
    return not worker.is_alive()
