"""Reads that are never stale, shared by the callers that ask at the same time.

A submit must see a pipeline's Status as it is *now*: a disable that returned before the submit
arrived, through this host or through another one, must make the submit a 409. A cache with a
time to live cannot promise that, and one storage read per submission is most of a submission's
cost. `FreshReads` keeps the promise and still shares reads: a caller joins a read of its key that
has not started yet, or, when none is waiting, starts one as soon as the running read (if any) has
ended. Every caller's value thus comes from a read that began after the caller asked, and a burst
of N concurrent callers of one key costs about two reads in flight instead of N.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_STRIPES = 64  # reads of keys in one stripe take turns; distinct keys rarely collide


class FreshReads(Generic[K, V]):
    def __init__(self, load: Callable[[K], V]):
        self._load = load
        self._lock = threading.Lock()
        self._waiting: dict[K, Future] = {}  # per key: the read that has not started yet
        self._turns = [threading.Lock() for _ in range(_STRIPES)]  # held while a read runs

    def get(self, key: K) -> V:
        """`load(key)` from a call that started after this one was made (possibly another caller's)."""
        with self._lock:
            waiting = self._waiting.get(key)
            leads = waiting is None
            if leads:
                waiting = self._waiting[key] = Future()
        if not leads:
            return waiting.result()
        with self._turns[hash(key) % _STRIPES]:
            with self._lock:
                del self._waiting[key]  # from now on, callers wait for the next read
            try:
                value = self._load(key)
            except BaseException as error:
                waiting.set_exception(error)
                raise
            waiting.set_result(value)
            return value
