"""Chaos inside the engine's own resources, with real workers: the worker's database pool runs
dry while campaigns send. A pool timeout is a store outage like any other: the runs wait and try
again, and nothing is failed, lost, made unknown or sent twice."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text

from tests.chaos.conftest import Chaos

pytestmark = pytest.mark.chaos

HOLD_S = 7.0
"""How long the test holds a campaign's row: past the pool timeout (5 s) of the other threads."""
MAX_HOLDS = 5
DRY = "no database connection free in the pool"


@pytest.mark.timeout(300)
def test_database_pool_exhausted__campaigns_wait_and_complete_with_nothing_failed(
    chaos_factory: Callable[..., Chaos], database_url: str
) -> None:
    # one pooled connection for four sending threads: a thread stuck in a statement holds it
    chaos = chaos_factory(database_url, DB_POOL_SIZE="1")
    first, second = chaos.add_session("s1"), chaos.add_session("s2")
    worker = chaos.stack.start_worker(concurrency=4)
    started = time.monotonic()
    held_id = chaos.start_campaign(150, first)
    other_id = chaos.start_campaign(150, second)
    chaos.wait_sent(20)
    # past the worker's second start-up sweep (STALL_TIMEOUT + 1 s after it was ready): this
    # test is about the pool, not about takeovers
    time.sleep(max(0.0, 8.0 - (time.monotonic() - started)))

    engine = create_engine(database_url, pool_size=1)
    try:
        for held in range(1, MAX_HOLDS + 1):
            locked = threading.Event()

            def hold_row(locked: threading.Event = locked) -> None:
                # the first campaign's thread blocks on its row in a statement, holding the
                # worker's only connection; the second campaign's thread waits for the pool
                with engine.begin() as conn:
                    conn.execute(
                        text("SELECT id FROM campaign_batch_state WHERE id = :id FOR UPDATE"),
                        {"id": held_id},
                    )
                    locked.set()
                    time.sleep(HOLD_S)

            holder = threading.Thread(target=hold_row)
            holder.start()
            assert locked.wait(10)
            chaos.result.faults += 1
            holder.join()
            chaos.wait_sent(min(chaos.record.count() + 5, 300), timeout=60)
            # a hold that began while the held campaign's thread waited (a pacing gap, a batch
            # delay) may end before that thread needed its row: hold again until the pool
            # has run dry at least once, twice at least
            if held >= 2 and DRY in worker.log():
                break
    finally:
        engine.dispose()

    chaos.wait_finished(held_id, 120)
    chaos.wait_finished(other_id, 120)
    chaos.verify(held_id)
    chaos.verify(other_id)
    assert DRY in worker.log()  # the pool did run dry
