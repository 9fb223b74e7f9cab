"""The Evolution API v2 dialect (gateways.md §3).

- ``POST /message/sendText/{instance}`` → 201 with the documented body (id at ``key.id``)
- ``POST /message/sendMedia/{instance}`` (``number``, ``mediatype``, ``mimetype``, ``caption``,
  ``media`` as a URL, ``fileName``) → 201 with Baileys' ``imageMessage``... : checked by
  :func:`campaigns.sandbox.media.evolution_problem`, then exactly like sendText (faults,
  ``delay``), recorded with the file and the caption as text
- ``GET /instance/connectionState/{instance}`` → ``{"instance": {"instanceName", "state"}}``
- ``POST /chat/whatsappNumbers/{instance}`` → ``[{"exists", "jid", "number"}]``

Every error uses Evolution's envelope ``{"status", "error", "response": {"message"}}``. Throttling
has no Evolution contract; the sandbox answers 429 (or the fault's status) with the message
``rate-overlimit``, the error WhatsApp's servers give Baileys when it sends too fast.

sendText's optional ``delay`` (integer ms, §3.2: "ms of typing first") is honoured: once the
send is past its checks the sandbox records a ``composing`` presence with the delay, waits it
out (at most :data:`MAX_DELAY_S`) and then accepts the message, as Evolution shows "composing"
and waits inside the request before sending. A ``delay`` that is not a non-negative integer is
a 400 schema error.
"""

from __future__ import annotations

import re
import time
from http import HTTPStatus
from typing import Any

from campaigns.sandbox.core import (
    Request,
    Response,
    Sandbox,
    digits_of,
    json_response,
    retry_after,
)
from campaigns.sandbox.media import (
    baileys_message,
    base_type,
    caption_of,
    evolution_problem,
    link_type,
)
from campaigns.sandbox.media import record as media_record

_ROUTES = {
    ("POST", "message/sendText"): "send",
    ("POST", "message/sendMedia"): "send",
    ("GET", "instance/connectionState"): "state",
    ("POST", "chat/whatsappNumbers"): "numbers",
}
MAX_DELAY_S = 20.0
"""The longest ``delay`` the sandbox waits (a runaway value must not hold a thread for long)."""
_PATH = re.compile(
    r"^/(message/send(?:Text|Media)|instance/connectionState|chat/whatsappNumbers)/([^/]+)/?$"
)


def evolution_error(status: int, message: Any) -> Response:
    """An error in Evolution's generic envelope (src/main.ts)."""
    return json_response(
        status,
        {"status": status, "error": HTTPStatus(status).phrase, "response": {"message": message}},
    )


def handle(sandbox: Sandbox, request: Request) -> Response | None:
    """Answer an Evolution request, or None when the path is not Evolution's."""
    match = _PATH.match(request.path)
    route = match and _ROUTES.get((request.method, match.group(1)))
    if not match or not route:
        return None
    response = _gate(sandbox, request, match.group(2))
    if response is None:
        instance = match.group(2)
        if route == "send":
            response = _send(sandbox, request, instance, match.group(1).endswith("Media"))
        elif route == "state":
            response = _state(sandbox, instance)
        else:
            response = _numbers(sandbox, request, instance)
    response.delay = sandbox.latency.of("evolution", match.group(2))
    sandbox.count(f"evolution.{route}.{response.status}")
    return response


def _gate(sandbox: Sandbox, request: Request, instance: str) -> Response | None:
    """The auth guard, then the instance guard, then the *slow* fault."""
    if not sandbox.authorized(request.headers.get("apikey")):
        return evolution_error(401, "Unauthorized")
    if not sandbox.faults.exists(instance):
        return evolution_error(404, [f'The "{instance}" instance does not exist'])
    sandbox.hold(instance)
    return None


def _closed(sandbox: Sandbox) -> Response:
    """The "Connection Closed" answer of §3.4, in the configured form."""
    form = sandbox.settings.evolution_closed_form
    if form == "400-list":
        return evolution_error(400, ["Error: Connection Closed"])
    if form == "500-list":
        return evolution_error(500, ["Error: Connection Closed"])
    return evolution_error(500, "Connection Closed")


def _state(sandbox: Sandbox, instance: str) -> Response:
    drop = sandbox.faults.dropped(instance)
    state = "open" if drop is None else drop.evolution_state
    return json_response(200, {"instance": {"instanceName": instance, "state": state}})


def _jid(number: str, digits: str) -> str:
    return number if number.endswith(("@g.us", "@lid")) else f"{digits}@s.whatsapp.net"


