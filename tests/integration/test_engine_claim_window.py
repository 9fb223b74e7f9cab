"""Nothing lost between claim and call: when Redis or PostgreSQL fails after a recipient was
claimed and before its gateway call (the pacing refresh, the heartbeat of its stop check, the
release itself), the recipient goes back to pending, first in line, with its attempt given back.
It never ends unknown (a send that never left), and the next recipient is never sent before it.

In process, against real PostgreSQL and Redis: a private Redis stopped right after a claim, a
database pool exhausted by a connection held elsewhere, and a pacer whose refresh fails.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from campaigns.domain import ClaimedRecipient, RecipientStatus
from campaigns.engine import RunEnd
from campaigns.errors import StoreUnavailable
from campaigns.local.redis import EmbeddedRedis
from campaigns.pacing import PacingUnavailable, Reservation, SessionPacer
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

PACED = Pacing(
    batch_size=3, min_interval=0.01, max_interval=0.02, batch_delay_min=0, batch_delay_max=0
)


def tiny_pool(url: str, timeout: float) -> Engine:
    """An engine of one pooled connection that gives up waiting for it after ``timeout``."""
    return create_engine(url, pool_size=1, max_overflow=0, pool_timeout=timeout)


def statuses(store: CampaignStateManager, campaign_id: int) -> list[RecipientStatus]:
    return [RecipientStatus(r["status"]) for r in store.recipients(campaign_id)]


def after_first_claim(
    store: CampaignStateManager, monkeypatch: pytest.MonkeyPatch, fault: Callable[[], None]
) -> None:
    """Run ``fault`` right after the store hands out its first claim."""
    claim = store.claim_for_lane
    done: list[bool] = []

    def claiming(*args: Any, **kwargs: Any) -> ClaimedRecipient | None:
        claimed = claim(*args, **kwargs)
        if claimed is not None and not done:
            done.append(True)
            fault()
        return claimed

    monkeypatch.setattr(store, "claim_for_lane", claiming)


def assert_first_back_to_pending(store: CampaignStateManager, campaign_id: int) -> None:
    rows = store.recipients(campaign_id)
    assert [r["status"] for r in rows] == [RecipientStatus.PENDING] * len(NUMBERS)
    assert [r["attempts"] for r in rows] == [0] * len(NUMBERS)  # the attempt was given back


def finish(store: CampaignStateManager, campaign_id: int, token: str, gateway: ScriptedGateway,
           pacer: SessionPacer) -> None:
    """The task tries again later, with working services: everything goes, in input order."""
    runner = runner_for(store, pacer, gateway)
    assert runner.run(campaign_id, 1, token).end is RunEnd.NEXT_BATCH
    assert runner.run(campaign_id, 2, token).end is RunEnd.COMPLETED
    assert gateway.sent == NUMBERS
    assert statuses(store, campaign_id) == [RecipientStatus.SENT] * len(NUMBERS)
    assert store.check_invariants(campaign_id) == []


@pytest.fixture
def own_redis(server_tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own: it is stopped mid-run."""
    server = EmbeddedRedis(server_tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_stopped_after_the_claim__the_refresh_fails_and_the_recipient_is_pending_again(
    store: CampaignStateManager, console_session: str, own_redis: EmbeddedRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACED)
    assert campaign.run_token
    gateway = ScriptedGateway()
    pacer = pacer_for(own_redis.url())
    # stopping a server takes longer than the pacing guard, so the grant is stale by the time
    # the refresh runs, and the refresh has to ask the stopped Redis again
    def stop_redis() -> None:
        own_redis.stop()
        time.sleep(0.05)  # past the guard, whatever the speed of the shutdown

    after_first_claim(store, monkeypatch, stop_redis)

    with pytest.raises(PacingUnavailable):
        runner_for(store, pacer, gateway).run(campaign.id, 1, campaign.run_token)

    assert gateway.sent == []
    assert_first_back_to_pending(store, campaign.id)
    monkeypatch.undo()
    own_redis.start()
    finish(store, campaign.id, campaign.run_token, gateway, pacer_for(own_redis.url()))


class FailingRefresh(SessionPacer):
    """A pacer whose refresh, the first ``failures`` times, finds Redis gone."""

    def __init__(self, model: SessionPacer, failures: int = 1) -> None:
        self.__dict__.update(model.__dict__)
        self.failures = failures

    def refresh(self, session: str, min_interval: float, turn: Reservation,
                sleep: Callable[[float], object] = lambda s: None,
                stop: Callable[[], bool] | None = None) -> Reservation:
        if self.failures:
            self.failures -= 1
            raise PacingUnavailable(session=session, operation="acquire", cause="refused")
        return super().refresh(session, min_interval, turn, sleep, stop)


class WaitingRefresh(SessionPacer):
    """A pacer whose refresh always finds its grant stale and checks its stop while it
    queues again (as it does after a slow claim)."""

    def __init__(self, model: SessionPacer) -> None:
        self.__dict__.update(model.__dict__)

    def refresh(self, session: str, min_interval: float, turn: Reservation,
                sleep: Callable[[float], object] = lambda s: None,
                stop: Callable[[], bool] | None = None) -> Reservation:
        if stop is not None:
            stop()
        return super().refresh(session, min_interval, turn, sleep, stop)


def test_the_release_itself_fails_for_a_while__it_is_retried_until_the_recipient_is_pending(
    store: CampaignStateManager, console_session: str, redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)
    assert campaign.run_token
    release = store.release_claim
    refused: list[int] = []

    def flaky_release(claim: ClaimedRecipient, **options: Any) -> bool:
        if len(refused) < 2:  # PostgreSQL restarting
            refused.append(claim.position)
            raise StoreUnavailable("the database connection was lost")
        return release(claim, **options)

    monkeypatch.setattr(store, "release_claim", flaky_release)
    gateway = ScriptedGateway()
    naps: list[float] = []
    runner = runner_for(
        store, FailingRefresh(pacer_for(redis_url)), gateway, sleep=naps.append
    )

    with pytest.raises(PacingUnavailable):
        runner.run(campaign.id, 1, campaign.run_token)

    assert refused == [1, 1] and naps == [0.5, 1.0]  # the claim was kept and retried
    assert gateway.sent == []
    assert_first_back_to_pending(store, campaign.id)
    monkeypatch.undo()
    finish(store, campaign.id, campaign.run_token, gateway, pacer_for(redis_url))


def test_pool_exhausted_during_the_refresh_heartbeat__a_store_outage_and_the_claim_goes_back(
    database_url: str, console_session: str, redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One pooled connection, held by someone else for a second right after the claim: the
    heartbeat of the refresh's stop check times out on the pool (StoreUnavailable, not a
    driver error), and the release waits until the connection is free again."""
    settings = Settings(legal_basis="consent", pacing=FAST)
    store = CampaignStateManager(engine=tiny_pool(database_url, 0.2), settings=settings)
    try:
        campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACED)
        assert campaign.run_token
        held = threading.Event()

        def hold_the_only_connection() -> None:
            with store.engine.connect():
                held.set()
                threading.Event().wait(1.0)

        def exhaust() -> None:
            threading.Thread(target=hold_the_only_connection, daemon=True).start()
            held.wait(5)

        after_first_claim(store, monkeypatch, exhaust)
        gateway = ScriptedGateway()
        # the refresh waits (its grant went stale) and checks its stop meanwhile; the stop
        # check stamps a heartbeat at every check here, while the pool is exhausted
        runner = runner_for(store, WaitingRefresh(pacer_for(redis_url)), gateway, settings)
        runner.heartbeat_every = 0.0

        with pytest.raises(StoreUnavailable, match="no database connection free in the pool"):
            runner.run(campaign.id, 1, campaign.run_token)

        assert gateway.sent == []
        assert_first_back_to_pending(store, campaign.id)
        monkeypatch.undo()
        finish(store, campaign.id, campaign.run_token, gateway, pacer_for(redis_url))
    finally:
        store.dispose()


def test_pool_timeout__is_a_store_outage_for_every_verb(
    database_url: str, console_session: str
) -> None:
    settings = Settings(legal_basis="consent", pacing=FAST)
    store = CampaignStateManager(engine=tiny_pool(database_url, 0.1), settings=settings)
    try:
        campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)
        assert campaign.run_token
        with store.engine.connect():  # the only connection is busy
            with pytest.raises(StoreUnavailable, match="no database connection free"):
                store.heartbeat(campaign.id, campaign.run_token)
            with pytest.raises(StoreUnavailable):
                store.claim_recipient(campaign.id, 1, campaign.run_token)
            with pytest.raises(StoreUnavailable):
                store.get_campaign(campaign.id)
        assert store.heartbeat(campaign.id, campaign.run_token)
    finally:
        store.dispose()
