"""The batch runner in-process against real PostgreSQL and Redis, with gateway doubles: errors
that are not the recipients' never fail the list. An adapter that raises makes its one recipient
unknown (it may have sent) and touches nobody else; a campaign whose runs keep failing is
interrupted as blocked; a session that cannot be built (a Cloud API session without its token)
blocks the campaign with the reason; a run of unknowns (a gateway that hangs on every send)
pauses it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from campaigns.domain import CampaignStatus, RecipientStatus, StopKind
from campaigns.engine import BatchRunner, RunEnd
from campaigns.gateway_pool import GatewayPool
from campaigns.gateways.base import OutcomeKind, OutgoingMessage, SendOutcome
from campaigns.recovery import CampaignRecoveryManager
from campaigns.sandbox import SandboxRecord
from campaigns.settings import Settings
from campaigns.state import CampaignStateManager
from tests.integration.engine_doubles import (
    FAST,
    NUMBERS,
    ScriptedGateway,
    pacer_for,
    redis_url,
    runner_for,
)
from tests.integration.test_sandbox_helpers import running_sandbox

__all__ = ["redis_url"]  # the module's fixture


def test_an_adapter_that_raises__its_recipient_is_unknown_and_nobody_else_is_touched(
    store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    gateway = ScriptedGateway(raise_for={NUMBERS[1]})
    runner = runner_for(store, pacer_for(redis_url), gateway)
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)
    token = campaign.run_token
    assert token

    with pytest.raises(RuntimeError, match="adapter bug"):
        runner.run(campaign.id, 1, token)  # the task retries this a few times, then blocks
    assert runner.block(campaign.id, token, "batch 1 failed 4 times (RuntimeError: adapter bug)")

    rows = store.recipients(campaign.id)
    assert [r["status"] for r in rows] == [
        RecipientStatus.SENT, RecipientStatus.UNKNOWN, *[RecipientStatus.PENDING] * 4,
    ]
    assert rows[1]["error_code"] == "gateway_error"
    blocked = store.get_campaign(campaign.id)
    assert (blocked.status, blocked.interrupt_kind) == (
        CampaignStatus.INTERRUPTED, StopKind.BLOCKED,
    )
    assert blocked.interrupt_reason and "adapter bug" in blocked.interrupt_reason
    assert runner.run(campaign.id, 1, token).end is RunEnd.STOPPED  # nothing more is sent
    assert gateway.sent == NUMBERS[:2]


def test_run__with_a_stale_token_exits_without_sending(
    store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    gateway = ScriptedGateway()
    runner = runner_for(store, pacer_for(redis_url), gateway, Settings(legal_basis="consent"))
    campaign = store.create_campaign(NUMBERS, "Hi", console_session)
    assert campaign.run_token
    store.restart_run(campaign.id)  # another chain took over

    assert runner.run(campaign.id, 1, campaign.run_token).end is RunEnd.STOPPED
    assert gateway.sent == []


def test_a_gateway_that_never_answers__a_run_of_unknowns_pauses_the_campaign(
    store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    def read_timeout(message: OutgoingMessage) -> SendOutcome:
        return SendOutcome(
            OutcomeKind.AMBIGUOUS,
            error_code="read_timeout",
            error_message="the request reached the gateway but no answer came back",
        )

    gateway = ScriptedGateway(read_timeout)
    settings = Settings(legal_basis="consent", pacing=FAST, failure_streak_limit=3)
    runner = runner_for(store, pacer_for(redis_url), gateway, settings)
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)
    assert campaign.run_token

    result = runner.run(campaign.id, 1, campaign.run_token)

    assert result.end is RunEnd.STOPPED
    paused = store.get_campaign(campaign.id)
    assert paused.status is CampaignStatus.PAUSED
    assert paused.interrupt_reason and "3 recipients in a row got no answer" in (
        paused.interrupt_reason
    )
    counts = store.snapshot(campaign.id).counts
    assert (counts[RecipientStatus.UNKNOWN], counts[RecipientStatus.PENDING]) == (3, 3)
    assert gateway.sent == NUMBERS[:3]


def test_a_sent_recipient_ends_the_streak_of_unknowns(
    store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    answers = iter(["ambiguous", "ambiguous", "sent", "ambiguous", "ambiguous", "sent"])

    def mixed(message: OutgoingMessage) -> SendOutcome:
        if next(answers) == "sent":
            return SendOutcome(OutcomeKind.SENT, message_id="x")
        return SendOutcome(OutcomeKind.AMBIGUOUS, error_code="read_timeout")

    settings = Settings(legal_basis="consent", pacing=FAST, failure_streak_limit=3)
    runner = runner_for(store, pacer_for(redis_url), ScriptedGateway(mixed), settings)
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)
    assert campaign.run_token

    assert runner.run(campaign.id, 1, campaign.run_token).end is RunEnd.NEXT_BATCH
    assert runner.run(campaign.id, 2, campaign.run_token).end is RunEnd.COMPLETED
    assert store.get_campaign(campaign.id).status is CampaignStatus.COMPLETED


def test_a_cloud_api_session_without_its_token__blocks_the_campaign_and_fails_nobody(
    store: CampaignStateManager, database_url: str, redis_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reproduced: a Cloud API session added without --token-env failed every recipient of
    every batch (the adapter cannot be built: an unexpected error, retried, then fail_batch),
    and the campaign ended `completed`. It is a configuration error: the campaign waits,
    blocked with the reason, and an operator's resume after the fix sends everyone once."""
    with running_sandbox(tmp_path) as sandbox:
        store.add_session("meta", "cloud-api", sandbox.url, phone_number_id="meta")
        pool = GatewayPool(store, store.settings)
        settings = Settings(legal_basis="consent", pacing=FAST)
        runner = BatchRunner(store, pacer_for(redis_url), pool, settings)
        campaign = store.create_campaign(NUMBERS, "Hi", "meta", pacing=FAST)
        assert campaign.run_token

        result = runner.run(campaign.id, 1, campaign.run_token)

        assert result.end is RunEnd.INTERRUPTED
        blocked = store.get_campaign(campaign.id)
        assert (blocked.status, blocked.interrupt_kind) == (
            CampaignStatus.INTERRUPTED, StopKind.BLOCKED,
        )
        assert blocked.interrupt_reason and "needs an access token" in blocked.interrupt_reason
        assert store.snapshot(campaign.id).counts == {RecipientStatus.PENDING: len(NUMBERS)}
        record = SandboxRecord(tmp_path / "record.sqlite")
        assert record.count() == 0

        # the operator names the token's variable, then resumes
        monkeypatch.setenv("ENGINE_TEST_META_TOKEN", "a-token")
        engine = create_engine(database_url, pool_size=1)
        with engine.begin() as conn:
            conn.execute(text("UPDATE campaign_sessions SET token_env = 'ENGINE_TEST_META_TOKEN'"))
        engine.dispose()
        queue: list[tuple[int, int, str, float]] = []
        recovery = CampaignRecoveryManager(store, enqueue=lambda *call: queue.append(call))
        recovery.recover_campaign(campaign.id)
        while queue:
            cid, batch, token, _ = queue.pop(0)
            done = runner.run(cid, batch, token)
            if done.next_batch is not None:
                queue.append((cid, done.next_batch, token, done.delay))
        pool.close()

        assert store.get_campaign(campaign.id).status is CampaignStatus.COMPLETED
        assert sorted(m.e164 for m in record.messages()) == sorted(NUMBERS)
        assert record.duplicates() == []


