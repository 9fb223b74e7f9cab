"""Evolution API v2 adapter over real HTTP against a loopback stub (docs/gateways.md §3).

Request bodies and the canned answers are checked against Evolution's OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from campaigns.domain import StopKind
from campaigns.gateways.base import (
    GatewayConfig,
    OutcomeKind,
    OutgoingMessage,
    SendOutcome,
    TemplateSpec,
)
from campaigns.gateways.evolution import EvolutionGateway
from campaigns.masking import mask_phone
from tests.contracts import validate_evolution_request, validate_evolution_response
from tests.gateway_stub import GatewayStub, assert_no_secrets, capture_all_logs

KEY = "evo-secret-apikey-0c3d"
NUMBER = "+5511999991234"
DIGITS = "5511999991234"
SEND_TEMPLATE = "/message/sendText/{instance}"
STATE_TEMPLATE = "/instance/connectionState/{instance}"
SEND = "/message/sendText/sales"
STATE = "/instance/connectionState/sales"

DOCUMENTED_201 = {
    "key": {"remoteJid": f"{DIGITS}@s.whatsapp.net", "fromMe": True, "id": "BAE594145F4C59B4"},
    "message": {"extendedTextMessage": {"text": "Olá!"}},
    "messageTimestamp": "1717689097",
    "status": "PENDING",
}
# What 2.3.6 really returns: prepareMessage() output, numeric timestamp, conversation.
ACTUAL_201 = {
    "key": {"remoteJid": f"{DIGITS}@s.whatsapp.net", "fromMe": True, "id": "3EB0C5A1D2"},
    "pushName": "",
    "status": "PENDING",
    "message": {"conversation": "Olá!"},
    "contextInfo": None,
    "messageType": "conversation",
    "messageTimestamp": 1717689097,
    "instanceId": "0b5c2f1e",
    "source": "unknown",
}


def envelope(status: int, message: Any) -> dict[str, Any]:
    errors = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}
    return {
        "status": status,
        "error": errors.get(status, "Internal Server Error"),
        "response": {"message": message},
    }


@pytest.fixture
def stub() -> Iterator[GatewayStub]:
    with GatewayStub() as running:
        yield running


@pytest.fixture
def gateway(stub: GatewayStub) -> Iterator[EvolutionGateway]:
    config = GatewayConfig(
        session_name="sales",
        base_url=stub.url,
        token=KEY,
        connect_timeout=1.0,
        read_timeout=2.0,
    )
    gateway = EvolutionGateway(config)
    yield gateway
    gateway.close()


def send_answered(
    stub: GatewayStub, gateway: EvolutionGateway, status: int, body: Any
) -> SendOutcome:
    stub.answer("POST", SEND, status, body)
    if isinstance(body, dict):
        # The canned answers follow the document (or its generic error envelope).
        validate_evolution_response(SEND_TEMPLATE, status, body)
    return gateway.send(OutgoingMessage(to=NUMBER, text="Olá!"))


# --------------------------------------------------------------------------- requests


def test_send__evolution_body_validates_and_carries_the_apikey(
    stub: GatewayStub, gateway: EvolutionGateway
) -> None:
    outcome = send_answered(stub, gateway, 201, DOCUMENTED_201)

    assert outcome == SendOutcome(OutcomeKind.SENT, message_id="BAE594145F4C59B4", http_status=201)
    (request,) = stub.requests
    assert (request.method, request.path) == ("POST", SEND)
    assert request.headers["apikey"] == KEY
    assert request.json == {"number": DIGITS, "text": "Olá!"}
    validate_evolution_request(SEND_TEMPLATE, request.json)


def test_send__evolution_instance_option_overrides_the_session_name(stub: GatewayStub) -> None:
    gateway = EvolutionGateway(
        GatewayConfig("sales", stub.url, token=KEY, options={"instance": "my inst"})
    )
    stub.answer("POST", "/message/sendText/my%20inst", 201, DOCUMENTED_201)

    assert gateway.send(OutgoingMessage(to=NUMBER, text="x")).kind is OutcomeKind.SENT
    gateway.close()


def test_send__evolution_template_stops_the_campaign_without_calling(
    stub: GatewayStub, gateway: EvolutionGateway
) -> None:
    outcome = gateway.send(OutgoingMessage(to=NUMBER, template=TemplateSpec("t", "en")))

    assert (outcome.kind, outcome.stop) == (OutcomeKind.SESSION_DOWN, StopKind.BLOCKED)
    assert stub.requests == []


# --------------------------------------------------------------------------- success


@pytest.mark.parametrize(
    ("body", "message_id"),
    [
        pytest.param(DOCUMENTED_201, "BAE594145F4C59B4", id="documented"),
        pytest.param(ACTUAL_201, "3EB0C5A1D2", id="v2.3.6-prepareMessage"),
        pytest.param(None, None, id="empty"),
    ],
)
def test_send__evolution_201_is_sent_with_key_id(
    stub: GatewayStub, gateway: EvolutionGateway, body: Any, message_id: str | None
) -> None:
    stub.answer("POST", SEND, 201, body)

    outcome = gateway.send(OutgoingMessage(to=NUMBER, text="Olá!"))

    assert (outcome.kind, outcome.message_id) == (OutcomeKind.SENT, message_id)


# --------------------------------------------------------------------------- errors

NOT_ON_WHATSAPP = [{"jid": f"{DIGITS}@s.whatsapp.net", "exists": False, "number": DIGITS}]

D, B = StopKind.DISCONNECTED, StopKind.BLOCKED
DOWN = OutcomeKind.SESSION_DOWN
ERROR_TABLE: list[tuple[str, int, Any, OutcomeKind, bool, StopKind | None]] = [
    ("400-not-on-whatsapp", 400, NOT_ON_WHATSAPP, OutcomeKind.RECIPIENT_FAILED, False, None),
    # a closed connection: the watcher resumes once connectionState says open again
    ("500-closed-string", 500, "Connection Closed", DOWN, False, D),
    ("500-closed-list", 500, ["Error: Connection Closed"], DOWN, False, D),
    ("400-closed-list", 400, ["Error: Connection Closed"], DOWN, False, D),
    ("400-closed-nested", 400, [{"error": "Connection Closed"}], DOWN, False, D),
    (
        "500-not-loaded",
        500,
        "Cannot read properties of undefined (reading 'textMessage')",
        DOWN,
        False,
        D,
    ),
    ("404-no-instance", 404, ['The "sales" instance does not exist'], DOWN, False, D),
    # the state stays open through these: only an operator resumes
    ("401", 401, "Unauthorized", DOWN, True, B),
    ("403", 403, "Forbidden", DOWN, True, B),
    ("400-schema-v1-server", 400, [['instance requires property "textMessage"']], DOWN, False, B),
    ("400-text-required", 400, ["Text is required"], DOWN, False, B),
    ("400-463-timelock", 400, ["Error: server returned error 463"], DOWN, False, B),
    ("400-other-baileys", 400, ["Error: Timed Out"], OutcomeKind.TRANSIENT, False, None),
    ("500-other", 500, "Internal error", OutcomeKind.TRANSIENT, False, None),
    ("503", 503, "Service Unavailable", OutcomeKind.TRANSIENT, False, None),
]


@pytest.mark.parametrize(
    ("status", "message", "kind", "auth", "stop"),
    [row[1:] for row in ERROR_TABLE],
    ids=[row[0] for row in ERROR_TABLE],
)
def test_send__evolution_error_answer_is_classified(
    stub: GatewayStub,
    gateway: EvolutionGateway,
    status: int,
    message: Any,
    kind: OutcomeKind,
    auth: bool,
    stop: StopKind | None,
) -> None:
    outcome = send_answered(stub, gateway, status, envelope(status, message))

    assert outcome.kind is kind
    assert outcome.auth_failure is auth
    assert outcome.http_status == status
    assert outcome.stop is stop


def test_send__evolution_connection_closed_wins_over_any_status(
    stub: GatewayStub, gateway: EvolutionGateway
) -> None:
    for status in (400, 404, 500, 502):
        outcome = send_answered(stub, gateway, status, envelope(status, "Connection Closed"))
        assert outcome.kind is OutcomeKind.SESSION_DOWN, status


def test_send__evolution_not_on_whatsapp_reason_hides_the_number(
    stub: GatewayStub, gateway: EvolutionGateway
) -> None:
    outcome = send_answered(stub, gateway, 400, envelope(400, NOT_ON_WHATSAPP))

    assert outcome.error_code == "not_on_whatsapp"
    assert outcome.error_message is not None
    assert DIGITS not in outcome.error_message


def test_send__evolution_proxy_504_is_ambiguous(
    stub: GatewayStub, gateway: EvolutionGateway
) -> None:
    outcome = send_answered(stub, gateway, 504, b"<html>504 Gateway Time-out</html>")

    assert outcome.kind is OutcomeKind.AMBIGUOUS


# --------------------------------------------------------------------------- health

HEALTH_TABLE: list[tuple[str, int, Any, bool, str, bool]] = [
    ("open", 200, {"instance": {"instanceName": "sales", "state": "open"}}, True, "open", False),
    (
        "connecting",
        200,
        {"instance": {"instanceName": "sales", "state": "connecting"}},
        False,
        "connecting",
        False,
    ),
    (
        "close",
        200,
        {"instance": {"instanceName": "sales", "state": "close"}},
        False,
        "close",
        False,
    ),
    (
        "refused",
        200,
        {"instance": {"instanceName": "sales", "state": "refused"}},
        False,
        "refused",
        False,
    ),
    ("state-missing", 200, {"instance": {"instanceName": "sales"}}, False, "missing", False),
    (
        "404",
        404,
        envelope(404, ['The "sales" instance does not exist']),
        False,
        "not_found",
        False,
    ),
    ("401", 401, envelope(401, "Unauthorized"), False, "unauthorized", True),
]


@pytest.mark.parametrize(
    ("status", "body", "connected", "state", "auth"),
    [row[1:] for row in HEALTH_TABLE],
    ids=[row[0] for row in HEALTH_TABLE],
)
def test_health__evolution_connection_state_decides(
    stub: GatewayStub,
    gateway: EvolutionGateway,
    status: int,
    body: Any,
    connected: bool,
    state: str,
    auth: bool,
) -> None:
    validate_evolution_response(STATE_TEMPLATE, status, body)
    stub.answer("GET", STATE, status, body)

    health = gateway.health()

    assert (health.connected, health.state, health.auth_failure) == (connected, state, auth)
    assert stub.requests[0].headers["apikey"] == KEY


# --------------------------------------------------------------------------- secrets


def test_send__evolution_never_logs_the_key_or_the_full_number(
    stub: GatewayStub, gateway: EvolutionGateway, caplog: pytest.LogCaptureFixture
) -> None:
    capture_all_logs(caplog)
    for status, body in [
        (201, DOCUMENTED_201),
        (400, envelope(400, NOT_ON_WHATSAPP)),
        (500, envelope(500, "Connection Closed")),
        (401, envelope(401, "Unauthorized")),
    ]:
        send_answered(stub, gateway, status, body)
    stub.answer("GET", STATE, 401, envelope(401, "Unauthorized"))
    gateway.health()

    assert_no_secrets(caplog, KEY, NUMBER, DIGITS, "Olá")
    assert mask_phone(NUMBER) in caplog.text
