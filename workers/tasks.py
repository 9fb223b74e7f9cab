"""Thin tasks: call the engine or recovery, map the outcome to what is enqueued next.

Task names and arguments read well in Flower: ``campaigns.send_batch`` with ``campaign_id``,
``batch_number`` and ``run_token`` (a fencing id, not a secret). No phone number, message text or
token ever goes into a task.

Errors that are not a recipient's never fail one. The infrastructure's (PostgreSQL, Redis, the
broker) are waited out and the run tried again; a configuration's (a session the worker cannot
build) interrupt the campaign as ``blocked`` inside the engine; any other error is retried a few
times, then interrupts the campaign as ``blocked`` with the error, for an operator to fix and
resume. The engine gives back every claim it had not sent before an error goes up.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from celery import Task
from kombu.exceptions import OperationalError as BrokerUnavailable

from campaigns import dispatch
from campaigns.dispatch import TaskSender
from campaigns.engine import RunEnd
from campaigns.errors import StoreUnavailable
from campaigns.gateway_pool import gateway_for
from campaigns.gateways.http import redact
from campaigns.pacing import PacingUnavailable
from workers.app import app
from workers.limits import BROKER_RETRY_WINDOW_S
from workers.runtime import get_runtime

log = logging.getLogger("campaigns.worker")

BATCH_ERROR_RETRIES = 3
"""Unexpected errors a batch may hit (retried after 5, 10, 20 s) before its campaign is
interrupted as blocked with the error. Its recipients stay as they are: nothing is failed."""
UNAVAILABLE_RETRY_S = 10.0
"""Wait before running a batch again after PostgreSQL, Redis or the broker failed it."""
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    StoreUnavailable,
    PacingUnavailable,
    BrokerUnavailable,
)


# the worker's own app and queue: the continuation of a chain goes where its worker listens
_sender = TaskSender(app, app.conf.task_default_queue)


def enqueue_batch(campaign_id: int, batch_number: int, run_token: str, countdown: float) -> None:
    """Put one ``send_batch`` on the broker, retrying while it is briefly unreachable (for
    BROKER_RETRY_WINDOW_S). Past that the chain lives on in PostgreSQL only, and the recovery
    sweep restarts it once it looks stalled."""
    give_up = time.monotonic() + BROKER_RETRY_WINDOW_S
    delay = 0.5
    while True:
        try:
            _sender.send_batch(campaign_id, batch_number, run_token, countdown)
            return
        except BrokerUnavailable as exc:
            if time.monotonic() + delay > give_up:
                log.error(
                    "campaign %s batch %s: the broker is unreachable (%s); the recovery sweep "
                    "resumes the campaign",
                    campaign_id,
                    batch_number,
                    exc,
                )
                raise
            log.warning("campaign %s: the broker is unreachable (%s); retrying", campaign_id, exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


@app.task(name=dispatch.SEND_BATCH, bind=True, max_retries=None, acks_late=True)
def send_batch(self: Task[Any, Any], campaign_id: int, batch_number: int, run_token: str) -> str:
    """Send one batch of one campaign (or the next slice of it, within the time budget)."""
    runtime = get_runtime()
    try:
        result = runtime.runner.run(campaign_id, batch_number, run_token)
    except INFRASTRUCTURE_ERRORS as exc:
        # nothing unsent is held (the engine gave its claim back) and a claim cut off after
        # its call is recovery's; so the same run is simply tried again later. A fresh message,
        # not a retry: waiting out an outage must not use up the unexpected-error retries
        log.warning(
            "campaign %s batch %s: %s; trying again in %.0fs",
            campaign_id,
            batch_number,
            exc,
            UNAVAILABLE_RETRY_S,
        )
        enqueue_batch(campaign_id, batch_number, run_token, UNAVAILABLE_RETRY_S)
        return f"waiting: {type(exc).__name__}"
    except Exception as exc:
        return _unexpected_error(self, campaign_id, batch_number, run_token, exc)
    if result.end is RunEnd.NEXT_BATCH and result.next_batch is not None:
        enqueue_batch(campaign_id, result.next_batch, run_token, result.delay)
    elif result.end is RunEnd.CONTINUE:
        enqueue_batch(campaign_id, batch_number, run_token, result.delay)
    return f"{result.end.value}: sent {result.sent}"


def _unexpected_error(
    task: Task[Any, Any], campaign_id: int, batch_number: int, run_token: str, exc: Exception
) -> str:
    """A bug or an error nobody classified: retry the run a few times (it may pass), then stop
    the campaign for an operator. No recipient is failed for it and the chain does not go on
    to the next batch: the same error would strike there too."""
    retries = task.request.retries or 0
    if retries < BATCH_ERROR_RETRIES:
        log.exception(
            "campaign %s batch %s failed (attempt %s); retrying",
            campaign_id,
            batch_number,
            retries + 1,
        )
        raise task.retry(countdown=5 * 2**retries, exc=exc)
    log.exception(
        "campaign %s batch %s failed %s times; interrupting the campaign",
        campaign_id,
        batch_number,
        retries + 1,
    )
    error = redact(f"{type(exc).__name__}: {exc}")  # an error may quote a phone number
    get_runtime().runner.block(
        campaign_id,
        run_token,
        f"batch {batch_number} failed {retries + 1} times with an unexpected error ({error}); "
        f"fix the cause, then `campaigns resume {campaign_id}`",
    )
    return "blocked"


@app.task(name=dispatch.SWEEP)
def sweep(trigger: str = "sweep") -> int:
    """Resume stalled campaigns and start due scheduled ones. ``trigger``: ``sweep`` from beat,
    ``worker_start`` from a worker that just started (the metrics tell them apart)."""
    return len(get_runtime().recovery.sweep(trigger))


@app.task(name=dispatch.WATCH_SESSIONS)
def watch_sessions() -> int:
    """Resume interrupted campaigns of sessions that are connected again."""
    runtime = get_runtime()

    def is_connected(session: str) -> tuple[bool, str]:
        # a fresh adapter (the session row may have been fixed), closed at once: the watcher
        # runs every few seconds and must not leave an HTTP pool behind each time
        gateway = gateway_for(runtime.store.get_session(session), runtime.settings)
        try:
            health = gateway.health()
        finally:
            gateway.close()
        # connected but capped (475) or timelocked (463) is not connected for the watcher
        return health.watch_answer()

    return len(runtime.recovery.watch_sessions(is_connected))


@app.task(name=dispatch.RESUME_SESSION)
def resume_session(session: str, reason: str) -> int:
    """A webhook said the session reconnected: resume its interrupted campaigns."""
    return len(get_runtime().recovery.resume_session(session, reason))


@app.task(name=dispatch.REPORT_STUCK)
def report_stuck() -> int:
    """Log a warning per campaign running for longer than STUCK_HOURS (default 24)."""
    runtime = get_runtime()
    hours = runtime.settings.stuck_hours
    stuck = runtime.store.find_stuck_campaigns(timedelta(hours=hours))
    for campaign in stuck:
        log.warning(
            "campaign %s on %s has been running for more than %.0f h (batch %s/%s, %s of %s "
            "processed): check `campaigns status %s`",
            campaign.id,
            campaign.session_name,
            hours,
            campaign.current_batch,
            campaign.total_batches,
            campaign.processed_numbers,
            campaign.total_numbers,
            campaign.id,
        )
    return len(stuck)


@app.task(name=dispatch.CLEANUP)
def cleanup() -> int:
    """Delete completed campaigns older than CLEANUP_DAYS (default 30), with their ledger, and
    receipts parked longer than RECEIPT_PENDING_HOURS (default 72) for a send never recorded."""
    runtime = get_runtime()
    days = runtime.settings.cleanup_days
    removed = runtime.store.cleanup_finished(days)
    if removed:
        log.info("cleanup: removed %s completed campaigns older than %.0f days", removed, days)
    hours = runtime.settings.receipt_pending_hours
    dropped = runtime.store.drop_old_receipts(hours)
    if dropped:
        log.info("cleanup: dropped %s receipts parked over %.0f h (no send here)", dropped, hours)
    return removed
