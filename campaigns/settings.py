"""Configuration: one immutable settings object read from environment variables.

Every value is validated when it is loaded, and a bad value names its variable, so a worker with
a typo in its environment refuses to start instead of pacing a campaign wrongly at 3 a.m.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import phonenumbers

from campaigns import consent
from campaigns.errors import ConfigurationError, InvalidArgument, InvalidInput
from campaigns.inbound import keywords_from
from campaigns.inputs import (
    MAX_BATCH_SIZE,
    MAX_DAYS,
    MAX_INT,
    database_url,
    finite_number,
    finite_seconds,
    positive_int,
    whole_number,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pacing:
    """How a campaign is paced, in seconds (never milliseconds)."""

    batch_size: int = 300
    min_interval: float = 4.0
    max_interval: float = 10.0
    batch_delay_min: float = 15.0
    batch_delay_max: float = 30.0

    def validate(self, names: Mapping[str, str] | None = None) -> Pacing:
        """The pacing with whole batch size and float seconds; raise
        :class:`InvalidArgument` naming the offending setting (its ``names`` label, if given).

        A NaN would pass every ``<`` check (it compares false with everything), and a bool or
        text would fail deep inside the engine, so types and finiteness come first."""
        label = dict(names or {})

        def name(key: str) -> str:
            return label.get(key, key)

        batch_size = positive_int(self.batch_size, name("batch_size"), MAX_BATCH_SIZE)
        seconds = {
            key: finite_seconds(getattr(self, key), name(key))
            for key in ("min_interval", "max_interval", "batch_delay_min", "batch_delay_max")
        }
        for low, high in (("min_interval", "max_interval"), ("batch_delay_min", "batch_delay_max")):
            if seconds[low] > seconds[high]:
                raise InvalidArgument(
                    f"{name(low)} ({seconds[low]:g}) is above {name(high)} ({seconds[high]:g})"
                )
        return Pacing(batch_size=batch_size, **seconds)


PACING_VARIABLES = {
    "batch_size": "BATCH_SIZE",
    "min_interval": "MIN_INTERVAL",
    "max_interval": "MAX_INTERVAL",
    "batch_delay_min": "BATCH_DELAY_MIN",
    "batch_delay_max": "BATCH_DELAY_MAX",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the engine reads from its environment. See the README's configuration table."""

    database_url: str | None = None
    """SQLAlchemy URL of PostgreSQL; None → the embedded server in ``data_dir``."""
    broker_url: str | None = None
    """Celery broker (redis:// or amqp://); None → the embedded Redis in ``data_dir``."""
    redis_url: str | None = None
    """Redis for pacing and locks; defaults to the broker URL when the broker is Redis."""
    data_dir: Path = Path(".data")
    default_region: str = "BR"
    pacing: Pacing = field(default_factory=Pacing)
    stall_timeout: float = 40.0
    """A running campaign whose heartbeat and next-batch time are older than this is stalled."""
    sweep_interval: float = 15.0
    task_time_budget: float = 240.0
    """Seconds one task run may send before it hands the rest of its batch to a continuation."""
    max_attempts: int = 3
    failure_streak_limit: int = 20
    reconnect_settle: float = 5.0
    """Seconds to wait after a session reconnects before sending again."""
    """Consecutive failed recipients after which a campaign pauses itself (0: never)."""
    resend_unknown: bool = False
    db_pool_size: int = 10
    gateway_connect_timeout: float = 5.0
    gateway_read_timeout: float = 20.0
    stuck_hours: float = 24.0
    """Beat warns about campaigns running longer than this (the original design's report)."""
    stuck_report_interval: float = 3600.0
    cleanup_days: float = 30.0
    """Beat deletes completed campaigns finished longer ago than this, with their ledger."""
    cleanup_interval: float = 86_400.0
    receipt_pending_hours: float = 72.0
    """Receipts whose send is not in the ledger are kept this long (RECEIPT_PENDING_HOURS) for
    the send's record to arrive, then dropped by beat's cleanup."""
    pacing_guard: float = 0.05
    """Seconds added to a campaign's min_interval on every grant (PACING_GUARD_S): the jitter
    between a grant and the request leaving. Lowered only for time-scaled rehearsals."""
    max_deferrals: int = 3
    """How often a recipient is deferred a day for Meta's per-user marketing cap (131049)
    before it fails with the reason."""
    day_seconds: float = 86_400.0
    """The length of a "day" for caps per rolling 24 h (an hour is a 24th of it) and the
    131049 deferral (CAPACITY_DAY_SECONDS). Shortened only to rehearse a day in minutes."""
    optout_keywords: frozenset[str] = field(default_factory=lambda: keywords_from(None))
    """Inbound texts that opt their sender out (OPTOUT_KEYWORDS, comma-separated), folded:
    no accents, case-folded (:func:`campaigns.inbound.keywords_from`)."""
    legal_basis: str | None = None
    """The deployment's default LGPD basis for campaigns created without one (LEGAL_BASIS:
    consent or legitimate_interest); None: every campaign must name its own."""

    @property
    def pacing_redis_url(self) -> str | None:
        """Where pacing keys live: REDIS_URL, else the broker when it is Redis."""
        if self.redis_url:
            return self.redis_url
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; raise :class:`ConfigurationError` naming the variable."""
        env = os.environ if env is None else env
        region = env.get("DEFAULT_REGION", "BR").strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigurationError(
                f"DEFAULT_REGION {region!r} is not a region phonenumbers knows (e.g. BR, US, IN)"
            )
        try:
            pacing = Pacing(
                batch_size=_read(env, "BATCH_SIZE", int, 300),
                min_interval=_read(env, "MIN_INTERVAL", float, 4.0),
                max_interval=_read(env, "MAX_INTERVAL", float, 10.0),
                batch_delay_min=_read(env, "BATCH_DELAY_MIN", float, 15.0),
                batch_delay_max=_read(env, "BATCH_DELAY_MAX", float, 30.0),
            ).validate(PACING_VARIABLES)
        except InvalidInput as exc:
            # the Python API's checks, but a variable is configuration, not an argument
            raise ConfigurationError(str(exc)) from None
        settings = cls(
            database_url=_database_url(env),
            broker_url=env.get("CELERY_BROKER_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            data_dir=Path(env.get("CAMPAIGNS_DATA_DIR", ".data")),
            default_region=region,
            pacing=pacing,
            stall_timeout=_positive(env, "STALL_TIMEOUT", 40.0),
            sweep_interval=_positive(env, "SWEEP_INTERVAL", 15.0),
            task_time_budget=_positive(env, "TASK_TIME_BUDGET", 240.0),
            max_attempts=_count(env, "MAX_ATTEMPTS", 3),
            failure_streak_limit=_count(env, "FAILURE_STREAK_LIMIT", 20, minimum=0),
            reconnect_settle=_positive(env, "RECONNECT_SETTLE", 5.0, zero_ok=True),
            resend_unknown=_flag(env, "RESEND_UNKNOWN"),
            db_pool_size=_count(env, "DB_POOL_SIZE", 10),
            gateway_connect_timeout=_positive(env, "GATEWAY_CONNECT_TIMEOUT", 5.0),
            gateway_read_timeout=_positive(env, "GATEWAY_READ_TIMEOUT", 20.0),
            stuck_hours=_positive(env, "STUCK_HOURS", 24.0, unit="hours", maximum=MAX_DAYS * 24),
            stuck_report_interval=_positive(env, "STUCK_REPORT_INTERVAL", 3600.0),
            cleanup_days=_positive(env, "CLEANUP_DAYS", 30.0, unit="days", maximum=MAX_DAYS),
            cleanup_interval=_positive(env, "CLEANUP_INTERVAL", 86_400.0),
            receipt_pending_hours=_positive(
                env, "RECEIPT_PENDING_HOURS", 72.0, unit="hours", maximum=MAX_DAYS * 24
            ),
            pacing_guard=_positive(env, "PACING_GUARD", 0.05, zero_ok=True, maximum=5.0),
            max_deferrals=_count(env, "MAX_DEFERRALS", 3, minimum=0),
            day_seconds=_positive(env, "CAPACITY_DAY_SECONDS", 86_400.0, maximum=86_400.0),
            optout_keywords=keywords_from(env.get("OPTOUT_KEYWORDS"), "OPTOUT_KEYWORDS"),
            legal_basis=_legal_basis(env),
        )
        call = settings.gateway_connect_timeout + settings.gateway_read_timeout
        if settings.stall_timeout <= call:
            # a live task blocked in one gateway call must never look stalled, or the sweep
            # would take its campaign over and turn its in-flight send into an unknown
            raise ConfigurationError(
                f"STALL_TIMEOUT ({settings.stall_timeout}) must exceed GATEWAY_CONNECT_TIMEOUT "
                f"+ GATEWAY_READ_TIMEOUT ({call})"
            )
        if settings.broker_url and not settings.broker_url.startswith(
            ("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://")
        ):
            raise ConfigurationError("CELERY_BROKER_URL must be a redis:// or amqp:// URL")
        return settings


def _read(env: Mapping[str, str], name: str, kind: Callable[[str], T], default: T) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw.strip())
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigurationError(f"{name} must be {what}, got {raw!r}") from None


_MAX_SETTING = MAX_DAYS * 86_400
"""Timeouts and beat intervals need no tighter bound than finiteness and a sane ceiling (a
century of seconds): ``float("nan")`` and ``"inf"`` parse, and would pass a plain ``<= 0``."""


def _positive(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    unit: str = "seconds",
    maximum: float = _MAX_SETTING,
    zero_ok: bool = False,
) -> float:
    value = _read(env, name, float, default)
    try:
        return finite_number(value, name, unit=unit, maximum=maximum, above_minimum=not zero_ok)
    except InvalidInput as exc:
        raise ConfigurationError(str(exc)) from None


def _count(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    value = _read(env, name, int, default)
    try:
        return whole_number(value, name, minimum=minimum, maximum=MAX_INT)
    except InvalidInput as exc:
        raise ConfigurationError(str(exc)) from None


def _database_url(env: Mapping[str, str]) -> str | None:
    """DATABASE_URL with the project's driver; None when unset (the embedded server)."""
    raw = env.get("DATABASE_URL", "").strip()
    return database_url(raw, "DATABASE_URL") if raw else None


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in {"", "0", "false", "no", "off"}:
        return False
    if raw in {"1", "true", "yes", "on"}:
        return True
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _legal_basis(env: Mapping[str, str]) -> str | None:
    value = env.get("LEGAL_BASIS", "").strip()
    if not value:
        return None
    try:
        return consent.legal_basis(value, "LEGAL_BASIS")
    except InvalidInput as exc:
        raise ConfigurationError(str(exc)) from None
