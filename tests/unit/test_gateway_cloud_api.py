"""Cloud API adapter over real HTTP against a loopback stub (docs/gateways.md §1)."""

from __future__ import annotations

import threading
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
from campaigns.gateways.cloud_api import CloudApiGateway
from campaigns.masking import mask_phone
from tests.contracts import validate_cloud_request, validate_cloud_response
from tests.gateway_stub import GatewayStub, assert_no_secrets, capture_all_logs

TOKEN = "EAAG-secret-token-Zx81"
PHONE_ID = "106540352242922"
NUMBER = "+5511999991234"
ROUTE = f"/v25.0/{PHONE_ID}/messages"
WAMID = "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA"
SUCCESS = {
    "messaging_product": "whatsapp",
    "contacts": [{"input": NUMBER, "wa_id": NUMBER[1:]}],
    "messages": [{"id": WAMID}],
}


def meta_error(code: int, message: str = "Error", subcode: int | None = 2494055) -> Any:
    """An error body shaped as docs/gateways.md §1.4, deprecated subcode included."""
    error: dict[str, Any] = {
        "message": f"(#{code}) {message}",
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": f"{message} for {NUMBER}"},
        "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


@pytest.fixture
def stub() -> Iterator[GatewayStub]:
    with GatewayStub() as running:
        yield running


def make_gateway(stub: GatewayStub, **options: str) -> CloudApiGateway:
    config = GatewayConfig(
        session_name="main",
        base_url=stub.url + "/",
        token=TOKEN,
        options={"phone_number_id": PHONE_ID, **options},
        connect_timeout=1.0,
        read_timeout=2.0,
    )
    return CloudApiGateway(config)


@pytest.fixture
def gateway(stub: GatewayStub) -> Iterator[CloudApiGateway]:
    gateway = make_gateway(stub)
    yield gateway
    gateway.close()


def send_answered(
    stub: GatewayStub, gateway: CloudApiGateway, status: int, body: Any, **kw: Any
) -> SendOutcome:
    stub.answer("POST", ROUTE, status, body, **kw)
    if body is not None and not isinstance(body, bytes):
        validate_cloud_response(status, body)  # the canned answer itself follows Meta's document
    return gateway.send(OutgoingMessage(to=NUMBER, text="Olá Maria"))


# --------------------------------------------------------------------------- requests


def test_send__cloud_text_body_is_exactly_the_documented_one(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    outcome = send_answered(stub, gateway, 200, SUCCESS)

    assert outcome == SendOutcome(OutcomeKind.SENT, message_id=WAMID, http_status=200)
    (request,) = stub.requests
    assert (request.method, request.path) == ("POST", ROUTE)
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.json == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": NUMBER,
        "type": "text",
        "text": {"preview_url": False, "body": "Olá Maria"},
    }
    validate_cloud_request(request.json)


def test_send__cloud_template_body_follows_the_sdk_shape(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    stub.answer("POST", ROUTE, 200, SUCCESS)
    template = TemplateSpec(
        name="order_update",
        language="pt_BR",
        components=({"type": "body", "parameters": [{"type": "text", "text": "Maria"}]},),
    )

    outcome = gateway.send(OutgoingMessage(to=NUMBER, template=template))

    assert outcome.kind is OutcomeKind.SENT
    body = stub.requests[0].json
    validate_cloud_request(body)
    assert body["type"] == "template"
    assert body["template"] == {
        "name": "order_update",
        "language": {"policy": "deterministic", "code": "pt_BR"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Maria"}]}],
    }


def test_send__cloud_api_version_option_changes_the_path(stub: GatewayStub) -> None:
    gateway = make_gateway(stub, api_version="v26.0")
    stub.answer("POST", f"/v26.0/{PHONE_ID}/messages", 200, SUCCESS)

    assert gateway.send(OutgoingMessage(to=NUMBER, text="hi")).kind is OutcomeKind.SENT
    gateway.close()


def test_gateway__cloud_without_phone_number_id_or_token_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="phone_number_id"):
        CloudApiGateway(GatewayConfig("main", "http://x", token=TOKEN))
    with pytest.raises(ConfigurationError, match="token") as raised:
        CloudApiGateway(GatewayConfig("main", "http://x", options={"phone_number_id": "1"}))
    assert TOKEN not in str(raised.value)


# --------------------------------------------------------------------------- success variants


@pytest.mark.parametrize("status", ["held_for_quality_assessment", "paused"])
def test_send__cloud_held_or_paused_message_is_still_sent_with_a_note(
    stub: GatewayStub, gateway: CloudApiGateway, status: str
) -> None:
    body = {**SUCCESS, "messages": [{"id": WAMID, "message_status": status}]}

    outcome = send_answered(stub, gateway, 200, body)

    assert outcome.kind is OutcomeKind.SENT
    assert outcome.message_id == WAMID
    assert outcome.error_message == f"message_status={status}"


def test_send__cloud_accepted_message_status_is_plain_sent(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    body = {**SUCCESS, "messages": [{"id": WAMID, "message_status": "accepted"}]}

    outcome = send_answered(stub, gateway, 200, body)

    assert (outcome.kind, outcome.message_id, outcome.error_message) == (
        OutcomeKind.SENT,
        WAMID,
        None,
    )


# --------------------------------------------------------------------------- error codes

CODE_TABLE = [
    # throttling
    (130429, OutcomeKind.THROTTLED),
    (80007, OutcomeKind.THROTTLED),
    (4, OutcomeKind.THROTTLED),
    (133016, OutcomeKind.THROTTLED),
    (131064, OutcomeKind.THROTTLED),
    (131048, OutcomeKind.THROTTLED),
    (131057, OutcomeKind.THROTTLED),
    # authorization
    (0, OutcomeKind.SESSION_DOWN),
    (190, OutcomeKind.SESSION_DOWN),
    (3, OutcomeKind.SESSION_DOWN),
    (10, OutcomeKind.SESSION_DOWN),
    (200, OutcomeKind.SESSION_DOWN),
    (299, OutcomeKind.SESSION_DOWN),
    (131005, OutcomeKind.SESSION_DOWN),
    # integrity and account
    (368, OutcomeKind.SESSION_DOWN),
    (131031, OutcomeKind.SESSION_DOWN),
    (131042, OutcomeKind.SESSION_DOWN),
    (131045, OutcomeKind.SESSION_DOWN),
    # template-wide: every recipient would fail
    (132001, OutcomeKind.SESSION_DOWN),
    (132015, OutcomeKind.SESSION_DOWN),
    (132016, OutcomeKind.SESSION_DOWN),
    # recipient; 130497 (country restricted) too: recipients elsewhere still go through
    (130497, OutcomeKind.RECIPIENT_FAILED),
    (131026, OutcomeKind.RECIPIENT_FAILED),
    (131047, OutcomeKind.RECIPIENT_FAILED),
    # recipient-level limits: the recipient waits or is skipped, the session goes on
    (131049, OutcomeKind.DEFERRED),
    (131056, OutcomeKind.DEFERRED),
    (131050, OutcomeKind.OPTED_OUT),
    (130403, OutcomeKind.RECIPIENT_FAILED),
    (131021, OutcomeKind.RECIPIENT_FAILED),
    (131008, OutcomeKind.RECIPIENT_FAILED),
    (131009, OutcomeKind.RECIPIENT_FAILED),
    (100, OutcomeKind.RECIPIENT_FAILED),
    (132000, OutcomeKind.RECIPIENT_FAILED),
    (132012, OutcomeKind.RECIPIENT_FAILED),
    # transient
    (131000, OutcomeKind.TRANSIENT),
    (131016, OutcomeKind.TRANSIENT),
    (1, OutcomeKind.TRANSIENT),
    (2, OutcomeKind.TRANSIENT),
    # unknown: retry, never fail the recipient
    (999999, OutcomeKind.TRANSIENT),
    (131999, OutcomeKind.TRANSIENT),
]


@pytest.mark.parametrize(("code", "kind"), CODE_TABLE, ids=[f"{c}-{k}" for c, k in CODE_TABLE])
def test_send__cloud_error_code_decides_the_outcome(
    stub: GatewayStub, gateway: CloudApiGateway, code: int, kind: OutcomeKind
) -> None:
    outcome = send_answered(stub, gateway, 400, meta_error(code))

    assert outcome.kind is kind
    assert outcome.error_code == str(code)
    assert outcome.http_status == 400
    assert outcome.message_id is None
    # no reconnect fixes a Cloud API refusal (its health check reads 200 through all of
    # them): every session-level answer waits for an operator
    assert outcome.stop is (StopKind.BLOCKED if kind is OutcomeKind.SESSION_DOWN else None)


@pytest.mark.parametrize("status", [400, 401, 403, 500])
def test_send__cloud_code_wins_over_http_status(
    stub: GatewayStub, gateway: CloudApiGateway, status: int
) -> None:
    assert send_answered(stub, gateway, status, meta_error(131026)).kind is (
        OutcomeKind.RECIPIENT_FAILED
    )


def test_send__cloud_subcode_is_ignored(stub: GatewayStub, gateway: CloudApiGateway) -> None:
    # 2494055 is the subcode of a rate limit in Meta's example; the code says "unknown error".
    with_subcode = send_answered(stub, gateway, 400, meta_error(131000, subcode=2494055))
    without = send_answered(stub, gateway, 400, meta_error(131000, subcode=None))

    assert with_subcode == without
    assert with_subcode.kind is OutcomeKind.TRANSIENT


def test_send__cloud_130429_is_throttled(stub: GatewayStub, gateway: CloudApiGateway) -> None:
    outcome = send_answered(stub, gateway, 400, meta_error(130429, "Rate limit hit"))

    assert outcome.kind is OutcomeKind.THROTTLED
    assert outcome.retry_after == 2.0
    assert outcome.error_message is not None
    assert "(#130429) Rate limit hit" in outcome.error_message


def test_send__cloud_131056_pair_rate_defers_that_recipient_six_seconds(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    outcome = send_answered(stub, gateway, 400, meta_error(131056, "Pair rate limit hit"))

    assert (outcome.kind, outcome.retry_after) == (OutcomeKind.DEFERRED, 6.0)


def test_send__cloud_131049_marketing_cap_defers_that_recipient_a_day(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    outcome = send_answered(stub, gateway, 400, meta_error(131049, "per-user marketing limit"))

    # no retry_after: "a day" is the engine's (CAPACITY_DAY_SECONDS), not the adapter's
    assert (outcome.kind, outcome.retry_after) == (OutcomeKind.DEFERRED, None)


def test_send__cloud_retry_after_header_wins_over_the_default(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    outcome = send_answered(stub, gateway, 400, meta_error(130429), headers={"Retry-After": "17"})

    assert (outcome.kind, outcome.retry_after) == (OutcomeKind.THROTTLED, 17.0)


def test_send__cloud_app_rate_limit_uses_business_usage_header(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    usage = (
        '{"1234": [{"type": "whatsapp", "call_count": 100, "estimated_time_to_regain_access": 3}]}'
    )

    outcome = send_answered(
        stub, gateway, 400, meta_error(4), headers={"x-business-use-case-usage": usage}
    )

    assert (outcome.kind, outcome.retry_after) == (OutcomeKind.THROTTLED, 180.0)


@pytest.mark.parametrize("status", [400, 401])
def test_send__cloud_190_expired_token_is_an_auth_failure(
    stub: GatewayStub, gateway: CloudApiGateway, status: int
) -> None:
    outcome = send_answered(stub, gateway, status, meta_error(190, "Access token has expired"))

    assert outcome.kind is OutcomeKind.SESSION_DOWN
    assert outcome.auth_failure is True
    assert outcome.error_message is not None
    assert "token" in outcome.error_message
    assert TOKEN not in outcome.error_message


def test_send__cloud_integrity_error_is_session_down_without_auth_flag(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    outcome = send_answered(stub, gateway, 400, meta_error(368, "Temporarily blocked"))

    assert (outcome.kind, outcome.auth_failure) == (OutcomeKind.SESSION_DOWN, False)
    assert outcome.error_message is not None
    assert "restricted" in outcome.error_message


def test_send__cloud_paused_template_interrupts_with_a_reason(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    outcome = send_answered(stub, gateway, 400, meta_error(132015, "Template is paused"))

    assert outcome.kind is OutcomeKind.SESSION_DOWN
    assert outcome.error_message is not None
    assert "template" in outcome.error_message


def test_send__cloud_error_details_mask_the_number(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    outcome = send_answered(stub, gateway, 400, meta_error(131026, "Message undeliverable"))

    assert outcome.error_message is not None
    assert NUMBER not in outcome.error_message
    assert NUMBER[1:] not in outcome.error_message


# --------------------------------------------------------------------------- status fallback

FALLBACK_TABLE: list[tuple[int, Any, OutcomeKind]] = [
    (500, {"error": "upstream"}, OutcomeKind.TRANSIENT),
    (502, b"<html>Bad Gateway</html>", OutcomeKind.TRANSIENT),
    (503, None, OutcomeKind.TRANSIENT),
    (504, b"<html>Gateway Timeout</html>", OutcomeKind.AMBIGUOUS),
    (429, None, OutcomeKind.THROTTLED),
    (401, b"Unauthorized", OutcomeKind.SESSION_DOWN),
    (418, b"teapot", OutcomeKind.TRANSIENT),
]


@pytest.mark.parametrize(
    ("status", "body", "kind"), FALLBACK_TABLE, ids=[str(s) for s, _, _ in FALLBACK_TABLE]
)
def test_send__cloud_answer_without_code_falls_back_to_http_status(
    stub: GatewayStub, gateway: CloudApiGateway, status: int, body: Any, kind: OutcomeKind
) -> None:
    stub.answer("POST", ROUTE, status, body)

    outcome = gateway.send(OutgoingMessage(to=NUMBER, text="hi"))

    assert outcome.kind is kind
    assert outcome.http_status == status
    assert outcome.stop is (StopKind.BLOCKED if kind is OutcomeKind.SESSION_DOWN else None)


def test_send__cloud_429_without_code_honours_retry_after_date(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    stub.answer("POST", ROUTE, 429, None, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})

    outcome = gateway.send(OutgoingMessage(to=NUMBER, text="hi"))

    # a date in the past means "now"
    assert (outcome.kind, outcome.retry_after) == (OutcomeKind.THROTTLED, 0.0)


# --------------------------------------------------------------------------- health


def test_health__cloud_phone_number_readable_is_connected(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    stub.answer("GET", f"/v25.0/{PHONE_ID}", 200, {"id": PHONE_ID})

    health = gateway.health()

    assert health.connected is True
    (request,) = stub.requests
    assert request.query == "fields=id"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("code", [190, 0, 10, 131005])
def test_health__cloud_refused_token_is_an_auth_failure(
    stub: GatewayStub, gateway: CloudApiGateway, code: int
) -> None:
    stub.answer("GET", f"/v25.0/{PHONE_ID}", 400, meta_error(code))

    health = gateway.health()

    assert (health.connected, health.auth_failure) == (False, True)
    assert TOKEN not in health.detail


def test_health__cloud_other_error_is_not_connected(
    stub: GatewayStub, gateway: CloudApiGateway
) -> None:
    stub.answer("GET", f"/v25.0/{PHONE_ID}", 400, meta_error(368))

    health = gateway.health()

    assert (health.connected, health.auth_failure, health.state) == (False, False, "error 368")


# --------------------------------------------------------------------------- secrets


def test_send__cloud_never_logs_the_token_or_the_full_number(
    stub: GatewayStub, gateway: CloudApiGateway, caplog: pytest.LogCaptureFixture
) -> None:
    capture_all_logs(caplog)
    for status, body in [(200, SUCCESS), (400, meta_error(190)), (400, meta_error(131026))]:
        send_answered(stub, gateway, status, body)
    stub.answer("GET", f"/v25.0/{PHONE_ID}", 400, meta_error(190))
    gateway.health()

    assert caplog.records, "the adapter should log something at DEBUG"
    assert_no_secrets(caplog, TOKEN, NUMBER, NUMBER[1:], "Olá Maria")
    assert mask_phone(NUMBER) in caplog.text


# --------------------------------------------------------------------------- connection pool


def test_pool__in_flight_16_keeps_16_connections_shared_by_the_sending_threads(
    stub: GatewayStub,
) -> None:
    """Two waves of 16 concurrent sends, each from 16 fresh threads (a rate lane's threads come
    and go): the second wave reuses the first wave's connections instead of opening new ones,
    so the adapter holds one pool of at least in_flight connections to the host."""
    opened: list[object] = []
    accept = stub._server.get_request

    def counting_accept() -> Any:
        connection = accept()
        opened.append(connection[1])
        return connection

    stub._server.get_request = counting_accept  # type: ignore[method-assign]
    stub._server.socket.listen(64)  # the stub's backlog of 5 would drop 16 connects at once
    stub.answer("POST", ROUTE, 200, SUCCESS, delay=0.2)  # the 16 overlap, whatever the load
    gateway = make_gateway(stub, pacing="rate", rate="80", in_flight="16")

    def wave() -> list[SendOutcome]:
        start = threading.Barrier(16)
        outcomes: list[SendOutcome] = []

        def one() -> None:
            start.wait()
            outcomes.append(gateway.send(OutgoingMessage(to=NUMBER, text="Hi")))

        threads = [threading.Thread(target=one) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return outcomes

    try:
        first = wave()
        after_first = len(opened)
        second = wave()
    finally:
        gateway.close()

    assert [o.kind for o in first + second] == [OutcomeKind.SENT] * 32
    assert 1 <= after_first <= 16
    assert len(opened) == after_first, "the second wave opened connections of its own"


def test_pool__is_sized_for_in_flight_and_never_below_requests_default(
    stub: GatewayStub,
) -> None:
    def pool_size(gateway: CloudApiGateway) -> int:
        sizes: list[int] = []
        thread = threading.Thread(  # any thread's session: they all mount the same adapter
            target=lambda: sizes.append(
                gateway._http._session().get_adapter(stub.url).poolmanager.connection_pool_kw[
                    "maxsize"
                ]
            )
        )
        thread.start()
        thread.join()
        gateway.close()
        return sizes[0]

    assert pool_size(make_gateway(stub, in_flight="16")) >= 16
    assert pool_size(make_gateway(stub, in_flight="64")) == 64
    assert pool_size(make_gateway(stub, pacing="human")) >= 10
