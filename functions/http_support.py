"""One place that turns handler results and mlpipe errors into HTTP responses (API.md section 3)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

import azure.functions as func
from pydantic import ValidationError

from shared.errors import InvalidRequest, MlpipeError, PayloadTooLarge, validation_message
from shared.redact import redact

log = logging.getLogger("mlpipe.http")


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json",
                             headers=headers or {})


def error_response(error: MlpipeError) -> func.HttpResponse:
    return json_response({"error": {"code": error.code, "message": redact(error.message)}}, error.status)


# JSON bodies are small (a submit, a definition); the host's own request limit (devhost
# MLPIPE_MAX_REQUEST_BYTES, 100 MiB in Azure Functions) is for zip packages.
MAX_JSON_BYTES = 16 * 1024 * 1024


def read_json(req: func.HttpRequest) -> dict:
    """The request body as a JSON object, or InvalidRequest saying what is wrong with it."""
    raw = req.get_body()
    if len(raw or b"") > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"request body: a JSON body may be at most {MAX_JSON_BYTES} bytes, got {len(raw)}")
    if not raw:
        raise InvalidRequest("request body: expected a JSON object, got an empty body")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRequest(f"request body: not valid JSON ({error})") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body: expected a JSON object, got {type(body).__name__}")
    return body


def _response_for(handler_name: str, error: Exception) -> func.HttpResponse:
    """mlpipe errors become their status, bad input a 400, anything else a generic 500."""
    if isinstance(error, MlpipeError):
        if error.status >= 500:
            log.error("request failed: %s", redact(str(error)))
        return error_response(error)
    if isinstance(error, ValidationError):
        return error_response(InvalidRequest(validation_message(error)))
    log.error("unhandled error in %s", handler_name, exc_info=error)
    return json_response({"error": {"code": "InternalError", "message": "internal error; see the host log"}}, 500)


def api_handler(handler: Callable[..., func.HttpResponse | Awaitable[func.HttpResponse]]):
    """Wrap an HTTP handler so every error leaves as a JSON error response.

    Handlers that only use storage are plain functions: the Functions host runs them on its
    thread pool. Handlers that need the Durable client are coroutines and must keep blocking
    storage calls off the event loop (`await in_thread(...)`).
    """
    if inspect.iscoroutinefunction(handler):
        @functools.wraps(handler)
        async def async_wrapper(*args, **kwargs) -> func.HttpResponse:
            try:
                return await handler(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - mapped in one place
                return _response_for(handler.__name__, error)

        return async_wrapper

    @functools.wraps(handler)
    def wrapper(*args, **kwargs) -> func.HttpResponse:
        try:
            return handler(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - mapped in one place
            return _response_for(handler.__name__, error)

    return wrapper


# Blocking work of async handlers (storage calls) runs here rather than on the loop's default
# executor (cpu count + 4 threads): with more threads in flight, concurrent submits share more of
# their pipeline status reads (shared/fresh_reads.py); they mostly wait on storage, not the GIL.
_blocking = ThreadPoolExecutor(max_workers=32, thread_name_prefix="mlpipe-http")


async def in_thread(function: Callable[..., Any], *args, **kwargs) -> Any:
    """Run blocking work (storage calls) off the event loop that the Durable client needs."""
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_blocking, call)
