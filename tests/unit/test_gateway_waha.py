"""WAHA adapter over real HTTP against a loopback stub (docs/gateways.md §2).

WAHA publishes no OpenAPI document: request bodies are checked field by field against §2.2.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from campaigns.domain import StopKind
from campaigns.errors import ConfigurationError
from campaigns.gateways.base import (
    GatewayConfig,
    OutcomeKind,
    OutgoingMessage,
    SendOutcome,
    TemplateSpec,
)
from campaigns.gateways.waha import CAPPING_WAIT_S, WahaGateway
from campaigns.masking import mask_phone
from tests.gateway_stub import GatewayStub, assert_no_secrets, capture_all_logs

KEY = "waha-secret-key-77f1"
NUMBER = "+5511999991234"
CHAT_ID = "5511999991234@c.us"
SEND = "/api/sendText"
CHECK = "/api/contacts/check-exists"

NOWEB = {
    "key": {"remoteJid": "5511999991234@s.whatsapp.net", "fromMe": True, "id": "3EB08A6895830F"},
    "message": {"extendedTextMessage": {"text": "Hi there!"}},
    "messageTimestamp": "1738070128",
    "status": "PENDING",
}
WEBJS = {
    "_data": {"body": "Hi"},
    "id": {
        "fromMe": True,
        "remote": CHAT_ID,
        "id": "3EB0378E",
        "_serialized": f"true_{CHAT_ID}_3EB0378E",
    },
}
WAMESSAGE = {
    "id": f"false_{CHAT_ID}_AAAA",
    "timestamp": 1738070128,
    "from": CHAT_ID,
    "fromMe": True,
    "to": CHAT_ID,
    "body": "Hi",
    "ack": 1,
}


def status_422(status: str) -> dict[str, Any]:
    return {
        "error": "Session status is not as expected. Try again later or restart the session",
        "session": "default",
        "status": status,
        "expected": ["WORKING"],
    }


def engine_500(message: str) -> dict[str, Any]:
    """AllExceptionsFilter's body; it echoes the request, number and text included."""
    return {
        "statusCode": 500,
        "timestamp": "2025-01-29T10:00:00.000Z",
        "exception": {"message": message, "code": 2},
        "request": {
            "path": SEND,
            "method": "POST",
            "body": {"session": "default", "chatId": CHAT_ID, "text": "Hi"},
            "query": {},
        },
        "version": {"version": "2024.10.1", "engine": "NOWEB", "tier": "CORE"},
    }


@pytest.fixture
def stub() -> Iterator[GatewayStub]:
    with GatewayStub() as running:
        yield running


def make_gateway(stub: GatewayStub, **options: str) -> WahaGateway:
    config = GatewayConfig(
        session_name="default",
        base_url=stub.url,
        token=KEY,
        options=options,
        connect_timeout=1.0,
        read_timeout=2.0,
    )
    return WahaGateway(config)


@pytest.fixture
def gateway(stub: GatewayStub) -> Iterator[WahaGateway]:
    gateway = make_gateway(stub)
    yield gateway
    gateway.close()


def send_answered(stub: GatewayStub, gateway: WahaGateway, status: int, body: Any) -> SendOutcome:
    stub.answer("POST", SEND, status, body)
    return gateway.send(OutgoingMessage(to=NUMBER, text="Hi"))


# --------------------------------------------------------------------------- requests


def test_send__waha_body_and_key_header_follow_the_docs(
    stub: GatewayStub, gateway: WahaGateway
) -> None:
    send_answered(stub, gateway, 201, NOWEB)

    (request,) = stub.requests
    assert (request.method, request.path) == ("POST", SEND)
    assert request.headers["x-api-key"] == KEY
    assert "authorization" not in request.headers
    assert request.json == {"session": "default", "chatId": CHAT_ID, "text": "Hi"}


def test_send__waha_session_option_overrides_the_session_name(stub: GatewayStub) -> None:
    gateway = make_gateway(stub, session="sales")
    send_answered(stub, gateway, 201, NOWEB)

    assert stub.requests[0].json["session"] == "sales"
    gateway.close()


