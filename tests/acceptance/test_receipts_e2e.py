"""Delivery receipts end to end: real workers send through the sandbox, the sandbox posts its
dialect's receipts (signed, some failed, some twice, some out of order) to the running web
service, and the ledger ends with each recipient's delivery status, late failures moving the
counters: counters = ledger = details, every receipt the sandbox saw answered 200 applied."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from campaigns.dispatch import TaskSender
from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.local.stack import LocalStack, wait_until
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.state import CampaignStateManager
from campaigns.web.app import create_app
from campaigns.web.server import running
from tests.acceptance.conftest import processor_for

pytestmark = pytest.mark.slow

SECRET = "meta-app-secret"
HMAC_KEY = "waha-webhook-key"


@pytest.fixture
def web(e2e_store: CampaignStateManager) -> Iterator[str]:
    """The web service, as `campaigns web` serves it, on the test's database."""
    app = create_app(
        e2e_store,
        resume=lambda session, reason: None,
        env={"META_APP_SECRET": SECRET, "WAHA_WEBHOOK_HMAC_KEY": HMAC_KEY},
    )
    with running(app) as url:
        yield url


@pytest.mark.parametrize("dialect", ["cloud", "waha"])
def test_receipts_of_a_running_campaign__reach_the_ledger_forward_only_with_late_failures(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender, web: str,
    dialect: str,
) -> None:  # fmt: skip
    if dialect == "cloud":
        e2e_store.add_session("meta", "cloud-api", sandbox_url, token_env="SANDBOX_TOKEN",
                              phone_number_id="meta", pacing="human")  # fmt: skip
        sandbox.add_webhook(f"{web}/webhooks/cloud", "cloud", hmac_key=SECRET)
    else:
        e2e_store.add_session("meta", "waha", sandbox_url, token_env="SANDBOX_TOKEN",
                              typing="false")  # fmt: skip
        sandbox.add_webhook(f"{web}/webhooks/waha", "waha", hmac_key=HMAC_KEY)
    sandbox.receipts(True, delivered_after=0.2, read_after=0.3, read_share=0.5,
                     fail_share=0.2, duplicate_share=0.3, reorder_share=0.2, seed=7)  # fmt: skip
    listed = [f"+5511{960000000 + i}" for i in range(30)]
    stack.start_worker(concurrency=4)
    p = processor_for(e2e_store, enqueuer, batch_size=10, min_interval=0.05, max_interval=0.1)
    cid = p.process_large_campaign_array(listed, "Olá!", "meta")
    wait_until(
        lambda: e2e_store.get_campaign(cid).status is CampaignStatus.COMPLETED,
        60, f"campaign {cid} completed",
    )  # fmt: skip
    wait_until(lambda: sandbox.receipts()["pending"] == 0, 30, "every receipt posted")

    attempts = record.receipts()
    assert attempts, "the sandbox posted receipts"
    assert all(a.http_status == 200 for a in attempts if a.outcome == "delivered")
    steps: dict[str, set[str]] = {}  # what each message's receiver was told, whatever order
    for attempt in attempts:
        if attempt.outcome == "delivered":
            steps.setdefault(attempt.gateway_message_id, set()).add(attempt.step)
    last = {
        message_id: next(s for s in ("failed", "read", "delivered", "sent") if s in told)
        for message_id, told in steps.items()
    }
    rows = {r["gateway_message_id"]: r for r in e2e_store.recipients(cid)}
    seen: Counter[str] = Counter()
    assert set(last) == set(rows)  # every send got its receipts
    for message_id, step in last.items():
        row = rows[message_id]
        if step == "failed":
            assert row["status"] == RecipientStatus.FAILED, row
            seen["failed"] += 1
        elif step == "read":
            assert (row["status"], row["delivery_status"]) == (RecipientStatus.SENT, "read")
            assert row["delivered_at"] is not None and row["read_at"] is not None
            seen["read"] += 1
        elif step == "delivered":
            assert (row["status"], row["delivery_status"]) == (
                RecipientStatus.SENT, "delivered",
            )  # fmt: skip
            seen["delivered"] += 1
    assert seen["failed"] and seen["read"] and seen["delivered"], seen
    done = e2e_store.get_campaign(cid)
    assert done.failed_count == seen["failed"]  # late failures moved the counters
    assert done.success_count == len(listed) - seen["failed"]
    assert e2e_store.check_invariants(cid) == []
    figures = e2e_store.delivery_counts(cid)
    assert figures.total.read == seen["read"]
    assert figures.total.delivered == seen["read"] + seen["delivered"]
