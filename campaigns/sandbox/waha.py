"""The WAHA dialect (gateways.md §2).

- ``POST /api/sendText`` → 201 with the engine's raw message (NOWEB, WEBJS or an empty body)
- ``POST /api/sendImage``, ``/api/sendFile``, ``/api/sendVideo``, ``/api/sendVoice`` with
  ``file: {mimetype, url, filename}`` (and ``caption``, not for voice): checked like sendText
  plus :func:`campaigns.sandbox.media.waha_problems` (400), answered like it (an
  ``imageMessage``... in NOWEB's body), recorded with the file and the caption as text
- ``GET /api/sessions/{session}`` → 200 ``{name, status, config, me, engine}``
- ``GET /api/contacts/check-exists?phone=&session=`` → ``{numberExists, chatId}``
- ``POST /api/sendSeen``, ``/api/startTyping``, ``/api/stopTyping`` with ``{session, chatId}``
  (WAHA's ``ChatRequest``) → 201; startTyping and stopTyping answer ``{"result": true}`` like
  WAHA's controller, sendSeen an empty body (its real answer is the engine's: UNCONFIRMED).
  Recorded in the record's presence table; 422 like sendText when the session is not WORKING

As in real WAHA, send endpoints wait for a non-WORKING session (``settings.waha_wait``) and then
answer 422, and sendText accepts numbers that are not on WhatsApp (they are recorded with
``deliverable = False``).

Throttling has no WAHA contract; the sandbox answers what WAHA's NestJS stack would produce with
its throttler in front: 429 ``{"statusCode":429,"message":"ThrottlerException: Too Many
Requests"}``. Injected failures use the AllExceptionsFilter 500 body of §2.4.

WhatsApp's limits on a number (:mod:`campaigns.sandbox.restrictions`); the session stays
WORKING through both:

- **Reach-out timelock**: sendText answers the 500 of a 463 refusal (``"2 UNKNOWN: server
  returned error 463"``), and the session info's ``me`` carries ``reachoutTimelock:
  {isActive: true, timeEnforcementEnds}`` (unix seconds or null) as WAHA's docs describe it
  (waha-docs, sessions/reachout-timelock-callout.md).
- **Capping**: sendText answers the same 500 naming error 475, whose ``exception`` also
  carries ``cappingStatus: "CAPPED"``, ``cycleEndTimestamp`` (epoch seconds) and ``cycleEnd``
  (ISO 8601); the session info carries ``capping: {status, cycleEndTimestamp, cycleEnd}``.
  UNCONFIRMED: no public source gives how WAHA reports a capping; these names are our choice
  (camelCase like WAHA's ``timeEnforcementEnds``, after WhatsApp's own ``capping_status`` and
  ``cycle_end_timestamp``), and the adapter reads them defensively.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from campaigns.sandbox.core import (
    Request,
    Response,
    Sandbox,
    digits_of,
    json_response,
    own_number,
    retry_after,
)
from campaigns.sandbox.media import (
    WAHA_ROUTES,
    baileys_message,
    base_type,
    caption_of,
    record,
    waha_problems,
)
from campaigns.sandbox.restrictions import iso

_SESSIONS = "/api/sessions/"
_PRESENCE = {"/api/sendSeen": "seen", "/api/startTyping": "start_typing",
             "/api/stopTyping": "stop_typing"}
NOT_WORKING = "Session status is not as expected. Try again later or restart the session"


def handle(sandbox: Sandbox, request: Request) -> Response | None:
    """Answer a WAHA request, or None when the path is not WAHA's."""
    path = request.path.rstrip("/")
    if request.method == "POST" and (path == "/api/sendText" or path in WAHA_ROUTES):
        route, response = "send", _send(sandbox, request, WAHA_ROUTES.get(path))
    elif request.method == "GET" and path.startswith(_SESSIONS) and path.count("/") == 3:
        route, response = "session", _session(sandbox, request, path[len(_SESSIONS) :])
    elif request.method == "GET" and path == "/api/contacts/check-exists":
        route, response = "check", _check(sandbox, request)
    elif request.method == "POST" and path in _PRESENCE:
        route = _PRESENCE[path]
        response = _presence(sandbox, request, route)
    else:
        return None
    if sandbox.latency.active:
        response.delay = sandbox.latency.of("waha", _session_of(request, route, path))
    sandbox.count(f"waha.{route}.{response.status}")
    return response


def _session_of(request: Request, route: str, path: str) -> str | None:
    """The session a request is about (for a latency set per session)."""
    if route == "session":
        return path[len(_SESSIONS) :]
    if route == "check":
        return request.query.get("session", "default")
    try:
        body = request.json()
    except ValueError:
        return None
    return str(body.get("session", "default")) if isinstance(body, dict) else None


def _nest(status: int, message: Any, error: str | None = None) -> Response:
    body: dict[str, Any] = {"message": message}
    if error is not None:
        body["error"] = error
    body["statusCode"] = status
    return json_response(status, body)


