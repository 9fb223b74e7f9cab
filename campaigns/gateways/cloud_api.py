"""Meta WhatsApp Business Cloud API adapter (docs/gateways.md §1).

Answers are classified on ``error.code`` only, as Meta asks: never on ``error_subcode``
(deprecated, still present in examples) and on the HTTP status only when the body carries no
code (a proxy's HTML page, an empty 5xx).

=============================================  ================================================
``error.code``                                 outcome
=============================================  ================================================
130429, 131048, 80007, 4, 133016, 131064,      THROTTLED, a default wait per code (the
131057                                         session holds)
131049 (per-user marketing cap)                DEFERRED a day, that recipient only (at most
                                               MAX_DEFERRALS times, then failed)
131056 (pair rate: one user, 6 s)              DEFERRED 6 s, that recipient only
131050 (user stopped marketing messages)       OPTED_OUT: skipped, never retried
0, 190 (token), 3, 10, 200–299, 131005         SESSION_DOWN, ``blocked``: a person fixes the
(permission)                                   token or its permissions (``auth_failure``)
368 (policy), 131031 (account locked),         SESSION_DOWN, ``blocked``: account-wide, WhatsApp
131042 (payment), 131045 (registration)        refuses every send until a person acts
132001, 132015, 132016 (template-wide)         SESSION_DOWN, ``blocked``: fix the template
130497 (country restricted), 131026, 131047,   RECIPIENT_FAILED: that recipient only
130403, 131021, 131008, 131009, 100, the
rest of 1320xx
131000, 1, 131016, 2, and any unknown code     TRANSIENT
=============================================  ================================================

Every SESSION_DOWN of this gateway is ``blocked``: a Cloud API "session" is a token and a phone
number id, with no connection to lose, and its health check (reading the phone number) answers
200 through a template, payment or policy refusal. A stop resumed on that check would send the
same refused request again at every watcher cycle.

Decisions where Meta's pages are silent or UNCONFIRMED (each one errs towards never losing a
recipient to a problem that is not the recipient's):

* An **unknown code** is TRANSIENT, not RECIPIENT_FAILED: a new account-wide error classified
  as a recipient failure would fail the whole list in minutes; TRANSIENT retries a few times.
* **Template-wide** errors (132001 template missing/not approved in that language, 132015
  paused, 132016 disabled) are SESSION_DOWN: they would fail every recipient of the campaign,
  so the campaign is interrupted with a reason telling the operator to fix the template.
  Errors that depend on each recipient's filled parameters (132000 count mismatch, 132012
  format, the rest of 1320xx) are RECIPIENT_FAILED.
* **130497** is listed by Meta with the integrity codes, but it says the business may not
  message users *in the recipient's country*: recipients elsewhere still go through, so it
  fails that recipient and the campaign goes on (stopping it would hold the whole list for
  one country).
* 131057 (maintenance, "up to 1 min") is THROTTLED for 60 s rather than TRANSIENT, so the
  wait costs no recipient its bounded retries; 131016 and 2 (service down) are TRANSIENT with
  a pause hint.
* ``message_status`` ``held_for_quality_assessment`` or ``paused`` on a 200 is still SENT:
  Meta holds the accepted message and may deliver it later, so sending again could duplicate.
  The status is noted in ``error_message`` for the operator.
* ``Retry-After`` is UNCONFIRMED for Meta; it wins when present. Otherwise the
  ``x-business-use-case-usage`` header's ``estimated_time_to_regain_access`` (minutes) is used
  for 4/80007, then a default per code.
"""

from __future__ import annotations

import json
import logging
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
from campaigns.gateways.http import HttpAnswer, HttpClient, redact, status_fallback
from campaigns.masking import mask_phone
from campaigns.profiles import profile_from_options

logger = logging.getLogger(__name__)

DEFAULT_API_VERSION = "v25.0"

