"""Time bounds that hold on the threads pool, where Celery's soft and hard limits do nothing: a
task run's own budget bounds every wait it may still start (the pacing refresh after a claim
included), and ``longest_run`` adds up every blocking point a run may pass after its budget.

In process against real PostgreSQL and Redis, on a fake clock (no assertion on speed)."""

from __future__ import annotations

from collections.abc import Callable

from campaigns.domain import RecipientStatus
from campaigns.engine import RunEnd
from campaigns.outcomes import RECORD_RETRY_WINDOW_S, RELEASE_RETRY_WINDOW_S
from campaigns.pacing import PacingCancelled, Reservation, SessionPacer
from campaigns.settings import Settings
from campaigns.state import CampaignStateManager
from campaigns.store.db import CONNECT_TIMEOUT_S, POOL_TIMEOUT_S
from tests.integration.engine_doubles import (
    FAST,
    NUMBERS,
    ScriptedGateway,
    pacer_for,
    redis_url,
    runner_for,
)
from workers.limits import compute_limits, longest_run

__all__ = ["redis_url"]  # the module's fixture


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class EndlessRefresh(SessionPacer):
    """A refresh that never gets its turn back (other lanes keep taking the session's turns):
    it waits for as long as its stop check lets it."""

    def __init__(self, model: SessionPacer) -> None:
        self.__dict__.update(model.__dict__)
        self.checks = 0

    def refresh(self, session: str, min_interval: float, turn: Reservation,
                sleep: Callable[[float], object] = lambda s: None,
                stop: Callable[[], bool] | None = None) -> Reservation:
        assert stop is not None
        while not stop():
            self.checks += 1
            assert self.checks < 10_000, "the refresh after a claim is not bounded by the budget"
            sleep(0.5)
        raise PacingCancelled()


def test_a_refresh_that_never_gets_its_turn__ends_with_the_budget_and_gives_the_claim_back(
    store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)
    assert campaign.run_token
    clock = Clock()
    gateway = ScriptedGateway()
    settings = Settings(legal_basis="consent", pacing=FAST, task_time_budget=30.0)
    runner = runner_for(store, EndlessRefresh(pacer_for(redis_url)), gateway, settings,
                        clock=clock, sleep=clock.sleep)

    result = runner.run(campaign.id, 1, campaign.run_token)

    assert result.end is RunEnd.CONTINUE  # a continuation takes the batch on
    assert clock.now <= settings.task_time_budget + 0.5
    assert gateway.sent == []
    rows = store.recipients(campaign.id)
    assert [(r["status"], r["attempts"]) for r in rows[:2]] == [
        (RecipientStatus.PENDING, 0), (RecipientStatus.PENDING, 0),
    ]


def test_longest_run__adds_every_blocking_point_after_the_budget() -> None:
    settings = Settings(task_time_budget=240, gateway_connect_timeout=5, gateway_read_timeout=20)
    store_call = POOL_TIMEOUT_S + CONNECT_TIMEOUT_S
    window = max(RECORD_RETRY_WINDOW_S, RELEASE_RETRY_WINDOW_S)
    longest = longest_run(settings)

    # the budget, a send of two HTTP calls (WAHA's lookup, then the send), its record retried
    # through a PostgreSQL restart, and the store, Redis and broker calls around them
    assert longest >= 240 + 2 * 25 + window + 7 * store_call
    assert longest_run(Settings(task_time_budget=300)) - longest_run(Settings()) == 60
    slower = Settings(gateway_read_timeout=40)
    assert longest_run(slower) - longest_run(Settings(legal_basis="consent")) == 2 * 20
    limits = compute_limits(settings, {})
    assert limits.longest_run == longest < limits.soft_time_limit < limits.hard_time_limit
    assert limits.hard_time_limit < limits.visibility_timeout