def test_send__waha_number_with_punctuation_becomes_digits_at_c_us(
    stub: GatewayStub, gateway: WahaGateway
) -> None:
    stub.answer("POST", SEND, 201, NOWEB)

    gateway.send(OutgoingMessage(to="+55 (11) 99999-1234", text="Hi"))

    assert stub.requests[0].json["chatId"] == CHAT_ID


def test_send__waha_without_token_sends_no_key_header(stub: GatewayStub) -> None:
    gateway = WahaGateway(GatewayConfig("default", stub.url))
    send_answered(stub, gateway, 201, NOWEB)

    assert "x-api-key" not in stub.requests[0].headers
    gateway.close()


def test_send__waha_template_stops_the_campaign_without_calling(
    stub: GatewayStub, gateway: WahaGateway
) -> None:
    outcome = gateway.send(OutgoingMessage(to=NUMBER, template=TemplateSpec("t", "en")))

    assert (outcome.kind, outcome.stop) == (OutcomeKind.SESSION_DOWN, StopKind.BLOCKED)
    assert stub.requests == []


# --------------------------------------------------------------------------- success shapes

SUCCESS_TABLE: list[tuple[str, int, Any, str | None]] = [
    ("noweb-key-id", 201, NOWEB, "3EB08A6895830F"),
    ("webjs-serialized", 201, WEBJS, f"true_{CHAT_ID}_3EB0378E"),
    ("webjs-id-only", 201, {"id": {"id": "3EB0378E"}}, "3EB0378E"),
    ("wamessage-id-string", 201, WAMESSAGE, f"false_{CHAT_ID}_AAAA"),
    ("empty-body", 201, None, None),
    ("empty-object", 201, {}, None),
    ("ok-200", 200, NOWEB, "3EB08A6895830F"),
    ("not-json", 201, b"created", None),
]


@pytest.mark.parametrize(
    ("status", "body", "message_id"),
    [row[1:] for row in SUCCESS_TABLE],
    ids=[row[0] for row in SUCCESS_TABLE],
)
def test_send__waha_any_2xx_shape_is_sent(
    stub: GatewayStub, gateway: WahaGateway, status: int, body: Any, message_id: str | None
) -> None:
    outcome = send_answered(stub, gateway, status, body)

    assert outcome.kind is OutcomeKind.SENT
    assert outcome.message_id == message_id


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "status", ["SCAN_QR_CODE", "STARTING", "STOPPED", "FAILED", "PASSKEY_REQUIRED"]
)
def test_send__waha_422_session_not_working_is_session_down_with_the_status(
    stub: GatewayStub, gateway: WahaGateway, status: str
) -> None:
    outcome = send_answered(stub, gateway, 422, status_422(status))

    assert outcome.kind is OutcomeKind.SESSION_DOWN
    assert outcome.stop is StopKind.DISCONNECTED  # a reconnect fixes it: the watcher resumes
    assert outcome.auth_failure is False
    assert outcome.error_message is not None
    assert status in outcome.error_message


def test_send__waha_422_only_default_session_allowed_is_session_down(
    stub: GatewayStub, gateway: WahaGateway
) -> None:
    body = {"statusCode": 422, "message": "Only 'default' session is allowed in WAHA Core"}

    outcome = send_answered(stub, gateway, 422, body)

    # no reconnect makes the 2024 core take another session name: a configuration to fix
    assert (outcome.kind, outcome.stop) == (OutcomeKind.SESSION_DOWN, StopKind.BLOCKED)


