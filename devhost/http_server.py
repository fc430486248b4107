"""The aiohttp front end: HTTP-triggered functions under the route prefix, plus the durable webhooks."""

from __future__ import annotations

import asyncio
import inspect
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import azure.functions as func
from aiohttp import web

from shared import deferred_writes
from shared.errors import MlpipeError, NotFound, PayloadTooLarge, Unauthorized
from shared.write_behind import flush_all

from .app_loader import HttpFunction
from .auth import KeyChecker
from .durable import local_client
from .durable.client_binding import WEBHOOK_PATH
from .durable.rpc import DurableRpc
from .invocation import with_context
from .routing import RouteTemplate

log = logging.getLogger("devhost.http")


def error_response(error: MlpipeError, status: int | None = None) -> web.Response:
    return web.json_response(error.to_body(), status=status or error.status)


class MethodNotAllowed(MlpipeError):
    code = "MethodNotAllowed"
    status = 405


class InternalError(MlpipeError):
    code = "InternalError"
    status = 500


@web.middleware
async def json_errors(request: web.Request, handler):
    """Whatever goes wrong in the host itself, the caller gets JSON (the durable SDK parses every body)."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return error_response(PayloadTooLarge("The request body is too large."))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"error": {"code": exc.reason.replace(" ", ""), "message": exc.reason}},
                                 status=exc.status)
    except Exception:
        log.exception("host error on %s %s", request.method, request.path)
        return error_response(InternalError("The host failed to process the request; see the host log."))


async def _flush_deferred_writes(_app: web.Application) -> None:
    """On stop, while storage is still up: writes the app deferred past a burst (shared/write_behind.py)
    and completed steps' records still held back (shared/deferred_writes.py)."""
    deferred_writes.release_all()
    if not await asyncio.to_thread(flush_all, 10.0):
        log.warning("deferred writes were still running after 10 s; they are repaired when their runs go on")


class Route:
    def __init__(self, function: HttpFunction):
        self.function = function
        self.template = RouteTemplate.compile(function.route)


def _call_sync(fn, kwargs):
    return fn(**kwargs)


class HttpFrontEnd:
    def __init__(self, functions: list[HttpFunction], *, route_prefix: str, keys: KeyChecker,
                 max_request_bytes: int, binding_json: str, rpc: DurableRpc | None, pool: ThreadPoolExecutor):
        self.prefix = "/" + route_prefix.strip("/") if route_prefix.strip("/") else ""
        self.routes = sorted((Route(f) for f in functions), key=lambda r: r.template.precedence)
        self.keys = keys
        self.max_request_bytes = max_request_bytes
        self.binding_json = binding_json
        self.rpc = rpc
        self.pool = pool
        if rpc is not None:
            local_client.install(rpc, binding_json)

    def application(self) -> web.Application:
        # client_max_size is a backstop; _read_body answers 413 itself
        app = web.Application(client_max_size=self.max_request_bytes + 1, middlewares=[json_errors])
        app.on_cleanup.append(_flush_deferred_writes)
        app.router.add_route("*", WEBHOOK_PATH + "/{tail:.*}", self._webhook)
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        return app

    # -- durable webhooks ------------------------------------------------------------------------
    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        if not (self.keys.has_function_key(request.headers, request.query) or
                self.keys.has_rpc_secret(request.headers)):
            return error_response(Unauthorized("A valid function key is required (x-functions-key or code)."))
        if self.rpc is None:
            return error_response(NotFound("Durable Functions is not enabled in this app."))
        response = await self.rpc.handle(request, request.match_info["tail"])
        log.debug("%s %s -> %s", request.method, request.path, response.status)
        return response

    # -- HTTP-triggered functions -----------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if self.prefix:
            if path != self.prefix and not path.startswith(self.prefix + "/"):
                return error_response(NotFound(f"No function serves {path}."))
            path = path[len(self.prefix):] or "/"
        method_mismatch = False
        for route in self.routes:
            params = route.template.match(path)
            if params is None:
                continue
            methods = route.function.methods
            if methods is not None and request.method not in methods:
                method_mismatch = True
                continue
            response = await self._invoke(route.function, request, params)
            log.info("%s %s -> %s (%s)", request.method, request.path, response.status, route.function.name)
            return response
        if method_mismatch:
            return error_response(MethodNotAllowed(f"{request.method} is not allowed on {request.path}."))
        return error_response(NotFound(f"No function serves {request.path}."))

    async def _read_body(self, request: web.Request) -> bytes | None:
        if request.content_length is not None and request.content_length > self.max_request_bytes:
            return None
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self.max_request_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _invoke(self, function: HttpFunction, request: web.Request, params: dict[str, str]) -> web.StreamResponse:
        if function.auth_level != "anonymous" and not self.keys.has_function_key(request.headers, request.query):
            return error_response(Unauthorized("A valid function key is required (x-functions-key or code)."))
        body = await self._read_body(request)
        if body is None:
            return error_response(PayloadTooLarge(
                f"The request body is larger than the limit of {self.max_request_bytes} bytes."))
        http_request = func.HttpRequest(
            method=request.method, url=str(request.url), headers=dict(request.headers),
            params=dict(request.query), route_params=params, body=body)
        kwargs: dict[str, Any] = {function.trigger_arg: http_request}
        for name in function.client_args:
            kwargs[name] = self.binding_json
        with_context(kwargs, function.wants_context, function.name)
        try:
            result = await self.call(function.user_function, kwargs)
        except Exception:
            log.exception("function %s failed", function.name)
            return error_response(InternalError("The function failed with an unhandled error; see the host log."))
        return to_aiohttp_response(result)

    async def call(self, fn, kwargs: dict[str, Any]) -> Any:
        """Async functions run on the loop, sync ones in the thread pool (as the Python worker does)."""
        if inspect.iscoroutinefunction(fn):
            return await fn(**kwargs)
        result = await asyncio.get_running_loop().run_in_executor(self.pool, partial(_call_sync, fn, kwargs))
        if inspect.isawaitable(result):
            result = await result
        return result


def to_aiohttp_response(result: Any) -> web.Response:
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items()}
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        headers = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")}
        if content_type is None:
            content_type = result.mimetype or "text/plain"
            if result.charset and "charset" not in content_type:
                content_type += f"; charset={result.charset}"
        response = web.Response(status=result.status_code, body=result.get_body(), headers=headers)
        response.headers["Content-Type"] = content_type
        return response
    if result is None:
        return web.Response(status=204)
    if isinstance(result, bytes):
        return web.Response(body=result, content_type="application/octet-stream")
    if isinstance(result, str):
        return web.Response(text=result, content_type="text/plain")
    return web.json_response(result)
