"""Reading WhatsApp's limits out of WAHA answers (475 capping, 463 timelock), the typing helper,
the ``typing`` option, and the typing calls' wire shapes against a loopback stub."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from campaigns.domain import StopKind
from campaigns.errors import ConfigurationError
from campaigns.gateways import build_gateway, validate_options
from campaigns.gateways.base import (
    GatewayConfig,
    OutcomeKind,
    OutgoingMessage,
    SessionHealth,
    typing_seconds,
)
from campaigns.gateways.evolution import MAX_TYPING_S, EvolutionGateway
from campaigns.gateways.waha import WahaGateway
from campaigns.gateways.waha_limits import (
    CAPPING_WAIT_S,
    MAX_CAPPING_WAIT_S,
    capping_wait,
    cycle_end,
    session_health,
)
from tests.contracts import validate_evolution_request
from tests.gateway_stub import GatewayStub

NUMBER = "+5511999991234"
CHAT_ID = "5511999991234@c.us"


@pytest.fixture
def stub() -> Iterator[GatewayStub]:
    with GatewayStub() as running:
        yield running


def config(stub: GatewayStub, **options: str) -> GatewayConfig:
    return GatewayConfig("default", stub.url, token="k", options=options, read_timeout=2.0)


def capped(**fields: Any) -> dict[str, Any]:
    return {"statusCode": 500,
            "exception": {"message": "2 UNKNOWN: server returned error 475", "code": 2, **fields}}


# --------------------------------------------------------------------------- 475 bodies


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(capped(cycleEndTimestamp=2_000_000_000), id="exception-seconds"),
        pytest.param(capped(cycleEndTimestamp=2_000_000_000_000), id="exception-ms"),
        pytest.param(capped(cycleEnd="2033-05-18T03:33:20Z"), id="exception-iso"),
        pytest.param({**capped(), "cycleEndTimestamp": "2000000000"}, id="top-level-string"),
        pytest.param(capped(cycle_end_timestamp=2_000_000_000), id="snake-case"),
    ],
)
def test_cycle_end__read_from_every_shape(body: dict[str, Any]) -> None:
    assert cycle_end(body) == 2_000_000_000.0


def test_capping_wait__cycle_end_else_retry_after_else_a_day() -> None:
    now = 1_800_000_000.0
    assert capping_wait(capped(cycleEndTimestamp=now + 90), 5.0, now=now) == 90.0
    assert capping_wait(capped(cycleEndTimestamp=now - 90), 5.0, now=now) == 0.0
    assert capping_wait(capped(), 5400.0, now=now) == 5400.0
    assert capping_wait(capped(), None, now=now) == CAPPING_WAIT_S
    assert capping_wait(capped(cycleEndTimestamp=now + 10**8), None, now=now) == (
        MAX_CAPPING_WAIT_S)


def test_send__waha_475_with_cycle_end_is_limited_until_then(stub: GatewayStub) -> None:
    end = time.time() + 3600
    stub.answer("POST", "/api/sendText", 500, capped(cappingStatus="CAPPED",
                                                     cycleEndTimestamp=end),
                headers={"Retry-After": "60"})
    gateway = WahaGateway(config(stub))

    outcome = gateway.send(OutgoingMessage(NUMBER, "Hi"))

    assert (outcome.kind, outcome.stop) == (OutcomeKind.SESSION_DOWN, StopKind.LIMITED)
    assert outcome.retry_after == pytest.approx(3600, abs=2)
    when = datetime.fromtimestamp(end, UTC)
    # the date only when the end is not today (UTC): an hour ahead is tomorrow after 23:00
    shown = "%H:%M UTC" if when.date() == datetime.now(UTC).date() else "%Y-%m-%d %H:%M UTC"
    assert outcome.error_message is not None
    assert f"until {when.strftime(shown)}" in outcome.error_message
    assert "cappingStatus=CAPPED" in outcome.error_message
    gateway.close()


def test_send__waha_475_with_a_cycle_ending_another_day__names_the_date(
    stub: GatewayStub,
) -> None:
    end = time.time() + 3 * 86400
    stub.answer("POST", "/api/sendText", 500, capped(cappingStatus="CAPPED",
                                                     cycleEndTimestamp=end))  # fmt: skip
    gateway = WahaGateway(config(stub))

    outcome = gateway.send(OutgoingMessage(NUMBER, "Hi"))

    shown = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M UTC")
    assert outcome.error_message is not None and f"until {shown}" in outcome.error_message
    gateway.close()


# --------------------------------------------------------------------------- session info


def test_session_health__working_without_limits_has_no_stop() -> None:
    assert session_health("WORKING", {"me": {"id": "1@c.us"}}) == SessionHealth(True, "WORKING")
    assert session_health("STOPPED", {"capping": {"status": "CAPPED"}}) == SessionHealth(
        False, "STOPPED")


def test_session_health__capping_past_its_end_or_not_capped_is_no_stop() -> None:
    now = 1_800_000_000.0
    past = {"capping": {"status": "CAPPED", "cycleEndTimestamp": now - 1}}
    assert session_health("WORKING", past, now=now).stop is None
    assert session_health("WORKING", {"capping": {"status": "NONE"}}, now=now).stop is None
    open_ended = session_health("WORKING", {"capping": {"status": "CAPPED"}}, now=now)
    assert (open_ended.stop, open_ended.until) == (StopKind.LIMITED, None)
    assert open_ended.watch_answer(now=now + 10**9)[0] is False


def test_session_health__timelock_wins_and_is_blocked() -> None:
    body = {"me": {"id": "1@c.us", "reachoutTimelock": {"isActive": True,
                                                        "timeEnforcementEnds": 1_900_000_000}},
            "capping": {"status": "CAPPED", "cycleEndTimestamp": 1_900_000_000}}
    health = session_health("WORKING", body, now=1_800_000_000)
    assert (health.connected, health.stop, health.until) == (True, StopKind.BLOCKED, 1.9e9)
    assert "do not restart" in health.detail
    lifted = {"me": {"reachoutTimelock": {"isActive": False}}}
    assert session_health("WORKING", lifted).stop is None
    assert session_health("WORKING", {"timelock": {"active": True}}).stop is StopKind.BLOCKED


def test_health__waha_never_calls_anything_but_the_session_info(stub: GatewayStub) -> None:
    stub.answer("GET", "/api/sessions/default", 200, {"name": "default", "status": "WORKING",
                                                       "me": {"reachoutTimelock": {
                                                           "isActive": True}}})
    gateway = WahaGateway(config(stub))

    assert gateway.health().stop is StopKind.BLOCKED

    assert [(r.method, r.route) for r in stub.requests] == [("GET", "/api/sessions/default")]
    gateway.close()


# --------------------------------------------------------------------------- typing


def test_typing_seconds__sized_to_the_text_and_clamped() -> None:
    assert typing_seconds("") == 1.0
    assert typing_seconds("x" * 40) == 2.0
    assert typing_seconds("x" * 1000) == 5.0
    assert typing_seconds("x" * 10, low=0.1, high=0.3) == 0.3
    with pytest.raises(ValueError):
        typing_seconds("x", low=2, high=1)


def test_options__typing_must_be_true_or_false() -> None:
    validate_options("waha", {"typing": "False"})
    validate_options("evolution", {"typing": "true"})
    for kind in ("waha", "evolution"):
        with pytest.raises(ConfigurationError, match="typing must be true or false"):
            validate_options(kind, {"typing": "yes"})
    with pytest.raises(ConfigurationError):
        validate_options("cloud-api", {"phone_number_id": "1", "typing": "true"})


def test_send__waha_typing_calls_follow_the_docs_then_send(stub: GatewayStub) -> None:
    for path in ("/api/sendSeen", "/api/startTyping", "/api/stopTyping"):
        stub.answer("POST", path, 201, {"result": True})
    stub.answer("POST", "/api/sendText", 201, {"key": {"id": "X"}})
    gateway = build_gateway("waha", config(stub))
    assert isinstance(gateway, WahaGateway) and gateway.typing is True

    assert gateway.send(OutgoingMessage(NUMBER, "Hi", typing_s=0.05)).kind is OutcomeKind.SENT

    assert [r.route for r in stub.requests] == [
        "/api/sendSeen", "/api/startTyping", "/api/stopTyping", "/api/sendText"]
    for request in stub.requests[:3]:
        assert request.json == {"session": "default", "chatId": CHAT_ID}
    gateway.close()


def test_send__waha_typing_failures_never_fail_the_message(stub: GatewayStub) -> None:
    stub.answer("POST", "/api/sendSeen", 500, {"statusCode": 500, "exception": {"message": "x"}})
    stub.answer("POST", "/api/startTyping", 404, {"message": "Cannot POST", "statusCode": 404})
    stub.answer("POST", "/api/stopTyping", 422, {"error": "OnlyDefaultSessionIsAllowed"})
    stub.answer("POST", "/api/sendText", 201, {"key": {"id": "X"}})
    gateway = WahaGateway(config(stub))

    outcome = gateway.send(OutgoingMessage(NUMBER, "Hi", typing_s=0.01))

    assert (outcome.kind, outcome.message_id) == (OutcomeKind.SENT, "X")
    gateway.close()


def test_send__evolution_typing_carries_delay_in_ms_within_the_contract(
    stub: GatewayStub,
) -> None:
    stub.answer("POST", "/message/sendText/default", 201, {"key": {"id": "BAE5"}})
    gateway = EvolutionGateway(config(stub, typing="true"))

    gateway.send(OutgoingMessage(NUMBER, "Hi", typing_s=1.25))
    gateway.send(OutgoingMessage(NUMBER, "Hi", typing_s=MAX_TYPING_S * 3))
    gateway.send(OutgoingMessage(NUMBER, "Hi"))

    bodies = [r.json for r in stub.requests]
    assert [b.get("delay") for b in bodies] == [1250, int(MAX_TYPING_S * 1000), None]
    for body in bodies:
        validate_evolution_request("/message/sendText/{instance}", body)
    gateway.close()
