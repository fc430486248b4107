"""shared.compute.client_cache: one client per distinct settings, made once even under concurrency."""

from __future__ import annotations

import threading
import time

from shared.compute.client_cache import ClientCache


def test_same_settings_share_a_client_and_other_settings_get_their_own():
    made = []

    def make(settings, compute):
        made.append((dict(settings), compute))
        return object()

    cache = ClientCache(("endpoint", "token"), make)
    first = cache.get({"endpoint": "https://a", "token": "t", "other": 1}, "c1")
    assert cache.get({"endpoint": "https://a", "token": "t", "other": 2}, "c2") is first  # `other` is no key
    assert cache.get({"endpoint": "https://b", "token": "t"}, "c1") is not first
    assert [compute for _, compute in made] == ["c1", "c1"]


def test_concurrent_first_uses_make_one_client():
    calls = []

    def make(settings, compute):
        calls.append(compute)
        time.sleep(0.05)
        return object()

    cache = ClientCache(("endpoint",), make)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get({"endpoint": "x"}, "c"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1
