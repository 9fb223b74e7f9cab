"""WAHA adapter (devlikeapro/waha; docs/gateways.md §2).

=====================================================  ======================================
answer                                                 outcome (level, kind)
=====================================================  ======================================
2xx                                                    SENT
422 with the session's status (not WORKING)            SESSION_DOWN, ``disconnected``
404 (no such session)                                  SESSION_DOWN, ``disconnected``
422 without a status (2024 core: only ``default``)     SESSION_DOWN, ``blocked`` (config)
400 (request validation)                               SESSION_DOWN, ``blocked`` (config)
401/403 (API key refused)                              SESSION_DOWN, ``blocked`` (token)
500 naming error 463 (reach-out timelock, ban)         SESSION_DOWN, ``blocked``
500 naming error 475 (capping until the cycle end)     SESSION_DOWN, ``limited``, retry_after
                                                       = seconds to the cycle end
a template message                                     SESSION_DOWN, ``blocked`` (no template)
"... available only in Plus version" (media on Core)   SESSION_DOWN, ``blocked`` (any status)
check-exists ``numberExists: false``                   RECIPIENT_FAILED (recipient level)
429                                                    THROTTLED (session level, no stop)
other 5xx, connect errors                              TRANSIENT (504, read timeout: AMBIGUOUS)
typing calls (sendSeen/startTyping/stopTyping): 422    SESSION_DOWN, ``disconnected`` (nothing
with the session's status                              sent yet); any other failure: ignored
=====================================================  ======================================

Every answer is about the session except check-exists' ``numberExists: false`` (the
recipient's). ``disconnected`` stops are resumed by the session watcher once
``GET /api/sessions/{session}`` says WORKING again (or by a ``session.status`` webhook).
``blocked`` ones wait for an operator: the status stays WORKING all through a timelock or a
version mismatch, so resuming on it would send the same refused request again at every watcher
cycle — for 463, hitting WhatsApp on a number it has just restricted. :meth:`WahaGateway.health`
therefore reports a timelock or a capping the session info shows as ``SessionHealth.stop``
(``blocked``; ``limited`` with ``until`` = the cycle end), connected staying True while WORKING
(:mod:`campaigns.gateways.waha_limits`). Nothing here ever restarts, stops or starts a session:
WAHA's docs say a restart does not lift a timelock, and an unasked restart drops a connection.

Media (:class:`campaigns.media.MediaSpec`) goes by URL through the endpoint WAHA documents for
its kind (waha-docs, content/docs/how-to/send-messages/): image ``POST /api/sendImage``,
document ``/api/sendFile`` (``caption`` and ``file: {mimetype, url, filename}``), video
``/api/sendVideo`` (plus ``asNote: false``, ``convert: false``: the campaign's check kept it
to mp4), audio ``/api/sendVoice`` (no caption: ``MessageVoiceRequest`` has none; OGG/Opus as
``audio/ogg; codecs=opus``, any other audio type with ``convert: true``, WAHA's documented way
to have it converted). Only the send itself is paced; typing happens before it as for a text.
These endpoints are WAHA Plus features: WAHA Core answers ``AvailableInPlusVersion`` (a 422 in
the 2024 core, an Error, so a 500, in newer ones): SESSION_DOWN ``blocked`` whatever the
status, since every recipient would get the same answer until the operator changes WAHA.

Decisions where the contract is UNCONFIRMED or leaves a choice:

* The 201 body is the engine's raw message and may be empty: any 2xx is SENT, and the id is
  taken from whichever shape is there (NOWEB ``key.id``, WEBJS ``id._serialized``/``id.id``,
  the documented ``WAMessage`` ``id`` string), else ``None``.
* Any 422 is SESSION_DOWN: WAHA answers 422 when the session is not WORKING after its 5 s
  wait (the reason carries the status: a reconnect fixes it) and, in the 2024 core, for a
  session name other than ``default`` (no status: only a configuration change fixes it).
* A 500 whose exception mentions error 463 is SESSION_DOWN: that is WhatsApp refusing the
  number (ban, reputation block or reach-out timelock, §2.4); sending on would make it worse.
  Any other 500 is TRANSIENT (an engine error before the send).
* Error 475 (capping until the end of a cycle) is read like 463 (a 500 whose text names the
  error) and stops the campaign as ``limited``: ``retry_after`` is the time left to the cycle
  end the body gives (``cycleEndTimestamp``, else ``cycleEnd``; their shape is UNCONFIRMED, see
  :mod:`campaigns.gateways.waha_limits`), else ``Retry-After``, else :data:`CAPPING_WAIT_S` —
  long, because resuming early only spends a call on a number that is still capped.
* A 400 is SESSION_DOWN: it comes from WAHA's request validation, so the body shape does not
  match the WAHA version, and every recipient would fail the same way.
* sendText does not reject numbers that are not on WhatsApp (§2.6). With option
  ``check_exists=true`` the adapter asks ``/api/contacts/check-exists`` first, fails the
  recipient when ``numberExists`` is false, and sends to the ``chatId`` WAHA returns (it fixes
  Brazil's extra 9).
* Option ``typing`` (default ``true``): when the message asks for ``typing_s`` > 0, the send is
  WAHA's "How to Avoid Blocking" sequence: ``POST /api/sendSeen``, ``POST /api/startTyping``,
  a wait of ``typing_s``, ``POST /api/stopTyping`` (each ``{session, chatId}``: WAHA's
  ``ChatRequest``/``SendSeenRequest``, src/structures/chatting.dto.ts; startTyping and
  stopTyping answer ``{"result": true}``, sendSeen's answer is the engine's and is not read),
  then sendText. Only sendText is paced (the gap holds on the wire) and only it can send. The
  typing calls never fail the message: any failure is logged and the send goes on — except a
  422 naming the session's status, which would make sendText wait 5 s for the same 422:
  SESSION_DOWN ``disconnected`` at once, nothing having been sent. WAHA's sources do not say
  whether the typing endpoints wait for WORKING like sendText (the 2024 controller takes the
  session without the wait); reading their 422 when it comes costs nothing.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from campaigns.domain import StopKind
from campaigns.errors import ConfigurationError
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
from campaigns.gateways.waha_limits import CAPPING_WAIT_S as CAPPING_WAIT_S  # re-exported
from campaigns.gateways.waha_limits import capping_reason, capping_wait, session_health
from campaigns.masking import mask_phone
from campaigns.media import file_name

logger = logging.getLogger(__name__)

_BAN = re.compile(r"\b463\b")
_CAPPED = re.compile(r"\b475\b")
_PLUS_ONLY = re.compile(r"available only in Plus", re.I)
MEDIA_PATHS = {
    "image": "/api/sendImage",
    "document": "/api/sendFile",
    "video": "/api/sendVideo",
    "audio": "/api/sendVoice",
}
_TYPING_CALLS = ("/api/sendSeen", "/api/startTyping")


def parse_bool_option(value: str, name: str) -> bool:
    """``"true"``/``"false"`` (any case) → bool; anything else is a configuration error."""
    lowered = value.strip().lower()
    if lowered not in {"true", "false"}:
        raise ConfigurationError(f"option {name} must be true or false", value=value)
    return lowered == "true"


class WahaGateway:
    """Sends through ``POST {base_url}/api/sendText`` with the ``X-Api-Key`` header."""

    kind = "waha"
    typing_leads = True
    """Typing happens in calls before sendText (the lane shortens its gap by it)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.session = config.options.get("session") or config.session_name
        self.check_exists = parse_bool_option(
            config.options.get("check_exists", "false"), "check_exists"
        )
        self.typing = parse_bool_option(config.options.get("typing", "true"), "typing")
        headers = {"X-Api-Key": config.token} if config.token else {}
        self._http = HttpClient(config, headers)

    def send(self, message: OutgoingMessage) -> SendOutcome:
        """Send one text or media message (optionally after check-exists) and classify the
        answer."""
        if message.text is None and message.media is None:
            return _unsupported()
        chat_id: str | SendOutcome = f"{digits(message.to)}@c.us"
        if self.check_exists:
            chat_id = self._check_exists(message.to)
        if not isinstance(chat_id, SendOutcome) and self.typing and message.typing_s > 0:
            chat_id = self._type(chat_id, message.typing_s)
        if isinstance(chat_id, SendOutcome):
            outcome = chat_id
        else:
            path, body = request_body(self.session, chat_id, message)
            # the send itself is paced (not check-exists): the gap holds when it leaves
            answer = self._http.request("POST", path, json_body=body, sends=True, paced=True)
            outcome = answer if isinstance(answer, SendOutcome) else classify_send(answer)
        logger.debug(
            "waha %s: %s -> %s %s",
            self.session,
            mask_phone(message.to),
            outcome.kind,
            outcome.error_code or "",
        )
        return outcome

    def _type(self, chat_id: str, seconds: float) -> str | SendOutcome:
        """Seen, typing for ``seconds``, stop typing: the chatId to send to, or the outcome
        that ends this send (the session is not WORKING). Not paced; never sends."""
        body = {"session": self.session, "chatId": chat_id}
        for path in _TYPING_CALLS:
            stopped = self._presence(path, body)
            if stopped is not None:
                return stopped
        time.sleep(seconds)
        stopped = self._presence("/api/stopTyping", body)
        return chat_id if stopped is None else stopped

    def _presence(self, path: str, body: Mapping[str, Any]) -> SendOutcome | None:
        answer = self._http.request("POST", path, json_body=body, sends=False)
        if isinstance(answer, HttpAnswer) and answer.ok:
            return None
        if isinstance(answer, HttpAnswer) and answer.status == 422:
            stopped = _session_down(answer, _message(answer))
            if stopped is not None and stopped.stop is StopKind.DISCONNECTED:
                return stopped
        detail = answer.error_message if isinstance(answer, SendOutcome) else _message(answer)
        logger.info("waha %s: %s failed (%s); sending anyway", self.session, path, detail)
        return None

    def _check_exists(self, number: str) -> str | SendOutcome:
        """The chatId to send to, or the outcome that ends this send."""
        answer = self._http.request(
            "GET",
            "/api/contacts/check-exists",
            params={"phone": digits(number), "session": self.session},
            sends=False,
        )
        if isinstance(answer, SendOutcome):
            return answer
        if not answer.ok:
            return classify_send(answer, sends=False)
        body = answer.body if isinstance(answer.body, Mapping) else {}
        if body.get("numberExists") is False:
            return SendOutcome(
                OutcomeKind.RECIPIENT_FAILED,
                error_code="not_on_whatsapp",
                error_message="the number is not on WhatsApp (check-exists)",
                http_status=answer.status,
            )
        chat_id = body.get("chatId")
        return chat_id if isinstance(chat_id, str) and chat_id else f"{digits(number)}@c.us"

    def health(self) -> SessionHealth:
        """``GET /api/sessions/{session}``: connected only when the status is WORKING, with the
        timelock or capping it reports as ``stop``/``until``."""
        answer = self._http.request(
            "GET", f"/api/sessions/{quote(self.session, safe='')}", sends=False
        )
        if isinstance(answer, SendOutcome):
            return SessionHealth(False, "UNREACHABLE", answer.error_message or "")
        if answer.status in (401, 403):
            return SessionHealth(False, "UNAUTHORIZED", "WAHA refused the API key", True)
        if answer.status == 404:
            return SessionHealth(False, "NOT_FOUND", f"WAHA has no session {self.session!r}")
        body = answer.body if isinstance(answer.body, Mapping) else {}
        status = body.get("status")
        if answer.ok and isinstance(status, str):
            return session_health(status, body)
        return SessionHealth(False, f"HTTP {answer.status}", _message(answer))

    def close(self) -> None:
        """Release HTTP connections."""
        self._http.close()


