"""The Meta WhatsApp Cloud API dialect (gateways.md §1).

- ``POST /{version}/{phone_number_id}/messages`` (the version segment is optional, as on Graph)
- ``GET /{version}/{phone_number_id}?fields=...``

Sends are texts, templates or media (``image``, ``document``, ``audio``, ``video`` by ``link``,
:mod:`campaigns.sandbox.cloud_validation`); a media send is recorded with its file and its
caption as the text, and counts in the throughput and the faults like any send.

Errors use the §1.4 envelope. HTTP statuses are the sandbox's choice because Meta documents
none: 400 for message-level errors, ``settings.cloud_auth_status`` (401 by default) for code 190,
the fault's own status for injected 5xx.

Each phone_number_id has Meta's throughput (80 sends per second by default, over a sliding
window of one second on arrival times, see :mod:`campaigns.sandbox.limits`): past it a send is
answered 130429 "Rate limit hit" with HTTP 400, exactly Meta's example of §1.4, and recorded as
refused. Every answer waits the configured latency before it leaves.
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any

from campaigns.media import MEDIA_KINDS
from campaigns.sandbox.cloud_validation import validate_send
from campaigns.sandbox.core import Request, Response, Sandbox, digits_of, json_response
from campaigns.sandbox.faults import Decision
from campaigns.sandbox.media import caption_of, link_type, record

_SEND = re.compile(r"^/(?:v\d+\.\d+/)?([^/_][^/]*)/messages/?$")
_NODE = re.compile(r"^/(?:v\d+\.\d+/)?([^/_][^/]*)/?$")

THROTTLE_TITLES = {
    130429: "Rate limit hit",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    131048: "Spam rate limit hit",
    80007: "Rate limit issues",
    4: "Application request limit reached",
    131064: "Messaging limit reached",
    131057: "Account in maintenance mode",
}
_THROTTLE_SUBCODES = {130429: 2494055}
# Titles of the refusals tests inject (§1.5); any other code gets a generic title.
REFUSAL_TITLES = {
    0: "AuthException",
    10: "Permission denied",
    200: "Permission error",
    368: "Temporarily blocked for policies violations",
    130497: "Business account is restricted from messaging users in this country",
    131031: "Account has been locked",
    131042: "Business eligibility payment issue",
    131045: "Incorrect certificate",
    132001: "Template does not exist",
    132015: "Template is Paused",
    132016: "Template is Disabled",
}


def cloud_error(
    status: int,
    code: int,
    title: str,
    details: str,
    *,
    subcode: int | None = None,
    kind: str = "OAuthException",
    headers: list[tuple[str, str]] | None = None,
) -> Response:
    """An error answer in the exact §1.4 shape."""
    error: dict[str, Any] = {
        "message": f"(#{code}) {title}",
        "type": kind,
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details},
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = base64.urlsafe_b64encode(os.urandom(18)).decode()[:23]
    return json_response(status, {"error": error}, headers)


def handle(sandbox: Sandbox, request: Request) -> Response | None:
    """Answer a Cloud API request, or None when the path is not a Cloud API path."""
    if request.method == "POST":
        match = _SEND.match(request.path)
        if match:
            return _send(sandbox, request, match.group(1))
    elif request.method == "GET":
        match = _NODE.match(request.path)
        if match:
            return _node(sandbox, request, match.group(1))
    return None


def _token(request: Request) -> str | None:
    header = request.headers.get("Authorization") or ""
    if header.startswith("Bearer "):
        return header[len("Bearer ") :].strip()
    return request.query.get("access_token")


def _gate(sandbox: Sandbox, request: Request, session: str) -> Response | None:
    """Auth, known phone number id, slowness and dropped session: shared by both endpoints."""
    if not sandbox.authorized(_token(request)):
        return _auth_error(sandbox, "Invalid OAuth access token - Cannot parse access token")
    if not sandbox.faults.exists(session):
        return cloud_error(
            400,
            100,
            "Invalid parameter",
            f"Unsupported request. Object with ID '{session}' does not exist, cannot be loaded"
            " due to missing permissions, or does not support this operation.",
            subcode=33,
            kind="GraphMethodException",
        )
    sandbox.hold(session)
    if sandbox.faults.dropped(session) is not None:
        # A Cloud "session" is a token + phone number id: losing it means the token died.
        return _auth_error(sandbox, "Error validating access token: Session has expired.")
    return None


def _auth_error(sandbox: Sandbox, details: str) -> Response:
    return cloud_error(
        sandbox.settings.cloud_auth_status, 190, "Access token has expired", details, subcode=463
    )


def _node(sandbox: Sandbox, request: Request, session: str) -> Response:
    response = _node_inner(sandbox, request, session)
    response.delay = sandbox.latency.of("cloud", session)
    sandbox.count(f"cloud.node.{response.status}")
    return response


def _node_inner(sandbox: Sandbox, request: Request, session: str) -> Response:
    refused = _gate(sandbox, request, session)
    if refused is not None:
        return refused
    answer: dict[str, Any] = {"id": session}
    known = {
        "throughput": {"level": "STANDARD"},
        "quality_rating": "GREEN",
        "display_phone_number": "+1 555-0100",
        "verified_name": "Sandbox",
        "code_verification_status": "VERIFIED",
        "platform_type": "CLOUD_API",
    }
    for name in filter(None, request.query.get("fields", "").split(",")):
        if name.strip() in known:
            answer[name.strip()] = known[name.strip()]
    return json_response(200, answer)


def _send(sandbox: Sandbox, request: Request, session: str) -> Response:
    response = _send_inner(sandbox, request, session)
    response.delay = sandbox.latency.of("cloud", session)
    sandbox.count(f"cloud.send.{response.status}")
    return response


def _send_inner(sandbox: Sandbox, request: Request, session: str) -> Response:
    refused = _gate(sandbox, request, session)
    if refused is not None:
        return refused
    try:
        body = request.json()
    except ValueError:
        return cloud_error(400, 100, "Invalid parameter", "The request body is not valid JSON.")
    problem = validate_send(body)
    if problem is not None:
        return cloud_error(400, *problem)
    to = str(body["to"])
    digits = digits_of(to)

    def refusal(response: Response, fault: str, code: int) -> Response:
        return sandbox.refused(
            response, dialect="cloud", session=session, recipient=to, digits=digits,
            fault=fault, code=code, received_at=request.received_at,
        )  # fmt: skip

    # Before the faults: a send refused for throughput consumes no counted fault rule.
    if not sandbox.throughput.admit(session, request.received_at):
        return refusal(throughput_error(), "throughput", 130429)
    decision = sandbox.faults.decide(session, digits)
    fault = _fault_answer(decision)
    if fault is not None:
        return refusal(*fault)
    if decision.rejected:
        return refusal(
            cloud_error(
                400,
                131026,
                "Message Undeliverable",
                "Message failed to send because the recipient is not a WhatsApp user, has not"
                " accepted the new Terms of Service, or uses an old WhatsApp version.",
            ),
            "reject",
            131026,
        )
    kind = body.get("type", "text")
    template = body.get("template") if kind == "template" else None
    media = None
    if kind in MEDIA_KINDS:
        obj = body[kind]
        link = str(obj["link"])
        media = record(kind, link, link_type(link), obj.get("filename"))
        text = caption_of(obj.get("caption"))
    else:
        text = None if template is not None else str(body["text"]["body"])
    wamid = "wamid." + base64.b64encode(
        f"\x1c\x18{digits}\x15\x02{sandbox.next_id(20)}".encode()
    ).decode().rstrip("=")
    held = sandbox.accept(
        dialect="cloud",
        session=session,
        recipient=to,
        digits=digits,
        text=text,
        template=template,
        gateway_message_id=wamid,
        received_at=request.received_at,
        hang=decision.hang,
        media=media,
    )
    message: dict[str, Any] = {"id": wamid}
    if template is not None:
        message["message_status"] = "accepted"
    response = json_response(
        200,
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": digits}],
            "messages": [message],
        },
    )
    response.held_row = held
    return response


def throughput_error() -> Response:
    """Meta's answer past a number's throughput: gateways.md §1.4's own example."""
    return cloud_error(
        400,
        130429,
        THROTTLE_TITLES[130429],
        "Cloud API message throughput has been reached.",
        subcode=_THROTTLE_SUBCODES[130429],
    )


def _fault_answer(decision: Decision) -> tuple[Response, str, int] | None:
    """The injected fault's answer, with the fault's name and the code answered."""
    headers = []
    if decision.throttle is not None:
        params = decision.throttle
        if params.get("retry_after") is not None:
            headers.append(("Retry-After", str(params["retry_after"])))
        code = int(params["code"])
        answer = cloud_error(
            int(params["cloud_status"]),
            code,
            THROTTLE_TITLES.get(code, "Rate limit hit"),
            "Cloud API message throughput has been reached.",
            subcode=_THROTTLE_SUBCODES.get(code),
            headers=headers,
        )
        return answer, "throttle", code
    if decision.refuse is not None:
        code = int(decision.refuse["code"])
        title = REFUSAL_TITLES.get(code, "Request refused")
        answer = cloud_error(400, code, title, f"{title} (sandbox: refused with code {code}).")
        return answer, "refuse", code
    if decision.fail is not None:
        status = int(decision.fail["http_status"])
        code = int(decision.fail["cloud_code"])
        answer = cloud_error(
            status,
            code,
            "Something went wrong",
            "Message failed to send because of an unknown error. Please try again later.",
        )
        return answer, "fail", code
    return None
