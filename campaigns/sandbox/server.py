"""The sandbox gateway's HTTP server: one port, three dialects plus the control API.

Standard library only (``ThreadingHTTPServer``, HTTP/1.1 keep-alive): one thread per client
connection, which matches how benchmark workers hold a persistent connection each.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from campaigns.sandbox import cloud, evolution, waha
from campaigns.sandbox.controlapi import ControlApi
from campaigns.sandbox.core import (
    EVOLUTION_CLOSED_FORMS,
    WAHA_SHAPES,
    Request,
    Response,
    Sandbox,
    SandboxSettings,
    json_response,
)
from campaigns.sandbox.limits import DEFAULT_CLOUD_THROUGHPUT, check_latency, check_rate
from campaigns.sandbox.receipts import Receipts, ReceiptSettings
from campaigns.sandbox.webhooks import Webhooks

log = logging.getLogger(__name__)

Dialect = Callable[[Sandbox, Request], "Response | None"]
_DIALECTS: tuple[Dialect, ...] = (waha.handle, evolution.handle, cloud.handle)


class _App:
    """Routes a request to the control API or the first dialect that claims its path."""

    def __init__(self, sandbox: Sandbox, webhooks: Webhooks, receipts: Receipts) -> None:
        self.sandbox = sandbox
        self.control = ControlApi(sandbox, webhooks, receipts)

    def dispatch(self, request: Request) -> Response:
        response = self.control.handle(request)
        if response is not None:
            return response
        for dialect in _DIALECTS:
            response = dialect(self.sandbox, request)
            if response is not None:
                return response
        return json_response(404, {"message": f"Cannot {request.method} {request.path}",
                                   "error": "Not Found", "statusCode": 404})


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # A held (accept-then-hang) answer must not delay shutdown.
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: _App) -> None:
        self.app = app
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: benchmarks reuse one connection per worker
    server_version = "campaigns-sandbox"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in one write, but Nagle would still hold small answers back
        # for a delayed ACK on keep-alive connections (40 ms stalls).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def _serve(self) -> None:
        received_at = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        split = urlsplit(self.path)
        request = Request(self.command, split.path, dict(parse_qsl(split.query)), self.headers,
                          body, received_at)
        app = self.server.app
        try:
            response = app.dispatch(request)
        except Exception:  # a sandbox bug must answer 500, not drop the connection
            log.exception("sandbox failed on %s %s", request.method, request.path)
            response = json_response(500, {"message": "sandbox internal error"})
        if response.delay > 0:
            time.sleep(response.delay)  # the configured latency: one thread per connection
        self._write(response)
        if response.held_row is not None:
            try:
                app.sandbox.record.answered(response.held_row, time.time())
            except RuntimeError:
                pass  # the sandbox stopped during the hold; the row keeps answered_at NULL

    def _write(self, response: Response) -> None:
        phrase = HTTPStatus(response.status).phrase
        lines = [f"HTTP/1.1 {response.status} {phrase}",
                 f"Content-Length: {len(response.body)}"]
        lines.extend(f"{name}: {value}" for name, value in response.headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head + response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (read timeout): nothing to do


class SandboxServer:
    """The sandbox gateway, run in a background thread.

    >>> with SandboxServer(record_path="/tmp/sandbox.sqlite") as sandbox:
    ...     sandbox.url  # 'http://127.0.0.1:<free port>'
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 record_path: str | os.PathLike[str],
                 api_key: str | Iterable[str] | None = None, waha_wait: float = 5.0,
                 seed: int | None = None, waha_shape: str = "noweb",
                 evolution_closed_form: str = "500", cloud_auth_status: int = 401,
                 webhook_timeout: float = 2.0,
                 cloud_throughput: int | None = DEFAULT_CLOUD_THROUGHPUT,
                 latency: float = 0.0,
                 receipts: Mapping[str, Any] | None = None) -> None:
        keys = None if api_key is None else frozenset(
            [api_key] if isinstance(api_key, str) else api_key)
        settings = SandboxSettings(api_keys=keys, waha_wait=waha_wait)
        settings.update({"waha_shape": waha_shape, "cloud_auth_status": cloud_auth_status,
                         "evolution_closed_form": evolution_closed_form})
        self.host = host
        self.port = port
        self.record_path = Path(record_path)
        self.sandbox = Sandbox(self.record_path, settings=settings, seed=seed,
                               cloud_throughput=cloud_throughput, latency=latency)
        self.webhooks = Webhooks(self.sandbox.faults, timeout=webhook_timeout)
        # ``receipts``: ReceiptSettings fields (enabled, delivered_after...); default off
        receipt_settings = ReceiptSettings()
        receipt_settings.update(receipts or {})
        self.receipts = Receipts(self.sandbox, self.webhooks, receipt_settings,
                                 timeout=webhook_timeout)
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` with the real port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the sandbox is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> SandboxServer:
        """Bind and serve in a daemon thread; returns self."""
        self._server = _HTTPServer((self.host, self.port), _App(self.sandbox, self.webhooks,
                                                                 self.receipts))
        self.sandbox.base_url = self.webhooks.server_url = self.url
        self.webhooks.start()
        self.receipts.start()
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.2,),
                                        name="sandbox-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, stop webhook delivery, close the record. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self.receipts.stop()
        self.webhooks.stop()
        self.sandbox.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def _throughput(text: str) -> int | None:
    try:
        return None if text.strip() == "0" else check_rate(text, "--cloud-throughput")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace(", or null", ", or 0")) from None


def _latency(text: str) -> float:
    try:
        return check_latency(text, "--latency")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m campaigns.sandbox",
        description="Sandbox WhatsApp gateway speaking Cloud API, WAHA and Evolution API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099, help="0 picks a free port")
    parser.add_argument("--record", default=".data/sandbox.sqlite",
                        help="SQLite file recording accepted messages")
    parser.add_argument("--api-key", action="append", default=None,
                        help="accepted key (repeatable; default: env SANDBOX_API_KEY, else any"
                             " non-empty key)")
    parser.add_argument("--waha-wait", type=float, default=5.0,
                        help="seconds WAHA sends wait for a WORKING session before 422")
    parser.add_argument("--seed", type=int, default=None, help="seed of fault randomness")
    parser.add_argument("--waha-shape", choices=WAHA_SHAPES, default="noweb")
    parser.add_argument("--evolution-closed-form", choices=EVOLUTION_CLOSED_FORMS,
                        default="500")
    parser.add_argument("--cloud-auth-status", type=int, choices=(400, 401), default=401)
    parser.add_argument("--cloud-throughput", type=_throughput, default=DEFAULT_CLOUD_THROUGHPUT,
                        help="Cloud API sends per second per phone_number_id before 130429"
                             f" (default {DEFAULT_CLOUD_THROUGHPUT}, Meta's; 0: no limit)")
    parser.add_argument("--latency", type=_latency, default=0.0,
                        help="seconds added before every dialect answer (default 0)")
    parser.add_argument("--receipts", action="store_true",
                        help="send delivery receipts to the registered webhook targets")
    parser.add_argument("--receipt-delivered-after", type=float, default=1.0,
                        help="seconds from the send to 'delivered' (default 1)")
    parser.add_argument("--receipt-read-after", type=float, default=2.0,
                        help="seconds from 'delivered' to 'read' (default 2)")
    parser.add_argument("--receipt-read-share", type=float, default=1.0,
                        help="share of the messages read, 0..1 (default 1)")
    parser.add_argument("--receipt-fail-share", type=float, default=0.0,
                        help="share of the messages failed instead of delivered (default 0)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until SIGTERM/SIGINT; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env_key = os.environ.get("SANDBOX_API_KEY")
    keys = args.api_key or ([env_key] if env_key else None)
    server = SandboxServer(
        args.host, args.port, record_path=args.record, api_key=keys, waha_wait=args.waha_wait,
        seed=args.seed, waha_shape=args.waha_shape,
        evolution_closed_form=args.evolution_closed_form,
        cloud_auth_status=args.cloud_auth_status, cloud_throughput=args.cloud_throughput,
        latency=args.latency, receipts={
            "enabled": args.receipts, "delivered_after": args.receipt_delivered_after,
            "read_after": args.receipt_read_after, "read_share": args.receipt_read_share,
            "fail_share": args.receipt_fail_share,
            "seed": 0 if args.seed is None else args.seed})
    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        print(f"sandbox listening on {server.url} (record: {args.record})", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
