"""An azure-core transport for the storage clients on the standard library's http.client.

Every step and every submission makes a handful of small storage requests (a claim, records, run
events, an index entry). Through azure-core's RequestsTransport each one also passes requests'
session merging and urllib3's pool: about a third of the ~1.2-1.6 ms of client CPU a small request
costs here (BENCHMARKS.md). This transport sends the same requests on pooled keep-alive
http.client connections. The storage SDKs, their policies (signing, retries, response hooks) and
their errors are unchanged: only the last hop differs.

It answers both of azure-core's request shapes (the legacy pipeline.transport.HttpRequest and the
"rest" HttpRequest the newer generated SDK code sends). What it does not do itself it hands to a
RequestsTransport: multipart file uploads and explicit proxies. `azure_transport` builds the
transport of every azure-core client of mlpipe's (storage, Azure ML, ADLA): this one, unless a proxy
is configured or MLPIPE_HTTP_TRANSPORT=requests.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies

import requests
from azure.core.exceptions import (
    DecodeError,
    IncompleteReadError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline._tools import handle_non_stream_rest_response, is_rest
from azure.core.pipeline.transport import HttpResponse, HttpTransport, RequestsTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from azure.core.utils import case_insensitive_dict

from shared.settings import checked_choice, get_settings

DEFAULT_BLOCK_SIZE = 64 * 1024
TRANSPORTS = ("http.client", "requests")
_Origin = tuple[str, str, int]  # scheme, host, port


def _ssl_context(verify: bool | str, cert: str | tuple[str, str] | None) -> ssl.SSLContext:
    """TLS as requests does it: certifi's CA bundle unless `verify` names one; no check if False."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        import certifi

        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else certifi.where())
    if cert:
        context.load_cert_chain(*((cert,) if isinstance(cert, str) else cert))
    return context