def request_body(
    session: str, chat_id: str, message: OutgoingMessage
) -> tuple[str, dict[str, Any]]:
    """The path and body of the call that sends ``message``: sendText, or the media endpoint of
    its kind (see the module docstring)."""
    media = message.media
    if media is None:
        return "/api/sendText", {"session": session, "chatId": chat_id, "text": message.text}
    file: dict[str, Any] = {"mimetype": media.mime, "url": media.url}
    body: dict[str, Any] = {"session": session, "chatId": chat_id, "file": file}
    if media.kind == "audio":
        opus = media.mime == "audio/ogg"
        if opus:
            file["mimetype"] = "audio/ogg; codecs=opus"
        body["convert"] = not opus
        return MEDIA_PATHS["audio"], body
    file["filename"] = file_name(media)
    if message.text:
        body["caption"] = message.text
    if media.kind == "video":
        body["asNote"] = False
        body["convert"] = False
    return MEDIA_PATHS[media.kind], body


def _unsupported() -> SendOutcome:
    # A template cannot go through WAHA; every recipient would fail alike, so stop the
    # campaign rather than fail the list.
    return SendOutcome(
        OutcomeKind.SESSION_DOWN,
        error_code="unsupported_message",
        error_message="WAHA sends no templates; this campaign has a template message",
        stop=StopKind.BLOCKED,
    )


