"""The Celery app, configured from ``celeryconfig`` (environment-driven)."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    worker_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

app = Celery("campaigns", include=["workers.tasks"])
app.config_from_object("celeryconfig")

log = logging.getLogger("campaigns.worker")


@worker_init.connect
def check_broker_limits(**_: Any) -> None:
    """Refuse to start when a task run could outlive the broker's redelivery limits."""
    import celeryconfig
    from campaigns.errors import ConfigurationError
    from workers.limits import check_limits

    try:
        check_limits(celeryconfig._limits, celeryconfig._settings, str(app.conf.broker_url))
    except ConfigurationError as exc:
        # Celery's signal dispatch logs and swallows an Exception raised by a receiver, and the
        # worker would start anyway; SystemExit is not swallowed: the worker exits with status 1
        # and this one line on stderr, before it consumes anything.
        raise SystemExit(f"campaigns worker refuses to start: {exc}") from None
    _check_redis_eviction(celeryconfig._settings.pacing_redis_url)


def _check_redis_eviction(url: str | None) -> None:
    """Pacing keys (and Redis-broker messages) must never be evicted: warn loudly if they can."""
    if not url:
        return
    import redis

    try:
        policy = redis.Redis.from_url(url, socket_timeout=5).config_get("maxmemory-policy")
    except redis.RedisError as exc:  # CONFIG may be disabled on managed Redis
        log.warning("could not read Redis maxmemory-policy (%s); make sure it is noeviction", exc)
        return
    value = policy.get("maxmemory-policy")
    if value != "noeviction":
        log.warning(
            "Redis maxmemory-policy is %s: under memory pressure Redis may evict queued batches"
            " and pacing state. Set maxmemory-policy noeviction.",
            value,
        )


@worker_ready.connect
def sweep_on_start(**_: Any) -> None:
    """A restarted server resumes its campaigns without waiting for beat: sweep now, and again
    once the stall timeout has passed (chains killed just before the restart look alive until
    then)."""
    from campaigns.dispatch import SWEEP

    # by name: importing workers.tasks here would close the circle app -> tasks -> app
    stall = float(app.conf.get("campaigns_stall_timeout", 40.0))
    queue = app.conf.task_default_queue
    start = {"trigger": "worker_start"}  # its recoveries are counted as a worker start's
    app.send_task(SWEEP, countdown=0, queue=queue, kwargs=start)
    app.send_task(SWEEP, countdown=stall + 1, queue=queue, kwargs=start)


@worker_ready.connect
def serve_metrics(**_: Any) -> None:
    """With METRICS_PORT set, export this worker's Prometheus metrics from its main process
    (the threads pool sends from it; with PROMETHEUS_MULTIPROC_DIR, every process writing
    there). Never fatal: a worker that cannot export still sends."""
    from campaigns.metrics import serve_worker_metrics

    serve_worker_metrics()


@worker_process_shutdown.connect
@worker_shutdown.connect
def metrics_process_dead(**_: Any) -> None:
    """A pool process (prefork) or the worker is exiting: multiprocess bookkeeping of its pid
    (its live gauges leave the shared directory; counters stay)."""
    from campaigns.metrics import process_dead

    process_dead(os.getpid())


@after_setup_logger.connect
def quiet_libraries(logger: logging.Logger, **_: Any) -> None:
    """Campaign story lines at INFO; the HTTP library's chatter (URLs with ids) off."""
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    if os.environ.get("CAMPAIGNS_LOG_LEVEL"):
        logging.getLogger("campaigns").setLevel(os.environ["CAMPAIGNS_LOG_LEVEL"].upper())
