"""Gateway adapters: one module per HTTP dialect, chosen by a session's gateway kind.

This module is the one catalogue of gateway kinds and their options: ``sessions add`` checks a
new session with :func:`session_options`, the workers build adapters with :func:`build_gateway`,
and both apply the same :func:`validate_options`. ``build_gateway(kind, config)`` validates the
options of that kind and returns the adapter.
Options are plain strings (they come from the sessions table or the command line):

============  ===================================  =======================================
kind          required options                     optional options (default)
============  ===================================  =======================================
cloud-api     ``phone_number_id``                  ``api_version`` (``v25.0``)
waha          —                                    ``session`` (the session name),
                                                   ``check_exists`` (``false``),
                                                   ``typing`` (``true``)
evolution     —                                    ``instance`` (the session name),
                                                   ``typing`` (``false``)
console       —                                    —
every kind    —                                    ``pacing`` (``rate`` for cloud-api,
                                                   ``human`` for the others), ``rate``
                                                   (80), ``in_flight`` (16)
every kind    —                                    ``window_hours`` (none: always open),
                                                   ``window_days`` (every day),
                                                   ``window_tz`` (``UTC``)
============  ===================================  =======================================

The pacing options are the session's profile (:mod:`campaigns.profiles`): ``rate`` and
``in_flight`` need ``pacing=rate``. An unknown option is an error too: a misspelled
``check_exist`` silently ignored would send without the check the operator asked for.

The window options are the session's send window (:mod:`campaigns.windows`), e.g.
``window_hours=08:00-12:00,14:00-20:00 window_days=mon-sat window_tz=America/Sao_Paulo``:
outside it the session's lanes wait. ``window_days`` or ``window_tz`` without ``window_hours``
is an error (the operator meant a window and would get none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlparse

from campaigns.caps import CAP_OPTIONS, NEW_OPTIONS, PORTFOLIO_OPTIONS, caps_from_options
from campaigns.errors import ConfigurationError, InvalidArgument, InvalidInput
from campaigns.gateways.base import Gateway, GatewayConfig
from campaigns.gateways.cloud_api import CloudApiGateway
from campaigns.gateways.console import ConsoleGateway
from campaigns.gateways.evolution import EvolutionGateway
from campaigns.gateways.waha import WahaGateway, parse_bool_option
from campaigns.profiles import PACING_OPTIONS, profile_from_options
from campaigns.windows import WINDOW_OPTIONS, window_from_options

GATEWAY_KINDS: tuple[str, ...] = ("cloud-api", "waha", "evolution", "console")

# kind -> (required options, optional options); a session's pacing profile and send window
# belong to the session whatever its gateway, so every kind takes those options
_OPTIONS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "cloud-api": (
        ("phone_number_id",),
        ("api_version", *PACING_OPTIONS, *WINDOW_OPTIONS, *CAP_OPTIONS, *PORTFOLIO_OPTIONS),
    ),
    "waha": (
        (),
        (
            "session",
            "check_exists",
            "typing",
            *PACING_OPTIONS,
            *WINDOW_OPTIONS,
            *CAP_OPTIONS,
            *NEW_OPTIONS,
        ),
    ),
    "evolution": (
        (),
        ("instance", "typing", *PACING_OPTIONS, *WINDOW_OPTIONS, *CAP_OPTIONS, *NEW_OPTIONS),
    ),
    "console": ((), (*PACING_OPTIONS, *WINDOW_OPTIONS, *CAP_OPTIONS)),
}

# options whose default is the session's own name
_NAMED_AFTER_SESSION: Mapping[str, tuple[str, ...]] = {
    "waha": ("session",),
    "evolution": ("instance",),
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
    for flag in ("check_exists", "typing"):
        if kind in ("waha", "evolution") and flag in options:
            parse_bool_option(options[flag], flag)
    profile_from_options(kind, options)  # names the pacing option that is wrong
    caps_from_options(kind, "", options)  # names the cap option that is wrong
    try:
        window_from_options(options)  # names the window option that is wrong
    except InvalidArgument as exc:
        raise ConfigurationError(f"gateway {kind}: {exc}") from None


def session_options(
    kind: str, name: str, base_url: str, options: Mapping[str, str]
) -> dict[str, str]:
    """The options to store for a new session of ``kind``, checked the way the workers will
    check them (:func:`validate_options`), with defaulted names filled in. A session refused
    here would otherwise be stored and fail every batch of every campaign on it later.
    Raises :class:`InvalidInput` saying what is wrong and how to fix it."""
    if kind not in _OPTIONS:
        raise InvalidInput(f"unknown gateway {kind!r}; choose one of {', '.join(GATEWAY_KINDS)}")
    if kind != "console":
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidInput(f"--base-url must be an http(s) URL, got {base_url!r}")
    if any("token" in key.lower() or "secret" in key.lower() for key in options):
        raise InvalidInput(
            "tokens are never stored: put the token in an environment variable and pass its "
            "name with --token-env"
        )
    checked = {str(k): str(v) for k, v in options.items()}
    try:
        validate_options(kind, checked)
    except ConfigurationError as exc:
        raise InvalidInput(f"{exc}; nothing was stored") from None
    # the gateway's own name for the session defaults to ours; stored so that lists show it
    # and webhooks can map it back
    for option in _NAMED_AFTER_SESSION.get(kind, ()):
        checked.setdefault(option, name)
    return checked


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
    "session_options",
    "validate_options",
]