# code -> default seconds to wait when the answer carries no hint.
THROTTLING_CODES: Mapping[int, float] = {
    130429: 2.0,  # throughput (80 mps by default) is measured per second
    80007: 60.0,  # WABA rate limit
    4: 60.0,  # app call-rate limit
    133016: 300.0,  # register/deregister attempts
    131064: 900.0,  # template-classification limit, "lifted automatically"
    131048: 3600.0,  # spam rate limit: sending more makes quality worse
    131057: 60.0,  # maintenance mode, "up to 1 min"
}
AUTH_CODES = frozenset({0, 190, 3, 10, 131005, *range(200, 300)})
ACCOUNT_CODES: Mapping[int, str] = {
    368: "the account is restricted for policy violations",
    131031: "the business account is restricted or disabled",
    131042: "there is a problem with the account's payment method",
    131045: "the phone number is not registered correctly",
}
TEMPLATE_WIDE_CODES: Mapping[int, str] = {
    132001: "the template does not exist or is not approved in that language",
    132015: "the template is paused for low quality",
    132016: "the template is disabled",
}
# recipient-level limits: the recipient waits, the session goes on (None: a day)
DEFERRED_CODES: Mapping[int, float | None] = {
    131049: None,  # Meta's per-user marketing cap: "retry after 24 h", not sooner
    131056: 6.0,  # pair rate: 1 message per 6 s to one user
}
OPTED_OUT_CODES = frozenset({131050})  # the user stopped marketing messages from the business
RECIPIENT_CODES = frozenset(
    {
        130497,  # the recipient's country is restricted for this business: not the session
        131026,
        131047,
        130403,
        131021,
        131008,
        131009,
        100,
        *range(132000, 132100),
    }
)
TRANSIENT_CODES: Mapping[int, float | None] = {
    131000: None,  # unknown error: "retry"
    1: None,  # invalid request or possible server error
    131016: 30.0,  # service temporarily unavailable
    2: 30.0,  # downtime or overload
}


class CloudApiGateway:
    """Sends through ``POST {base_url}/{api_version}/{phone_number_id}/messages``."""

    kind = "cloud-api"

    def __init__(self, config: GatewayConfig) -> None:
        phone_number_id = config.options.get("phone_number_id", "").strip()
        if not phone_number_id:
            raise ConfigurationError(
                "cloud-api needs option phone_number_id", session=config.session_name
            )
        if not config.token:
            raise ConfigurationError("cloud-api needs an access token", session=config.session_name)
        version = config.options.get("api_version", DEFAULT_API_VERSION).strip("/ ")
        self._prefix = f"/{quote(version, safe='')}/{quote(phone_number_id, safe='')}"
        # one pool of connections to Graph, as many as a rate lane keeps requests outstanding:
        # a connection opened per send would cost a TLS handshake on each one
        in_flight = profile_from_options(self.kind, config.options).in_flight
        self._http = HttpClient(
            config, {"Authorization": f"Bearer {config.token}"}, pool_size=in_flight
        )
        self._session = config.session_name

    def send(self, message: OutgoingMessage) -> SendOutcome:
        """Send one text, template or media message and classify Meta's answer."""
        body = build_body(message)
        answer = self._http.request(
            "POST", self._prefix + "/messages", json_body=body, sends=True, paced=True
        )
        outcome = answer if isinstance(answer, SendOutcome) else classify_send(answer)
        logger.debug(
            "cloud-api %s: %s -> %s %s",
            self._session,
            mask_phone(message.to),
            outcome.kind,
            outcome.error_code or "",
        )
        return outcome

    def health(self) -> SessionHealth:
        """Read the phone number object: 200 means the token and number work."""
        answer = self._http.request("GET", self._prefix, params={"fields": "id"}, sends=False)
        if isinstance(answer, SendOutcome):
            return SessionHealth(False, "unreachable", answer.error_message or "")
        if answer.ok:
            return SessionHealth(True, "available")
        code = error_code(answer.body)
        detail = _describe(answer)
        if code in AUTH_CODES or (code is None and answer.status in (401, 403)):
            return SessionHealth(False, "unauthorized", _auth_reason(answer), True)
        return SessionHealth(False, f"error {code if code is not None else answer.status}", detail)

    def close(self) -> None:
        """Release HTTP connections."""
        self._http.close()


def build_body(message: OutgoingMessage) -> dict[str, Any]:
    """The request body of docs/gateways.md §1.2, for a text, a template or a media message
    (Meta's ``ImageMessage``, ``DocumentMessage``, ``AudioMessage``, ``VideoMessage``)."""
    base: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.to,
    }
    if message.template is not None:
        template = message.template
        return {
            **base,
            "type": "template",
            "template": {
                "name": template.name,
                "language": {"policy": "deterministic", "code": template.language},
                "components": [dict(c) for c in template.components],
            },
        }
    if message.media is not None:
        return {**base, "type": message.media.kind, message.media.kind: media_object(message)}
    if message.text is None:
        raise ValueError("an outgoing message needs a text, a template or a media")
    return {**base, "type": "text", "text": {"preview_url": False, "body": message.text}}


def media_object(message: OutgoingMessage) -> dict[str, Any]:
    """The ``image``/``document``/``audio``/``video`` object of a media message by ``link``
    (Meta's ``MediaObject``): ``caption`` when the text is not empty, except for audio, which
    takes none; ``filename`` for documents (the name the person sees)."""
    media = message.media
    if media is None:
        raise ValueError("not a media message")
    body: dict[str, Any] = {"link": media.url}
    if message.text and media.kind != "audio":
        body["caption"] = message.text
    if media.kind == "document" and media.filename:
        body["filename"] = media.filename
    return body


