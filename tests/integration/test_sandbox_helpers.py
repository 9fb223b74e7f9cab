"""Helpers shared by the sandbox gateway tests (this module holds no test itself)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import requests

from campaigns.sandbox import SandboxControl, SandboxServer

T = TypeVar("T")

# Real WAHA waits 5 s for a WORKING session; tests keep the same code path, just shorter.
WAHA_WAIT = 0.2
TIMEOUT = (2.0, 10.0)


def eventually(probe: Callable[[], T | None], timeout: float = 10.0,
               what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@contextmanager
def running_sandbox(tmp_path: Path, **options: Any) -> Iterator[SandboxServer]:
    """A sandbox on a free loopback port, recording to ``tmp_path/record.sqlite``."""
    options.setdefault("waha_wait", WAHA_WAIT)
    options.setdefault("seed", 7)
    server = SandboxServer("127.0.0.1", 0, record_path=tmp_path / "record.sqlite", **options)
    with server:
        yield server


@dataclass
class Client:
    """A keep-alive HTTP client aimed at one sandbox, plus its control client."""

    url: str
    http: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.control = SandboxControl(self.url)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.url + path, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.post(self.url + path, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)

    def close(self) -> None:
        self.http.close()
        self.control.close()


@dataclass
class Received:
    """One webhook POST the test receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """A tiny HTTP server that records every POST (the operator's webhook endpoint)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received.append(Received(self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,),
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
