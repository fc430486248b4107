"""Durable client starts answered in-process instead of over the loopback HTTP API.

The Durable SDK's DurableOrchestrationClient sends every management call over HTTP to the binding's
`rpcBaseUrl`, which is this very process (as the Functions host's own extension is). For the call
that matters under load, starting an orchestration, the loopback (an aiohttp client request, the
server parsing it, JSON both ways) cost about a tenth of an HTTP submission's CPU in a process whose
Python runs one thread at a time. So the devhost puts a short cut in front of the SDK's POST
helper: a POST to `{rpcBaseUrl}orchestrators/{name}[/{instanceId}][?version=...]` of *this* host
(the URL carries its RPC secret) goes straight to the same engine call the HTTP route makes, with
the same answers (202 + management URLs, or the extension's error body). Every other call, and any
start the short cut does not recognise, still goes over HTTP.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .engine import EngineError
from .rpc import DurableRpc, engine_error_body, start_input_text

log = logging.getLogger("devhost.durable")

_SDK_MODULE = "azure.durable_functions.models.DurableOrchestrationClient"
_routes: dict[str, DurableRpc] = {}  # rpcBaseUrl -> the rpc of the host that owns it


def install(rpc: DurableRpc, binding: str) -> bool:
    """Answer this host's client starts in-process; False (HTTP as before) if the SDK is not as expected."""
    try:
        __import__(_SDK_MODULE)
    except ImportError:
        return False
    module = sys.modules[_SDK_MODULE]
    original = getattr(module, "post_async_request", None)
    if original is None:
        log.debug("durable SDK without post_async_request: client starts stay on HTTP")
        return False
    _routes[json.loads(binding)["rpcBaseUrl"]] = rpc
    if not getattr(original, "_devhost_local", False):
        async def post_async_request(url: str, data: Any = None, *args, **kwargs):
            answer = local_start(url, data)
            return answer if answer is not None else await original(url, data, *args, **kwargs)

        post_async_request._devhost_local = True
        module.post_async_request = post_async_request
    return True


def local_start(url: str, data: Any) -> list | None:
    """[status, body] for a start of one of our hosts' orchestrations; None for anything else."""
    for base, rpc in _routes.items():
        if url.startswith(base + "orchestrators/"):
            break
    else:
        return None
    parts = urlsplit(url[len(base) + len("orchestrators/"):])
    names = [unquote(part) for part in parts.path.split("/")]
    query = parse_qs(parts.query)
    if not 1 <= len(names) <= 2 or not names[0] or set(query) - {"version"}:
        return None
    try:
        instance_id = rpc.engine.start_new(names[0], names[1] if len(names) == 2 and names[1] else None,
                                           start_input_text(data), query.get("version", [None])[0])
    except EngineError as exc:
        return [exc.status, engine_error_body(exc)]
    return [202, rpc.management_payload(instance_id)]
