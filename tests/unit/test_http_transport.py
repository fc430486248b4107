"""The http.client transport's own behaviour, against small local HTTP servers: connections the
server dropped, decoding, bodies read only in part, timeouts and refused connections."""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.core.exceptions import ServiceRequestError, ServiceResponseTimeoutError
from azure.core.pipeline.transport import HttpRequest as LegacyRequest
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest as RestRequest

from devhost.azurite import free_port
from shared.http_transport import HttpClientTransport

BODY = bytes(range(256)) * 1024  # 256 KiB: several blocks


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self._drops_this_request():
            return
        if self.path == "/slow":
            self.server.release.wait(5)
            return
        gzipped = self.path == "/gzip"
        body = gzip.compress(BODY) if gzipped else BODY
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/then-close":  # the server drops the connection without saying so
            self.close_connection = True

    def do_POST(self) -> None:
        if self._drops_this_request():
            return
        self.do_PUT()

    def _drops_this_request(self) -> bool:
        """Under /drop-second, the second request on a connection is read and the connection closed
        unanswered: a keep-alive connection the server closed just as the client reused it."""
        self.requests_here = getattr(self, "requests_here", 0) + 1
        if self.path.startswith("/drop-second") and self.requests_here == 2:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.close_connection = True
            return True
        return False

    def do_PUT(self) -> None:
        received = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.send_header("x-received", str(len(received)))
        self.end_headers()


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.release = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


def transport(read_timeout: float = 5) -> HttpClientTransport:
    return HttpClientTransport(pool_size=4, connection_timeout=2, read_timeout=read_timeout,
                               fallback=RequestsTransport())


@pytest.mark.parametrize("request_type", [LegacyRequest, RestRequest])
def test_bodies_and_keep_alive_in_both_request_shapes(server, request_type):
    sender = transport()
    response = sender.send(request_type("GET", f"{server}/plain"))
    assert response.status_code == 200
    assert response.body() == BODY
    put = sender.send(request_type("PUT", f"{server}/upload", data=b"x" * 1000, headers={"Content-Length": "1000"}))
    assert (put.status_code, put.headers["X-Received"]) == (201, "1000")
    assert sender.connections_opened == 1


def test_a_connection_the_server_dropped_is_not_reused(server):
    sender = transport()
    assert sender.send(LegacyRequest("GET", f"{server}/then-close")).body() == BODY
    assert sender.send(LegacyRequest("GET", f"{server}/plain")).body() == BODY
    assert sender.connections_opened == 2


def test_an_idempotent_request_on_a_connection_closed_as_it_was_reused_is_sent_again_at_once(server):
    sender = transport()
    assert sender.send(LegacyRequest("GET", f"{server}/drop-second")).body() == BODY
    assert sender.send(LegacyRequest("GET", f"{server}/drop-second")).body() == BODY  # again, on a new connection
    assert sender.connections_opened == 2


def test_a_post_on_a_connection_closed_as_it_was_reused_is_left_to_the_retry_policy(server):
    sender = transport()
    post = lambda: sender.send(RestRequest("POST", f"{server}/drop-second", content=b"m",  # noqa: E731
                                           headers={"Content-Length": "1"}))
    assert post().status_code == 201
    with pytest.raises(ServiceRequestError, match="Remote end closed connection"):
        post()  # it may have reached the server: not sent twice here
    assert sender.connections_opened == 1


def test_connections_on_high_descriptor_numbers_are_reused(server):
    """select() cannot watch descriptors above 1023; a busy host has that many open."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip("fewer than 1200 descriptors allowed here")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        sender = transport()
        for _ in range(3):
            assert sender.send(LegacyRequest("GET", f"{server}/plain")).body() == BODY
        assert sender.connections_opened == 1
    finally:
        for descriptor in fillers:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_gzip_bodies_are_decoded_unless_raw_is_asked_for(server):
    sender = transport()
    assert sender.send(LegacyRequest("GET", f"{server}/gzip")).body() == BODY
    streamed = sender.send(LegacyRequest("GET", f"{server}/gzip"), stream=True)
    assert gzip.decompress(b"".join(streamed.stream_download(None, decompress=False))) == BODY


def test_a_stream_read_to_its_end_frees_its_connection_and_one_read_in_part_closes_it(server):
    sender = transport()
    streamed = sender.send(LegacyRequest("GET", f"{server}/plain"), stream=True)
    chunks = streamed.stream_download(None)
    assert len(chunks) == len(BODY)
    assert b"".join(chunks) == BODY
    sender.send(LegacyRequest("GET", f"{server}/plain")).body()
    assert sender.connections_opened == 1

    partial = sender.send(LegacyRequest("GET", f"{server}/plain"), stream=True).stream_download(None)
    next(partial)
    partial._chunks.close()  # the reader gives up: the rest of the body is still on the wire
    assert sender.send(LegacyRequest("GET", f"{server}/plain")).body() == BODY
    assert sender.connections_opened == 2


def test_a_server_that_does_not_answer_times_out():
    sender = transport(read_timeout=0.3)
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as httpd:
        httpd.release = threading.Event()
        thread = threading.Thread(target=httpd.handle_request, daemon=True)
        thread.start()
        with pytest.raises(ServiceResponseTimeoutError):
            sender.send(LegacyRequest("GET", f"http://127.0.0.1:{httpd.server_address[1]}/slow"))
        httpd.release.set()


def test_a_refused_connection_is_a_request_error_the_retry_policy_repeats():
    with pytest.raises(ServiceRequestError, match="cannot connect"):
        transport().send(LegacyRequest("GET", f"http://127.0.0.1:{free_port()}/"))
