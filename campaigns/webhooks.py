"""Webhook receiver: gateways push session status changes, campaigns resume on reconnect.

- ``POST /webhooks/waha``: WAHA ``session.status`` events. When ``WAHA_WEBHOOK_HMAC_KEY`` is
  set, ``X-Webhook-Hmac`` must be the HMAC-SHA512 hex of the raw body, else 401.
- ``POST /webhooks/evolution``: Evolution ``connection.update`` events (Evolution signs
  nothing); state ``open`` is a reconnect.

The gateway's session name is mapped to ours: WAHA's ``session`` is our session's option
``session`` (or its name), Evolution's ``instance`` our option ``instance``. On a reconnect of a
known session the receiver enqueues ``campaigns.resume_session(session, reason)`` by name
(:mod:`campaigns.dispatch`); the recovery manager applies the settle delay, so the receiver
answers at once. Unknown sessions and events
that say nothing about connectivity are answered 200 and ignored: gateways retry non-2xx
answers, and retrying an event we do not care about helps nobody. A store or broker outage is
answered 503, so the gateway does retry that one.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from campaigns.dispatch import TaskSender, queue_name
from campaigns.domain import SenderSession
from campaigns.errors import StoreUnavailable
from campaigns.store import CampaignStateManager

log = logging.getLogger("campaigns.webhooks")

MAX_BODY_BYTES = 1_000_000
"""Largest event accepted: status events are a few hundred bytes; anything this big is not one."""
HMAC_KEY_ENV = "WAHA_WEBHOOK_HMAC_KEY"
WAHA_CONNECTED = "WORKING"
EVOLUTION_CONNECTED = "open"

Resume = Callable[[str, str], None]
"""(our session name, reason) → enqueues ``campaigns.resume_session``."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What the receiver answers one delivery."""

    status: int
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A gateway's word on one of its sessions: its own name for it and whether it can send."""

    dialect: str
    gateway_session: str
    connected: bool
    state: str


def waha_signature(key: str, body: bytes) -> str:
    """WAHA's ``X-Webhook-Hmac``: HMAC-SHA512 hex of the raw body."""
    return hmac.new(key.encode(), body, hashlib.sha512).hexdigest()


def parse_waha(payload: Mapping[str, Any]) -> StatusEvent | None:
    """A WAHA ``session.status`` envelope → event; None for any other event."""
    if payload.get("event") != "session.status":
        return None
    inner = payload.get("payload")
    inner = inner if isinstance(inner, Mapping) else {}
    name = payload.get("session") or inner.get("name")
    status = inner.get("status")
    if not isinstance(name, str) or not isinstance(status, str):
        return None
    return StatusEvent("waha", name, status.upper() == WAHA_CONNECTED, status)


def parse_evolution(payload: Mapping[str, Any]) -> StatusEvent | None:
    """An Evolution ``connection.update`` envelope → event; None for any other event.
    Evolution spells event names ``connection.update`` or ``CONNECTION_UPDATE``."""
    event = str(payload.get("event", "")).lower().replace("_", ".")
    if event != "connection.update":
        return None
    data = payload.get("data")
    data = data if isinstance(data, Mapping) else {}
    name = payload.get("instance") or data.get("instance")
    state = data.get("state")
    if not isinstance(name, str) or not isinstance(state, str):
        return None
    return StatusEvent("evolution", name, state.lower() == EVOLUTION_CONNECTED, state)


def gateway_name(session: SenderSession) -> str:
    """The name the session's gateway uses for it in its events."""
    option = {"waha": "session", "evolution": "instance"}.get(session.gateway)
    return session.options.get(option, session.name) if option else session.name