def error_code(body: Any) -> int | None:
    """``error.code`` of a Graph API error body, if it has one."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            code = error.get("code")
            if isinstance(code, int) and not isinstance(code, bool):
                return code
            if isinstance(code, str) and code.isdigit():
                return int(code)
    return None


def _describe(answer: HttpAnswer) -> str:
    """``(#code) message: details`` for reasons and logs, redacted."""
    error = answer.body.get("error") if isinstance(answer.body, Mapping) else None
    if not isinstance(error, Mapping):
        return f"HTTP {answer.status}"
    text = str(error.get("message") or "")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, Mapping) else None
    if details:
        text = f"{text}: {details}"
    return redact(text or f"HTTP {answer.status}")


def _auth_reason(answer: HttpAnswer) -> str:
    return (
        f"Cloud API refused the access token or its permissions ({_describe(answer)}); "
        "create a new token with whatsapp_business_messaging permission and update the session"
    )


def classify_send(answer: HttpAnswer) -> SendOutcome:
    """Turn a Cloud API answer into an outcome (see the module docstring for the choices)."""
    if answer.ok:
        return _sent(answer)
    code = error_code(answer.body)
    if code is None:
        return status_fallback(answer, sends=True)
    kind, extra = _classify_code(code)
    detail = _describe(answer)
    if kind is OutcomeKind.SESSION_DOWN:
        auth = code in AUTH_CODES
        reason = _auth_reason(answer) if auth else f"{extra}: {detail}"
        return SendOutcome(
            kind,
            error_code=str(code),
            error_message=reason,
            auth_failure=auth,
            http_status=answer.status,
            stop=StopKind.BLOCKED,  # see the module docstring: no reconnect fixes any of them
        )
    retry_after: float | None = None
    if kind in (OutcomeKind.THROTTLED, OutcomeKind.TRANSIENT):
        retry_after = _retry_after(code, answer)
    elif kind is OutcomeKind.DEFERRED:
        retry_after = DEFERRED_CODES[code]
    return SendOutcome(
        kind,
        error_code=str(code),
        error_message=detail,
        retry_after=retry_after,
        http_status=answer.status,
    )


def _classify_code(code: int) -> tuple[OutcomeKind, str]:
    if code in DEFERRED_CODES:
        return OutcomeKind.DEFERRED, ""
    if code in OPTED_OUT_CODES:
        return OutcomeKind.OPTED_OUT, ""
    if code in THROTTLING_CODES:
        return OutcomeKind.THROTTLED, ""
    if code in AUTH_CODES:
        return OutcomeKind.SESSION_DOWN, ""
    if code in ACCOUNT_CODES:
        return OutcomeKind.SESSION_DOWN, f"Cloud API account problem ({ACCOUNT_CODES[code]})"
    if code in TEMPLATE_WIDE_CODES:
        return OutcomeKind.SESSION_DOWN, (
            f"{TEMPLATE_WIDE_CODES[code]}; fix the template in WhatsApp Manager, then resume"
        )
    if code in RECIPIENT_CODES:
        return OutcomeKind.RECIPIENT_FAILED, ""
    # TRANSIENT_CODES and every unknown code: retry a bounded number of times.
    return OutcomeKind.TRANSIENT, ""


def _retry_after(code: int, answer: HttpAnswer) -> float | None:
    if answer.retry_after is not None:
        return answer.retry_after
    if code in (4, 80007):
        regain = _regain_access_seconds(answer.headers)
        if regain:
            return regain
    if code in THROTTLING_CODES:
        return THROTTLING_CODES[code]
    return TRANSIENT_CODES.get(code)


def _regain_access_seconds(headers: Mapping[str, str]) -> float | None:
    """``x-business-use-case-usage``: ``{"<id>": [{"estimated_time_to_regain_access": min}]}``."""
    raw = headers.get("x-business-use-case-usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
        minutes = [
            float(entry.get("estimated_time_to_regain_access") or 0)
            for entries in usage.values()
            for entry in entries
        ]
    except (ValueError, TypeError, AttributeError):
        return None
    longest = max(minutes, default=0.0)
    return longest * 60.0 if longest > 0 else None


def _sent(answer: HttpAnswer) -> SendOutcome:
    message_id: str | None = None
    note: str | None = None
    messages = answer.body.get("messages") if isinstance(answer.body, Mapping) else None
    if isinstance(messages, list) and messages and isinstance(messages[0], Mapping):
        first = messages[0]
        raw_id = first.get("id")
        message_id = str(raw_id) if raw_id else None
        status = first.get("message_status")
        if status and status != "accepted":
            note = f"message_status={redact(status, 60)}"
    if message_id is None:
        note = "accepted without a message id"
    return SendOutcome(
        OutcomeKind.SENT, message_id=message_id, error_message=note, http_status=answer.status
    )
