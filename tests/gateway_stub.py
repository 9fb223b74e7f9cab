"""A tiny HTTP server on loopback that plays a gateway in adapter tests.

It records every request (method, path with query, headers, body) and answers from a table of
canned answers set by the test: a status and a JSON (or raw) body, optional headers, an optional
delay (to outlast the client's read timeout), or ``drop=True`` to read the request and close the
connection without answering (the gateway may have sent; the client cannot know). Tests talk to
it over real sockets, so the adapters' real ``requests`` code paths run.

    with GatewayStub() as stub:
        stub.answer("POST", "/api/sendText", 201, {"key": {"id": "X"}})
        gateway = WahaGateway(GatewayConfig("default", stub.url, token="k"))
        ...
        assert stub.requests[0].json["chatId"] == "5511999991234@c.us"
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pytest


@dataclass(frozen=True)
class Recorded:
    """One request as the stub received it."""

    method: str
    path: str
    """Path and query, as sent."""
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes

    @property
    def route(self) -> str:
        """The path without its query."""
        return urlsplit(self.path).path

    @property
    def query(self) -> str:
        return urlsplit(self.path).query

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Canned:
    """One answer. ``body`` is JSON-encoded unless it is ``bytes``; ``None`` sends no body."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping out a delay must not block shutdown
    stub: GatewayStub

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The client hung up on a slow answer: expected in timeout tests, not a failure.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the real gateways do
    disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed ACK

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        stub = self.server.stub
        recorded = Recorded(self.command, self.path, headers, body)
        canned = stub._record_and_pick(recorded)
        if canned.delay:
            time.sleep(canned.delay)
        if canned.drop:
            # Request read in full, then hang up without a status line.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = _encode(canned.body)
        self.send_response(canned.status)
        for name, value in canned.headers.items():
            self.send_header(name, value)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


def _encode(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


class GatewayStub:
    """A threaded HTTP server on ``127.0.0.1`` (a free port) with canned answers per route."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str], deque[Canned]] = {}
        self.requests: list[Recorded] = []

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(
        self,
        method: str,
        route: str,
        status: int = 200,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        drop: bool = False,
    ) -> None:
        """Answer ``method route`` (path without query) this way from now on, replacing what
        was set before."""
        canned = Canned(status, body, headers or {}, delay, drop)
        with self._lock:
            self._answers[(method, route)] = deque([canned])

    def then(
        self,
        method: str,
        route: str,
        status: int = 200,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        drop: bool = False,
    ) -> None:
        """Queue a further answer after the ones set: answers are used in order and the last
        one repeats."""
        canned = Canned(status, body, headers or {}, delay, drop)
        with self._lock:
            self._answers.setdefault((method, route), deque()).append(canned)

    def _record_and_pick(self, recorded: Recorded) -> Canned:
        with self._lock:
            self.requests.append(recorded)
            queue = self._answers.get((recorded.method, recorded.route))
            if not queue:
                return Canned(599, {"stub": f"no answer for {recorded.method} {recorded.route}"})
            return queue.popleft() if len(queue) > 1 else queue[0]

    def __enter__(self) -> GatewayStub:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def assert_no_secrets(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    """No log record (message or arguments, formatted) contains any of ``secrets``."""
    for record in caplog.records:
        text = record.getMessage()
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked in log {record.name}: {text!r}"
    for secret in secrets:
        assert secret not in caplog.text


def capture_all_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every logger down to DEBUG, urllib3's request lines included."""
    caplog.set_level(logging.DEBUG)
