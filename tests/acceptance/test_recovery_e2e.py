"""End to end recovery with real workers, a private Redis and the sandbox gateway: the webhook
receiver resumes a campaign when the sandbox pushes a reconnect (no beat running, so nothing else
could), a restarted worker resumes a dead chain on its own (worker_ready, no beat either), and a
read timeout is unknown by default and resent under RESEND_UNKNOWN."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from campaigns.dispatch import TaskSender
from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.local.stack import LocalStack, wait_until
from campaigns.processor import CampaignBatchProcessor
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.state import CampaignStateManager
from campaigns.web.app import create_app
from campaigns.web.server import running
from campaigns.webhooks import HMAC_KEY_ENV

pytestmark = pytest.mark.slow

HMAC_KEY = "e2e-webhook-key"


@pytest.fixture
def webhook_url(e2e_store: CampaignStateManager, stack_env: dict[str, str]) -> Iterator[str]:
    """The web service in a thread, enqueueing on the stack's broker and queue; a WAHA key."""
    resume = TaskSender.for_broker(stack_env["CELERY_BROKER_URL"], stack_env["CAMPAIGNS_QUEUE"])
    app = create_app(e2e_store, resume=resume.resume_session, env={HMAC_KEY_ENV: HMAC_KEY})
    try:
        with running(app) as url:
            yield url
    finally:
        resume.close()


def start(store: CampaignStateManager, enqueuer: TaskSender, session: str, count: int) -> int:
    p = CampaignBatchProcessor(10, 0.05, 0.1, 0.1, 0.2, enqueue=enqueuer)
    p.set_state_manager(store)
    return p.process_large_campaign_array(
        [f"+5511{920000000 + i}" for i in range(count)], "Hi", session
    )


def status_is(store: CampaignStateManager, cid: int, status: CampaignStatus) -> bool:
    return store.get_campaign(cid).status is status


@pytest.mark.parametrize("dialect", ["waha", "evolution"])
def test_reconnect_pushed_by_the_gateway_webhook__resumes_the_campaign_without_beat(
    dialect: str,
    stack: LocalStack,
    e2e_store: CampaignStateManager,
    sandbox_url: str,
    sandbox: SandboxControl,
    record: SandboxRecord,
    enqueuer: TaskSender,
    webhook_url: str,
) -> None:
    session = f"wh-{dialect}"
    e2e_store.add_session(session, dialect, sandbox_url, token_env="SANDBOX_TOKEN")
    sandbox.add_webhook(
        f"{webhook_url}/webhooks/{dialect}",
        dialect,
        hmac_key=HMAC_KEY if dialect == "waha" else None,
    )
    stack.start_worker(concurrency=2)
    cid = start(e2e_store, enqueuer, session, 40)
    wait_until(lambda: record.count() >= 10, 60, "10 messages sent")

    sandbox.drop(session)
    wait_until(
        lambda: status_is(e2e_store, cid, CampaignStatus.INTERRUPTED),
        30,
        "the campaign to be interrupted",
    )
    resume_from = e2e_store.first_pending_position(cid)
    assert e2e_store.get_session(session).connection_status == "disconnected"
    reconnected_at = time.time()
    sandbox.restore(session)

    wait_until(
        lambda: status_is(e2e_store, cid, CampaignStatus.COMPLETED),
        60,
        "the campaign to complete after the webhook",
    )
    deliveries = sandbox.webhooks()["deliveries"]
    assert [d.get("status") for d in deliveries] == [200, 200]
    after = [m for m in record.messages() if m.received_at > reconnected_at]
    [expected] = [r["phone"] for r in e2e_store.recipients(cid) if r["position"] == resume_from]
    assert after[0].e164 == expected
    assert record.count() == 40 and record.duplicates() == []
    assert e2e_store.check_invariants(cid) == []


def test_worker_restarted_after_a_crash__resumes_the_dead_chain_without_beat(
    stack: LocalStack,
    e2e_store: CampaignStateManager,
    sandbox_url: str,
    record: SandboxRecord,
    enqueuer: TaskSender,
) -> None:
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN")
    worker = stack.start_worker(concurrency=2).name
    cid = start(e2e_store, enqueuer, "sales", 60)
    wait_until(lambda: record.count() >= 15, 60, "15 messages sent")

    stack.kill(worker)
    stack.start_worker(concurrency=2)  # its worker_ready sweep comes back after the stall

    wait_until(
        lambda: status_is(e2e_store, cid, CampaignStatus.COMPLETED), 90, "the campaign to complete"
    )
    assert record.duplicates() == []
    assert len(e2e_store.recipients(cid, RecipientStatus.UNKNOWN)) <= 1
    assert e2e_store.check_invariants(cid) == []


@pytest.mark.parametrize("resend", [False, True], ids=["default", "resend-unknown"])
def test_read_timeout__is_unknown_by_default_and_resent_under_resend_unknown(
    resend: bool,
    stack: LocalStack,
    e2e_store: CampaignStateManager,
    sandbox_url: str,
    sandbox: SandboxControl,
    record: SandboxRecord,
    enqueuer: TaskSender,
) -> None:
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN")
    # accepted, then the answer is held past GATEWAY_READ_TIMEOUT (3 s): ambiguous
    sandbox.hang(5, count=1)
    stack.start_worker(concurrency=2, extra_env={"RESEND_UNKNOWN": str(resend).lower()})
    cid = start(e2e_store, enqueuer, "sales", 5)

    wait_until(
        lambda: status_is(e2e_store, cid, CampaignStatus.COMPLETED), 60, "the campaign to complete"
    )
    first = e2e_store.recipients(cid)[0]
    deliveries = [m.e164 for m in record.messages()].count(first["phone"])
    if resend:
        assert (first["status"], first["attempts"], deliveries) == (RecipientStatus.SENT, 2, 2)
    else:
        assert (first["status"], deliveries) == (RecipientStatus.UNKNOWN, 1)
        assert e2e_store.get_campaign(cid).unknown_count == 1
    assert record.count() == 5 + resend
    assert e2e_store.check_invariants(cid) == []