D, L, B = StopKind.DISCONNECTED, StopKind.LIMITED, StopKind.BLOCKED
ERROR_TABLE: list[tuple[str, int, Any, OutcomeKind, bool, StopKind | None]] = [
    (
        "404-nestjs",
        404,
        {"message": "Session not found", "error": "Not Found", "statusCode": 404},
        OutcomeKind.SESSION_DOWN,
        False,
        D,  # resumed once the session exists and is WORKING
    ),
    (
        "404-core-2024",
        404,
        {
            "statusCode": 404,
            "message": "We didn't find a session with name 'default'. Please start it first "
            "by using POST /api/sessions/default/start request",
        },
        OutcomeKind.SESSION_DOWN,
        False,
        D,
    ),
    ("401", 401, {"message": "Unauthorized", "statusCode": 401}, OutcomeKind.SESSION_DOWN, True, B),
    ("403", 403, {"message": "Forbidden", "statusCode": 403}, OutcomeKind.SESSION_DOWN, True, B),
    (
        "500-463-timelock",
        500,
        engine_500("2 UNKNOWN: server returned error 463"),
        OutcomeKind.SESSION_DOWN,
        False,
        B,  # health says WORKING all through it: only an operator resumes
    ),
    (
        "500-475-capping",
        500,
        engine_500("2 UNKNOWN: server returned error 475"),
        OutcomeKind.SESSION_DOWN,
        False,
        L,
    ),
    ("500-engine", 500, engine_500("Evaluation failed: t"), OutcomeKind.TRANSIENT, False, None),
    ("500-empty", 500, None, OutcomeKind.TRANSIENT, False, None),
    (
        "400-validation",
        400,
        {"statusCode": 400, "message": ["chatId must be a string"], "error": "Bad Request"},
        OutcomeKind.SESSION_DOWN,
        False,
        B,  # the body does not fit this WAHA version: a configuration to fix
    ),
    ("502-proxy", 502, b"<html>Bad Gateway</html>", OutcomeKind.TRANSIENT, False, None),
    ("504-proxy", 504, b"<html>Gateway Timeout</html>", OutcomeKind.AMBIGUOUS, False, None),
    ("429-proxy", 429, None, OutcomeKind.THROTTLED, False, None),
]


@pytest.mark.parametrize(
    ("status", "body", "kind", "auth", "stop"),
    [row[1:] for row in ERROR_TABLE],
    ids=[row[0] for row in ERROR_TABLE],
)
def test_send__waha_error_answer_is_classified(
    stub: GatewayStub,
    gateway: WahaGateway,
    status: int,
    body: Any,
    kind: OutcomeKind,
    auth: bool,
    stop: StopKind | None,
) -> None:
    outcome = send_answered(stub, gateway, status, body)

    assert outcome.kind is kind
    assert outcome.auth_failure is auth
    assert outcome.http_status == status
    assert outcome.stop is stop


def test_send__waha_475_capping_waits_for_retry_after_or_a_day(
    stub: GatewayStub, gateway: WahaGateway
) -> None:
    capped = engine_500("2 UNKNOWN: server returned error 475")
    assert send_answered(stub, gateway, 500, capped).retry_after == CAPPING_WAIT_S

    stub.answer("POST", SEND, 500, capped, headers={"Retry-After": "5400"})
    outcome = gateway.send(OutgoingMessage(to=NUMBER, text="Hi"))

    assert (outcome.stop, outcome.retry_after) == (StopKind.LIMITED, 5400.0)


def test_send__waha_500_reason_carries_the_engine_message_not_the_echoed_request(
    stub: GatewayStub, gateway: WahaGateway
) -> None:
    outcome = send_answered(stub, gateway, 500, engine_500("2 UNKNOWN: server returned error 463"))

    assert outcome.error_message is not None
    assert "error 463" in outcome.error_message
    assert "5511999991234" not in outcome.error_message


# --------------------------------------------------------------------------- check-exists


def test_send__waha_check_exists_false_fails_the_recipient_without_sending(
    stub: GatewayStub,
) -> None:
    gateway = make_gateway(stub, check_exists="true")
    stub.answer("GET", CHECK, 200, {"numberExists": False})

    outcome = gateway.send(OutgoingMessage(to=NUMBER, text="Hi"))

    assert (outcome.kind, outcome.error_code) == (OutcomeKind.RECIPIENT_FAILED, "not_on_whatsapp")
    (request,) = stub.requests
    assert request.route == CHECK
    assert request.query == "phone=5511999991234&session=default"
    assert request.headers["x-api-key"] == KEY
    gateway.close()


def test_send__waha_check_exists_true_sends_to_the_returned_chat_id(stub: GatewayStub) -> None:
    # Brazil's extra 9: WAHA answers the chatId WhatsApp really uses.
    gateway = make_gateway(stub, check_exists="TRUE")
    stub.answer("GET", CHECK, 200, {"numberExists": True, "chatId": "551199991234@c.us"})
    stub.answer("POST", SEND, 201, NOWEB)

    outcome = gateway.send(OutgoingMessage(to=NUMBER, text="Hi"))

    assert outcome.kind is OutcomeKind.SENT
    assert [r.route for r in stub.requests] == [CHECK, SEND]
    assert stub.requests[1].json["chatId"] == "551199991234@c.us"
    gateway.close()