def message_id(body: Any) -> str | None:
    """The message id in any of the documented 201 shapes, or ``None``."""
    if not isinstance(body, Mapping):
        return None
    key = body.get("key")
    if isinstance(key, Mapping) and isinstance(key.get("id"), str):
        return str(key["id"])
    ident = body.get("id")
    if isinstance(ident, Mapping):
        for field in ("_serialized", "id"):
            if isinstance(ident.get(field), str) and ident[field]:
                return str(ident[field])
    if isinstance(ident, str) and ident:
        return ident
    return None


def _message(answer: HttpAnswer) -> str:
    """WAHA's own words: ``error`` (422), ``exception.message`` (500) or NestJS ``message``."""
    body = answer.body
    if not isinstance(body, Mapping):
        return f"HTTP {answer.status}"
    exception = body.get("exception")
    if isinstance(exception, Mapping) and exception.get("message"):
        return redact(exception["message"])
    for field in ("error", "message"):
        value = body.get(field)
        if isinstance(value, str) and value:
            return redact(value)
        if isinstance(value, list) and value:
            return redact("; ".join(str(v) for v in value))
    return f"HTTP {answer.status}"


def classify_send(answer: HttpAnswer, *, sends: bool = True) -> SendOutcome:
    """Turn a WAHA answer (to sendText or check-exists) into an outcome."""
    if answer.ok:
        return SendOutcome(
            OutcomeKind.SENT, message_id=message_id(answer.body), http_status=answer.status
        )
    text = _message(answer)
    stopped = _session_down(answer, text)
    if stopped is not None:
        return stopped
    if answer.status in (401, 403):
        return session_down(
            answer,
            "WAHA refused the API key; fix the session's token",
            stop=StopKind.BLOCKED,
            auth=True,
        )
    fallback = status_fallback(answer, sends=sends)
    if fallback.kind is OutcomeKind.TRANSIENT:
        return SendOutcome(
            OutcomeKind.TRANSIENT,
            error_code=fallback.error_code,
            error_message=text,
            retry_after=fallback.retry_after,
            http_status=answer.status,
        )
    return fallback


