"""One live run per campaign: the run lease. A redelivered copy of a running task (same
campaign, batch and token) finds the lease held and renewed, and exits quietly without sending;
a copy of a batch already finished exits without handing the chain on (only the run that wrote
the details row enqueues the next batch); a holder that died stops renewing, and the next run
takes the lease once it expires; a run that ends lets go of it at once.

In process against real PostgreSQL and Redis; the copies' clocks are fake where they would
otherwise wait out a whole stall timeout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.engine import RunEnd
from campaigns.settings import Pacing, Settings
from campaigns.state import CampaignStateManager
from tests.integration.engine_doubles import (
    FAST,
    NUMBERS,
    ScriptedGateway,
    pacer_for,
    redis_url,
    runner_for,
)

__all__ = ["redis_url"]  # the module's fixture


class FakeClock:
    """A clock that sleeping moves forward; ``on_sleep`` runs at every nap."""

    def __init__(self, on_sleep: object = None) -> None:
        self.now = 1000.0
        self.naps: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.naps.append(seconds)
        self.now += seconds
        if callable(self.on_sleep):
            self.on_sleep()


def test_a_copy_of_a_running_task__sees_the_live_lease_and_exits_without_sending(
    store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)
    token = campaign.run_token
    assert token
    # the original run holds the lease and keeps renewing it with its heartbeats
    assert store.take_run_lease(campaign.id, 1, token, "the-original").taken
    clock = FakeClock(lambda: store.heartbeat(campaign.id, token, lease="the-original"))
    gateway = ScriptedGateway()
    copy = runner_for(store, pacer_for(redis_url), gateway, clock=clock, sleep=clock.sleep)

    result = copy.run(campaign.id, 1, token)

    assert result.end is RunEnd.STOPPED
    assert gateway.sent == []
    # it waited out the lease as it was when first seen (one stall timeout), no longer
    assert store.settings.stall_timeout - 1 <= sum(clock.naps) <= store.settings.stall_timeout + 2
    assert not store.take_run_lease(campaign.id, 1, token, "a-third-run").taken
    assert store.heartbeat(campaign.id, token, lease="the-original")  # still the holder's


def test_the_holder_of_the_lease__loses_it_to_nobody_while_it_renews(
    store: CampaignStateManager, console_session: str
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)
    token = campaign.run_token
    assert token
    assert store.take_run_lease(campaign.id, 1, token, "a").taken
    assert store.take_run_lease(campaign.id, 1, token, "a").taken  # its own: again
    held = store.take_run_lease(campaign.id, 1, token, "b")
    assert (held.taken, held.fenced, held.batch_done) == (False, True, False)
    assert store.settings.stall_timeout - 1 < held.held_for <= store.settings.stall_timeout
    assert not store.heartbeat(campaign.id, token, lease="b")  # no heartbeat without the lease
    assert store.release_run_lease(campaign.id, "a")
    assert store.take_run_lease(campaign.id, 1, token, "b").taken
    assert not store.heartbeat(campaign.id, token, lease="a")  # a lost it: it must stop
    stale = store.take_run_lease(campaign.id, 1, "another-token", "c")
    assert (stale.taken, stale.fenced) == (False, False)


@pytest.fixture
def short_lease_store(database_url: str) -> Iterator[CampaignStateManager]:
    """A store whose leases last one second (the stall timeout)."""
    settings = Settings(legal_basis="consent", pacing=FAST, stall_timeout=1.0)
    manager = CampaignStateManager(database_url, settings=settings)
    yield manager
    manager.dispose()


def test_a_holder_that_died__its_lease_expires_and_the_next_run_takes_over(
    short_lease_store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    store = short_lease_store
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)
    token = campaign.run_token
    assert token
    assert store.take_run_lease(campaign.id, 1, token, "died-before-letting-go").taken
    gateway = ScriptedGateway()

    result = runner_for(store, pacer_for(redis_url), gateway).run(campaign.id, 1, token)

    assert result.end is RunEnd.NEXT_BATCH
    assert gateway.sent == NUMBERS[:3]


def test_a_copy_of_a_finished_batch__exits_and_hands_nothing_on(
    store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)
    token = campaign.run_token
    assert token
    gateway = ScriptedGateway()
    runner = runner_for(store, pacer_for(redis_url), gateway)
    assert runner.run(campaign.id, 1, token).next_batch == 2

    copy = runner.run(campaign.id, 1, token)  # redelivered after the original finished

    assert (copy.end, copy.next_batch) == (RunEnd.STOPPED, None)
    assert runner.run(campaign.id, 2, token).end is RunEnd.COMPLETED
    assert gateway.sent == NUMBERS
    assert store.check_invariants(campaign.id) == []


def test_finish_batch__only_the_call_that_wrote_the_details_row_may_hand_on(
    store: CampaignStateManager, console_session: str
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)
    token = campaign.run_token
    assert token
    assert store.take_run_lease(campaign.id, 1, token, "x").taken
    while claim := store.claim_recipient(campaign.id, 1, token):
        store.record_outcome(claim, RecipientStatus.SENT)

    first = store.finish_batch(campaign.id, 1, token, lease="x")
    second = store.finish_batch(campaign.id, 1, token)

    assert first is not None and second is not None
    assert (first.inserted, second.inserted) == (True, False)
    assert (first.next_batch, second.next_batch) == (2, 2)
    assert store.get_campaign(campaign.id).success_count == 3  # counted once
    # the lease went with the details row: the next batch's run takes it at once
    assert store.take_run_lease(campaign.id, 2, token, "y").taken
    assert store.get_campaign(campaign.id).status is CampaignStatus.RUNNING


def test_a_run_lets_go_of_the_lease__its_continuation_takes_it_at_once(
    store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    paced = Pacing(batch_size=6, min_interval=0, max_interval=0, batch_delay_min=0,
                   batch_delay_max=0)
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=paced)
    token = campaign.run_token
    assert token
    gateway = ScriptedGateway()
    clock = FakeClock()
    settings = Settings(legal_basis="consent", pacing=paced, task_time_budget=1.0)
    ticking = runner_for(store, pacer_for(redis_url), gateway, settings,
                         clock=lambda: clock.sleep(0.4) or clock.now)

    assert ticking.run(campaign.id, 1, token).end is RunEnd.CONTINUE
    assert 0 < len(gateway.sent) < len(NUMBERS)
    assert store.take_run_lease(campaign.id, 1, token, "the-continuation").taken
