"""A small, short-lived in-process cache for hot API reads (run status polling).

Clients poll `GET /api/runs/{id}` many times a second; each read costs two storage calls and
milliseconds of XML parsing. A run that ended changes only by tag updates, so it is served from
memory for a few seconds. Writes through this process (tags) invalidate the entry at once; a
write through another instance is seen within the time to live.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable


class TtlCache:
    def __init__(self, max_entries: int = 1024):
        self._entries: "OrderedDict[str, tuple[float, Any]]" = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get_or_load(self, key: str, load: Callable[[], Any], ttl_of: Callable[[Any], float]) -> Any:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > now:
                self._entries.move_to_end(key)
                return entry[1]
        value = load()
        ttl = ttl_of(value)
        if ttl > 0:
            with self._lock:
                self._entries[key] = (now + ttl, value)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max_entries:
                    self._entries.popitem(last=False)
        return value

    def invalidate(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)
