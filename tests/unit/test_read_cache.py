"""The short-lived read cache behind run status polling."""

from __future__ import annotations

import time

from shared.read_cache import TtlCache


def test_a_fresh_entry_is_served_without_loading_again():
    cache, loads = TtlCache(), []
    load = lambda: loads.append(1) or len(loads)  # noqa: E731
    assert cache.get_or_load("run", load, lambda value: 60) == 1
    assert cache.get_or_load("run", load, lambda value: 60) == 1
    assert len(loads) == 1


def test_expired_and_invalidated_entries_are_loaded_again():
    cache, loads = TtlCache(), []
    load = lambda: loads.append(1) or len(loads)  # noqa: E731
    cache.get_or_load("run", load, lambda value: 0.05)
    time.sleep(0.06)
    assert cache.get_or_load("run", load, lambda value: 60) == 2
    cache.invalidate("run")
    assert cache.get_or_load("run", load, lambda value: 60) == 3


def test_a_zero_time_to_live_is_not_cached_and_the_size_is_bounded():
    cache = TtlCache(max_entries=2)
    calls = []
    cache.get_or_load("a", lambda: calls.append("a"), lambda value: 0)
    cache.get_or_load("a", lambda: calls.append("a"), lambda value: 0)
    assert calls == ["a", "a"]
    for key in ("x", "y", "z"):
        cache.get_or_load(key, lambda: key, lambda value: 60)
    assert cache.get_or_load("x", lambda: "reloaded", lambda value: 60) == "reloaded"  # evicted