def _validate(body: Any, media: bool) -> Response | None:
    if not isinstance(body, dict):
        return evolution_error(400, [["instance is not of a type(s) object"]])
    problem = evolution_problem(body) if media else None
    if problem is not None:
        return evolution_error(400, problem)
    missing = [
        f'instance requires property "{name}"'
        for name in ("number",) + (() if media else ("text",))
        if name not in body
    ]
    if missing:
        return evolution_error(400, [missing])
    if not isinstance(body["number"], str) or not digits_of(body["number"]):
        return evolution_error(400, [["instance.number is not of a type(s) string"]])
    if not media and (not isinstance(body["text"], str) or not body["text"]):
        return evolution_error(400, ["Text is required"])
    delay = body.get("delay")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int) or delay < 0):
        return evolution_error(400, [["instance.delay is not of a type(s) integer"]])
    return None


def _send(sandbox: Sandbox, request: Request, instance: str, media: bool = False) -> Response:
    try:
        body = request.json()
    except ValueError:
        return evolution_error(400, ["Unexpected token in JSON"])
    refused = _validate(body, media)
    if refused is not None:
        return refused
    if sandbox.faults.dropped(instance) is not None:
        return _closed(sandbox)
    number = str(body["number"])
    digits = digits_of(number)

    def refusal(response: Response, fault: str, code: int | None = None) -> Response:
        return sandbox.refused(
            response, dialect="evolution", session=instance, recipient=number, digits=digits,
            fault=fault, code=code, received_at=request.received_at,
        )  # fmt: skip

    decision = sandbox.faults.decide(instance, digits)
    if decision.throttle is not None:
        response = evolution_error(int(decision.throttle["http_status"]), "rate-overlimit")
        response.headers.extend(retry_after(decision.throttle))
        return refusal(response, "throttle")
    if decision.refuse is not None:
        # inside the send, Evolution rethrows a Baileys error as BadRequestException (§3.4)
        code = int(decision.refuse["code"])
        answer = evolution_error(400, [f"Error: server returned error {code}"])
        return refusal(answer, "refuse", code)
    if decision.fail is not None:
        failure = evolution_error(int(decision.fail["http_status"]), "sandbox: injected failure")
        return refusal(failure, "fail")
    jid = _jid(number, digits)
    if decision.rejected:
        return refusal(
            evolution_error(400, [{"jid": jid, "exists": False, "number": digits}]), "reject"
        )
    delay = int(body.get("delay") or 0)
    if delay > 0:
        sandbox.record.presence(dialect="evolution", session=instance, chat_id=number,
                                action="composing", at=request.received_at, duration_ms=delay)
        time.sleep(min(delay / 1000.0, MAX_DELAY_S))
    text, recorded, content = _content(body, media)
    message_id = "BAE5" + sandbox.next_id(12)
    held = sandbox.accept(
        dialect="evolution",
        session=instance,
        recipient=number,
        digits=digits,
        text=text,
        template=None,
        gateway_message_id=message_id,
        received_at=request.received_at,
        hang=decision.hang,
        media=recorded,
    )
    response = json_response(
        201,
        {
            "key": {"remoteJid": jid, "fromMe": True, "id": message_id},
            "message": content,
            "messageTimestamp": str(int(time.time())),
            "status": "PENDING",
        },
    )
    response.held_row = held
    return response


def _content(
    body: dict[str, Any], media: bool
) -> tuple[str | None, dict[str, Any] | None, dict[str, Any]]:
    """(text to record, media to record, the 201's ``message``) of an accepted send."""
    if not media:
        return str(body["text"]), None, {"extendedTextMessage": {"text": body["text"]}}
    kind, url = str(body["mediatype"]), str(body["media"])
    mime = base_type(body.get("mimetype")) or link_type(url)
    caption = caption_of(body.get("caption"))
    recorded = media_record(kind, url, mime, body.get("fileName"))
    return caption, recorded, baileys_message(kind, mime, url, caption, recorded["filename"])


def _numbers(sandbox: Sandbox, request: Request, instance: str) -> Response:
    try:
        body = request.json()
    except ValueError:
        return evolution_error(400, ["Unexpected token in JSON"])
    numbers = body.get("numbers") if isinstance(body, dict) else None
    if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
        return evolution_error(400, [["instance.numbers is not of a type(s) array"]])
    if sandbox.faults.dropped(instance) is not None:
        return _closed(sandbox)  # onWhatsApp needs the socket too
    answer = []
    for number in numbers:
        digits = digits_of(number)
        exists = not sandbox.faults.is_rejected(instance, digits)
        answer.append({"exists": exists, "jid": _jid(number, digits), "number": digits})
    return json_response(200, answer)
