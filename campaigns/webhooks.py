"""Webhook receiver: gateways push session status changes and people's opt-outs.

Free of HTTP plumbing: the web service (:mod:`campaigns.web`, FastAPI under uvicorn) hands it
each delivery's path, headers and raw body.

- ``POST /webhooks/waha``: WAHA ``session.status`` events, and ``message`` events whose text is
  an opt-out keyword. When ``WAHA_WEBHOOK_HMAC_KEY`` is set, ``X-Webhook-Hmac`` must be the
  HMAC-SHA512 hex of the raw body, else 401.
- ``POST /webhooks/evolution`` (and ``/webhooks/evolution/<event>``, Evolution's "webhook by
  events" URLs): ``connection.update`` events (state ``open`` is a reconnect) and
  ``messages.upsert`` opt-out keywords. Evolution signs nothing.
- ``GET /webhooks/cloud``: Meta's verification handshake (``hub.mode=subscribe``,
  ``hub.verify_token`` equal to ``CLOUD_WEBHOOK_VERIFY_TOKEN``: the ``hub.challenge`` is echoed;
  anything else 403). ``POST /webhooks/cloud``: ``messages`` opt-out keywords and
  ``user_preferences`` marketing stop/resume, only with ``X-Hub-Signature-256: sha256=<hex>``,
  the HMAC-SHA256 of the raw body with ``META_APP_SECRET`` (missing, wrong or no secret set:
  401, nothing changed; an unsigned Cloud webhook is never trusted).

The gateway's session name is mapped to ours by the option ``session`` (WAHA; else our name),
``instance`` (Evolution) or ``phone_number_id`` (Cloud API). A reconnect of a known session
enqueues ``campaigns.resume_session(session, reason)`` by name (:mod:`campaigns.dispatch`); the
recovery manager applies the settle delay, so the receiver answers at once. Opt-outs, parsed by
:mod:`campaigns.inbound`, are stored global (the person revokes consent for the business,
whichever of our numbers they answered) with the session that received them, even when none of
ours maps to the gateway's name: the person's word does not depend on our configuration.
Delivery receipts (WAHA ``message.ack``, Evolution ``messages.update``, Cloud ``statuses``;
parsed by :mod:`campaigns.receipts`) are stored in one transaction per delivery by
``apply_receipts``, behind the same signature checks. Events we do not act on are answered
200 and ignored (gateways retry non-2xx answers, which helps nobody then). A store or broker
outage is answered 503 so the gateway retries: a 200 is only given once the opt-out or the
receipts are stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from campaigns import metrics, receipts
from campaigns.domain import SenderSession
from campaigns.errors import StoreUnavailable
from campaigns.groupcommit import GroupCommit
from campaigns.inbound import (
    META_RESUME_SOURCES,
    WAHA_MESSAGE_EVENTS,
    OptOutEvent,
    cloud_events,
    evolution_events,
    keywords_from,
    waha_events,
)
from campaigns.masking import mask_phone
from campaigns.store import CampaignStateManager
from campaigns.store.receipts import ReceiptResult

log = logging.getLogger("campaigns.webhooks")

MAX_BODY_BYTES = 1_000_000
"""Largest event accepted: status events are a few hundred bytes; anything this big is not one."""
HMAC_KEY_ENV = "WAHA_WEBHOOK_HMAC_KEY"
APP_SECRET_ENV = "META_APP_SECRET"
VERIFY_TOKEN_ENV = "CLOUD_WEBHOOK_VERIFY_TOKEN"
WAHA_CONNECTED = "WORKING"
EVOLUTION_CONNECTED = "open"

Resume = Callable[[str, str], None]
"""(our session name, reason) → enqueues ``campaigns.resume_session``."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What the receiver answers one delivery."""

    status: int
    body: Mapping[str, Any] | str
    """JSON, or plain text (the echoed challenge of Meta's handshake)."""


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


def cloud_signature(app_secret: str, body: bytes) -> str:
    """Meta's ``X-Hub-Signature-256``: ``sha256=`` and the HMAC-SHA256 hex of the raw body
    with the app secret (gateways.md §1.7: always over the bytes received, never a re-dump)."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


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


_NAME_OPTIONS = {"waha": "session", "evolution": "instance", "cloud-api": "phone_number_id"}
_KINDS = {"waha": "waha", "evolution": "evolution", "cloud": "cloud-api"}
"""Webhook dialect → the gateway kind of the sessions it speaks for."""


def gateway_name(session: SenderSession) -> str:
    """The name the session's gateway uses for it in its events."""
    option = _NAME_OPTIONS.get(session.gateway)
    return session.options.get(option, session.name) if option else session.name


