"""End to end: real `celery worker` processes, PostgreSQL, a private Redis and the sandbox
gateway over loopback HTTP. Every assertion is checked against the sandbox's own record."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.dispatch import TaskSender
from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.local.stack import LocalStack, wait_until
from campaigns.processor import CampaignBatchProcessor
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.state import CampaignStateManager
from tests.acceptance.conftest import processor_for

pytestmark = pytest.mark.slow


def processor(
    store: CampaignStateManager, enqueuer: TaskSender, **pacing: Any
) -> CampaignBatchProcessor:
    return processor_for(store, enqueuer, **pacing)


def add_session(store: CampaignStateManager, sandbox_url: str, name: str = "sales",
                gateway: str = "waha") -> str:
    options = {"phone_number_id": name} if gateway == "cloud-api" else {}
    store.add_session(name, gateway, sandbox_url, token_env="SANDBOX_TOKEN", **options)
    return name


def wait_finished(store: CampaignStateManager, campaign_id: int, timeout: float) -> None:
    def done() -> bool:
        return store.get_campaign(campaign_id).status in (
            CampaignStatus.COMPLETED, CampaignStatus.FAILED, CampaignStatus.CANCELLED,
        )

    wait_until(done, timeout, f"campaign {campaign_id} to finish")


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+5511{900000000 + i}" for i in range(start, start + count)]


def test_campaign_of_2000_numbers__every_valid_number_delivered_exactly_once(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    record: SandboxRecord, enqueuer: TaskSender,
) -> None:
    session = add_session(e2e_store, sandbox_url)
    entries = numbers(1990) + numbers(5) + ["not a number"] * 5  # 5 repeats, 5 invalid
    stack.start_worker(concurrency=4)
    stack.start_worker(concurrency=4)
    cid = processor(e2e_store, enqueuer).process_large_campaign_array(entries, "Hi", session)

    wait_finished(e2e_store, cid, 240)

    campaign = e2e_store.get_campaign(cid)
    assert campaign.status is CampaignStatus.COMPLETED
    assert (campaign.success_count, campaign.duplicate_count, campaign.invalid_count) == (
        1990, 5, 5,
    )
    assert record.duplicates() == []
    assert sorted(m.e164 for m in record.messages()) == sorted(numbers(1990))
    assert e2e_store.check_invariants(cid) == []
    assert campaign.total_batches == 7
    # the chain ran on its own: no batch had to be rescued by the recovery sweep
    logs = "".join(child.log() for child in stack.children.values())
    assert "its chain stopped" not in logs


def test_three_campaigns_on_one_session_with_two_workers__gap_never_below_min_interval(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    record: SandboxRecord, enqueuer: TaskSender,
) -> None:
    session = add_session(e2e_store, sandbox_url)
    stack.start_worker(concurrency=4)
    stack.start_worker(concurrency=4)
    p = processor(e2e_store, enqueuer, batch_size=4, min_interval=0.3, max_interval=0.5)
    ids = [p.process_large_campaign_array(numbers(10, 100 * k), "Hi", session) for k in range(3)]

    for cid in ids:
        wait_finished(e2e_store, cid, 120)

    gaps = record.gaps(session)
    assert len(gaps) == 29
    assert min(gaps) >= 0.3, sorted(gaps)[:5]
    assert record.duplicates() == []
    for cid in ids:
        assert e2e_store.get_campaign(cid).success_count == 10


def test_batch_delays__fall_inside_their_range(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    record: SandboxRecord, enqueuer: TaskSender,
) -> None:
    session = add_session(e2e_store, sandbox_url)
    stack.start_worker(concurrency=2)
    p = processor(e2e_store, enqueuer, batch_size=3, batch_delay_min=1.0, batch_delay_max=1.5)
    cid = p.process_large_campaign_array(numbers(9), "Hi", session)
    wait_finished(e2e_store, cid, 60)

    received = [m.received_at for m in record.messages(session=session)]
    assert len(received) == 9
    between_batches = [received[i] - received[i - 1] for i in (3, 6)]
    assert all(1.0 <= gap <= 1.5 + 1.0 for gap in between_batches), between_batches


def test_throttling__delays_but_fails_nobody(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender,
) -> None:
    session = add_session(e2e_store, sandbox_url, "meta", gateway="cloud-api")
    sandbox.throttle(count=4)
    stack.start_worker(concurrency=2)
    cid = processor(e2e_store, enqueuer).process_large_campaign_array(numbers(8), "Hi", session)
    wait_finished(e2e_store, cid, 90)

    campaign = e2e_store.get_campaign(cid)
    assert (campaign.success_count, campaign.failed_count) == (8, 0)
    assert record.count() == 8
    assert record.duplicates() == []


def test_permanent_failure__is_recorded_and_the_campaign_goes_on(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender,
) -> None:
    session = add_session(e2e_store, sandbox_url, "evo", gateway="evolution")
    listed = numbers(6)
    sandbox.reject([listed[1], listed[4]])
    stack.start_worker(concurrency=2)
    p = processor(e2e_store, enqueuer, batch_size=3)
    cid = p.process_large_campaign_array(listed, "Hi", session)
    wait_finished(e2e_store, cid, 60)

    rows = e2e_store.recipients(cid)
    assert [r["status"] for r in rows] == [
        RecipientStatus.SENT, RecipientStatus.FAILED, RecipientStatus.SENT,
        RecipientStatus.SENT, RecipientStatus.FAILED, RecipientStatus.SENT,
    ]
    assert rows[1]["error_message"]
    assert record.count() == 4
    assert e2e_store.get_campaign(cid).status is CampaignStatus.COMPLETED


@pytest.mark.parametrize("gateway", ["cloud-api", "waha", "evolution"])
def test_each_gateway_dialect__sends_through_the_sandbox(
    gateway: str, stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    record: SandboxRecord, enqueuer: TaskSender,
) -> None:
    session = add_session(e2e_store, sandbox_url, f"s-{gateway}", gateway=gateway)
    stack.start_worker(concurrency=2)
    cid = processor(e2e_store, enqueuer).process_large_campaign_array(
        [{"phone": n, "name": f"N{i}"} for i, n in enumerate(numbers(3))], "Hi {name}", session
    )
    wait_finished(e2e_store, cid, 60)

    messages = record.messages(session=session)
    assert [m.text for m in messages] == ["Hi N0", "Hi N1", "Hi N2"]
    assert {m.dialect for m in messages} == {gateway.removesuffix("-api")}
    sent = e2e_store.recipients(cid, RecipientStatus.SENT)
    assert [r["gateway_message_id"] for r in sent] == [m.gateway_message_id for m in messages]




def test_error_threshold__a_campaign_failing_in_a_row_pauses_itself_with_the_reason(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender,
) -> None:
    session = add_session(e2e_store, sandbox_url, "evo", gateway="evolution")
    listed = numbers(10)
    sandbox.reject(listed)  # a list nobody on WhatsApp: every send fails permanently
    stack.start_worker(concurrency=2, extra_env={"FAILURE_STREAK_LIMIT": "4"})
    cid = processor(e2e_store, enqueuer, batch_size=3).process_large_campaign_array(
        listed, "Hi", session
    )

    wait_until(lambda: e2e_store.get_campaign(cid).status is CampaignStatus.PAUSED, 60,
               "the campaign to pause itself")
    campaign = e2e_store.get_campaign(cid)
    assert campaign.interrupt_reason and "4 recipients failed in a row" in campaign.interrupt_reason
    counts = e2e_store.snapshot(cid).counts
    assert counts[RecipientStatus.FAILED] == 4
    assert counts[RecipientStatus.PENDING] == 6
    assert record.count() == 0