def _authorized(sandbox: Sandbox, request: Request) -> bool:
    return sandbox.authorized(request.headers.get("X-Api-Key") or request.query.get("x-api-key"))


def _unknown(session: str) -> Response:
    return _nest(
        404,
        f"We didn't find a session with name '{session}'. Please start it first"
        f" by using POST /api/sessions/{session}/start request",
        "Not Found",
    )


def _working(sandbox: Sandbox, session: str) -> Response | None:
    """WAHA's getWorkingSession: wait for WORKING, else the exact 422 of §2.4."""
    drop = sandbox.faults.wait_connected(session, sandbox.settings.waha_wait)
    if drop is None:
        return None
    return json_response(
        422,
        {
            "error": NOT_WORKING,
            "session": session,
            "status": drop.waha_status,
            "expected": ["WORKING"],
        },
    )


def _session(sandbox: Sandbox, request: Request, session: str) -> Response:
    if not _authorized(sandbox, request):
        return _nest(401, "Unauthorized")
    if not sandbox.faults.exists(session):
        return _nest(404, "Session not found", "Not Found")
    sandbox.hold(session)
    drop = sandbox.faults.dropped(session)
    status = "WORKING" if drop is None else drop.waha_status
    me: dict[str, Any] | None = None
    if drop is None:
        me = {"id": f"{own_number(session)}@c.us", "pushName": "Sandbox"}
        timelock = sandbox.faults.restrictions.timelocked(session)
        if timelock is not None:
            me["reachoutTimelock"] = timelock.to_json()
    engine = "WEBJS" if sandbox.settings.waha_shape == "webjs" else "NOWEB"
    info: dict[str, Any] = {
        "name": session,
        "status": status,
        "config": {"metadata": None, "proxy": None, "webhooks": []},
        "me": me,
        "engine": {"engine": engine},
    }
    capping = sandbox.faults.restrictions.capping(session)
    if capping is not None:
        info["capping"] = capping.to_json()
    return json_response(200, info)


def _presence(sandbox: Sandbox, request: Request, action: str) -> Response:
    """sendSeen / startTyping / stopTyping: checked like sendText, recorded, 201."""
    admitted = _admit(sandbox, request, text=False)
    if isinstance(admitted, Response):
        return admitted
    body, session = admitted
    sandbox.record.presence(dialect="waha", session=session, chat_id=str(body["chatId"]),
                            action=action, at=request.received_at)
    return Response(201) if action == "seen" else json_response(201, {"result": True})


def _check(sandbox: Sandbox, request: Request) -> Response:
    if not _authorized(sandbox, request):
        return _nest(401, "Unauthorized")
    session = request.query.get("session", "default")
    phone = request.query.get("phone", "")
    if not digits_of(phone):
        return _nest(400, ["phone should not be empty"], "Bad Request")
    if not sandbox.faults.exists(session):
        return _unknown(session)
    sandbox.hold(session)
    refused = _working(sandbox, session)
    if refused is not None:
        return refused
    digits = digits_of(phone)
    if sandbox.faults.is_rejected(session, digits):
        return json_response(200, {"numberExists": False})
    return json_response(200, {"numberExists": True, "chatId": f"{digits}@c.us"})


