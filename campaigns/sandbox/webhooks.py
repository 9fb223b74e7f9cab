"""Webhook events the sandbox sends: when a session is dropped or restored, and when "a person"
writes to a session or changes their marketing preference (:mod:`campaigns.sandbox.people`).

- WAHA ``session.status`` (gateways.md §2.5): envelope with ``id`` ``evt_<ulid>``, ``timestamp``
  in ms, ``payload {name, status, statuses, data}``; headers ``X-Webhook-Request-Id``,
  ``X-Webhook-Timestamp`` and, with a key, ``X-Webhook-Hmac`` (HMAC-SHA512 hex of the raw body)
  plus ``X-Webhook-Hmac-Algorithm: sha512``.
- Evolution ``connection.update`` (§3.5): ``{event, instance, data, destination, date_time,
  sender, server_url, apikey}``; Evolution signs nothing.
- A person's text: WAHA ``message`` (signed as above), Evolution ``messages.upsert``, Cloud API
  ``messages``; Meta's ``user_preferences`` (Cloud only). Cloud deliveries carry
  ``X-Hub-Signature-256: sha256=<HMAC-SHA256 hex of the raw body>`` with the target's key, else
  ``META_APP_SECRET`` of the sandbox's environment (the app secret Meta and the app share).

Session events run on one background thread with a short timeout, so a dead receiver never
slows request handling; a person's events are delivered while the control call waits, so it
can answer with the receiver's status. Failures are logged and counted, never retried.
Delivery receipts, which are retried, have their own scheduler (:mod:`.receipts`) and reuse
:meth:`Webhooks.waha_signed` and :meth:`Webhooks.cloud_headers` to be signed the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from campaigns.sandbox import people
from campaigns.sandbox.core import own_number
from campaigns.sandbox.faults import Drop, FaultState

log = logging.getLogger(__name__)

DIALECTS = ("waha", "evolution", "cloud")
APP_SECRET_ENV = "META_APP_SECRET"
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ENVIRONMENT = {"version": "2024.10.1", "engine": "NOWEB", "tier": "CORE", "browser": None}


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A registered receiver; ``session=None`` receives the events of every session.
    ``hmac_key`` signs its deliveries: WAHA's HMAC key, or the Meta app secret of a Cloud one."""

    id: int
    url: str
    dialect: str
    hmac_key: str | None = None
    session: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["hmac_key"] = self.hmac_key is not None  # never echo the secret
        return data


def ulid() -> str:
    """A ULID-like id: 48-bit ms timestamp + 80 random bits, Crockford base32 (26 chars)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def sign(key: str, body: bytes) -> str:
    """WAHA's ``X-Webhook-Hmac``: HMAC-SHA512 hex of the raw body."""
    return hmac.new(key.encode(), body, hashlib.sha512).hexdigest()


