"""Evolution API v2 adapter (EvolutionAPI/evolution-api; docs/gateways.md §3).

Evolution has no "not connected" guard: a closed connection surfaces as a Baileys error whose
status and shape vary by version (§3.4). So the adapter looks at the *text* first:

* "Connection Closed" anywhere in ``response.message`` (string, list, nested), whatever the
  status → SESSION_DOWN, ``disconnected``.
* "Cannot read properties of undefined" (the instance is not loaded in memory) → SESSION_DOWN,
  ``disconnected``.
* A 400 whose message lists ``{"exists": false, ...}`` → RECIPIENT_FAILED (not on WhatsApp).

=================================================  ============================================
answer                                             outcome
=================================================  ============================================
"Connection Closed", instance not loaded, 404      SESSION_DOWN, ``disconnected``: the watcher
                                                   resumes once the state is ``open`` again
400 from schema validation                         SESSION_DOWN, ``blocked`` (configuration)
401/403 (API key refused)                          SESSION_DOWN, ``blocked`` (token)
"error 463" (WhatsApp's reach-out timelock)        SESSION_DOWN, ``blocked``
a template message                                 SESSION_DOWN, ``blocked`` (no template)
400 listing ``exists: false``                      RECIPIENT_FAILED
429                                                THROTTLED
other 400, 5xx                                     TRANSIENT (504: AMBIGUOUS)
=================================================  ============================================

``blocked`` stops wait for an operator: the connection state stays ``open`` through them, so a
resume on the health check would send the same refused request again at every watcher cycle.

Media (:class:`campaigns.media.MediaSpec`) goes by URL through ``POST
/message/sendMedia/{instance}`` with the six fields Evolution's OpenAPI document requires:
``number``, ``mediatype`` (image, document, video, audio: the source's ``mediaMessageSchema``),
``mimetype``, ``caption`` (the text, empty for none; audio always empty: WhatsApp's audio
message has no caption), ``media`` (the URL) and ``fileName``; ``delay`` as for a text. Its
answers are read like sendText's.

Decisions where the contract leaves a choice:

* A 400 from schema validation ("requires property", "is required": for example a v1 server
  receiving the v2 body) is SESSION_DOWN: every recipient would fail the same way, so the
  campaign stops with the reason instead of burning the list.
* Any other 400 is TRANSIENT: inside the send's try block Evolution turns *every* Baileys
  error into a 400 (``BadRequestException(error.toString())``), and most of those (timeouts,
  stream errors) are not about the recipient.
* One Baileys error is not transient: WhatsApp's error 463 (the reach-out timelock WAHA
  reports, §2.4) is WhatsApp refusing the number, whatever relays it. Its text through
  Evolution is UNCONFIRMED; a 4xx/5xx whose message names "error 463" is read as it.
* Other 5xx are TRANSIENT; a 504 from a proxy in front is AMBIGUOUS (see ``http.py``).
* Option ``typing`` (default ``false``): when the message asks for ``typing_s`` > 0, the v2
  body carries ``delay`` (integer ms, at most :data:`MAX_TYPING_S`): Evolution then shows the
  presence "composing" to the recipient and waits that long inside the request before sending
  (§3.2: "``delay`` (ms of typing first)"; the v2 OpenAPI: "Presence time in milliseconds
  before sending message"). v1's ``options: {delay, presence: "composing"}`` is not used: a v2
  server refuses it, like every v1 body. The request then takes ``typing_s`` longer, so with
  ``typing`` on the adapter's read timeout is the configured one plus :data:`MAX_TYPING_S` (the
  HTTP client has one timeout per adapter, not per call). Off by default: Evolution's delay
  holds a sending thread and the gateway's request for the whole wait.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from campaigns.domain import StopKind
from campaigns.gateways.base import (
    GatewayConfig,
    OutcomeKind,
    OutgoingMessage,
    SendOutcome,
    SessionHealth,
)
from campaigns.gateways.http import (
    HttpAnswer,
    HttpClient,
    digits,
    redact,
    session_down,
    status_fallback,
)
from campaigns.gateways.waha import parse_bool_option
from campaigns.masking import mask_phone
from campaigns.media import file_name

logger = logging.getLogger(__name__)

_CLOSED = "connection closed"
_NOT_LOADED = "cannot read properties of undefined"
_SCHEMA_ERROR = re.compile(r"requires property|is required|is not allowed|must be", re.I)
_BAN = re.compile(r"\berror 463\b", re.I)

MAX_TYPING_S = 20.0
"""The longest ``delay`` sent to Evolution (and what the read timeout grows by with typing on)."""


class EvolutionGateway:
    """Sends through ``POST {base_url}/message/sendText/{instance}`` with the ``apikey``
    header."""

    kind = "evolution"

    def __init__(self, config: GatewayConfig) -> None:
        self.instance = config.options.get("instance") or config.session_name
        self._path = quote(self.instance, safe="")
        self.typing = parse_bool_option(config.options.get("typing", "false"), "typing")
        if self.typing:  # the request waits ``delay`` before Evolution answers
            config = dataclasses.replace(config, read_timeout=config.read_timeout + MAX_TYPING_S)
        headers = {"apikey": config.token} if config.token else {}
        self._http = HttpClient(config, headers)

    def send(self, message: OutgoingMessage) -> SendOutcome:
        """Send one text or media message and classify Evolution's answer."""
        if message.text is None and message.media is None:
            # Every recipient would fail alike: stop the campaign, do not fail the list.
            outcome = SendOutcome(
                OutcomeKind.SESSION_DOWN,
                error_code="unsupported_message",
                error_message="Evolution sends no templates; this campaign has a template",
                stop=StopKind.BLOCKED,
            )
        else:
            route, body = request_body(message)
            if self.typing and message.typing_s > 0:
                body["delay"] = round(min(message.typing_s, MAX_TYPING_S) * 1000)
            answer = self._http.request(
                "POST", f"/message/{route}/{self._path}", json_body=body, sends=True, paced=True
            )
            outcome = answer if isinstance(answer, SendOutcome) else classify_send(answer)
        logger.debug(
            "evolution %s: %s -> %s %s",
            self.instance,
            mask_phone(message.to),
            outcome.kind,
            outcome.error_code or "",
        )
        return outcome

    def health(self) -> SessionHealth:
        """``GET /instance/connectionState/{instance}``: connected only when ``open``."""
        answer = self._http.request("GET", f"/instance/connectionState/{self._path}", sends=False)
        if isinstance(answer, SendOutcome):
            return SessionHealth(False, "unreachable", answer.error_message or "")
        if answer.status in (401, 403):
            return SessionHealth(False, "unauthorized", "Evolution refused the API key", True)
        if answer.status == 404:
            return SessionHealth(False, "not_found", f"no Evolution instance {self.instance!r}")
        if not answer.ok:
            return SessionHealth(False, f"HTTP {answer.status}", _describe(answer))
        body = answer.body if isinstance(answer.body, Mapping) else {}
        instance = body.get("instance")
        state = instance.get("state") if isinstance(instance, Mapping) else None
        if not isinstance(state, str) or not state:
            # Read through optional chaining: the instance exists but is not loaded.
            return SessionHealth(False, "missing", "the instance is not loaded in Evolution")
        return SessionHealth(state == "open", state)

    def close(self) -> None:
        """Release HTTP connections."""
        self._http.close()


