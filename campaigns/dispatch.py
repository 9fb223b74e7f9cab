"""The engine's Celery tasks by name: the one module that knows the names, and sends them.

The domain (processor, recovery, webhooks) never imports the workers' code; it sends tasks by
name to a broker. ``workers/tasks.py`` registers its tasks under these same names, so a rename
cannot drift apart, and there is no import circle through the workers' configuration.

Celery prefers the CELERY_BROKER_URL environment variable over the ``broker`` argument when it
reads ``broker_url``; a client given an explicit broker (a test stack, a demo, a second
deployment) would silently publish to the environment's broker instead, where no worker of its
queue listens. :func:`client_app` pins the read and write URLs so the argument wins.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping

from celery import Celery

SEND_BATCH = "campaigns.send_batch"
SWEEP = "campaigns.sweep"
WATCH_SESSIONS = "campaigns.watch_sessions"
RESUME_SESSION = "campaigns.resume_session"
REPORT_STUCK = "campaigns.report_stuck"
CLEANUP = "campaigns.cleanup"
TASK_NAMES = (SEND_BATCH, SWEEP, WATCH_SESSIONS, RESUME_SESSION, REPORT_STUCK, CLEANUP)

DEFAULT_QUEUE = "campaigns"

Enqueue = Callable[[int, int, str, float], None]
"""(campaign_id, batch_number, run_token, countdown seconds) → puts a send_batch task on the
broker."""


def queue_name(env: Mapping[str, str] | None = None) -> str:
    """The deployment's queue (CAMPAIGNS_QUEUE), which workers consume and clients publish to."""
    env = os.environ if env is None else env
    return env.get("CAMPAIGNS_QUEUE") or DEFAULT_QUEUE


def client_app(broker_url: str, name: str) -> Celery:
    """A sending-only Celery app bound to ``broker_url`` whatever the environment says."""
    app = Celery(name, broker=broker_url)
    app.conf.update(
        broker_write_url=broker_url,
        broker_read_url=broker_url,
        broker_connection_retry_on_startup=True,
    )
    return app


class TaskSender:
    """Sends the engine's tasks by name, through one Celery app, to one queue. Task arguments
    are ids and names only: no phone number, message text or token ever goes into a task."""

    def __init__(self, app: Celery, queue: str = DEFAULT_QUEUE, *, owns_app: bool = False) -> None:
        self.app = app
        self.queue = queue
        self._owns_app = owns_app

    @classmethod
    def for_broker(
        cls, broker_url: str, queue: str = DEFAULT_QUEUE, name: str = "campaigns-client"
    ) -> TaskSender:
        """A sender with its own client app on ``broker_url`` (closed by :meth:`close`)."""
        return cls(client_app(broker_url, name), queue, owns_app=True)

    def send_batch(
        self, campaign_id: int, batch_number: int, run_token: str, countdown: float = 0.0
    ) -> None:
        """Enqueue one run of one batch, ``countdown`` seconds from now."""
        self.app.send_task(
            SEND_BATCH,
            kwargs={
                "campaign_id": campaign_id,
                "batch_number": batch_number,
                "run_token": run_token,
            },
            countdown=max(countdown, 0.0),
            queue=self.queue,
        )

    __call__ = send_batch  # a sender is an Enqueue

    def resume_session(self, session: str, reason: str) -> None:
        """Ask a worker to resume the campaigns waiting for a reconnected session."""
        self.app.send_task(
            RESUME_SESSION, kwargs={"session": session, "reason": reason}, queue=self.queue
        )

    def close(self) -> None:
        """Release the broker connection of an app this sender created."""
        if self._owns_app:
            self.app.close()


class ConfiguredEnqueue:
    """The default :data:`Enqueue` of the processor and recovery: on first use, a sender on the
    configured broker (CELERY_BROKER_URL, else the embedded Redis) and queue, shared by every
    caller of this process."""

    _lock = threading.Lock()
    _sender: TaskSender | None = None

    def __call__(
        self, campaign_id: int, batch_number: int, run_token: str, countdown: float
    ) -> None:
        self.sender().send_batch(campaign_id, batch_number, run_token, countdown)

    @classmethod
    def sender(cls) -> TaskSender:
        with cls._lock:
            if cls._sender is None:
                from campaigns.local import resolve_settings

                # the broker only: a client that sends tasks needs no pacing Redis
                broker = resolve_settings(need=("broker",)).broker_url
                assert broker is not None  # resolve_settings fills every needed URL in
                cls._sender = TaskSender.for_broker(broker, queue_name())
            return cls._sender


configured_enqueue: Enqueue = ConfiguredEnqueue()