class WebhookReceiver:
    """Turns gateway deliveries into session checks and resumes. Free of HTTP plumbing, so
    :meth:`handle` is what the server calls for each request."""

    def __init__(
        self, store: CampaignStateManager, resume: Resume, *, hmac_key: str | None = None
    ) -> None:
        self.store = store
        self.resume = resume
        self.hmac_key = hmac_key or None

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Answer one ``POST`` to ``path``."""
        route = path.split("?", 1)[0].rstrip("/")
        if route == "/webhooks/waha":
            if not self._signed(headers, body):
                log.warning("WAHA webhook refused: missing or wrong X-Webhook-Hmac")
                return Answer(401, {"error": "bad signature"})
            parse: Callable[[Mapping[str, Any]], StatusEvent | None] = parse_waha
        elif route == "/webhooks/evolution":
            parse = parse_evolution
        else:
            return Answer(404, {"error": "unknown webhook path"})
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return Answer(400, {"error": "the body is not JSON"})
        event = parse(payload) if isinstance(payload, Mapping) else None
        if event is None:
            return Answer(200, {"ignored": "not a session status event"})
        try:
            return self._apply(event)
        except StoreUnavailable as exc:
            log.warning(
                "webhook %s for %s not applied: %s", event.dialect, event.gateway_session, exc
            )
            return Answer(503, {"error": "database unavailable; retry"})

    def _signed(self, headers: Mapping[str, str], body: bytes) -> bool:
        if self.hmac_key is None:
            return True
        lowered = {k.lower(): v for k, v in headers.items()}  # header names ignore case
        given = lowered.get("x-webhook-hmac") or ""
        return hmac.compare_digest(given.strip().lower(), waha_signature(self.hmac_key, body))

    def _apply(self, event: StatusEvent) -> Answer:
        ours = [
            s.name
            for s in self.store.list_sessions()
            if s.gateway == event.dialect and gateway_name(s) == event.gateway_session
        ]
        if not ours:
            return Answer(200, {"ignored": f"no session maps to {event.gateway_session!r}"})
        resumed = []
        for name in ours:
            if not event.connected:
                reason = f"{event.dialect} webhook: session state {event.state}"
                self.store.record_session_check(name, "disconnected", reason)
                log.info(
                    "session %s reported %s by its %s webhook", name, event.state, event.dialect
                )
                continue
            self.store.record_session_check(name, "connected")
            reason = f"session {name} reconnected ({event.dialect} webhook: {event.state})"
            try:
                self.resume(name, reason)
            except Exception as exc:  # the broker is down: the gateway retries a 503
                log.warning(
                    "session %s reconnected but resume_session could not be enqueued: %s", name, exc
                )
                return Answer(503, {"error": "could not enqueue the resume; retry"})
            log.info("session %s reconnected (%s webhook); resume enqueued", name, event.dialect)
            resumed.append(name)
        return Answer(200, {"resumed": resumed})


def make_server(host: str, port: int, receiver: WebhookReceiver) -> ThreadingHTTPServer:
    """An HTTP server (one thread per request) that hands every POST to ``receiver``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "campaigns-webhooks"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self._reply(Answer(413, {"error": "body too large"}))
                return
            body = self.rfile.read(length)
            self._reply(receiver.handle(self.path, dict(self.headers.items()), body))

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/health":
                self._reply(Answer(200, {"ok": True}))
            else:
                self._reply(
                    Answer(404, {"error": "POST events to /webhooks/waha or /webhooks/evolution"})
                )

        def _reply(self, answer: Answer) -> None:
            data = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    """``campaigns webhooks [--host H] [--port P]``: serve until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="campaigns webhooks",
        description="Receive WAHA session.status and Evolution connection.update webhooks and "
        "resume interrupted campaigns when their session reconnects.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on")
    args = parser.parse_args(argv)

    from campaigns.local import resolve_settings

    settings = resolve_settings(need=("database", "broker"))  # no pacing Redis: it sends none
    assert settings.broker_url is not None  # resolve_settings fills every needed URL
    store = CampaignStateManager(settings=settings)
    resume = TaskSender.for_broker(settings.broker_url, queue_name(), "campaigns-webhooks")
    receiver = WebhookReceiver(store, resume.resume_session, hmac_key=os.environ.get(HMAC_KEY_ENV))
    server = make_server(args.host, args.port, receiver)
    # SIGTERM (systemd, docker stop) ends serve_forever from another thread, as it must
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    host, port = server.server_address[:2]
    signed = "HMAC verified" if receiver.hmac_key else f"unsigned ({HMAC_KEY_ENV} not set)"
    print(
        f"webhooks listening on http://{host!s}:{port}/webhooks/waha ({signed}) and "
        f"/webhooks/evolution",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        resume.close()
        store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