def _validate(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["chatId should not be empty", "text must be a string"]
    problems = []
    if not isinstance(body.get("chatId"), str) or not body["chatId"]:
        problems.append("chatId should not be empty")
    if not isinstance(body.get("text"), str):
        problems.append("text must be a string")
    if not isinstance(body.get("session", "default"), str):
        problems.append("session must be a string")
    return problems


def _admit(
    sandbox: Sandbox, request: Request, *, text: bool, media: str | None = None
) -> tuple[dict[str, Any], str] | Response:
    """What the sends and the typing calls check alike, in WAHA's order: the API key, the JSON
    body (``text`` only for sendText, ``file`` for a ``media`` send), the session, its WORKING
    state. The body and the session, or the answer that refuses the request."""
    if not _authorized(sandbox, request):
        return _nest(401, "Unauthorized")
    try:
        body = request.json()
    except ValueError:
        return _nest(400, "Unexpected token in JSON", "Bad Request")
    problems = [p for p in _validate(body) if (text and not media) or not p.startswith("text")]
    problems += waha_problems(media, body) if media else []
    if problems:
        return _nest(400, problems, "Bad Request")
    session = str(body.get("session", "default"))
    if not sandbox.faults.exists(session):
        return _unknown(session)
    sandbox.hold(session)
    refused = _working(sandbox, session)
    if refused is not None:
        return refused
    return body, session


def _send(sandbox: Sandbox, request: Request, media: str | None = None) -> Response:
    admitted = _admit(sandbox, request, text=True, media=media)
    if isinstance(admitted, Response):
        return admitted
    body, session = admitted
    chat_id = str(body["chatId"])
    if "@" not in chat_id:
        chat_id += "@c.us"  # WAHA's ensureSuffix
    digits = digits_of(chat_id)

    def refusal(response: Response, fault: str, code: int | None = None) -> Response:
        return sandbox.refused(
            response, dialect="waha", session=session, recipient=str(body["chatId"]),
            digits=digits, fault=fault, code=code, received_at=request.received_at,
        )  # fmt: skip

    limited = _limited(sandbox, request, body, session)
    if limited is not None:
        return refusal(*limited)
    decision = sandbox.faults.decide(session, digits)
    if decision.throttle is not None:
        status = int(decision.throttle["http_status"])
        response = _nest(status, "ThrottlerException: Too Many Requests")
        response.headers.extend(retry_after(decision.throttle))
        return refusal(response, "throttle")
    if decision.refuse is not None:
        # what WhatsApp's refusal looks like through WAHA (§2.4, e.g. 463)
        code = int(decision.refuse["code"])
        message = f"2 UNKNOWN: server returned error {code}"
        return refusal(_failure(request, body, 500, message, code=2), "refuse", code)
    if decision.fail is not None:
        return refusal(_failure(request, body, int(decision.fail["http_status"])), "fail")
    text = str(body["text"]) if media is None else caption_of(body.get("caption"))
    payload, gateway_id = _message(sandbox, session, chat_id, digits, text or "")
    recorded = None
    if media is not None:
        file, mime = body["file"], base_type(body["file"]["mimetype"])
        recorded = record(media, file["url"], mime, file.get("filename"))
        if payload is not None and "message" in payload:  # NOWEB: Baileys' message
            payload["message"] = baileys_message(media, mime, file["url"], text,
                                                 recorded["filename"])
        elif payload is not None:  # WEBJS
            payload["hasMedia"] = True
    held = sandbox.accept(
        dialect="waha",
        session=session,
        recipient=str(body["chatId"]),
        digits=digits,
        text=text,
        template=None,
        gateway_message_id=gateway_id,
        received_at=request.received_at,
        hang=decision.hang,
        deliverable=not decision.rejected,
        media=recorded,
    )
    response = Response(201) if payload is None else json_response(201, payload)
    response.held_row = held
    return response


def _limited(
    sandbox: Sandbox, request: Request, body: Any, session: str
) -> tuple[Response, str, int] | None:
    """The refusal of a timelocked or capped session (answer, fault, code), or None."""
    if sandbox.faults.restrictions.timelocked(session) is not None:
        message = "2 UNKNOWN: server returned error 463"
        return _failure(request, body, 500, message, code=2), "timelock", 463
    capping = sandbox.faults.restrictions.capping(session)
    if capping is None:
        return None
    answer = _failure(request, body, 500, "2 UNKNOWN: server returned error 475", code=2,
                      extra={"cappingStatus": capping.status,
                             "cycleEndTimestamp": int(capping.cycle_end),
                             "cycleEnd": iso(capping.cycle_end)})
    return answer, "cap", 475


def _message(
    sandbox: Sandbox, session: str, chat_id: str, digits: str, text: str
) -> tuple[dict[str, Any] | None, str]:
    """The engine-specific 201 body (None for the empty-body versions) and the message id."""
    message_id = "3EB0" + sandbox.next_id(18)
    now = int(time.time())
    shape = sandbox.settings.waha_shape
    if shape == "webjs":
        me = f"{own_number(session)}@c.us"
        serialized = f"true_{chat_id}_{message_id}"
        ident = {"fromMe": True, "remote": chat_id, "id": message_id, "_serialized": serialized}
        data = {
            "id": ident,
            "body": text,
            "type": "chat",
            "t": now,
            "from": me,
            "to": chat_id,
            "ack": 0,
        }
        return (
            {
                "_data": data,
                "id": ident,
                "ack": 0,
                "hasMedia": False,
                "body": text,
                "type": "chat",
                "timestamp": now,
                "from": me,
                "to": chat_id,
                "deviceType": "web",
                "isForwarded": False,
                "fromMe": True,
            },
            serialized,
        )
    payload = {
        "key": {"remoteJid": f"{digits}@s.whatsapp.net", "fromMe": True, "id": message_id},
        "message": {"extendedTextMessage": {"text": text}},
        "messageTimestamp": str(now),
        "status": "PENDING",
    }
    return (None if shape == "empty" else payload), message_id


def _failure(
    request: Request,
    body: Any,
    status: int,
    message: str = "sandbox: injected engine failure",
    code: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """An injected engine failure, in AllExceptionsFilter's shape (§2.4); ``extra`` joins the
    exception's own fields."""
    exception: dict[str, Any] = {"message": message, "name": "Error"}
    if code is not None:
        exception["code"] = code
    exception.update(extra or {})
    return json_response(
        status,
        {
            "statusCode": status,
            "timestamp": datetime.now(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "exception": exception,
            "request": {
                "path": request.path,
                "method": request.method,
                "body": body,
                "query": dict(request.query),
            },
            "version": {"version": "2024.10.1", "engine": "NOWEB", "tier": "CORE", "browser": None},
        },
    )
