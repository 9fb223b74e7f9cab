"""Chaos on sender caps (issue 11): a WAHA session capped per rolling day and hour, sent by
two workers; a worker dies by SIGKILL mid-campaign and Redis (where the
counts live) is flushed. The caps still hold in the sandbox's record (the counts are rebuilt
from the ledger, claims in flight included) and every number arrives once. A "day" is 20 s
(CAPACITY_DAY_SECONDS), so an hour is under a second."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest

from campaigns.local.redis import EmbeddedRedis
from campaigns.settings import Pacing
from tests.chaos.conftest import Chaos

pytestmark = pytest.mark.chaos

DAY_S = 20.0
CAP_DAY, CAP_HOUR = 12, 3
PACING = Pacing(
    batch_size=10, min_interval=0.05, max_interval=0.1, batch_delay_min=0.1, batch_delay_max=0.2
)


def most_in_any_window(times: Sequence[float], span: float) -> int:
    ordered = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= span:
            first += 1
        best = max(best, last - first + 1)
    return best


@pytest.mark.timeout(420)
def test_caps_hold_through_a_worker_kill_and_a_redis_flush(
    chaos_factory: Callable[..., Chaos], database_url: str, chaos_redis: EmbeddedRedis
) -> None:
    chaos = chaos_factory(database_url, CAPACITY_DAY_SECONDS=str(DAY_S))
    chaos.add_session("capped", "waha", cap_day=str(CAP_DAY), cap_hour=str(CAP_HOUR),
                      typing="false")  # fmt: skip
    chaos.stack.start_beat()
    for _ in range(2):
        chaos.stack.start_worker(concurrency=4)
    cid = chaos.start_campaign(36, "capped", PACING)

    chaos.wait_sent(5, timeout=60)
    chaos.kill_a_worker()  # mid-send: at most one claim of the lane is cut off
    chaos.wait_sent(CAP_DAY + 2, timeout=90)  # the next "day" has begun
    flushed_at = time.time()
    chaos_redis.flushall()  # the counts, the chain and the pacing state are gone
    chaos.result.faults += 1
    chaos.wait_sent(chaos.record.count() + 1, timeout=90)
    chaos.result.add_latency("broker flush", chaos.first_message_after(flushed_at))

    chaos.wait_finished(cid, 240)
    times = [m.received_at for m in chaos.record.messages(session="capped")]
    assert most_in_any_window(times, DAY_S) <= CAP_DAY
    assert most_in_any_window(times, DAY_S / 24) <= CAP_HOUR
    chaos.verify(cid)
