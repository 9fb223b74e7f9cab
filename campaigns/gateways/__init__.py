"""Gateway adapters: one module per HTTP dialect, chosen by a session's gateway kind.

``build_gateway(kind, config)`` validates the options of that kind and returns the adapter.
Options are plain strings (they come from the sessions table or the command line):

============  ===================================  =======================================
kind          required options                     optional options (default)
============  ===================================  =======================================
cloud-api     ``phone_number_id``                  ``api_version`` (``v25.0``)
waha          —                                    ``session`` (the session name),
                                                   ``check_exists`` (``false``)
evolution     —                                    ``instance`` (the session name)
console       —                                    —
============  ===================================  =======================================

An unknown option is an error too: a misspelled ``check_exist`` silently ignored would send
without the check the operator asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from campaigns.errors import ConfigurationError
from campaigns.gateways.base import Gateway, GatewayConfig
from campaigns.gateways.cloud_api import CloudApiGateway
from campaigns.gateways.console import ConsoleGateway
from campaigns.gateways.evolution import EvolutionGateway
from campaigns.gateways.waha import WahaGateway, parse_bool_option

GATEWAY_KINDS: tuple[str, ...] = ("cloud-api", "waha", "evolution", "console")

# kind -> (required options, optional options)
_OPTIONS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cloud-api": (("phone_number_id",), ("api_version",)),
    "waha": ((), ("session", "check_exists")),
    "evolution": ((), ("instance",)),
    "console": ((), ()),
}

_FACTORIES: Mapping[str, Callable[[GatewayConfig], Gateway]] = {
    "cloud-api": CloudApiGateway,
    "waha": WahaGateway,
    "evolution": EvolutionGateway,
    "console": ConsoleGateway,
}


def _check_kind(kind: str) -> None:
    if kind not in _OPTIONS:
        raise ConfigurationError(
            f"unknown gateway kind {kind!r}; expected one of {', '.join(GATEWAY_KINDS)}"
        )


def required_options(kind: str) -> tuple[str, ...]:
    """The options a gateway of ``kind`` cannot work without."""
    _check_kind(kind)
    return _OPTIONS[kind][0]


def known_options(kind: str) -> tuple[str, ...]:
    """Every option a gateway of ``kind`` understands, required first."""
    _check_kind(kind)
    required, optional = _OPTIONS[kind]
    return required + optional


def validate_options(kind: str, options: Mapping[str, str]) -> None:
    """Raise :class:`ConfigurationError` naming the first problem in ``options``: an unknown
    kind, a missing or empty required option, an unknown option, a malformed value."""
    required = required_options(kind)
    for name in required:
        if not str(options.get(name, "")).strip():
            raise ConfigurationError(f"gateway {kind} needs option {name}")
    unknown = sorted(set(options) - set(known_options(kind)))
    if unknown:
        raise ConfigurationError(
            f"gateway {kind} does not know option {unknown[0]}; "
            f"known: {', '.join(known_options(kind)) or 'none'}"
        )
    if kind == "waha" and "check_exists" in options:
        parse_bool_option(options["check_exists"], "check_exists")


def build_gateway(kind: str, config: GatewayConfig) -> Gateway:
    """The adapter for ``kind``, configured by ``config``. Raises
    :class:`ConfigurationError` for an unknown kind or invalid options."""
    validate_options(kind, config.options)
    if kind != "console" and not config.base_url.strip():
        raise ConfigurationError(f"gateway {kind} needs a base URL", session=config.session_name)
    return _FACTORIES[kind](config)


__all__ = [
    "GATEWAY_KINDS",
    "Gateway",
    "GatewayConfig",
    "build_gateway",
    "known_options",
    "required_options",
    "validate_options",
]
