"""One service client per distinct compute settings, shared by a remote backend's calls.

A backend object serves every compute of its type; the client for one compute (its HTTP
connection pool, its credential's cached token) is made on first use and reused after.
Clients are keyed by the values of the settings that shape them (endpoint, identity, ...), so
two computes with the same values share one and a changed setting gets a new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

Client = TypeVar("Client")


class ClientCache(Generic[Client]):
    def __init__(self, keys: Iterable[str], make: Callable[[Mapping[str, Any], str], Client]):
        """`keys`: the settings a client depends on; `make(settings, compute_name)` builds one."""
        self._keys = tuple(keys)
        self._make = make
        self._clients: dict[tuple[str, ...], Client] = {}
        self._lock = threading.Lock()

    def get(self, settings: Mapping[str, Any], compute: str) -> Client:
        """The client for these settings, made (once, under a lock) if there is none yet."""
        key = tuple(str(settings.get(k)) for k in self._keys)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = self._make(settings, compute)
            return self._clients[key]
