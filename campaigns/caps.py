"""Sender caps as values: a session's limits from its options (pure; no Redis, no database).

See :mod:`campaigns.capacity` for the options table and how the counts are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from campaigns.errors import ConfigurationError

CAP_OPTIONS = ("cap_day", "cap_hour", "warmup")
"""The caps every gateway kind takes."""
NEW_OPTIONS = ("new",)
"""WAHA and Evolution: a new number gets the default warm-up."""
PORTFOLIO_OPTIONS = ("portfolio", "tier")
"""The Cloud API: the business portfolio and its messaging limit."""

DEFAULT_WARMUP: tuple[int, ...] = (
    20, 20, 20, 30, 30, 40, 50, 60, 70, 80, 100, 100, 120, 140, 160,
    180, 200, 200, 250, 250, 300, 300, 350, 400, 450, 500, 600, 700, 800, 1000,
)  # fmt: skip
"""A month of daily caps for a number marked new: 20 a day the first days, 1,000 by day 30.
No gateway documents a safe volume for a new number; users of peer tools report new numbers
blocked before their twentieth message and ask for a warm-up (evolution-api issue #1840), and
Meta itself starts a new business portfolio at 250 unique recipients a day. So the schedule
starts below both and grows over a month. Conservative on purpose: a ban costs the number."""

TIERS: Mapping[str, int | None] = {
    "250": 250,
    "2000": 2000,
    "10000": 10000,
    "100000": 100000,
    "unlimited": None,
}
"""Meta's messaging limits (unique recipients per rolling 24 h per business portfolio)."""
DEFAULT_TIER = "250"
DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class Caps:
    """A session's limits; None everywhere means nothing to count."""

    per_day: int | None = None
    per_hour: int | None = None
    warmup: tuple[int, ...] = ()
    portfolio: str | None = None
    """Cloud API sessions only: the portfolio whose messaging limit they share."""
    tier: int | None = None
    """Unique recipients per rolling day of the portfolio (None: unlimited)."""

    @property
    def counted(self) -> bool:
        return self.per_day is not None or self.per_hour is not None or bool(self.warmup)

    @property
    def limited(self) -> bool:
        return self.counted or self.tier is not None

    def day_cap(self, day: int | None) -> int | None:
        """The cap per rolling day on warm-up day ``day`` (1 = the day of the first send; None:
        nothing sent yet, day 1)."""
        caps = [c for c in (self.per_day,) if c is not None]
        if self.warmup:
            index = max(1, day or 1) - 1
            if index < len(self.warmup):
                caps.append(self.warmup[index])
        return min(caps) if caps else None

    def describe(self) -> str:
        """``1000/day, 100/h, warm-up 20→1000 over 30 days, portfolio acme 250/day``."""
        parts = []
        if self.per_day is not None:
            parts.append(f"{self.per_day}/day")
        if self.per_hour is not None:
            parts.append(f"{self.per_hour}/h")
        if self.warmup:
            parts.append(
                f"warm-up {self.warmup[0]}→{self.warmup[-1]} over {len(self.warmup)} days"
            )
        if self.portfolio is not None:
            tier = "unlimited" if self.tier is None else f"{self.tier} recipients/day"
            parts.append(f"portfolio {self.portfolio} {tier}")
        return ", ".join(parts) or "no caps"


def caps_from_options(gateway: str, session: str, options: Mapping[str, str]) -> Caps:
    """The session's caps from its stored options; raises :class:`ConfigurationError` naming
    the option when a value is malformed."""
    per_day = _count(options, "cap_day")
    per_hour = _count(options, "cap_hour")
    new = _flag(options, "new")
    raw_warmup = options.get("warmup", "").strip().lower()
    warmup: tuple[int, ...] = ()
    if raw_warmup == "default" or (not raw_warmup and new and gateway != "cloud-api"):
        warmup = DEFAULT_WARMUP
    elif raw_warmup not in ("", "off", "none"):
        try:
            warmup = tuple(int(part) for part in raw_warmup.split(","))
        except ValueError:
            raise ConfigurationError(
                f"option warmup must be daily caps like 20,50,100,200 or 'default', "
                f"got {options['warmup']!r}"
            ) from None
        if any(cap < 1 for cap in warmup) or list(warmup) != sorted(warmup):
            raise ConfigurationError(
                f"option warmup must be positive daily caps that never shrink, "
                f"got {options['warmup']!r}"
            )
    portfolio: str | None = None
    tier: int | None = None
    if gateway == "cloud-api":
        portfolio = options.get("portfolio", "").strip() or session
        raw_tier = options.get("tier", "").strip().lower() or DEFAULT_TIER
        if raw_tier not in TIERS:
            raise ConfigurationError(
                f"option tier must be one of Meta's messaging limits ({', '.join(TIERS)}), "
                f"got {options.get('tier')!r}"
            )
        tier = TIERS[raw_tier]
    else:
        for option in ("portfolio", "tier"):
            if option in options:
                raise ConfigurationError(
                    f"option {option} is the Cloud API's messaging limit; a {gateway} session "
                    "has no business portfolio (use cap_day)"
                )
    return Caps(per_day, per_hour, warmup, portfolio, tier)


def _count(options: Mapping[str, str], name: str) -> int | None:
    raw = options.get(name, "").strip()
    if not raw or raw.lower() in ("none", "off"):
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigurationError(f"option {name} must be a whole number of messages, got {raw!r}")
    return int(raw)


def _flag(options: Mapping[str, str], name: str) -> bool:
    raw = options.get(name, "").strip().lower()
    if raw in ("", "false", "no", "0", "off"):
        return False
    if raw in ("true", "yes", "1", "on"):
        return True
    raise ConfigurationError(f"option {name} must be true or false, got {options[name]!r}")
