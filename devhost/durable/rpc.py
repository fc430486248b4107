"""The durable management HTTP API at /runtime/webhooks/durabletask/ (what DurableOrchestrationClient calls).

Routes and status codes follow the extension's HttpApiHandler; every answer is JSON (the SDK
parses every response body as JSON, DURABLE-NOTES §4.2).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from . import history as h
from .engine import TERMINAL_STATES, DurableEngine, EngineError
from .status import http_status_for, status_payload

_TRUE = "true"


def _flag(query, name: str, default: bool = False) -> bool:
    value = query.get(name)
    return default if value is None else value.strip().lower() == _TRUE


def error_body(status: int, message: str, exception_message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"Message": message}
    if exception_message:
        body["ExceptionMessage"] = exception_message
    return body


def _error(status: int, message: str, exception_message: str | None = None) -> web.Response:
    return web.json_response(error_body(status, message, exception_message), status=status)


def engine_error_body(exc: EngineError) -> dict[str, Any]:
    """What the extension answers for a refused management call (the SDK reads ExceptionMessage on a 400)."""
    if exc.status == 400:
        return error_body(400, "One or more of the arguments submitted is incorrect", exc.message)
    return error_body(exc.status, exc.message)


def start_input_text(decoded: Any) -> str | None:
    """The instance input from a start body: the Python SDK posts json=df_dumps(input), i.e. the
    input's JSON text as a JSON string."""
    if decoded is None:
        return None
    return decoded if isinstance(decoded, str) else json.dumps(decoded)


def _date_filter(text: str | None) -> str | None:
    if not text:
        return None
    return h.iso(h.parse_iso(text))


