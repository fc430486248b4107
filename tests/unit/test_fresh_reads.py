"""FreshReads: every caller gets a value read after it asked, and concurrent callers share reads."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.fresh_reads import FreshReads


class Clock:
    """A counter that only goes up: callers note it before asking, loads note it when they start."""

    def __init__(self):
        self._ticks = itertools.count(1)
        self._lock = threading.Lock()

    def tick(self) -> int:
        with self._lock:
            return next(self._ticks)


def test_each_value_comes_from_a_read_started_after_the_call_and_reads_are_shared():
    clock = Clock()
    loads = []

    def load(key):
        started = clock.tick()
        loads.append(started)
        time.sleep(0.005)
        return started

    reads = FreshReads(load)

    def call(_):
        asked = clock.tick()
        return asked, reads.get("pipeline")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(400)))
    assert all(read_started > asked for asked, read_started in results)
    assert len(loads) < len(results) / 2  # most callers joined a read instead of making one


def test_keys_are_read_separately():
    reads = FreshReads(lambda key: f"value of {key}")
    assert reads.get("a") == "value of a" and reads.get("b") == "value of b"


def test_an_error_reaches_every_caller_of_that_read_and_the_next_read_is_fresh():
    calls = []
    release = threading.Event()

    def load(key):
        calls.append(key)
        if len(calls) == 1:
            release.wait(5)
            raise LookupError("gone")
        return "back"

    reads = FreshReads(load)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(reads.get, "k")
        time.sleep(0.05)  # the first read is running: these two wait for the next one
        second, third = pool.submit(reads.get, "k"), pool.submit(reads.get, "k")
        time.sleep(0.05)
        release.set()
        with pytest.raises(LookupError):
            first.result(5)
        assert second.result(5) == third.result(5) == "back"
    assert len(calls) == 2
