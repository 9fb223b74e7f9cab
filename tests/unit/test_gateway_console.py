"""The dry-run console gateway."""

from __future__ import annotations

import logging

import pytest

from campaigns.gateways import build_gateway
from campaigns.gateways.base import GatewayConfig, OutcomeKind, OutgoingMessage, TemplateSpec
from campaigns.gateways.console import ConsoleGateway
from campaigns.masking import mask_phone

NUMBER = "+5511999991234"


def test_send__console_is_sent_with_a_fresh_id_and_one_masked_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = ConsoleGateway(GatewayConfig("demo", ""))

    first = gateway.send(OutgoingMessage(to=NUMBER, text="a secret promotion"))
    second = gateway.send(OutgoingMessage(to=NUMBER, text="a secret promotion"))

    assert first.kind is second.kind is OutcomeKind.SENT
    assert first.message_id and second.message_id
    assert first.message_id.startswith("console-")
    assert first.message_id != second.message_id
    assert len(caplog.records) == 2
    assert mask_phone(NUMBER) in caplog.records[0].getMessage()
    assert first.message_id in caplog.records[0].getMessage()
    assert NUMBER not in caplog.text
    assert "secret promotion" not in caplog.text


def test_send__console_template_logs_the_template_name_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    gateway = ConsoleGateway(GatewayConfig("demo", ""))
    template = TemplateSpec("order_update", "pt_BR", ({"type": "body", "parameters": []},))

    outcome = gateway.send(OutgoingMessage(to=NUMBER, template=template))

    assert outcome.kind is OutcomeKind.SENT
    assert "template order_update" in caplog.text


def test_health__console_is_always_connected() -> None:
    gateway = build_gateway("console", GatewayConfig("demo", ""))

    health = gateway.health()

    assert (health.connected, health.state, health.auth_failure) == (True, "console", False)
    gateway.close()