def _session_down(answer: HttpAnswer, text: str) -> SendOutcome | None:
    """The SESSION_DOWN outcome of a WAHA answer, with the kind of its stop; None otherwise."""
    body = answer.body if isinstance(answer.body, Mapping) else {}
    # NestJS puts the exception's words in "message" and its class in "error": look at both
    plus_only = next((t for t in (text, str(body.get("message", ""))) if _PLUS_ONLY.search(t)), "")
    if plus_only:
        return session_down(
            answer,
            redact(f"WAHA cannot send this message (media needs WAHA Plus): {plus_only}"),
            stop=StopKind.BLOCKED,
        )
    if answer.status == 422:
        status = body.get("status")
        session = body.get("session")
        if isinstance(status, str):
            reason = redact(f"WAHA session {session!r} is {status}, not WORKING: {text}")
            return session_down(answer, reason, stop=StopKind.DISCONNECTED)
        return session_down(answer, f"WAHA cannot use the session: {text}", stop=StopKind.BLOCKED)
    if answer.status == 404:
        # resumes once the session exists and is WORKING: the watcher's check says so
        return session_down(answer, f"WAHA session not found: {text}", stop=StopKind.DISCONNECTED)
    if answer.status == 400:
        return session_down(
            answer,
            f"WAHA rejected the request body (version mismatch?): {text}",
            stop=StopKind.BLOCKED,
        )
    if answer.status >= 500 and _BAN.search(text):
        return session_down(
            answer,
            f"WhatsApp refused to send (error 463: reach-out timelock, ban or reputation "
            f"block): {text}; check the number before resuming",
            stop=StopKind.BLOCKED,
        )
    if answer.status >= 500 and _CAPPED.search(text):
        wait = capping_wait(answer.body, answer.retry_after)
        return session_down(
            answer, capping_reason(answer.body, wait, text), stop=StopKind.LIMITED, retry_after=wait
        )
    return None
