"""Sender protection against the sandbox: WAHA's 475 capping and 463 timelock (sends, session
info, the adapters' reading of both), and typing before a send (WAHA's seen → typing → stop →
sendText, Evolution's ``delay``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.domain import StopKind
from campaigns.gateways.base import GatewayConfig, OutcomeKind, OutgoingMessage
from campaigns.gateways.evolution import EvolutionGateway
from campaigns.gateways.waha import WahaGateway
from campaigns.sandbox import SandboxRecord, SandboxServer
from tests.integration.test_sandbox_helpers import Client, running_sandbox

NUMBER = "+5511999991234"
KEY = {"X-Api-Key": "waha-key"}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    with running_sandbox(tmp_path) as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[Client]:
    client = Client(sandbox.url)
    yield client
    client.close()


def waha(sandbox: SandboxServer, session: str = "sales", **options: str) -> WahaGateway:
    config = GatewayConfig(session, sandbox.url, token="waha-key", options=options,
                           connect_timeout=1.0, read_timeout=5.0)
    return WahaGateway(config)


def evolution(sandbox: SandboxServer, **options: str) -> EvolutionGateway:
    config = GatewayConfig("sales", sandbox.url, token="evo-key", options=options,
                           connect_timeout=1.0, read_timeout=5.0)
    return EvolutionGateway(config)


def hi(typing_s: float = 0.0) -> OutgoingMessage:
    return OutgoingMessage(to=NUMBER, text="Hi", typing_s=typing_s)


def session_info(client: Client, session: str = "sales") -> Any:
    answer = client.get(f"/api/sessions/{session}", headers=KEY)
    assert answer.status_code == 200
    return answer.json()


# --------------------------------------------------------------------------- 475 capping


def test_cap__send_is_refused_with_475_and_the_cycle_end(client: Client) -> None:
    capped = client.control.cap("sales", 30)["capped"]["sales"]

    answer = client.post("/api/sendText", headers=KEY,
                         json={"session": "sales", "chatId": "5511999991234@c.us", "text": "Hi"})

    assert answer.status_code == 500
    exception = answer.json()["exception"]
    assert exception["message"] == "2 UNKNOWN: server returned error 475"
    assert exception["cappingStatus"] == "CAPPED"
    assert exception["cycleEndTimestamp"] == capped["cycleEndTimestamp"]
    assert exception["cycleEnd"] == capped["cycleEnd"] and capped["cycleEnd"].endswith("Z")
    assert 29 <= capped["cycleEndTimestamp"] - time.time() <= 31.5


def test_cap__waha_adapter_stops_limited_until_the_cycle_end(
    client: Client, sandbox: SandboxServer
) -> None:
    end = client.control.cap("sales", 600)["capped"]["sales"]["cycleEndTimestamp"]
    gateway = waha(sandbox)

    outcome = gateway.send(hi())

    assert (outcome.kind, outcome.stop) == (OutcomeKind.SESSION_DOWN, StopKind.LIMITED)
    assert outcome.retry_after == pytest.approx(end - time.time(), abs=1.5)
    assert outcome.error_message is not None
    assert outcome.error_message.startswith("WhatsApp capped the number until ")
    assert "(error 475, cappingStatus=CAPPED)" in outcome.error_message
    [refusal] = SandboxRecord(sandbox.record_path).refusals()
    assert (refusal.fault, refusal.code, refusal.status) == ("cap", "475", 500)
    assert SandboxRecord(sandbox.record_path).count() == 0
    gateway.close()


def test_cap__sends_pass_again_after_the_cycle_end(client: Client, sandbox: SandboxServer) -> None:
    end = client.control.cap("sales", 0.5)["capped"]["sales"]["cycleEndTimestamp"]
    gateway = waha(sandbox)
    assert gateway.send(hi()).kind is OutcomeKind.SESSION_DOWN

    time.sleep(max(0.0, end - time.time()) + 0.05)

    assert gateway.send(hi()).kind is OutcomeKind.SENT
    assert "capping" not in session_info(client)
    assert client.control.state()["capped"] == {}
    gateway.close()


def test_cap__health_is_connected_but_limited_until_the_cycle_end(
    client: Client, sandbox: SandboxServer
) -> None:
    end = client.control.cap("sales", 600)["capped"]["sales"]["cycleEndTimestamp"]
    info = session_info(client)
    assert info["status"] == "WORKING" and info["capping"]["status"] == "CAPPED"
    assert info["capping"]["cycleEndTimestamp"] == end
    gateway = waha(sandbox)

    health = gateway.health()

    assert (health.connected, health.state) == (True, "WORKING")
    assert (health.stop, health.until) == (StopKind.LIMITED, float(end))
    assert "error 475" in health.detail
    assert health.watch_answer() == (False, "WORKING (limited)")
    assert health.watch_answer(now=end + 1) == (True, "WORKING")
    gateway.close()


def test_cap__state_and_stats_show_it_and_reset_ends_it(client: Client) -> None:
    client.control.cap("sales", 600)

    assert set(client.control.state()["capped"]) == {"sales"}
    assert set(client.control.stats()["capped"]) == {"sales"}
    client.control.reset()
    assert client.control.state()["capped"] == {}


# --------------------------------------------------------------------------- 463 timelock


def test_timelock__send_is_blocked_until_restore(client: Client, sandbox: SandboxServer) -> None:
    client.control.timelock("sales")
    gateway = waha(sandbox)

    outcome = gateway.send(hi())

    assert (outcome.kind, outcome.stop) == (OutcomeKind.SESSION_DOWN, StopKind.BLOCKED)
    assert outcome.error_message is not None and "error 463" in outcome.error_message
    health = gateway.health()
    assert (health.connected, health.state, health.stop) == (True, "WORKING", StopKind.BLOCKED)
    assert health.until is None and health.watch_answer()[0] is False
    info = session_info(client)
    assert info["me"]["reachoutTimelock"] == {"isActive": True, "timeEnforcementEnds": None}
    assert set(client.control.state()["timelocked"]) == {"sales"}

    assert client.control.restore("sales")["lifted"] == ["sales"]

    assert gateway.send(hi()).kind is OutcomeKind.SENT
    assert gateway.health().stop is None and "reachoutTimelock" not in session_info(client)["me"]
    gateway.close()


def test_timelock__with_seconds_tells_its_end(client: Client, sandbox: SandboxServer) -> None:
    told = client.control.timelock("sales", seconds=120)["timelocked"]["sales"]
    gateway = waha(sandbox)

    health = gateway.health()

    assert health.stop is StopKind.BLOCKED and health.until == float(told["timeEnforcementEnds"])
    assert health.watch_answer(now=health.until + 1)[0] is False  # blocked: an operator resumes
    assert waha(sandbox, session="other").health().stop is None
    gateway.close()


def test_timelock__other_dialects_and_sessions_are_untouched(
    client: Client, sandbox: SandboxServer
) -> None:
    client.control.timelock("sales")
    client.control.cap("sales", 60)

    assert evolution(sandbox).send(hi()).kind is OutcomeKind.SENT
    assert waha(sandbox, session="other").send(hi()).kind is OutcomeKind.SENT


# --------------------------------------------------------------------------- typing


def test_typing__waha_seen_typing_wait_stop_then_send(sandbox: SandboxServer) -> None:
    gateway = waha(sandbox)

    outcome = gateway.send(hi(typing_s=0.3))

    assert outcome.kind is OutcomeKind.SENT
    record = SandboxRecord(sandbox.record_path)
    seen, start, stop = record.presence(session="sales")
    assert [p.action for p in (seen, start, stop)] == ["seen", "start_typing", "stop_typing"]
    assert {p.chat_id for p in (seen, start, stop)} == {"5511999991234@c.us"}
    assert seen.at <= start.at and stop.at - start.at >= 0.3
    [message] = record.messages(session="sales")
    assert message.received_at >= stop.at
    gateway.close()


def test_typing__off_or_zero_sends_text_alone(sandbox: SandboxServer, client: Client) -> None:
    off = waha(sandbox, typing="false")
    assert off.send(hi(typing_s=0.3)).kind is OutcomeKind.SENT
    on = waha(sandbox)
    assert on.send(hi()).kind is OutcomeKind.SENT

    assert client.control.presence()["count"] == 0
    assert SandboxRecord(sandbox.record_path).count(session="sales") == 2
    off.close()
    on.close()


def test_typing__waha_session_not_working_stops_before_sending(
    client: Client, sandbox: SandboxServer
) -> None:
    client.control.drop("sales", waha_status="SCAN_QR_CODE")
    gateway = waha(sandbox)

    outcome = gateway.send(hi(typing_s=0.2))

    assert (outcome.kind, outcome.stop) == (OutcomeKind.SESSION_DOWN, StopKind.DISCONNECTED)
    assert outcome.error_message is not None and "SCAN_QR_CODE" in outcome.error_message
    requests = client.control.stats()["requests"]
    assert requests.get("waha.seen.422") == 1 and not any(k.startswith("waha.send")
                                                           for k in requests)
    gateway.close()


def test_typing__waha_presence_endpoints_validate_the_body(client: Client) -> None:
    assert client.post("/api/startTyping", json={"session": "sales"}, headers=KEY).status_code \
        == 400
    assert client.post("/api/stopTyping", json={"chatId": "1@c.us"}).status_code == 401
    answer = client.post("/api/startTyping", json={"chatId": "1@c.us"}, headers=KEY)
    assert (answer.status_code, answer.json()) == (201, {"result": True})
    [row] = client.control.presence(session="default")["presence"]
    assert (row["action"], row["dialect"], row["duration_ms"]) == ("start_typing", "waha", None)


def test_typing__evolution_delay_is_carried_and_honoured(sandbox: SandboxServer) -> None:
    gateway = evolution(sandbox, typing="true")
    started = time.monotonic()

    outcome = gateway.send(hi(typing_s=0.4))

    assert outcome.kind is OutcomeKind.SENT and time.monotonic() - started >= 0.4
    record = SandboxRecord(sandbox.record_path)
    [presence] = record.presence(dialect="evolution")
    assert (presence.action, presence.duration_ms, presence.chat_id) == (
        "composing", 400, "5511999991234")
    [message] = record.messages(dialect="evolution")
    assert message.answered_at is not None and message.answered_at - message.received_at >= 0.4
    gateway.close()


def test_typing__evolution_default_sends_no_delay(sandbox: SandboxServer, client: Client) -> None:
    gateway = evolution(sandbox)
    assert gateway.send(hi(typing_s=0.4)).kind is OutcomeKind.SENT
    assert client.control.presence()["count"] == 0
    gateway.close()


def test_typing__evolution_sandbox_refuses_a_bad_delay(client: Client) -> None:
    answer = client.post("/message/sendText/sales", headers={"apikey": "k"},
                         json={"number": "5511999991234", "text": "Hi", "delay": "soon"})
    assert answer.status_code == 400
