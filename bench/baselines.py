"""The two designs the engine is measured against (issue 3), doing the same durable work per
message as the engine: claim (one committed conditional UPDATE), one HTTP POST to the sandbox
through the same gateway adapter, record (one committed UPDATE).

* :func:`bare_loop`: one process, one thread, a plain loop — the floor of what a message costs.
* :data:`naive_app`: one Celery task per recipient (``bench.naive.send_one``), same broker,
  same sandbox, same worker processes — the design the engine's batch tasks replace.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2
from celery import Celery
from sqlalchemy.engine import make_url

from campaigns.gateways import build_gateway
from campaigns.gateways.base import Gateway, GatewayConfig, OutcomeKind, OutgoingMessage

CLAIM = """
UPDATE campaign_recipients
SET status = 'sending', attempts = attempts + 1, claimed_at = now(), updated_at = now()
WHERE campaign_id = %s AND position = %s AND status = 'pending'
RETURNING phone, attempts
"""
RECORD = """
UPDATE campaign_recipients
SET status = CAST(%s AS recipient_status), gateway_message_id = %s, finished_at = now(),
    updated_at = now()
WHERE campaign_id = %s AND position = %s AND attempts = %s AND status = 'sending'
"""


def dsn(database_url: str) -> str:
    """A libpq DSN from a SQLAlchemy URL."""
    url = make_url(database_url)
    parts = [f"host={url.host}", f"port={url.port or 5432}", f"dbname={url.database}"]
    if url.username:
        parts.append(f"user={url.username}")
    if url.password:
        parts.append(f"password={url.password}")
    return " ".join(parts)


def waha_gateway(session: str, base_url: str, token: str) -> Gateway:
    return build_gateway(
        "waha",
        GatewayConfig(session_name=session, base_url=base_url, token=token, read_timeout=20.0),
    )


def send_one(conn: Any, gateway: Gateway, campaign_id: int, position: int, text: str) -> bool:
    """Claim, send, record one recipient; False if it was not pending."""
    with conn.cursor() as cursor:
        cursor.execute(CLAIM, (campaign_id, position))
        row = cursor.fetchone()
    conn.commit()
    if row is None:
        return False
    phone, attempt = row
    outcome = gateway.send(OutgoingMessage(to=phone, text=text))
    status = "sent" if outcome.kind is OutcomeKind.SENT else "failed"
    with conn.cursor() as cursor:
        cursor.execute(RECORD, (status, outcome.message_id, campaign_id, position, attempt))
    conn.commit()
    return True


def bare_loop(
    database_url: str,
    base_url: str,
    token: str,
    session: str,
    campaign_id: int,
    count: int,
    before_close: Callable[[], object] = lambda: None,
    gateway: Gateway | None = None,
) -> float:
    """Send positions 1..count of a campaign in one plain loop; returns the seconds taken.
    ``before_close`` runs while the connection (and its server process) is still open.
    ``gateway``: the adapter to send through (default a WAHA one for ``session``); closed."""
    conn = psycopg2.connect(dsn(database_url))
    gateway = gateway or waha_gateway(session, base_url, token)
    try:
        started = time.perf_counter()
        for position in range(1, count + 1):
            send_one(conn, gateway, campaign_id, position, "Hi")
        seconds = time.perf_counter() - started
        before_close()
        return seconds
    finally:
        gateway.close()
        conn.close()


# ---------------------------------------------------------------- the naive Celery design
naive_app = Celery("bench-naive", broker=os.environ.get("CELERY_BROKER_URL"))
naive_app.conf.update(
    # the same loss/duplicate protections as the engine's configuration
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_pool="threads",
    task_ignore_result=True,
    task_default_queue=os.environ.get("CAMPAIGNS_QUEUE", "bench-naive"),
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
_local = threading.local()
_gateways: dict[str, Gateway] = {}
_lock = threading.Lock()


def _connection() -> Any:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg2.connect(dsn(os.environ["DATABASE_URL"]))
    return conn


def _gateway(session: str) -> Gateway:
    with _lock:
        if session not in _gateways:
            _gateways[session] = waha_gateway(
                session, os.environ["BENCH_SANDBOX_URL"], os.environ["SANDBOX_TOKEN"]
            )
        return _gateways[session]


@naive_app.task(name="bench.naive.send_one", acks_late=True)
def naive_send_one(campaign_id: int, position: int, session: str) -> bool:
    """One recipient per task: claim, POST, record."""
    return send_one(_connection(), _gateway(session), campaign_id, position, "Hi")
