"""Celery configuration. `celery -A workers worker` and `celery -A workers beat` run the
production setup with no extra flags. Each setting says which loss or duplicate it prevents.

Every value comes from the environment (see the README's configuration table); with no broker
configured the embedded Redis in the data folder is used, like every other command.
"""

from __future__ import annotations

import os

from campaigns import dispatch
from campaigns.local import resolve_settings
from workers.limits import compute_limits

_settings = resolve_settings()
_limits = compute_limits(_settings, os.environ)

broker_url = _settings.broker_url
# No result backend: outcomes live in PostgreSQL, the single source of truth.
task_ignore_result = True
campaigns_stall_timeout = _settings.stall_timeout  # read by the worker_ready sweep
result_backend = None

# A task is acknowledged only after it returns, so a worker killed mid-batch leaves its message
# in the broker and another worker gets it (the run token fences off a duplicate chain).
task_acks_late = True
# ...and a worker process lost to SIGKILL or OOM rejects (requeues) instead of acking it.
task_reject_on_worker_lost = True
# One message reserved per thread: a dying worker cannot take a queue of batches down with it.
worker_prefetch_multiplier = 1
# Tasks of a worker that lost its broker connection are cancelled rather than left running
# beside their redelivered copies.
worker_cancel_long_running_tasks_on_connection_loss = True

# Sending is waiting (pacing sleeps, HTTP): an I/O pool of threads, not a process per message.
# Threads share one bounded database pool (DB_POOL_SIZE).
worker_pool = "threads"
worker_concurrency = _limits.concurrency

# Redis redelivers a message that is not acked within visibility_timeout: it must exceed the
# longest task run, or a live batch would be delivered to a second worker (checked at start).
broker_transport_options = {
    "visibility_timeout": _limits.visibility_timeout,
    "max_retries": 5,
}
broker_connection_retry_on_startup = True
broker_connection_max_retries = None  # a broker restart must never stop the worker for good
# A task run is bounded by TASK_TIME_BUDGET; the limits are a backstop above it, and below the
# broker's redelivery (Redis visibility timeout, RabbitMQ consumer_timeout).
task_soft_time_limit = _limits.soft_time_limit
task_time_limit = _limits.hard_time_limit

task_serializer = "json"
accept_content = ["json"]
# One queue per deployment (CAMPAIGNS_QUEUE) so several deployments can share a broker.
task_default_queue = dispatch.queue_name()
worker_send_task_events = True  # Flower shows tasks live
task_send_sent_event = True
worker_hijack_root_logger = False
timezone = "UTC"

beat_schedule = {
    # Resume campaigns whose chain died (heartbeat and next-batch time stale), start scheduled
    # campaigns that are due.
    "recovery-sweep": {
        "task": dispatch.SWEEP,
        "schedule": _settings.sweep_interval,
    },
    # Ask each session with interrupted campaigns whether it is connected again.
    "session-watcher": {
        "task": dispatch.WATCH_SESSIONS,
        "schedule": _limits.session_watch_interval,
    },
    # A warning per campaign running longer than STUCK_HOURS (the original design's query).
    "stuck-report": {
        "task": dispatch.REPORT_STUCK,
        "schedule": _settings.stuck_report_interval,
    },
    # Completed campaigns older than CLEANUP_DAYS go, with their details and ledger.
    "cleanup": {
        "task": dispatch.CLEANUP,
        "schedule": _settings.cleanup_interval,
    },
}
