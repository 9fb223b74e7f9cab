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

from campaigns.errors import ConfigurationError

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
        """Raise :class:`ConfigurationError` naming the offending setting."""
        label = dict(names or {})

        def name(key: str) -> str:
            return label.get(key, key)

        if self.batch_size < 1:
            raise ConfigurationError(
                f"{name('batch_size')} must be at least 1, got {self.batch_size}"
            )
        for key in ("min_interval", "max_interval", "batch_delay_min", "batch_delay_max"):
            value = getattr(self, key)
            if value < 0:
                raise ConfigurationError(f"{name(key)} must not be negative, got {value}")
        if self.min_interval > self.max_interval:
            raise ConfigurationError(
                f"{name('min_interval')} ({self.min_interval}) is above "
                f"{name('max_interval')} ({self.max_interval})"
            )
        if self.batch_delay_min > self.batch_delay_max:
            raise ConfigurationError(
                f"{name('batch_delay_min')} ({self.batch_delay_min}) is above "
                f"{name('batch_delay_max')} ({self.batch_delay_max})"
            )
        return self


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
        pacing = Pacing(
            batch_size=_read(env, "BATCH_SIZE", int, 300),
            min_interval=_read(env, "MIN_INTERVAL", float, 4.0),
            max_interval=_read(env, "MAX_INTERVAL", float, 10.0),
            batch_delay_min=_read(env, "BATCH_DELAY_MIN", float, 15.0),
            batch_delay_max=_read(env, "BATCH_DELAY_MAX", float, 30.0),
        ).validate(PACING_VARIABLES)
        settings = cls(
            database_url=env.get("DATABASE_URL") or None,
            broker_url=env.get("CELERY_BROKER_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            data_dir=Path(env.get("CAMPAIGNS_DATA_DIR", ".data")),
            default_region=region,
            pacing=pacing,
            stall_timeout=_positive(env, "STALL_TIMEOUT", 40.0),
            sweep_interval=_positive(env, "SWEEP_INTERVAL", 15.0),
            task_time_budget=_positive(env, "TASK_TIME_BUDGET", 240.0),
            max_attempts=int(_positive(env, "MAX_ATTEMPTS", 3)),
            failure_streak_limit=_read(env, "FAILURE_STREAK_LIMIT", int, 20),
            reconnect_settle=_read(env, "RECONNECT_SETTLE", float, 5.0),
            resend_unknown=_flag(env, "RESEND_UNKNOWN"),
            db_pool_size=int(_positive(env, "DB_POOL_SIZE", 10)),
            gateway_connect_timeout=_positive(env, "GATEWAY_CONNECT_TIMEOUT", 5.0),
            gateway_read_timeout=_positive(env, "GATEWAY_READ_TIMEOUT", 20.0),
            stuck_hours=_positive(env, "STUCK_HOURS", 24.0),
            stuck_report_interval=_positive(env, "STUCK_REPORT_INTERVAL", 3600.0),
            cleanup_days=_positive(env, "CLEANUP_DAYS", 30.0),
            cleanup_interval=_positive(env, "CLEANUP_INTERVAL", 86_400.0),
        )
        if settings.reconnect_settle < 0:
            raise ConfigurationError(
                f"RECONNECT_SETTLE must not be negative, got {settings.reconnect_settle}"
            )
        call = settings.gateway_connect_timeout + settings.gateway_read_timeout
        if settings.stall_timeout <= call:
            # a live task blocked in one gateway call must never look stalled, or the sweep
            # would take its campaign over and turn its in-flight send into an unknown
            raise ConfigurationError(
                f"STALL_TIMEOUT ({settings.stall_timeout}) must exceed GATEWAY_CONNECT_TIMEOUT "
                f"+ GATEWAY_READ_TIMEOUT ({call})"
            )
        if settings.database_url and not settings.database_url.startswith("postgresql"):
            raise ConfigurationError(
                "DATABASE_URL must be a PostgreSQL SQLAlchemy URL "
                "(postgresql+psycopg2://user@host:5432/db)"
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
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _read(env, name, float, default)
    if value <= 0:
        raise ConfigurationError(f"{name} must be above 0, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in {"", "0", "false", "no", "off"}:
        return False
    if raw in {"1", "true", "yes", "on"}:
        return True
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")
