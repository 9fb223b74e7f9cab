"""Sender protection end to end (issue 11): real `celery worker` processes, PostgreSQL, a
private Redis and the sandbox gateway; every claim is read from the sandbox's record.

A "day" is made fast (CAPACITY_DAY_SECONDS) so that caps per rolling 24 h and per hour, and
Meta's "retry after 24 h", can be watched in seconds; nothing else about them changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.dispatch import TaskSender
from campaigns.domain import CampaignStatus, RecipientStatus, StopKind
from campaigns.local.stack import LocalStack, wait_until
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.state import CampaignStateManager
from campaigns.windows import parse_window
from tests.acceptance.conftest import processor_for
from tests.acceptance.test_cli_workers import run_cli

pytestmark = pytest.mark.slow

DAY_S = 24.0  # an "hour" is then 1 s


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+5511{940000000 + start + i}" for i in range(count)]


def most_in_any_window(times: Sequence[float], span: float) -> int:
    """The most arrivals in any window of ``span`` seconds (sliding over the arrivals)."""
    ordered = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(ordered):
        while at - ordered[first] >= span:
            first += 1
        best = max(best, last - first + 1)
    return best


def test_caps_per_day_and_hour_hold_over_two_campaigns_and_two_workers(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    record: SandboxRecord, enqueuer: TaskSender, stack_env: dict[str, str],
) -> None:  # fmt: skip
    e2e_store.add_session(
        "sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN", cap_day="6", cap_hour="3",
        typing="false",
    )  # fmt: skip
    env = {"CAPACITY_DAY_SECONDS": str(DAY_S), "MIN_INTERVAL": "0.05", "MAX_INTERVAL": "0.1"}
    stack.start_worker(concurrency=4, extra_env=env)
    stack.start_worker(concurrency=4, extra_env=env)
    p = processor_for(e2e_store, enqueuer, batch_size=5, min_interval=0.05, max_interval=0.1)
    first = p.process_large_campaign_array(numbers(5), "Hi", "sales")
    second = p.process_large_campaign_array(numbers(5, start=100), "Hi", "sales")

    # the day's six go out quickly, three per "hour"; then both campaigns wait, running
    wait_until(lambda: record.count(session="sales") >= 6, 30, "the day's cap sent")
    wait_until(
        lambda: e2e_store.get_campaign(first).waiting_reason is not None
        or e2e_store.get_campaign(second).waiting_reason is not None,
        15,
        "a campaign saying it waits for capacity",
    )
    waiting = [e2e_store.get_campaign(c) for c in (first, second)]
    said = next(c.waiting_reason for c in waiting if c.waiting_reason)
    assert "waiting for capacity on sales until" in (said or "")
    assert {c.status for c in waiting} == {CampaignStatus.RUNNING}  # nothing interrupted
    waiter = next(c.id for c in waiting if c.waiting_reason)
    shown = run_cli({**stack_env, **env}, "status", str(waiter), "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert "waiting for capacity on sales" in data["waiting_reason"]
    assert data["eta_seconds"] > 1.0  # the lane waits for the rolling day, not for its pace
    text = run_cli({**stack_env, **env}, "status", str(waiter))
    assert "resumes by itself" in text.stdout

    for cid in (first, second):  # the rest goes out as the rolling day frees capacity
        wait_until(
            lambda cid=cid: e2e_store.get_campaign(cid).status is CampaignStatus.COMPLETED,
            3 * DAY_S,
            "both campaigns completed",
        )
    times = [m.received_at for m in record.messages(session="sales")]
    assert len(times) == 10
    assert most_in_any_window(times, DAY_S) <= 6
    assert most_in_any_window(times, DAY_S / 24) <= 3
    for cid in (first, second):
        assert e2e_store.check_invariants(cid) == []
        assert e2e_store.get_campaign(cid).waiting_reason is None


def test_a_send_window_holds_sends_until_it_opens_then_the_campaign_resumes_by_itself(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    record: SandboxRecord, enqueuer: TaskSender,
) -> None:  # fmt: skip
    now = datetime.now(UTC)
    opens = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (opens - now).total_seconds() < 8:
        opens += timedelta(minutes=1)
    hours = f"{opens:%H:%M}-{opens + timedelta(minutes=30):%H:%M}"
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN", typing="false")
    stack.start_worker(concurrency=4)
    p = processor_for(e2e_store, enqueuer, batch_size=5, min_interval=0.05, max_interval=0.1)
    cid = p.process_large_campaign_array(
        numbers(8), "Hi", "sales", window=parse_window(hours, "all", "UTC")
    )

    wait_until(
        lambda: e2e_store.get_campaign(cid).waiting_reason is not None, 15, "the campaign waiting"
    )
    waiting = e2e_store.get_campaign(cid)
    assert waiting.status is CampaignStatus.RUNNING
    assert "outside the send window" in (waiting.waiting_reason or "")
    assert record.count() == 0
    wait_until(
        lambda: e2e_store.get_campaign(cid).status is CampaignStatus.COMPLETED,
        (opens - datetime.now(UTC)).total_seconds() + 60,
        "the campaign completed once the window opened",
    )
    arrived = [m.received_at for m in record.messages()]
    assert len(arrived) == 8
    assert min(arrived) >= opens.timestamp()  # nothing recorded outside the window
    assert {r["status"] for r in e2e_store.recipients(cid)} == {RecipientStatus.SENT}


def test_typing_on_a_waha_session__seen_typing_stop_then_the_text_inside_the_campaign_s_gap(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    record: SandboxRecord, enqueuer: TaskSender,
) -> None:  # fmt: skip
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN")  # typing on
    stack.start_worker(concurrency=4)
    p = processor_for(e2e_store, enqueuer, batch_size=10, min_interval=0.5, max_interval=1.5)
    cid = p.process_large_campaign_array(numbers(6), "Olá, tudo bem?", "sales")
    wait_until(
        lambda: e2e_store.get_campaign(cid).status is CampaignStatus.COMPLETED, 60, "completed"
    )

    texts = record.messages(session="sales")
    shown = record.presence(session="sales")
    assert len(texts) == 6
    for text in texts:
        calls = [p for p in shown if p.chat_id == text.recipient and p.at <= text.received_at]
        # typing is drawn inside each gap (at most gap - min): a gap drawn at min shows none
        if calls:
            assert [c.action for c in calls] == ["seen", "start_typing", "stop_typing"]
            assert calls[-1].at - calls[1].at <= 1.5 - 0.5 + 0.2
    assert shown, "no typing was shown at all"
    gaps = record.gaps("sales")
    assert min(gaps) >= 0.5  # the gap between two texts still holds
    assert sum(gaps) / len(gaps) <= 1.5  # and typing did not lengthen it past the range


def test_waha_475_capping__limited_until_its_cycle_end_then_the_campaign_resumes_by_itself(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender,
) -> None:  # fmt: skip
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN", typing="false")
    stack.start_beat()  # the sweep resumes limited stops at their time
    stack.start_worker(concurrency=4)
    p = processor_for(e2e_store, enqueuer, batch_size=10, min_interval=0.2, max_interval=0.3)
    cid = p.process_large_campaign_array(numbers(20), "Hi", "sales")
    wait_until(lambda: record.count() >= 4, 30, "the first sends")

    capped_at = time.time()
    sandbox.cap("sales", 6)
    cycle_end = capped_at + 6
    wait_until(
        lambda: e2e_store.get_campaign(cid).status is CampaignStatus.INTERRUPTED, 15, "limited"
    )
    stopped = e2e_store.get_campaign(cid)
    assert stopped.interrupt_kind is StopKind.LIMITED
    assert stopped.resume_at is not None
    assert abs(stopped.resume_at.timestamp() - cycle_end) < 2.5  # read from the answer
    assert "475" in (stopped.interrupt_reason or "")
    wait_until(
        lambda: e2e_store.get_campaign(cid).status is CampaignStatus.COMPLETED, 60, "completed"
    )
    during = [m for m in record.messages() if capped_at + 0.5 < m.received_at < cycle_end]
    assert during == []  # nothing went out while WhatsApp capped the number
    assert len(record.messages()) == 20
    assert min(m.received_at for m in record.messages() if m.received_at > capped_at) >= (
        cycle_end - 1.0  # the sandbox rounds the cycle end up to the second
    )


def test_recipient_level_cloud_answers_stay_with_their_recipient__with_real_workers(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender,
) -> None:  # fmt: skip
    listed = numbers(12)
    paired, capped, stopped, abroad = listed[0], listed[1], listed[5], listed[7]
    digits = {n: n.lstrip("+") for n in listed}
    sandbox.refuse(131049, numbers=[digits[capped]], count=1)  # per-user marketing cap, once
    sandbox.refuse(131056, numbers=[digits[paired]], count=1)  # pair rate, once
    sandbox.refuse(131050, numbers=[digits[stopped]])  # stopped marketing messages
    sandbox.refuse(130497, numbers=[digits[abroad]])  # country restricted
    e2e_store.add_session("meta", "cloud-api", sandbox_url, token_env="SANDBOX_TOKEN",
                          phone_number_id="meta", pacing="human")  # fmt: skip
    stack.start_worker(concurrency=4, extra_env={"CAPACITY_DAY_SECONDS": "8"})
    p = processor_for(e2e_store, enqueuer, batch_size=4, min_interval=0.05, max_interval=0.1)
    cid = p.process_large_campaign_array(listed, "Hi", "meta")

    wait_until(
        lambda: e2e_store.get_campaign(cid).status is CampaignStatus.COMPLETED, 60, "completed"
    )
    rows = {r["phone"]: r for r in e2e_store.recipients(cid)}
    assert rows[capped]["status"] == RecipientStatus.SENT  # a "day" later, in the retry batch
    assert rows[paired]["status"] == RecipientStatus.SENT  # after its 6 s
    assert rows[stopped]["status"] == RecipientStatus.SKIPPED
    assert rows[abroad]["status"] == RecipientStatus.FAILED
    assert {rows[n]["status"] for n in listed if n not in (stopped, abroad)} == {
        RecipientStatus.SENT
    }
    done = e2e_store.get_campaign(cid)
    assert done.total_batches == 4 and done.retry_batch == 4  # three batches and the retry one
    arrived = {m.e164: m.received_at for m in record.messages()}
    refused = {r.e164: r.received_at for r in record.refusals()}
    assert arrived[capped] - refused[capped] >= 8.0  # retried a (fast) day later
    assert arrived[paired] - refused[paired] >= 6.0  # after the pair rate's wait
    # the lane went on meanwhile: the rest of the paired one's batch did not wait for it
    assert arrived[listed[2]] < arrived[paired] and arrived[listed[3]] < arrived[paired]
    assert e2e_store.check_invariants(cid) == []