def _event(payload: Mapping[str, Any]) -> str:
    """The event's name, Evolution's ``MESSAGES_UPDATE`` spelled ``messages.update``."""
    return str(payload.get("event", "")).lower().replace("_", ".")


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}  # header names ignore case


class WebhookReceiver:
    """Turns gateway deliveries into session checks, resumes and opt-outs. Free of HTTP
    plumbing, so :meth:`handle` (POST) and :meth:`verify` (GET) are what the server calls."""

    def __init__(
        self,
        store: CampaignStateManager,
        resume: Resume,
        *,
        hmac_key: str | None = None,
        app_secret: str | None = None,
        verify_token: str | None = None,
        keywords: frozenset[str] | None = None,
    ) -> None:
        self.store = store
        self.resume = resume
        self.hmac_key = hmac_key or None
        self.app_secret = app_secret or None
        self.verify_token = verify_token or None
        self.keywords = keywords if keywords is not None else keywords_from(None)
        self._group: GroupCommit[receipts.Receipt, ReceiptResult] = GroupCommit(
            lambda found: self.store.apply_receipts(found)
        )

    @classmethod
    def from_env(
        cls,
        store: CampaignStateManager,
        resume: Resume,
        env: Mapping[str, str],
        *,
        keywords: frozenset[str] | None = None,
    ) -> WebhookReceiver:
        """A receiver with the secrets of ``env`` (the service reads them once, at start)."""
        return cls(
            store,
            resume,
            hmac_key=env.get(HMAC_KEY_ENV),
            app_secret=env.get(APP_SECRET_ENV),
            verify_token=env.get(VERIFY_TOKEN_ENV),
            keywords=keywords,
        )

    def describe(self) -> str:
        """What is checked, for the start-up line (never a secret's value)."""
        signed = "HMAC verified" if self.hmac_key else f"unsigned ({HMAC_KEY_ENV} not set)"
        cloud = "verified" if self.app_secret else f"refused until {APP_SECRET_ENV} is set"
        return f"/webhooks/waha ({signed}), /webhooks/evolution and /webhooks/cloud ({cloud})"

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Answer one ``POST`` to ``path``."""
        route = path.split("?", 1)[0].rstrip("/")
        if route == "/webhooks/waha":
            dialect = "waha"
            if not self._waha_signed(headers, body):
                log.warning("WAHA webhook refused: missing or wrong X-Webhook-Hmac")
                return Answer(401, {"error": "bad signature"})
        elif route == "/webhooks/evolution" or route.startswith("/webhooks/evolution/"):
            dialect = "evolution"  # "webhook by events" appends the event: /messages-upsert
        elif route == "/webhooks/cloud":
            dialect = "cloud"
            refusal = self._cloud_refusal(headers, body)
            if refusal is not None:
                return refusal
        else:
            return Answer(404, {"error": "unknown webhook path"})
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return Answer(400, {"error": "the body is not JSON"})
        if not isinstance(payload, Mapping):
            return Answer(200, {"ignored": "not an event object"})
        try:
            return self._dispatch(dialect, payload)
        except StoreUnavailable as exc:
            log.warning("webhook %s not applied: %s", dialect, exc)
            return Answer(503, {"error": "database unavailable; retry"})

    def verify(self, path: str) -> Answer:
        """Answer Meta's ``GET`` verification handshake of ``/webhooks/cloud``."""
        route, _, query = path.partition("?")
        if route.rstrip("/") != "/webhooks/cloud":
            return Answer(404, {"error": "GET is only Meta's handshake of /webhooks/cloud"})
        params = {name: values[0] for name, values in parse_qs(query).items()}
        if self.verify_token is None:
            log.warning("Cloud webhook handshake refused: set %s", VERIFY_TOKEN_ENV)
            return Answer(403, {"error": f"{VERIFY_TOKEN_ENV} is not set"})
        given = params.get("hub.verify_token", "")
        if params.get("hub.mode") != "subscribe" or not hmac.compare_digest(
            given.encode(), self.verify_token.encode()
        ):
            log.warning("Cloud webhook handshake refused: wrong hub.mode or hub.verify_token")
            return Answer(403, {"error": "verification refused"})
        return Answer(200, params.get("hub.challenge", ""))

    def _dispatch(self, dialect: str, payload: Mapping[str, Any]) -> Answer:
        found = receipts.PARSERS[dialect](payload)
        if dialect == "cloud":
            optouts = self._optouts(dialect, cloud_events(payload, self.keywords))
            if not found:
                return optouts
            # a Cloud delivery may batch texts and statuses: both are stored before the 200
            body = optouts.body if isinstance(optouts.body, Mapping) else {}
            stored = {} if "ignored" in body else dict(body)
            return Answer(200, {**stored, **self._receipts(dialect, found)})
        if found or _event(payload) in receipts.RECEIPT_EVENTS[dialect]:
            return Answer(200, self._receipts(dialect, found))
        if dialect == "waha":
            if payload.get("event") in WAHA_MESSAGE_EVENTS:
                return self._optouts(dialect, waha_events(payload, self.keywords))
            event = parse_waha(payload)
        else:
            if str(payload.get("event", "")).lower().replace("_", ".") == "messages.upsert":
                return self._optouts(dialect, evolution_events(payload, self.keywords))
            event = parse_evolution(payload)
        if event is None:
            return Answer(200, {"ignored": "not a session status or opt-out event"})
        return self._apply(event)

    def _receipts(self, dialect: str, found: list[receipts.Receipt]) -> dict[str, int]:
        """Store a delivery's receipts, committed before the answer: in one transaction with
        the receipts of deliveries arriving meanwhile (:mod:`campaigns.groupcommit`); a store
        error propagates (503, the gateway sends them again)."""
        outcome = self._group.submit(found)
        for receipt in found:
            metrics.receipt_applied(receipt.status, dialect)
        if outcome.shared:  # the counts are the group's: say only what this delivery held
            return {"receipts_stored": len(found)}
        result = outcome.result
        return {"receipts_applied": result.applied, "receipts_unchanged": result.unchanged,
                "receipts_pending": result.pending}  # fmt: skip

    def _waha_signed(self, headers: Mapping[str, str], body: bytes) -> bool:
        if self.hmac_key is None:
            return True
        given = _headers(headers).get("x-webhook-hmac") or ""
        return hmac.compare_digest(given.strip().lower(), waha_signature(self.hmac_key, body))

    def _cloud_refusal(self, headers: Mapping[str, str], body: bytes) -> Answer | None:
        if self.app_secret is None:
            log.error(
                "Cloud webhook refused: set %s to the Meta app's secret (an unsigned Cloud "
                "webhook is never trusted)",
                APP_SECRET_ENV,
            )
            return Answer(401, {"error": f"{APP_SECRET_ENV} is not set"})
        given = (_headers(headers).get("x-hub-signature-256") or "").strip().lower()
        if not hmac.compare_digest(given, cloud_signature(self.app_secret, body)):
            log.warning("Cloud webhook refused: missing or wrong X-Hub-Signature-256")
            return Answer(401, {"error": "bad signature"})
        return None

    def _ours(self, dialect: str, gateway_session: str) -> list[str]:
        kind = _KINDS[dialect]
        return sorted(
            s.name
            for s in self.store.list_sessions()
            if s.gateway == kind and gateway_name(s) == gateway_session
        )

    def _optouts(self, dialect: str, events: list[OptOutEvent]) -> Answer:
        """Store every opt-out (a stop adds a global entry, Meta's resume removes Meta's own
        entries); any store error propagates, so the gateway is answered 503 and retries the
        whole delivery, which the store verbs make harmless to repeat."""
        if not events:
            return Answer(200, {"ignored": "no opt-out in this event"})
        added = removed = 0
        for event in events:
            ours = self._ours(dialect, event.gateway_session)
            via = ours[0] if ours else None
            where = via or f"{dialect} {event.gateway_session!r} (no session of ours)"
            phone, what = mask_phone(event.phone), f"{event.source} {event.detail!r}, via {where}"
            if event.action == "stop":
                new = self.store.add_optout(
                    event.phone, source=event.source, detail=event.detail, via_session=via
                )
                added += new
                log.info("opt-out of %s %s (%s)", phone, "recorded" if new else "on file", what)
            else:
                removed += (count := self.store.remove_optout(
                    event.phone, sources=META_RESUME_SOURCES, before=event.at))  # fmt: skip
                log.info(
                    "%s resumed marketing (%s): %d Meta opt-out(s) removed", phone, what, count
                )
        return Answer(200, {"optouts_added": added, "optouts_removed": removed})

    def _apply(self, event: StatusEvent) -> Answer:
        ours = self._ours(event.dialect, event.gateway_session)
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
