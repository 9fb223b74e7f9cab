"""Per-process singletons of a worker: settings, store, pacer, gateways, batch runner.

Built lazily on first use, once, under a lock, and shared by the pool's threads: one bounded
database pool and one Redis pool per worker process, whatever the concurrency.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import redis

from campaigns.engine import BatchRunner
from campaigns.gateway_pool import GatewayPool
from campaigns.local import resolve_settings
from campaigns.pacing import SessionPacer
from campaigns.recovery import CampaignRecoveryManager
from campaigns.settings import Settings
from campaigns.store import CampaignStateManager


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    store: CampaignStateManager
    pacer: SessionPacer
    gateways: GatewayPool
    runner: BatchRunner
    recovery: CampaignRecoveryManager


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The worker's runtime, built on first use."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = _build()
        return _runtime


def _build() -> Runtime:
    settings = resolve_settings()
    # no ping per checkout on the hot path: see campaigns.store.db.create_db_engine
    store = CampaignStateManager(settings=settings, pre_ping=False)
    url = settings.pacing_redis_url
    if url is None:
        raise RuntimeError("pacing needs Redis: set REDIS_URL (the broker is not Redis)")
    client = redis.Redis.from_url(
        url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
    )
    # lost or older pacing state is rebuilt from the session's last send PostgreSQL recorded
    pacer = SessionPacer(
        client, guard=settings.pacing_guard, last_send=store.session_last_send
    )
    gateways = GatewayPool(store, settings)
    runner = BatchRunner(store, pacer, gateways, settings)
    recovery = CampaignRecoveryManager(store, settle_delay=settings.reconnect_settle)
    return Runtime(settings, store, pacer, gateways, runner, recovery)
