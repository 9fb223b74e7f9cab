"""Validation of a sender session's settings before it is stored."""

from __future__ import annotations

from urllib.parse import urlparse

from campaigns.errors import InvalidInput

GATEWAY_KINDS = ("cloud-api", "waha", "evolution", "console")


def validate_session_options(
    gateway: str, name: str, base_url: str, options: dict[str, str]
) -> dict[str, str]:
    """Check a session's gateway, URL and options; fill defaulted options. Raises
    :class:`InvalidInput` with what is wrong and how to fix it."""
    if gateway not in GATEWAY_KINDS:
        raise InvalidInput(f"unknown gateway {gateway!r}; choose one of {', '.join(GATEWAY_KINDS)}")
    if gateway != "console":
        parsed = urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise InvalidInput(f"--base-url must be an http(s) URL, got {base_url!r}")
    if any("token" in key.lower() or "secret" in key.lower() for key in options):
        raise InvalidInput(
            "tokens are never stored: put the token in an environment variable and pass its "
            "name with --token-env"
        )
    options = {str(k): str(v) for k, v in options.items()}
    if gateway == "cloud-api" and not options.get("phone_number_id"):
        raise InvalidInput("a cloud-api session needs --option phone_number_id=<ID>")
    if gateway == "evolution":
        options.setdefault("instance", name)
    if gateway == "waha":
        options.setdefault("session", name)
    return options
