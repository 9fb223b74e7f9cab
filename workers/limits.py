"""Time limits of task runs and the broker limits they must stay under, checked at start.

A batch of 300 recipients at up to 10 s each takes 50 minutes: past Redis' default visibility
timeout (1 h is close) and past RabbitMQ's consumer_timeout (30 min), either of which would
redeliver or kill a live batch. So a task run is bounded by TASK_TIME_BUDGET and hands the rest
of its batch to a continuation; these limits are computed from that budget and checked against
the broker's, so a misconfiguration refuses to start instead of duplicating at 3 a.m.

Celery's soft and hard time limits do nothing on the threads pool, and a running task cannot be
cancelled there when the broker connection drops: the run's own bound is the only one. It is
:func:`longest_run`, the budget plus every blocking point a run may still pass once its budget
is spent, each bounded on its own (pool and connect timeouts, socket timeouts, gateway timeouts,
retry windows). Pacing waits, the wait for another run's lease and the health check are cut off
by the budget itself, so they add nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from campaigns.errors import ConfigurationError
from campaigns.outcomes import RECORD_RETRY_WINDOW_S, RELEASE_RETRY_WINDOW_S
from campaigns.settings import Settings
from campaigns.store.db import CONNECT_TIMEOUT_S, POOL_TIMEOUT_S

MARGIN_S = 60.0
"""Slack between a run's expected end and its soft time limit."""
RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_S = 1800.0
"""RabbitMQ's default delivery-acknowledgement timeout (30 min)."""

STORE_CALL_S = POOL_TIMEOUT_S + CONNECT_TIMEOUT_S
"""One store call at worst: waiting for a pooled connection, then opening it."""
REDIS_CALL_S = 15.0
"""One pacing call at worst: workers/runtime.py's connect (5 s) and socket (10 s) timeouts."""
GATEWAY_CALLS_PER_SEND = 2
"""HTTP calls one send may make: WAHA's check-exists lookup, then the send itself."""
STORE_CALLS_BEFORE_SEND = 3
"""Started just before the budget ran out and finished after it: the stop check's heartbeat,
the claim, and the heartbeat of the refresh's stop check."""
STORE_CALLS_AFTER_SEND = 3
"""After the send's record or release: the failure streak and a pause (or the interruption and
its session check), then the lease's release."""
BROKER_RETRY_WINDOW_S = 20.0
"""How long a task keeps trying to enqueue what comes next while the broker is unreachable
(past it, the recovery sweep restarts the chain from PostgreSQL)."""
BROKER_CALL_S = 5.0
"""One publish at worst: kombu's connect timeout (4 s) and its quick retries."""


def longest_run(settings: Settings) -> float:
    """The longest a task run can take: its budget, plus what one message started just before
    the budget ran out may still cost (see the module's docstring)."""
    call = settings.gateway_connect_timeout + settings.gateway_read_timeout
    return (
        settings.task_time_budget
        + STORE_CALLS_BEFORE_SEND * STORE_CALL_S
        + 2 * REDIS_CALL_S  # its turn's grant and the refresh after the claim
        + GATEWAY_CALLS_PER_SEND * call  # the send in flight
        # its record (it was sent) or release (it was not), retried while PostgreSQL
        # restarts, the last try started just before the window closed
        + max(RECORD_RETRY_WINDOW_S, RELEASE_RETRY_WINDOW_S)
        + STORE_CALL_S
        + STORE_CALLS_AFTER_SEND * STORE_CALL_S
        + BROKER_RETRY_WINDOW_S  # enqueueing the continuation or the next batch
        + BROKER_CALL_S
    )


@dataclass(frozen=True, slots=True)
class Limits:
    concurrency: int
    longest_run: float
    soft_time_limit: float
    hard_time_limit: float
    visibility_timeout: float
    consumer_timeout: float
    session_watch_interval: float


def compute_limits(settings: Settings, env: Mapping[str, str]) -> Limits:
    """The limits for these settings (environment overrides: VISIBILITY_TIMEOUT,
    RABBITMQ_CONSUMER_TIMEOUT, WORKER_CONCURRENCY, SESSION_WATCH_INTERVAL)."""
    longest = longest_run(settings)
    soft = longest + MARGIN_S
    hard = soft + 30.0
    limits = Limits(
        concurrency=int(_number(env, "WORKER_CONCURRENCY", 32)),
        longest_run=longest,
        soft_time_limit=soft,
        hard_time_limit=hard,
        visibility_timeout=_number(env, "VISIBILITY_TIMEOUT", max(3600.0, hard + 300.0)),
        consumer_timeout=_number(
            env, "RABBITMQ_CONSUMER_TIMEOUT", RABBITMQ_DEFAULT_CONSUMER_TIMEOUT_S
        ),
        session_watch_interval=_number(env, "SESSION_WATCH_INTERVAL", 4.0),
    )
    return limits


def check_limits(limits: Limits, settings: Settings, broker_url: str) -> None:
    """Raise :class:`ConfigurationError` when a task run could outlive the broker's patience."""
    redis = broker_url.startswith(("redis://", "rediss://"))
    if (
        redis
        and limits.visibility_timeout <= limits.hard_time_limit + settings.pacing.batch_delay_max
    ):
        raise ConfigurationError(
            f"VISIBILITY_TIMEOUT ({limits.visibility_timeout:.0f}s) must exceed the longest task "
            f"run ({limits.hard_time_limit:.0f}s hard limit: TASK_TIME_BUDGET "
            f"{settings.task_time_budget:.0f}s + one message's calls and retries + margin) "
            f"plus BATCH_DELAY_MAX ({settings.pacing.batch_delay_max:.0f}s); otherwise Redis "
            "redelivers a batch that is still running. Raise VISIBILITY_TIMEOUT or lower "
            "TASK_TIME_BUDGET."
        )
    if (
        not redis
        and limits.hard_time_limit + settings.pacing.batch_delay_max >= limits.consumer_timeout
    ):
        raise ConfigurationError(
            f"RabbitMQ's consumer_timeout ({limits.consumer_timeout:.0f}s, "
            "RABBITMQ_CONSUMER_TIMEOUT) must exceed the longest task run "
            f"({limits.hard_time_limit:.0f}s) plus BATCH_DELAY_MAX; otherwise RabbitMQ closes the "
            "channel with PRECONDITION_FAILED. Lower TASK_TIME_BUDGET or raise the server's "
            "consumer_timeout and RABBITMQ_CONSUMER_TIMEOUT."
        )
    if settings.pacing.max_interval >= settings.task_time_budget:
        raise ConfigurationError(
            f"MAX_INTERVAL ({settings.pacing.max_interval}s) must be below TASK_TIME_BUDGET "
            f"({settings.task_time_budget}s), or a task run could not send even one message"
        )


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigurationError(f"{name} must be above 0, got {value}")
    return value
