"""A small threaded HTTP server that plays a cloud service's REST contract in tests.

Each service (databricks_service, aml_service, adla_service) is a `Service`: it routes a
recorded request to a handler that answers as the published contract says. The server records
every request (method, path, query, headers, JSON body) and can inject faults into the next
matching requests:

    server.inject("runs/submit", Fault.http(429, retry_after="0"))  # throttled, retried
    server.inject("runs/get", Fault.http(503))
    server.inject("runs/submit", Fault.drop())                        # connection dropped, nothing done
    server.inject("runs/submit", Fault.drop(after=True))              # done, but the answer is lost
    server.inject("runs/get", Fault.delay(4))                         # slow: answered after 4 s

Nothing here is a mock of mlpipe: the real client libraries (databricks-sdk, azure-core) talk
HTTP to it.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes = b""

    def header(self, name: str) -> str:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return ""


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    kind: str                      # "status" | "drop" | "delay"
    status: int = 503
    retry_after: str | None = None
    after: bool = False            # drop: handle the request first, then lose the answer
    body: Any = None
    seconds: float = 0.0           # delay

    @classmethod
    def http(cls, status: int, retry_after: str | None = None, body: Any = None) -> Fault:
        return cls("status", status=status, retry_after=retry_after, body=body)

    @classmethod
    def drop(cls, after: bool = False) -> Fault:
        return cls("drop", after=after)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, but only after `seconds` (a slow service; time to kill a client mid-call)."""
        return cls("delay", seconds=seconds)


class Service:
    """Routes: list of (method, regex on the path, handler(request, match) -> Response)."""

    routes: list[tuple[str, str, str]] = []  # (method, pattern, handler method name)

    def error_body(self, status: int, message: str) -> Any:
        return {"error": {"code": str(status), "message": message}}

    def _error(self, status: int, message: str) -> Response:
        return Response(status, self.error_body(status, message))

    def authorize(self, request: Request) -> Response | None:
        return None

    def handle(self, request: Request) -> Response:
        denied = self.authorize(request)
        if denied is not None:
            return denied
        for method, pattern, name in self.routes:
            match = re.fullmatch(pattern, request.path)
            if match and method == request.method:
                return getattr(self, name)(request, match)
        return self._error(404, f"no route {request.method} {request.path}")


class ContractServer:
    def __init__(self, service: Service):
        self.service = service
        self.requests: list[Request] = []
        self._faults: list[tuple[str, str | None, Fault]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: a drop is a clean reset

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parsed = urlparse(self.path)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                request = Request(self.command, parsed.path,
                                  {k: v[-1] for k, v in parse_qs(parsed.query).items()},
                                  dict(self.headers.items()), body, raw)
                server._dispatch(self, request)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # ----- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def __enter__(self) -> ContractServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # ----- faults and records ----------------------------------------------------------------

    def inject(self, path_contains: str, *faults: Fault, method: str | None = None) -> None:
        """The next len(faults) requests whose path contains `path_contains` (and whose method is
        `method`, if given) get these faults, in order."""
        with self._lock:
            self._faults.extend((path_contains, method, fault) for fault in faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, request: Request) -> Fault | None:
        with self._lock:
            for index, (needle, method, fault) in enumerate(self._faults):
                if needle in request.path and method in (None, request.method):
                    del self._faults[index]
                    return fault
        return None

    def calls(self, path_contains: str = "", method: str | None = None) -> list[Request]:
        return [r for r in self.requests if path_contains in r.path and (method is None or r.method == method)]

    # ----- dispatch --------------------------------------------------------------------------

    def _dispatch(self, handler: BaseHTTPRequestHandler, request: Request) -> None:
        with self._lock:
            self.requests.append(request)
        fault = self._take_fault(request)
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.kind == "drop":
            if fault.after:
                with self._lock:
                    self.service.handle(request)
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(2)
            return
        if fault is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            body = fault.body if fault.body is not None else self.service.error_body(fault.status, "injected fault")
            response = Response(fault.status, body, headers)
        else:
            with self._lock:  # services are simple state machines: one request at a time
                response = self.service.handle(request)
        payload = b"" if response.body is None else json.dumps(response.body).encode()
        handler.send_response(response.status)
        for key, value in response.headers.items():
            handler.send_header(key, value)
        if payload:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)


Behaviour = Callable[[dict], Any]
