"""The parts of host.json the local host honours."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HUB_NAME = "mlpipehub"
DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class HostConfig:
    route_prefix: str = "api"
    hub_name: str = DEFAULT_HUB_NAME
    max_concurrent_activities: int = 10 * (os.cpu_count() or 1)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    @classmethod
    def load(cls, app_root: Path) -> "HostConfig":
        path = app_root / "host.json"
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        extensions = data.get("extensions") or {}
        http = extensions.get("http") or {}
        durable = extensions.get("durableTask") or {}
        prefix = http.get("routePrefix", "api")
        max_activities = durable.get("maxConcurrentActivityFunctions") or 10 * (os.cpu_count() or 1)
        max_bytes = os.environ.get("MLPIPE_MAX_REQUEST_BYTES")
        return cls(
            route_prefix=str(prefix if prefix is not None else "api").strip("/"),
            hub_name=str(durable.get("hubName") or DEFAULT_HUB_NAME),
            max_concurrent_activities=max(1, int(max_activities)),
            max_request_bytes=int(max_bytes) if max_bytes else DEFAULT_MAX_REQUEST_BYTES,
        )