def request_body(message: OutgoingMessage) -> tuple[str, dict[str, Any]]:
    """The route (``sendText`` or ``sendMedia``) and v2 body that send ``message``, without the
    typing ``delay``."""
    media = message.media
    if media is None:
        return "sendText", {"number": digits(message.to), "text": message.text}
    caption = "" if media.kind == "audio" else (message.text or "")
    return "sendMedia", {
        "number": digits(message.to),
        "mediatype": media.kind,
        "mimetype": media.mime,
        "caption": caption,
        "media": media.url,
        "fileName": file_name(media),
    }


def _messages(answer: HttpAnswer) -> Any:
    body = answer.body
    if isinstance(body, Mapping):
        response = body.get("response")
        if isinstance(response, Mapping) and "message" in response:
            return response["message"]
        if "message" in body:
            return body["message"]
    return answer.text


def _texts(value: Any) -> Iterator[str]:
    """Every string inside a message that may be a string, a list or nested objects."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def _not_on_whatsapp(value: Any) -> bool:
    return isinstance(value, list) and any(
        isinstance(item, Mapping) and item.get("exists") is False for item in value
    )


def _describe(answer: HttpAnswer) -> str:
    texts = list(_texts(_messages(answer)))
    return redact("; ".join(texts)) if texts else f"HTTP {answer.status}"


def classify_send(answer: HttpAnswer) -> SendOutcome:
    """Turn an Evolution sendText answer into an outcome (see the module docstring)."""
    if answer.ok:
        return SendOutcome(
            OutcomeKind.SENT, message_id=_key_id(answer.body), http_status=answer.status
        )
    message = _messages(answer)
    lowered = [text.lower() for text in _texts(message)]
    detail = _describe(answer)
    reason: str | None = None
    stop = StopKind.DISCONNECTED
    if any(_CLOSED in text for text in lowered):
        reason = f"the WhatsApp connection of the instance is closed: {detail}"
    elif any(_NOT_LOADED in text for text in lowered):
        reason = f"the instance is not loaded in Evolution (restart or reconnect it): {detail}"
    elif answer.status == 404:
        reason = f"the Evolution instance does not exist: {detail}"
    elif any(_BAN.search(text) for text in lowered):
        reason = (
            f"WhatsApp refused to send (error 463: reach-out timelock, ban or reputation "
            f"block): {detail}; check the number before resuming"
        )
        stop = StopKind.BLOCKED
    elif answer.status == 400 and _not_on_whatsapp(message):
        return SendOutcome(
            OutcomeKind.RECIPIENT_FAILED,
            error_code="not_on_whatsapp",
            error_message="the number is not on WhatsApp",
            http_status=400,
        )
    elif answer.status == 400 and any(_SCHEMA_ERROR.search(text) for text in lowered):
        reason = f"Evolution rejected the request body (v1 server?): {detail}"
        stop = StopKind.BLOCKED
    if reason is not None:
        return session_down(answer, reason, stop=stop)
    if answer.status in (401, 403):
        return session_down(
            answer,
            "Evolution refused the API key; fix the session's token",
            stop=StopKind.BLOCKED,
            auth=True,
        )
    if answer.status == 400:
        return SendOutcome(
            OutcomeKind.TRANSIENT, error_code="400", error_message=detail, http_status=400
        )
    fallback = status_fallback(answer, sends=True)
    if fallback.kind is OutcomeKind.TRANSIENT:
        return SendOutcome(
            OutcomeKind.TRANSIENT,
            error_code=fallback.error_code,
            error_message=detail,
            retry_after=fallback.retry_after,
            http_status=answer.status,
        )
    return fallback


def _key_id(body: Any) -> str | None:
    if isinstance(body, Mapping):
        key = body.get("key")
        if isinstance(key, Mapping) and isinstance(key.get("id"), str) and key["id"]:
            return str(key["id"])
    return None