def _is_dropped(connection: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection the server has closed (or that has stray bytes) reads as ready.
    poll, where there is one, has no limit on descriptor numbers (select fails above 1023)."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class _ConnectionPool:
    """Idle keep-alive connections per origin, most recently used first. Connections beyond
    `max_idle` per origin are closed when given back (urllib3's non-blocking pool does the same)."""

    def __init__(self, max_idle: int, connection_timeout: float, read_timeout: float) -> None:
        self._idle: dict[_Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._max_idle = max_idle
        self._connection_timeout = connection_timeout
        self._read_timeout = read_timeout
        self._ssl_contexts: dict[tuple, ssl.SSLContext] = {}
        self.opened = 0  # connections opened so far

    def take(self, origin: _Origin, verify: bool | str, cert) -> tuple[http.client.HTTPConnection, bool]:
        """(connection, reused): an idle one that is still open, else a new connected one."""
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                connection = idle.pop()
                if not _is_dropped(connection):
                    return connection, True
                connection.close()
        return self.connect(origin, verify, cert), False

    def give_back(self, origin: _Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self._max_idle:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def connect(self, origin: _Origin, verify: bool | str, cert) -> http.client.HTTPConnection:
        """A new connection to `origin`, connected."""
        scheme, host, port = origin
        if scheme == "https":
            key = (verify, cert)
            context = self._ssl_contexts.get(key)
            if context is None:
                context = self._ssl_contexts[key] = _ssl_context(verify, cert)
            connection = http.client.HTTPSConnection(host, port, timeout=self._connection_timeout, context=context)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self._connection_timeout)
        try:
            connection.connect()
        except TimeoutError as exc:
            connection.close()
            raise ServiceRequestTimeoutError(f"connecting to {host}:{port} timed out", error=exc) from exc
        except OSError as exc:
            connection.close()
            raise ServiceRequestError(f"cannot connect to {host}:{port}: {exc.strerror or exc}", error=exc) from exc
        with self._lock:
            self.opened += 1
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.sock.settimeout(self._read_timeout)
        return connection


class _Exchange:
    """One response on its connection: its body in blocks (decoded if asked), and the connection
    given back to the pool once the body has been read to its end, or closed if reading fails or
    stops early. It is the `internal_response` of both response shapes below."""

    def __init__(self, raw: http.client.HTTPResponse, release, block_size: int) -> None:
        self.raw = raw
        self.block_size = block_size
        self.headers = case_insensitive_dict(_joined_headers(raw))
        self._release = release  # release(reusable: bool), called once

    def chunks(self, decompress: bool) -> Iterator[bytes]:
        decoder = _decoder(self.headers.get("Content-Encoding")) if decompress else None
        try:
            while True:
                block = self.raw.read(self.block_size)
                if not block:
                    break
                yield decoder.decompress(block) if decoder else block
            if decoder:
                yield decoder.flush()
        except TimeoutError as exc:
            self.close()
            raise ServiceResponseTimeoutError("reading the response timed out", error=exc) from exc
        except http.client.IncompleteRead as exc:
            self.close()
            raise IncompleteReadError(f"the response ended early: {exc!r}", error=exc) from exc
        except zlib.error as exc:
            self.close()
            raise DecodeError(f"the response body could not be decoded: {exc}", error=exc) from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ServiceResponseError(f"reading the response failed: {exc!r}", error=exc) from exc
        except GeneratorExit:  # the reader stopped early: the rest of the body is still on the wire
            self.close()
            raise
        self._end(reusable=not self.raw.will_close)

    def close(self) -> None:
        """Done with this response: the connection is closed unless its body was read to the end."""
        self._end(reusable=False)

    def _end(self, reusable: bool) -> None:
        release, self._release = self._release, None
        if release:
            release(reusable)


class HttpClientTransportResponse(HttpResponse):
    """The response for azure-core's legacy request shape (azure.core.pipeline.transport.HttpRequest)."""

    def __init__(self, request, exchange: _Exchange) -> None:
        super().__init__(request, exchange, block_size=exchange.block_size)
        self.status_code = exchange.raw.status
        self.reason = exchange.raw.reason
        self.headers = exchange.headers
        self.content_type = exchange.headers.get("Content-Type")
        self._body: bytes | None = None

    def body(self) -> bytes:
        if self._body is None:
            self._body = b"".join(self.internal_response.chunks(decompress=True))
        return self._body

    def stream_download(self, pipeline, **kwargs) -> Iterator[bytes]:
        return _StreamDownload(pipeline, self, **kwargs)


def _rest_response(request, exchange: _Exchange) -> HttpResponseImpl:
    """The response for azure-core's "rest" request shape (azure.core.rest.HttpRequest)."""
    return HttpResponseImpl(request=request, internal_response=exchange, block_size=exchange.block_size,
                            status_code=exchange.raw.status, reason=exchange.raw.reason,
                            content_type=exchange.headers.get("Content-Type"), headers=exchange.headers,
                            stream_download_generator=_StreamDownload)


class _StreamDownload:
    """What azure-core's stream_download returns: an iterator of body blocks with the attributes
    the storage SDK reads (request, response, content_length, len())."""

    def __init__(self, pipeline, response, *, decompress: bool = True) -> None:
        self.pipeline = pipeline
        self.request = response.request
        self.response = response
        self.block_size = response.block_size
        self.content_length = int(response.headers.get("Content-Length", 0))
        self._chunks = response.internal_response.chunks(decompress)

    def __len__(self) -> int:
        return self.content_length

    def __iter__(self) -> _StreamDownload:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._chunks)
        while not chunk:  # a decoder may yield nothing for a block
            chunk = next(self._chunks)
        return chunk


def _joined_headers(raw: http.client.HTTPResponse) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in raw.getheaders():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _decoder(content_encoding: str | None):
    encoding = (content_encoding or "").strip().lower()
    if encoding == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None


class _ConnectionDropped(ServiceRequestError):
    """A reused keep-alive connection the server had closed as the request went out: nothing came back."""


# Requests that may be sent again at once on a new connection when a reused one was dropped: the
# idempotent methods, with a body that is still whole (bytes; a stream may be half read). Others are
# left to the SDK's retry policy, which rewinds streams.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def _can_send_again(request) -> bool:
    return request.method.upper() in _IDEMPOTENT and (request.data is None or isinstance(request.data, (bytes, str)))


def _round_trip(connection: http.client.HTTPConnection, reused: bool, request, target: str,
                read_timeout: float, default_read_timeout: float) -> http.client.HTTPResponse:
    """Send `request` and read the response's status and headers; azure-core errors on failure (the
    connection is then closed). A reused connection the server closed is _ConnectionDropped."""
    try:
        if read_timeout != default_read_timeout:
            connection.sock.settimeout(read_timeout)
        connection.request(request.method, target, body=request.data, headers=request.headers)
    except TimeoutError as exc:
        connection.close()
        raise ServiceRequestTimeoutError("sending the request timed out", error=exc) from exc
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        dropped = reused and isinstance(exc, (BrokenPipeError, ConnectionResetError))
        error = _ConnectionDropped if dropped else ServiceRequestError
        raise error(f"sending the request failed: {exc!r}", error=exc) from exc
    try:
        return connection.getresponse()
    except TimeoutError as exc:
        connection.close()
        raise ServiceResponseTimeoutError("waiting for the response timed out", error=exc) from exc
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        dropped = reused and isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError))
        error = _ConnectionDropped if dropped else ServiceResponseError
        raise error(f"reading the response failed: {exc!r}", error=exc) from exc