class DurableRpc:
    def __init__(self, engine: DurableEngine, binding: str):
        self.engine = engine
        self.management_urls: dict = json.loads(binding)["managementUrls"]

    def management_payload(self, instance_id: str) -> dict:
        placeholder = self.management_urls["id"]
        return {k: v.replace(placeholder, instance_id) for k, v in self.management_urls.items()}

    def check_status_response(self, instance_id: str) -> web.Response:
        payload = self.management_payload(instance_id)
        return web.json_response(payload, status=202, headers={"Location": payload["statusQueryGetUri"],
                                                                "Retry-After": "10"})

    async def handle(self, request: web.Request, tail: str) -> web.Response:
        parts = [unquote(p) for p in tail.strip("/").split("/")] if tail.strip("/") else []
        method = request.method
        try:
            if parts[:1] == ["orchestrators"] and 2 <= len(parts) <= 3:
                if method != "POST":
                    return _error(404, "Not found")
                return await self._start(request, parts[1], parts[2] if len(parts) == 3 else None)
            if parts[:1] == ["instances"]:
                if len(parts) == 1:
                    if method == "GET":
                        return self._query(request)
                    if method == "DELETE":
                        return self._purge_by_filter(request)
                elif len(parts) == 2:
                    if method == "GET":
                        return self._status(request, parts[1])
                    if method == "DELETE":
                        return self._purge_one(parts[1])
                elif len(parts) == 4 and parts[2].lower() == "raiseevent" and method == "POST":
                    return await self._raise_event(request, parts[1], parts[3])
                elif len(parts) == 3 and method == "POST":
                    return self._operation(request, parts[1], parts[2].lower())
            if parts[:1] == ["entities"]:
                return _error(404, "Durable entities are not supported by the mlpipe devhost")
            return _error(404, "Not found")
        except EngineError as exc:
            return web.json_response(engine_error_body(exc), status=exc.status)

    async def _start(self, request: web.Request, name: str, instance_id: str | None) -> web.Response:
        raw = await request.read()
        decoded = None
        if raw:
            try:
                decoded = json.loads(raw)
            except ValueError:
                return _error(400, "Invalid JSON content")
        instance_id = self.engine.start_new(name, instance_id or None, start_input_text(decoded),
                                            request.query.get("version"))
        timeout = request.query.get("timeout")
        if timeout:
            interval = float(request.query.get("pollingInterval") or 1)
            deadline = time.monotonic() + float(timeout)
            while time.monotonic() < deadline:
                row = self.engine.lookup(instance_id)
                if row["status"] in TERMINAL_STATES:
                    if row["status"] == "Completed":
                        return web.json_response(json.loads(row["output"]) if row["output"] else None)
                    return web.json_response(status_payload(row), status=http_status_for(row))
                await asyncio.sleep(min(interval, max(0.01, deadline - time.monotonic())))
        return self.check_status_response(instance_id)

    def _status(self, request: web.Request, instance_id: str) -> web.Response:
        row = self.engine.lookup(instance_id)
        if row is None:
            return web.json_response(f"No instance with ID '{instance_id}' found.", status=404)
        q = request.query
        history = self.engine.history_of(instance_id) if _flag(q, "showHistory") else None
        payload = status_payload(row, show_input=_flag(q, "showInput", True), history=history,
                                 show_history_output=_flag(q, "showHistoryOutput"))
        status = http_status_for(row, _flag(q, "returnInternalServerErrorOnFailure"))
        headers = {"Retry-After": "5", "Location": str(request.url)} if status == 202 else None
        return web.json_response(payload, status=status, headers=headers)

    def _filters(self, request: web.Request) -> dict:
        q = request.query
        statuses = [s for part in q.getall("runtimeStatus", []) for s in part.split(",") if s]
        return {"created_from": _date_filter(q.get("createdTimeFrom")),
                "created_to": _date_filter(q.get("createdTimeTo")),
                "statuses": statuses or None,
                "prefix": q.get("instanceIdPrefix")}

    def _query(self, request: web.Request) -> web.Response:
        rows = self.engine.store.query_instances(**self._filters(request))
        show_input = _flag(request.query, "showInput", True)
        top = request.query.get("top")
        start = int(request.headers.get("x-ms-continuation-token") or 0)
        if top:
            page = rows[start:start + int(top)]
            token = str(start + int(top)) if start + int(top) < len(rows) else ""
        else:
            page, token = rows[start:], ""
        # prefer the in-memory copy of active instances (the store row may lag by one episode)
        page = [self.engine.lookup(r["instance_id"]) or r for r in page]
        return web.json_response([status_payload(r, show_input=show_input) for r in page],
                                 headers={"x-ms-continuation-token": token} if token else None)

    def _purge_one(self, instance_id: str) -> web.Response:
        row = self.engine.lookup(instance_id)
        if row is None:
            return web.json_response(f"No instance with ID '{instance_id}' found.", status=404)
        if row["status"] not in TERMINAL_STATES:
            return web.json_response(
                f"Only orchestrations in a terminal state can be purged, but the orchestration with instance ID "
                f"{instance_id} has status {row['status']}", status=412)
        return web.json_response({"instancesDeleted": self.engine.purge([instance_id])})

    def _purge_by_filter(self, request: web.Request) -> web.Response:
        filters = self._filters(request)
        if not filters["created_from"]:
            return web.json_response("Please provide value for 'createdTimeFrom' parameter.", status=400)
        ids = [r["instance_id"] for r in self.engine.store.query_instances(**filters)]
        deleted = self.engine.purge(ids)
        if not deleted:
            return web.json_response("No instances were purged.", status=404)
        return web.json_response({"instancesDeleted": deleted})

    async def _raise_event(self, request: web.Request, instance_id: str, event_name: str) -> web.Response:
        raw = await request.read()
        payload: str | None = None
        if raw:
            try:
                decoded = json.loads(raw)
            except ValueError:
                return _error(400, "Only application/json request content is supported")
            # Fidelity with the extension: the SDK double-encodes, and the extension stores the decoded
            # body as the event's JSON payload, so a Python orchestrator receives the JSON *text*
            # (azure-functions-durable-python#295). See DURABLE-NOTES §4.2.
            payload = json.dumps(decoded)
        self.engine.raise_event(instance_id, event_name, payload)
        return web.json_response(None, status=202)

    def _operation(self, request: web.Request, instance_id: str, operation: str) -> web.Response:
        reason = request.query.get("reason")
        if operation == "terminate":
            self.engine.terminate(instance_id, reason)
        elif operation == "suspend":
            self.engine.suspend(instance_id, reason)
        elif operation == "resume":
            self.engine.resume(instance_id, reason)
        elif operation == "restart":
            row = self.engine.lookup(instance_id)
            if row is None:
                return web.json_response(f"No instance with ID '{instance_id}' found.", status=404)
            new_id = uuid.uuid4().hex if _flag(request.query, "restartWithNewInstanceId", True) else instance_id
            return self.check_status_response(self.engine.start_new(row["name"], new_id, row["input"],
                                                                    row["version"] or None))
        elif operation == "rewind":
            return _error(400, "One or more of the arguments submitted is incorrect",
                          "rewind is not supported by the mlpipe devhost")
        else:
            return _error(404, "Not found")
        return web.json_response(None, status=202)
