"""Chaos on a pooled ``rate`` campaign (issue 10): two Cloud API sessions, each a rate lane with
several requests outstanding, answered after a round trip. Workers die by SIGKILL, Redis is
flushed, PostgreSQL restarts. Checked against the sandbox's record over the whole pool: no
number twice, none missing, and at most ``in_flight`` unknowns per lane per kill (the bound the
rate lane documents: it claims only for requests about to leave)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from campaigns.local.postgres import EmbeddedPostgres
from campaigns.local.redis import EmbeddedRedis
from campaigns.settings import Pacing
from campaigns.store import db
from tests.chaos.conftest import Chaos

pytestmark = pytest.mark.chaos

IN_FLIGHT = 4
POOL = ("cloud1", "cloud2")
# zero intervals: the rate lanes' concurrency; small batches so faults land inside and between
RATE_PACING = Pacing(
    batch_size=40, min_interval=0, max_interval=0, batch_delay_min=0.1, batch_delay_max=0.3
)


def pooled_rate_campaign(chaos: Chaos, count: int) -> int:
    chaos.sandbox.latency(0.1, dialect="cloud")
    for name in POOL:
        chaos.add_session(
            name, "cloud-api", pacing="rate", rate="60", in_flight=str(IN_FLIGHT)
        )
    return chaos.start_campaign(count, list(POOL), RATE_PACING)


@pytest.mark.timeout(420)
def test_worker_kills_on_a_pooled_rate_campaign__no_duplicate_and_unknowns_within_in_flight(
    chaos: Chaos,
) -> None:
    chaos.stack.start_beat()
    for _ in range(2):
        chaos.stack.start_worker(concurrency=4)
    cid = pooled_rate_campaign(chaos, 1200)

    while chaos.result.crashes < 6:
        chaos.wait_sent(chaos.record.count() + chaos.rng.randint(40, 120), timeout=90)
        chaos.kill_a_worker()

    chaos.wait_finished(cid, 240)
    # a kill cuts off at most in_flight claims of each lane of the run it hit
    chaos.verify(cid, unknowns_per_crash=IN_FLIGHT * len(POOL))
    sessions = {m.session for m in chaos.record.messages()}
    assert sessions == set(POOL)


@pytest.mark.timeout(300)
def test_redis_flush_on_a_pooled_rate_campaign__resumes_from_postgres_with_nothing_lost(
    chaos: Chaos, chaos_redis: EmbeddedRedis
) -> None:
    chaos.stack.start_beat()
    for _ in range(2):
        chaos.stack.start_worker(concurrency=4)
    cid = pooled_rate_campaign(chaos, 900)
    chaos.wait_sent(150)

    flushed_at = time.time()
    chaos_redis.flushall()  # the queued batches, the chain and the token buckets are gone
    chaos.result.faults += 1
    chaos.wait_sent(chaos.record.count() + 1, timeout=60)
    chaos.result.add_latency("broker flush", chaos.first_message_after(flushed_at))

    chaos.wait_finished(cid, 180)
    chaos.verify(cid)  # nothing crashed: no unknown at all


@pytest.mark.timeout(300)
def test_postgres_restart_on_a_pooled_rate_campaign__completes_with_nothing_lost(
    chaos_factory: Callable[..., Chaos], private_postgres: EmbeddedPostgres
) -> None:
    url = private_postgres.create_database(f"chaos_{uuid.uuid4().hex[:8]}")
    db.upgrade(url)
    chaos = chaos_factory(url)
    chaos.stack.start_beat()
    for _ in range(2):
        chaos.stack.start_worker(concurrency=4)
    cid = pooled_rate_campaign(chaos, 900)
    chaos.wait_sent(150)

    restarted_at = time.time()
    private_postgres.restart()
    chaos.result.faults = 1
    chaos.wait_sent(chaos.record.count() + 1, timeout=90)
    chaos.result.add_latency("postgres restart", chaos.first_message_after(restarted_at))

    chaos.wait_finished(cid, 180)
    # sends answered while PostgreSQL was down are recorded once it is back (the record's
    # retry window): nothing crashed, so no unknown at all
    chaos.verify(cid)
