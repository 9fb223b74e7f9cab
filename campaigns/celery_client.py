"""A Celery app that only sends tasks by name, to exactly the broker it is given.

Celery prefers the CELERY_BROKER_URL environment variable over the ``broker`` argument when it
reads ``broker_url``; a client given an explicit broker (a test stack, a demo, a second
deployment) would silently publish to the environment's broker instead, where no worker of its
queue listens. Pinning the read and write URLs makes the argument win.
"""

from __future__ import annotations

from celery import Celery


def client_app(broker_url: str, name: str) -> Celery:
    """A sending-only Celery app bound to ``broker_url`` whatever the environment says."""
    app = Celery(name, broker=broker_url)
    app.conf.update(
        broker_write_url=broker_url,
        broker_read_url=broker_url,
        broker_connection_retry_on_startup=True,
    )
    return app