def test_send__waha_check_exists_on_stopped_session_is_session_down(stub: GatewayStub) -> None:
    gateway = make_gateway(stub, check_exists="true")
    stub.answer("GET", CHECK, 422, status_422("STOPPED"))

    outcome = gateway.send(OutgoingMessage(to=NUMBER, text="Hi"))

    assert (outcome.kind, outcome.stop) == (OutcomeKind.SESSION_DOWN, StopKind.DISCONNECTED)
    assert len(stub.requests) == 1
    gateway.close()


def test_send__waha_check_exists_timeout_is_transient_not_ambiguous(stub: GatewayStub) -> None:
    # Nothing can have been sent by a lookup.
    gateway = WahaGateway(
        GatewayConfig(
            "default", stub.url, token=KEY, options={"check_exists": "true"}, read_timeout=0.2
        )
    )
    stub.answer("GET", CHECK, 200, {"numberExists": True}, delay=1.0)

    outcome = gateway.send(OutgoingMessage(to=NUMBER, text="Hi"))

    assert outcome.kind is OutcomeKind.TRANSIENT
    assert [r.route for r in stub.requests] == [CHECK]
    gateway.close()


def test_gateway__waha_check_exists_must_be_true_or_false() -> None:
    with pytest.raises(ConfigurationError, match="check_exists"):
        WahaGateway(GatewayConfig("default", "http://x", options={"check_exists": "yes"}))


# --------------------------------------------------------------------------- health

HEALTH_TABLE: list[tuple[str, int, Any, bool, str, bool]] = [
    ("working", 200, {"name": "default", "status": "WORKING"}, True, "WORKING", False),
    ("scan-qr", 200, {"name": "default", "status": "SCAN_QR_CODE"}, False, "SCAN_QR_CODE", False),
    ("failed", 200, {"name": "default", "status": "FAILED"}, False, "FAILED", False),
    ("stopped", 200, {"name": "default", "status": "STOPPED"}, False, "STOPPED", False),
    ("401", 401, {"message": "Unauthorized", "statusCode": 401}, False, "UNAUTHORIZED", True),
    ("404", 404, {"message": "Session not found", "statusCode": 404}, False, "NOT_FOUND", False),
    ("500", 500, engine_500("boom"), False, "HTTP 500", False),
]


@pytest.mark.parametrize(
    ("status", "body", "connected", "state", "auth"),
    [row[1:] for row in HEALTH_TABLE],
    ids=[row[0] for row in HEALTH_TABLE],
)
def test_health__waha_session_status_decides(
    stub: GatewayStub,
    gateway: WahaGateway,
    status: int,
    body: Any,
    connected: bool,
    state: str,
    auth: bool,
) -> None:
    stub.answer("GET", "/api/sessions/default", status, body)

    health = gateway.health()

    assert (health.connected, health.state, health.auth_failure) == (connected, state, auth)
    assert stub.requests[0].headers["x-api-key"] == KEY


def test_health__waha_session_name_is_url_encoded(stub: GatewayStub) -> None:
    gateway = make_gateway(stub, session="sales/br")
    stub.answer("GET", "/api/sessions/sales%2Fbr", 200, {"status": "WORKING"})

    assert gateway.health().connected is True
    gateway.close()


# --------------------------------------------------------------------------- secrets


def test_send__waha_never_logs_the_key_or_the_full_number(
    stub: GatewayStub, caplog: pytest.LogCaptureFixture
) -> None:
    capture_all_logs(caplog)
    gateway = make_gateway(stub, check_exists="true")
    stub.answer("GET", CHECK, 200, {"numberExists": True, "chatId": CHAT_ID})
    for status, body in [(201, NOWEB), (500, engine_500("error 463")), (401, None)]:
        send_answered(stub, gateway, status, body)
    stub.answer("GET", "/api/sessions/default", 401, None)
    gateway.health()
    gateway.close()

    assert_no_secrets(caplog, KEY, NUMBER, "5511999991234", "Hi there")
    assert mask_phone(NUMBER) in caplog.text
