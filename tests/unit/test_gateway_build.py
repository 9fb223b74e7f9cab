"""build_gateway: one adapter per kind, options validated with specific messages."""

from __future__ import annotations

import pytest

from campaigns.errors import ConfigurationError, InvalidInput
from campaigns.gateways import (
    GATEWAY_KINDS,
    build_gateway,
    known_options,
    required_options,
    session_options,
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
    window = ("window_tz", "window_days", "window_hours")
    caps = ("cap_day", "cap_hour", "warmup")
    assert known_options("waha") == (
        "session", "check_exists", "typing", "pacing", "rate", "in_flight", *window, *caps, "new",
    )  # fmt: skip
    assert known_options("console") == ("pacing", "rate", "in_flight", *window, *caps)
    assert known_options("cloud-api")[-2:] == ("portfolio", "tier")


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
        ("console", {"instance": "x"}, "known: pacing, rate, in_flight"),
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


# --------------------------------------------------------------------------- pacing options


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("cloud-api", {"phone_number_id": "1", "pacing": "rate", "rate": "80", "in_flight": "16"}),
        ("cloud-api", {"phone_number_id": "1", "rate": "1000"}),  # rate is the Cloud API default
        ("cloud-api", {"phone_number_id": "1", "pacing": "human"}),
        ("waha", {"pacing": "human"}),
        ("waha", {"pacing": "RATE", "rate": "2.5", "in_flight": "1"}),
        ("evolution", {"pacing": "rate"}),
        ("console", {"pacing": "rate", "in_flight": "256"}),
    ],
)
def test_pacing_options__every_kind_takes_them(kind: str, options: dict[str, str]) -> None:
    validate_options(kind, options)
    base = "console://local" if kind == "console" else "http://gw"
    assert session_options(kind, "sales", base, options).items() >= options.items()


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("cloud-api", {"pacing": "fast"}, "option pacing must be human or rate, got 'fast'"),
        ("cloud-api", {"rate": "0"}, "option rate must be above 0"),
        ("cloud-api", {"rate": "-5"}, "option rate must be above 0"),
        ("cloud-api", {"rate": "1001"}, "option rate must be above 0 and at most 1000"),
        ("cloud-api", {"rate": "nan"}, "option rate must be a finite number"),
        ("cloud-api", {"rate": "inf"}, "option rate must be a finite number"),
        ("cloud-api", {"rate": "eighty"}, "option rate must be a number"),
        ("cloud-api", {"in_flight": "2.5"}, "option in_flight must be a whole number"),
        ("cloud-api", {"in_flight": "0"}, "option in_flight must be a whole number"),
        ("cloud-api", {"pacing": "human", "in_flight": "4"}, "option in_flight needs pacing=rate"),
        ("waha", {"rate": "80"}, "option rate needs pacing=rate"),
        ("evolution", {"in_flight": "16"}, "option in_flight needs pacing=rate"),
    ],
)
def test_pacing_options__a_bad_value_is_refused_naming_the_option(
    kind: str, options: dict[str, str], message: str
) -> None:
    if kind == "cloud-api":
        options = {"phone_number_id": "1", **options}
    with pytest.raises(ConfigurationError, match=message):
        validate_options(kind, options)
    with pytest.raises(InvalidInput, match="nothing was stored") as refused:
        session_options(kind, "sales", "http://gw", options)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(ConfigurationError, match=message):
        build_gateway(kind, config(**options))


# --------------------------------------------------------------------------- window options


@pytest.mark.parametrize("kind", GATEWAY_KINDS)
def test_window_options__every_kind_takes_them(kind: str) -> None:
    options = {
        "window_hours": "08:00-12:00,14:00-20:00",
        "window_days": "mon-sat",
        "window_tz": "America/Sao_Paulo",
    }
    if kind == "cloud-api":
        options["phone_number_id"] = "1"
    assert {"window_hours", "window_days", "window_tz"} <= set(known_options(kind))
    validate_options(kind, options)
    base = "console://local" if kind == "console" else "http://gw"
    assert session_options(kind, "sales", base, options).items() >= options.items()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window_hours": "8-12"}, 'window_hours: "8-12" is not HH:MM-HH:MM'),
        ({"window_hours": "08:00-12:00", "window_days": "someday"}, "window_days: \"someday\""),
        ({"window_hours": "08:00-12:00", "window_tz": "Nowhere/Land"}, "unknown time zone"),
        ({"window_tz": "America/Sao_Paulo"}, "window_tz needs window_hours"),
        ({"window_days": "mon-fri"}, "window_days needs window_hours"),
    ],
)
def test_window_options__a_bad_value_is_refused_naming_the_option(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        validate_options("waha", options)
    with pytest.raises(InvalidInput, match="nothing was stored") as refused:
        session_options("waha", "sales", "http://gw", options)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("waha", {"cap_day": "ten"}, "option cap_day must be a whole number"),
        ("waha", {"cap_hour": "0"}, "option cap_hour must be a whole number"),
        ("waha", {"warmup": "50,20"}, "never shrink"),
        ("waha", {"warmup": "20,x"}, "option warmup must be daily caps"),
        ("waha", {"new": "maybe"}, "option new must be true or false"),
        ("cloud-api", {"phone_number_id": "1", "tier": "500"}, "option tier must be one of"),
    ],
)
def test_validate__malformed_caps_are_refused_naming_the_option(
    kind: str, options: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        validate_options(kind, options)


def test_caps__defaults_are_meta_s_new_portfolio_and_a_month_of_warm_up_for_new_numbers() -> None:
    from campaigns.caps import DEFAULT_WARMUP, caps_from_options

    cloud = caps_from_options("cloud-api", "meta1", {"phone_number_id": "1"})
    assert (cloud.portfolio, cloud.tier) == ("meta1", 250)  # a new portfolio's limit
    shared = caps_from_options("cloud-api", "meta2", {"portfolio": "acme", "tier": "unlimited"})
    assert (shared.portfolio, shared.tier) == ("acme", None)
    fresh = caps_from_options("waha", "wa", {"new": "true"})
    assert fresh.warmup == DEFAULT_WARMUP and fresh.day_cap(1) == 20 and fresh.day_cap(31) is None
    assert not caps_from_options("waha", "wa", {}).limited  # an old number: no caps unless set
    assert caps_from_options("waha", "wa", {"cap_day": "1000", "warmup": "20,50"}).day_cap(2) == 50
