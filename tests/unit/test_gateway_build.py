"""build_gateway: one adapter per kind, options validated with specific messages."""

from __future__ import annotations

import pytest

from campaigns.errors import ConfigurationError
from campaigns.gateways import (
    GATEWAY_KINDS,
    build_gateway,
    known_options,
    required_options,
    validate_options,
)
from campaigns.gateways.base import GatewayConfig
from campaigns.gateways.cloud_api import CloudApiGateway
from campaigns.gateways.console import ConsoleGateway
from campaigns.gateways.evolution import EvolutionGateway
from campaigns.gateways.waha import WahaGateway

TOKEN = "build-secret-token-3"


def config(**options: str) -> GatewayConfig:
    return GatewayConfig("sales", "http://gw:3000", TOKEN, options)


@pytest.mark.parametrize(
    ("kind", "options", "cls"),
    [
        ("cloud-api", {"phone_number_id": "1065"}, CloudApiGateway),
        ("waha", {}, WahaGateway),
        ("evolution", {}, EvolutionGateway),
        ("console", {}, ConsoleGateway),
    ],
)
def test_build__each_kind_gives_its_adapter(
    kind: str, options: dict[str, str], cls: type[object]
) -> None:
    gateway = build_gateway(kind, config(**options))

    assert isinstance(gateway, cls)
    assert gateway.kind == kind
    gateway.close()


def test_build__kinds_are_the_four_documented_ones() -> None:
    assert GATEWAY_KINDS == ("cloud-api", "waha", "evolution", "console")
    assert required_options("cloud-api") == ("phone_number_id",)
    assert required_options("waha") == required_options("evolution") == ()
    assert known_options("waha") == ("session", "check_exists")


def test_build__waha_session_and_evolution_instance_default_to_the_session_name() -> None:
    waha = build_gateway("waha", config())
    evolution = build_gateway("evolution", config())

    assert isinstance(waha, WahaGateway) and waha.session == "sales"
    assert isinstance(evolution, EvolutionGateway) and evolution.instance == "sales"
    assert isinstance(waha, WahaGateway) and waha.check_exists is False


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("twilio", {}, "unknown gateway kind 'twilio'"),
        ("cloud-api", {}, "needs option phone_number_id"),
        ("cloud-api", {"phone_number_id": "  "}, "needs option phone_number_id"),
        ("waha", {"check_exist": "true"}, "does not know option check_exist"),
        ("waha", {"check_exists": "maybe"}, "check_exists must be true or false"),
        ("evolution", {"session": "x"}, "does not know option session"),
        ("console", {"instance": "x"}, "known: none"),
    ],
)
def test_build__invalid_configuration_is_refused_with_a_specific_message(
    kind: str, options: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        build_gateway(kind, config(**options))
    assert TOKEN not in str(raised.value)


def test_build__http_kinds_need_a_base_url() -> None:
    with pytest.raises(ConfigurationError, match="base URL"):
        build_gateway("waha", GatewayConfig("sales", " "))


def test_validate_options__accepts_a_complete_set() -> None:
    validate_options("cloud-api", {"phone_number_id": "1", "api_version": "v26.0"})
    validate_options("waha", {"session": "default", "check_exists": "False"})