class HttpClientTransport(HttpTransport):
    """azure-core transport on pooled http.client connections (see the module docstring)."""

    def __init__(self, *, pool_size: int, connection_timeout: float, read_timeout: float,
                 connection_verify: bool | str = True, connection_cert=None,
                 block_size: int = DEFAULT_BLOCK_SIZE, fallback: RequestsTransport) -> None:
        self._pool = _ConnectionPool(pool_size, connection_timeout, read_timeout)
        self._read_timeout = read_timeout
        self._verify = connection_verify
        self._cert = connection_cert
        self._block_size = block_size
        self._fallback = fallback
        self._origins: dict[str, _Origin] = {}

    @property
    def connections_opened(self) -> int:
        """How many connections this transport has opened (keep-alive reuse keeps it low)."""
        return self._pool.opened

    def __enter__(self) -> HttpClientTransport:
        return self

    def __exit__(self, *args) -> None:
        self.close()

    def open(self) -> None:
        """Connections are opened on demand."""

    def close(self) -> None:
        self._pool.close()
        self._fallback.close()

    def send(self, request, *, stream: bool = False, proxies=None, **kwargs: Any):
        if getattr(request, "files", None) or proxies:
            return self._fallback.send(request, stream=stream, proxies=proxies, **kwargs)
        verify = kwargs.pop("connection_verify", self._verify)
        cert = kwargs.pop("connection_cert", self._cert)
        read_timeout = kwargs.pop("read_timeout", self._read_timeout)
        kwargs.pop("connection_timeout", None)  # one connect timeout per transport
        if kwargs:
            raise TypeError(f"unexpected transport option(s): {', '.join(sorted(kwargs))}")
        origin, target = self._split(request.url)
        connection, reused = self._pool.take(origin, verify, cert)
        try:
            raw = _round_trip(connection, reused, request, target, read_timeout, self._read_timeout)
        except _ConnectionDropped:
            if not _can_send_again(request):
                raise
            connection = self._pool.connect(origin, verify, cert)
            raw = _round_trip(connection, False, request, target, read_timeout, self._read_timeout)

        def release(reusable: bool) -> None:
            if reusable and read_timeout == self._read_timeout:
                self._pool.give_back(origin, connection)
            else:
                connection.close()

        exchange = _Exchange(raw, release, self._block_size)
        if is_rest(request):
            response = _rest_response(request, exchange)
            if not stream:
                handle_non_stream_rest_response(response)
            return response
        response = HttpClientTransportResponse(request, exchange)
        if not stream:
            response.body()
        return response

    def _split(self, url: str) -> tuple[_Origin, str]:
        """(origin, path?query) of `url`; origins are parsed once per base address."""
        scheme_end = url.index("://") + 3
        path_start = url.find("/", scheme_end)
        if path_start < 0:
            query_start = url.find("?", scheme_end)
            path_start = len(url) if query_start < 0 else query_start
        base, target = url[:path_start], url[path_start:]
        if not target.startswith("/"):
            target = "/" + target
        origin = self._origins.get(base)
        if origin is None:
            parts = urlsplit(base)
            default_port = 443 if parts.scheme == "https" else 80
            origin = self._origins[base] = (parts.scheme, parts.hostname, parts.port or default_port)
        return origin, target


def azure_transport(*, pool_size: int, connection_timeout: float, read_timeout: float) -> HttpTransport:
    """The transport for one of mlpipe's azure-core clients.

    By default, and without a proxy configured: HttpClientTransport, with a requests session behind
    it for what it hands over. With a proxy configured, or MLPIPE_HTTP_TRANSPORT=requests: azure-core's
    RequestsTransport alone.

    requests would consult the environment (proxies, no_proxy, CA bundle, .netrc) on every request
    when trust_env is on: a walk over os.environ that cost ~0.5 ms of CPU per call. Without a proxy
    that walk can only find the CA bundle, so it is turned off and the bundle (REQUESTS_CA_BUNDLE or
    CURL_CA_BUNDLE, as requests would pick it) is passed once instead."""
    choice = checked_choice("MLPIPE_HTTP_TRANSPORT", get_settings().http_transport, TRANSPORTS)
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    timeouts = {"connection_timeout": connection_timeout, "read_timeout": read_timeout}
    if getproxies():
        return RequestsTransport(session=session, session_owner=False, **timeouts)
    session.trust_env = False
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    verify = {"connection_verify": bundle} if bundle else {}
    requests_transport = RequestsTransport(session=session, session_owner=False, **timeouts, **verify)
    if choice == "requests":
        return requests_transport
    return HttpClientTransport(pool_size=pool_size, fallback=requests_transport, **timeouts, **verify)