def sign_cloud(app_secret: str, body: bytes) -> str:
    """Meta's ``X-Hub-Signature-256``: ``sha256=`` + HMAC-SHA256 hex of the raw body."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    """Registered targets and the delivery thread."""

    def __init__(self, faults: FaultState, timeout: float = 2.0) -> None:
        self.faults = faults
        self.timeout = timeout
        self.server_url = ""
        self._targets: dict[int, WebhookTarget] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[WebhookTarget, str, bytes, dict[str, str]] | None] = (
            queue.Queue())
        self._log: deque[dict[str, Any]] = deque(maxlen=200)
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        faults.add_listener(self.on_status)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=self.timeout + 1)

    def add(self, url: str, dialect: str, hmac_key: str | None = None,
            session: str | None = None) -> WebhookTarget:
        """Register a receiver for ``dialect`` events."""
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}")
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must be http(s)")
        with self._lock:
            target = WebhookTarget(next(self._ids), url, dialect, hmac_key or None, session)
            self._targets[target.id] = target
        return target

    def remove(self, target_id: int) -> bool:
        with self._lock:
            return self._targets.pop(target_id, None) is not None

    def targets(self) -> list[WebhookTarget]:
        with self._lock:
            return list(self._targets.values())

    def clear(self) -> None:
        with self._lock:
            self._targets.clear()

    def deliveries(self) -> list[dict[str, Any]]:
        """The latest delivery attempts (target, event, outcome), oldest first."""
        return list(self._log)

    def on_status(self, session: str, drop: Drop | None) -> None:
        """FaultState listener: queue one event per matching target (never blocks). The Cloud
        API has no session status webhook, so its targets get none."""
        for target in self.targets():
            if target.session not in (None, session) or target.dialect == "cloud":
                continue
            if target.dialect == "waha":
                event, body, headers = self._waha(target, session, drop)
            else:
                event, body, headers = self._evolution(target, session, drop)
            self._queue.put((target, event, body, headers))

    def inbound(self, session: str, person: str, text: str,
                dialect: str | None = None) -> list[dict[str, Any]]:
        """``person`` writes ``text`` to ``session``: every matching target (of ``dialect``,
        when given) gets its dialect's message event; returns the delivery outcomes."""
        deliveries = []
        for target in self._matching(session, dialect, (*DIALECTS,)):
            if target.dialect == "waha":
                envelope = people.waha_message(session, person, text, f"evt_{ulid()}")
                event, body, headers = "message", *self.waha_signed(target, envelope)
            elif target.dialect == "evolution":
                envelope = people.evolution_upsert(
                    session, person, text, target.url, self.server_url)
                event, body, headers = "messages.upsert", json.dumps(envelope).encode(), {}
            else:
                body = people.cloud_message(session, person, text)
                event, headers = "messages", self.cloud_headers(target, body)
            deliveries.append(self._deliver(target, event, body, headers))
        return deliveries

    def user_preference(self, session: str, person: str, value: str) -> list[dict[str, Any]]:
        """``person`` stops or resumes the marketing messages of ``session``'s business in
        WhatsApp: Meta's ``user_preferences`` webhook to every matching Cloud target."""
        body = people.cloud_preference(session, person, value)
        return [self._deliver(target, "user_preferences", body, self.cloud_headers(target, body))
                for target in self._matching(session, "cloud", ("cloud",))]

    def _matching(self, session: str, dialect: str | None,
                  dialects: tuple[str, ...]) -> list[WebhookTarget]:
        if dialect is not None and dialect not in dialects:
            raise ValueError(f"dialect must be one of {dialects}")
        found = [t for t in self.targets() if t.session in (None, session)
                 and t.dialect in dialects and dialect in (None, t.dialect)]
        if not found:
            kind = f"{dialect} " if dialect else ""
            raise ValueError(f"no {kind}webhook target is registered for session {session!r} "
                             "(POST /_sandbox/webhooks first)")
        return found

    def waha_signed(self, target: WebhookTarget, envelope: dict[str, Any]
                     ) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(envelope).encode()
        headers = {"X-Webhook-Request-Id": ulid(),
                   "X-Webhook-Timestamp": str(envelope["timestamp"])}
        if target.hmac_key is not None:
            headers["X-Webhook-Hmac"] = sign(target.hmac_key, body)
            headers["X-Webhook-Hmac-Algorithm"] = "sha512"
        return body, headers

    def cloud_headers(self, target: WebhookTarget, body: bytes) -> dict[str, str]:
        secret = target.hmac_key or os.environ.get(APP_SECRET_ENV)
        if not secret:
            # sent unsigned, as a misconfigured rehearsal would be: the receiver refuses it
            log.warning("sandbox Cloud webhook to %s unsigned: set %s", target.url, APP_SECRET_ENV)
            return {}
        return {"X-Hub-Signature-256": sign_cloud(secret, body)}

    def _waha(self, target: WebhookTarget, session: str, drop: Drop | None
              ) -> tuple[str, bytes, dict[str, str]]:
        now_ms = int(time.time() * 1000)
        status = "WORKING" if drop is None else drop.waha_status
        envelope = {
            "id": f"evt_{ulid()}",
            "timestamp": now_ms,
            "event": "session.status",
            "session": session,
            "metadata": {},
            "me": {"id": f"{own_number(session)}@c.us", "pushName": "Sandbox"},
            "payload": {"name": session, "status": status,
                        "statuses": self.faults.statuses(session), "data": None},
            "engine": "NOWEB",
            "environment": _ENVIRONMENT,
        }
        return "session.status", *self.waha_signed(target, envelope)

    def _evolution(self, target: WebhookTarget, session: str, drop: Drop | None
                   ) -> tuple[str, bytes, dict[str, str]]:
        wuid = f"{own_number(session)}@s.whatsapp.net"
        data: dict[str, Any]
        if drop is None:
            data = {"instance": session, "wuid": wuid, "profileName": "Sandbox",
                    "profilePictureUrl": None, "state": "open", "statusReason": 200}
        else:
            # Evolution emits "close" only for closes it will not retry (logged out: 401).
            reason = 401 if drop.evolution_state == "close" else 200
            data = {"instance": session, "state": drop.evolution_state, "statusReason": reason}
        envelope = {
            "event": "connection.update",
            "instance": session,
            "data": data,
            "destination": target.url,
            "date_time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "sender": wuid,
            "server_url": self.server_url,
            "apikey": None,
        }
        return "connection.update", json.dumps(envelope).encode(), {}

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._deliver(*item)

    def _deliver(self, target: WebhookTarget, event: str, body: bytes,
                 headers: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(
            target.url, data=body, method="POST",
            headers={"Content-Type": "application/json", **headers})
        entry: dict[str, Any] = {"target": target.id, "event": event, "at": time.time()}
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                entry["status"] = answer.status
        except urllib.error.HTTPError as exc:  # the receiver answered, with a refusal
            entry["status"] = exc.code
            exc.close()
            log.warning("sandbox webhook %s to %s answered %s", event, target.url, exc.code)
        except Exception as exc:  # any failure is logged and dropped: webhooks are best effort
            entry["error"] = f"{type(exc).__name__}: {exc}"
            log.warning("sandbox webhook %s to %s failed: %s", event, target.url, exc)
        self._log.append(entry)
        return entry