class GatedGateway(ScriptedGateway):
    """Runs the pre-send hook the way the HTTP adapters do, right before each send."""

    def send(self, message: OutgoingMessage) -> SendOutcome:
        from campaigns.gateways import wire

        with wire.armed(True):
            hook = getattr(wire._hooks, "armed", None)
            if hook is not None:
                hook()
        return super().send(message)


def test_a_slow_claim__the_refreshed_turn_is_the_one_the_send_gate_checks(
    store: CampaignStateManager, console_session: str, redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A claim slower than half the guard makes the refresh re-take the turn. The send's gate
    must check that re-taken grant: checking the stale one fails to recognise it and queues
    the send for a second turn, one more min_interval per message (a 16,000-number pool run
    at 1/100 time measured 12 s gaps at full scale for a drawn 7 s)."""
    paced = FAST.__class__(batch_size=4, min_interval=0.05, max_interval=0.05,
                           batch_delay_min=0, batch_delay_max=0)  # fmt: skip
    campaign = store.create_campaign(NUMBERS[:4], "Hi", console_session, pacing=paced)
    assert campaign.run_token
    claim = store.claim_for_lane

    def slow_claim(*args: object, **kwargs: object) -> object:
        time.sleep(0.03)  # more than guard / 2 (0.01 s here)
        return claim(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "claim_for_lane", slow_claim)
    pacer = pacer_for(redis_url, guard=0.02)
    queued: list[str] = []
    queue = pacer._queue

    def spying(scope: str, session: str, member: str | None, *args: Any, **kw: Any) -> Any:
        queued.append(member or "")
        return queue(scope, session, member, *args, **kw)

    monkeypatch.setattr(pacer, "_queue", spying)
    gateway = GatedGateway()

    result = runner_for(store, pacer, gateway, Settings(legal_basis="consent", pacing=paced)).run(
        campaign.id, 1, campaign.run_token
    )

    assert result.end in (RunEnd.COMPLETED, RunEnd.NEXT_BATCH)
    assert len(gateway.sent) == 4
    # one queue entry per message: no send waited for a second turn
    assert [m for m in queued if m.endswith("!")] == []
