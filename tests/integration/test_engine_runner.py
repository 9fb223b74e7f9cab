"""The batch runner in-process against real PostgreSQL and Redis, with a gateway double that
has a bug (raises) for some numbers: a failing batch is failed for good after its retries and the
campaign goes on with the next batch."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.engine import BatchRunner, RunEnd
from campaigns.gateways.base import OutcomeKind, OutgoingMessage, SendOutcome, SessionHealth
from campaigns.pacing import SessionPacer
from campaigns.settings import Pacing, Settings
from campaigns.state import CampaignStateManager
from tests.conftest import ROOT

NUMBERS = [f"+5511{900000000 + i}" for i in range(6)]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    from campaigns.local.redis import EmbeddedRedis

    server = EmbeddedRedis(ROOT / ".data" / f"test-redis-runner-{uuid.uuid4().hex[:6]}")
    server.start()
    yield server.url()
    server.stop()


class BuggyGateway:
    """Sends, except that it raises for the numbers it is told to (an adapter bug)."""

    kind = "buggy"

    def __init__(self, raise_for: set[str]) -> None:
        self.raise_for = raise_for
        self.sent: list[str] = []

    def send(self, message: OutgoingMessage) -> SendOutcome:
        if message.to in self.raise_for:
            raise RuntimeError("adapter bug: unexpected answer shape")
        self.sent.append(message.to)
        return SendOutcome(OutcomeKind.SENT, message_id=f"id-{len(self.sent)}")

    def health(self) -> SessionHealth:
        return SessionHealth(True, "ok")

    def close(self) -> None:
        return None


class Pool:
    def __init__(self, gateway: BuggyGateway) -> None:
        self.gateway = gateway

    def get(self, session: str) -> BuggyGateway:
        return self.gateway


def test_failing_batch__is_failed_for_good_and_the_campaign_goes_on(
    store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    gateway = BuggyGateway(raise_for={NUMBERS[1]})
    pacer = SessionPacer(redis.Redis.from_url(redis_url), key_prefix=f"t-{uuid.uuid4().hex}:")
    settings = Settings(pacing=Pacing(batch_size=3, min_interval=0, max_interval=0,
                                      batch_delay_min=0, batch_delay_max=0))
    runner = BatchRunner(store, pacer, Pool(gateway), settings)  # type: ignore[arg-type]
    campaign = store.create_campaign(NUMBERS, "Hi", console_session,
                                     pacing=Pacing(batch_size=3, min_interval=0, max_interval=0,
                                                   batch_delay_min=0, batch_delay_max=0))
    token = campaign.run_token
    assert token

    with pytest.raises(RuntimeError, match="adapter bug"):
        runner.run(campaign.id, 1, token)  # the task retries this a few times, then:
    result = runner.fail_batch(campaign.id, 1, token, "RuntimeError: adapter bug")
    assert (result.end, result.next_batch) == (RunEnd.NEXT_BATCH, 2)

    assert runner.run(campaign.id, 2, token).end is RunEnd.COMPLETED
    rows = store.recipients(campaign.id)
    assert [r["status"] for r in rows] == [
        RecipientStatus.SENT, RecipientStatus.UNKNOWN, RecipientStatus.FAILED,
        RecipientStatus.SENT, RecipientStatus.SENT, RecipientStatus.SENT,
    ]
    assert rows[2]["error_message"] == "RuntimeError: adapter bug"
    done = store.get_campaign(campaign.id)
    assert done.status is CampaignStatus.COMPLETED
    assert store.check_invariants(campaign.id) == []
    assert gateway.sent == [NUMBERS[0], *NUMBERS[3:]]


def test_run__with_a_stale_token_exits_without_sending(
    store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    gateway = BuggyGateway(raise_for=set())
    pacer = SessionPacer(redis.Redis.from_url(redis_url), key_prefix=f"t-{uuid.uuid4().hex}:")
    runner = BatchRunner(store, pacer, Pool(gateway), Settings())  # type: ignore[arg-type]
    campaign = store.create_campaign(NUMBERS, "Hi", console_session)
    assert campaign.run_token
    store.restart_run(campaign.id)  # another chain took over

    assert runner.run(campaign.id, 1, campaign.run_token).end is RunEnd.STOPPED
    assert gateway.sent == []
