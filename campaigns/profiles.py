"""Pacing profiles: how fast one sender session may send (design.md, "Sending lanes").

A WhatsApp number, not a worker or a campaign, is what can be banned, throttled or capped, so
the profile belongs to the session (its ``pacing``, ``rate`` and ``in_flight`` options):

- ``human`` (default for WAHA, Evolution and the console): one request in flight, consecutive
  sends a random gap in the campaign's [min_interval, max_interval] apart (the original design).
- ``rate`` (default for the Cloud API): up to ``rate`` messages per second (default 80, Meta's
  default throughput per number; up to 1,000 after Meta's upgrade) with up to ``in_flight``
  requests outstanding, on a token bucket on the Redis clock.

A campaign's own intervals may only slow a session down, never speed it past its profile.
Pure values: no Redis, no database.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

from campaigns.errors import ConfigurationError

PACING_OPTIONS = ("pacing", "rate", "in_flight")
"""The session options every gateway kind takes (see campaigns.gateways' catalogue)."""

DEFAULT_RATE = 80.0
"""Meta's default Cloud API throughput per business phone number (messages per second)."""
MAX_RATE = 1000.0
"""Meta's highest throughput tier per number; a higher setting could only be answered 130429."""
DEFAULT_IN_FLIGHT = 32
"""Outstanding requests of a rate session. A lane sends at most in_flight / round trip
messages per second (Little's law): Meta's 80/s at a 250 ms round trip needs 20 outstanding,
so 16 would cap a lane at 64/s; 32 leaves room for slower answers while the bucket keeps the
rate. A crash may leave up to in_flight recipients unknown."""
MAX_IN_FLIGHT = 256
BOOK_AHEAD_S = 0.05
"""How far ahead a rate session books send slots (see PacingProfile.burst)."""


class PacingKind(enum.StrEnum):
    HUMAN = "human"
    RATE = "rate"


@dataclass(frozen=True, slots=True)
class PacingProfile:
    """How one session paces its sends."""

    kind: PacingKind = PacingKind.HUMAN
    rate: float = DEFAULT_RATE
    """Messages per second (``rate`` profiles)."""
    in_flight: int = 1
    """Requests outstanding at once (``human`` profiles always have 1)."""

    @property
    def is_rate(self) -> bool:
        return self.kind is PacingKind.RATE

    @property
    def burst(self) -> int:
        """Send slots a ``rate`` session books ahead at most: BOOK_AHEAD_S worth (so one claim
        statement serves several sends), never more than ``in_flight``. A slot booked further
        ahead holds a send thread while it waits: at ``rate`` r with round trip L a lane needs
        r × (L + BOOK_AHEAD_S) threads, so a long horizon would starve ``in_flight``."""
        return max(1, min(self.in_flight, int(self.rate * BOOK_AHEAD_S)))

    def describe(self) -> str:
        """``human`` or ``rate 80/s, 16 in flight``, for lists and logs."""
        if self.is_rate:
            return f"rate {self.rate:g}/s, {self.in_flight} in flight"
        return "human"


def default_kind(gateway: str) -> PacingKind:
    """The profile a gateway kind gets when the session names none."""
    return PacingKind.RATE if gateway == "cloud-api" else PacingKind.HUMAN


def profile_from_options(gateway: str, options: Mapping[str, str]) -> PacingProfile:
    """The session's profile from its stored options (strings). Raises
    :class:`ConfigurationError` naming the option when a value is malformed."""
    raw_kind = options.get("pacing", "").strip().lower() or default_kind(gateway).value
    try:
        kind = PacingKind(raw_kind)
    except ValueError:
        raise ConfigurationError(
            f"option pacing must be human or rate, got {options.get('pacing')!r}"
        ) from None
    if kind is PacingKind.HUMAN:
        for option in ("rate", "in_flight"):
            if option in options:
                raise ConfigurationError(
                    f"option {option} needs pacing=rate (a human session sends one message "
                    "at a time, at the campaign's random gaps)"
                )
        return PacingProfile(PacingKind.HUMAN, in_flight=1)
    rate = _number(options, "rate", DEFAULT_RATE)
    if not 0 < rate <= MAX_RATE:
        raise ConfigurationError(f"option rate must be above 0 and at most {MAX_RATE:g}/s")
    in_flight = _number(options, "in_flight", float(DEFAULT_IN_FLIGHT))
    if not in_flight.is_integer() or not 1 <= in_flight <= MAX_IN_FLIGHT:
        raise ConfigurationError(
            f"option in_flight must be a whole number from 1 to {MAX_IN_FLIGHT}, got {in_flight:g}"
        )
    return PacingProfile(PacingKind.RATE, rate=rate, in_flight=int(in_flight))


def _number(options: Mapping[str, str], name: str, default: float) -> float:
    raw = options.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"option {name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigurationError(f"option {name} must be a finite number, got {raw!r}")
    return value
