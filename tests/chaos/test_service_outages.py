"""Chaos: the broker forgets everything (FLUSHALL, a restart without persistence) and
PostgreSQL restarts, mid-campaign. PostgreSQL stays the single source of truth: the campaign
resumes from it, and workers reconnect on their own."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from campaigns.local.postgres import EmbeddedPostgres
from campaigns.local.redis import EmbeddedRedis
from campaigns.local.stack import wait_until
from campaigns.settings import Pacing
from campaigns.store import db
from tests.chaos.conftest import STALL_TIMEOUT_S, SWEEP_INTERVAL_S, Chaos

pytestmark = pytest.mark.chaos


@pytest.mark.timeout(300)
def test_redis_flushall_then_restart_without_persistence__the_campaign_resumes_from_postgres(
    chaos: Chaos, chaos_redis: EmbeddedRedis
) -> None:
    session = chaos.add_session()
    chaos.stack.start_beat()
    for _ in range(2):
        chaos.stack.start_worker(concurrency=4)
    # batch delays long enough that each fault lands while the next batch waits as a delayed
    # broker message: the chain itself lives only in Redis and the worker's memory then
    pacing = Pacing(
        batch_size=20, min_interval=0.05, max_interval=0.1, batch_delay_min=1.5, batch_delay_max=2.0
    )
    cid = chaos.start_campaign(300, session, pacing)
    chaos.wait_sent(60)

    def between_batches() -> bool:
        waiting_until = chaos.store.get_campaign(cid).next_batch_at
        return waiting_until is not None and waiting_until.timestamp() > time.time() + 0.5

    wait_until(between_batches, 30, "the campaign to wait between two batches")
    flushed_at = time.time()
    chaos_redis.flushall()  # every queued batch and the pacing state are gone
    chaos.result.faults += 1
    chaos.wait_sent(chaos.record.count() + 1, timeout=60)
    chaos.result.add_latency("broker flush", chaos.first_message_after(flushed_at))
    chaos.wait_sent(chaos.record.count() + 60, timeout=90)

    wait_until(between_batches, 30, "the campaign to wait between two batches")
    restarted_at = time.time()
    chaos_redis.restart()  # connections cut, unacked messages lost with everything else
    chaos.result.faults += 1
    chaos.wait_sent(chaos.record.count() + 1, timeout=60)
    chaos.result.add_latency("broker restart", chaos.first_message_after(restarted_at))

    chaos.wait_finished(cid, 180)
    chaos.verify(cid)
    # within one sweep once the chain looks stalled (plus worker reconnects)
    for seconds in [
        v for k in ("broker flush", "broker restart") for v in chaos.result.latencies[k]
    ]:
        assert seconds < STALL_TIMEOUT_S + SWEEP_INTERVAL_S + 6


@pytest.mark.timeout(300)
def test_postgres_restart_mid_campaign__workers_reconnect_and_the_campaign_completes(
    chaos_factory: Callable[..., Chaos], private_postgres: EmbeddedPostgres
) -> None:
    url = private_postgres.create_database(f"chaos_{uuid.uuid4().hex[:8]}")
    db.upgrade(url)
    chaos = chaos_factory(url)
    session = chaos.add_session()
    chaos.stack.start_beat()
    for _ in range(2):
        chaos.stack.start_worker(concurrency=4)
    cid = chaos.start_campaign(300, session)
    chaos.wait_sent(80)

    restarted_at = time.time()
    private_postgres.restart()
    chaos.result.faults = 1
    chaos.wait_sent(chaos.record.count() + 1, timeout=90)
    chaos.result.add_latency("postgres restart", chaos.first_message_after(restarted_at))

    chaos.wait_finished(cid, 180)
    chaos.verify(cid)
