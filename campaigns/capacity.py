"""Sender capacity: caps per session, warm-up, and Meta's messaging limit per portfolio.

A number is banned or capped for sending too much too soon, not for sending too fast, so each
session may carry (as options, checked by ``sessions add``):

=================  ===========================================================================
option             meaning (default)
=================  ===========================================================================
``cap_day``        messages per rolling 24 h of this session, over every campaign (none)
``cap_hour``       messages per rolling hour (none)
``warmup``         a daily cap growing by day since the session's first send, e.g.
                   ``20,50,100,200`` (day 1: 20, day 2: 50, ...; after the last day ``cap_day``
                   alone applies); ``default`` is :data:`DEFAULT_WARMUP`
``new``            ``true`` marks a WAHA/Evolution number as new: it gets the default warm-up
                   unless ``warmup`` says otherwise (``false``)
``portfolio``      Cloud API: the business portfolio the number belongs to; Meta's messaging
                   limit is shared by all its numbers (the session's own name: a portfolio of
                   one)
``tier``           Cloud API: the portfolio's messaging limit, unique recipients per rolling
                   24 h: 250, 2000, 10000, 100000 or unlimited (250, a new portfolio's)
=================  ===========================================================================

The counts live in Redis (``capacity.lua``), so every worker and campaign shares them, and are
rebuilt from the ledger (the sends PostgreSQL recorded in the last 24 h) when Redis lost them.
Capacity is taken right before a send leaves; a send that never left gives it back. A crash
between the take and the record, right after a Redis flush, can let at most the lane's
in-flight sends past a cap: the rebuild sees only recorded sends.

Out of capacity, a lane waits until capacity returns (it leaves the rotation of a pool while
the other lanes go on); nothing fails and nothing is interrupted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from campaigns.errors import ConfigurationError, StoreUnavailable
from campaigns.pacing_redis import PacingUnavailable

log = logging.getLogger("campaigns.capacity")

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
WAHA's "how to avoid blocking" advice is to start a new number slowly and grow its volume
over weeks; this schedule follows the same shape as WhatsApp's own business tiers, which start
a new portfolio at 250 unique recipients a day. Conservative on purpose: a ban costs the number."""

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
_SCRIPT = (Path(__file__).parent / "capacity.lua").read_text()


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


@dataclass(frozen=True, slots=True)
class Taken:
    """What :meth:`SessionCapacity.take` granted: the first ``granted`` sends of the group;
    when fewer than asked, ``wait`` seconds until the next could be, and which cap said no."""

    granted: int
    wait: float = 0.0
    why: str = ""


WHY = {
    "day": "its cap per 24 h",
    "hour": "its cap per hour",
    "portfolio": "its portfolio's messaging limit",
}


class SessionCapacity:
    """Takes capacity for sends of a session, on one Redis, rebuilding lost counts from the
    ledger. ``sends_since(sessions, seconds)`` gives the ledger's recorded sends of those
    sessions in the last ``seconds`` (``(epoch seconds, send id, phone)`` rows)."""

    def __init__(
        self,
        redis_client: redis.Redis,
        sends_since: Callable[[Sequence[str], float], list[tuple[float, str, str]]],
        portfolio_sessions: Callable[[str], list[str]],
        *,
        day: float = DAY_S,
        key_prefix: str = "cc:",
    ) -> None:
        self._prefix = key_prefix
        self._script = redis_client.register_script(_SCRIPT)
        self._sends_since = sends_since
        self._portfolio_sessions = portfolio_sessions
        self.day = day
        self._lock = threading.Lock()

    def take(
        self, session: str, caps: Caps, sends: Sequence[tuple[str, str]], day: int | None = None
    ) -> Taken:
        """Take capacity for ``sends`` (``(send id, phone)``, in order) on ``session``:
        all of them, or the prefix that fits. ``day``: the session's warm-up day."""
        if not caps.limited or not sends:
            return Taken(len(sends))
        cap_day = caps.day_cap(day)
        args: list[Any] = [
            f"{self.day:.6f}",
            -1 if cap_day is None else cap_day,
            -1 if caps.per_hour is None else caps.per_hour,
            -1 if caps.tier is None else caps.tier,
            len(sends),
        ]
        for send_id, phone in sends:
            args += [send_id, phone]
        keys = self._keys(session, caps)
        for _ in range(3):  # at most one rebuild of each count
            reply = self._eval(keys, args)
            if reply[0] == b"rebuild" or reply[0] == "rebuild":
                self._rebuild(session, caps, keys, _text(reply[1]))
                continue
            return Taken(int(reply[0]), float(_text(reply[1])), _text(reply[2]))
        raise PacingUnavailable(session=session, operation="capacity", cause="rebuild refused")

    def give_back(self, session: str, caps: Caps, send_ids: Sequence[str]) -> None:
        """Sends that never left give their place back (best effort: a place kept only makes
        the cap stricter, until it ages out)."""
        if not caps.counted or not send_ids:
            return
        try:
            self._eval(self._keys(session, caps), ["give", *send_ids])
        except PacingUnavailable:
            log.info("could not give back %s capacity places of %s", len(send_ids), session)

    def _keys(self, session: str, caps: Caps) -> list[str]:
        portfolio = caps.portfolio or session
        return [
            f"{self._prefix}cap:{session}",
            f"{self._prefix}cap:{session}:built",
            f"{self._prefix}portfolio:{portfolio}",
            f"{self._prefix}portfolio:{portfolio}:built",
        ]

    def _rebuild(self, session: str, caps: Caps, keys: list[str], which: str) -> None:
        """Load the last day of recorded sends of the session (or of every session of its
        portfolio) into Redis, and mark the count as built."""
        with self._lock:
            if which == "portfolio":
                sessions = self._portfolio_sessions(caps.portfolio or session)
            else:
                sessions = [session]
            try:
                rows = self._sends_since(sessions or [session], self.day)
            except StoreUnavailable as exc:
                raise PacingUnavailable(session=session, operation="capacity rebuild") from exc
            log.info(
                "capacity counts of %s %s lost; rebuilt from %s sends of the ledger",
                which,
                caps.portfolio if which == "portfolio" else session,
                len(rows),
            )
            args: list[Any] = ["load", f"{self.day:.6f}", which]
            for at, send_id, phone in rows:
                args += [f"{at:.6f}", phone if which == "portfolio" else send_id]
            self._eval(keys, args)

    def _eval(self, keys: list[str], args: list[Any]) -> list[Any]:
        try:
            reply = self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise PacingUnavailable(operation="capacity", cause=str(exc)) from exc
        return reply if isinstance(reply, list) else [reply]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

