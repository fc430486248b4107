"""One place that turns handler results and mlpipe errors into HTTP responses (API.md section 3)."""

from __future__ import annotations

import functools
import json
import logging
from typing import Any, Awaitable, Callable

import azure.functions as func
from pydantic import ValidationError

from shared.errors import InvalidRequest, MlpipeError, PayloadTooLarge
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


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ())) or "body"
        parts.append(f"{where}: {item.get('msg')}")
    return "; ".join(parts)


def api_handler(handler: Callable[..., Awaitable[func.HttpResponse]]):
    """Wrap an async HTTP handler: mlpipe errors become their status, bad input a 400, the rest a 500."""

    @functools.wraps(handler)
    async def wrapper(*args, **kwargs) -> func.HttpResponse:
        try:
            return await handler(*args, **kwargs)
        except MlpipeError as error:
            if error.status >= 500:
                log.error("request failed: %s", redact(str(error)))
            return error_response(error)
        except ValidationError as error:
            return error_response(InvalidRequest(_validation_message(error)))
        except Exception:  # noqa: BLE001 - the last line of defence; details go to the log only
            log.exception("unhandled error in %s", handler.__name__)
            return json_response({"error": {"code": "InternalError",
                                            "message": "internal error; see the host log"}}, 500)

    return wrapper
