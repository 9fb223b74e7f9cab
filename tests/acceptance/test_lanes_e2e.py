"""Sender pools and rate lanes end to end (issue 10): real `celery worker` processes,
PostgreSQL, a private Redis and the sandbox gateway. Every claim about who sent what, when and
how often is read from the sandbox's own record: each number arrives exactly once over the
whole pool (not only per session), each session keeps its own gap at arrival, the ledger's
session stamp is the session the sandbox saw, and a session that drops for good leaves its
share to the others.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from campaigns.dispatch import TaskSender
from campaigns.domain import CampaignStatus, LaneState, RecipientStatus, StopKind
from campaigns.local.stack import LocalStack, wait_until
from campaigns.processor import CampaignBatchProcessor
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.state import CampaignStateManager
from tests.acceptance.conftest import processor_for

pytestmark = pytest.mark.slow

SHORT_DEFAULTS = {"MIN_INTERVAL": "0.2", "MAX_INTERVAL": "0.3"}


def processor(
    store: CampaignStateManager, enqueuer: TaskSender, **pacing: Any
) -> CampaignBatchProcessor:
    values = {"batch_size": 20, "min_interval": 0.2, "max_interval": 0.3, **pacing}
    return processor_for(store, enqueuer, **values)


def numbers(count: int) -> list[str]:
    return [f"+5511{930000000 + i}" for i in range(count)]


def wait_status(
    store: CampaignStateManager, cid: int, status: CampaignStatus, timeout: float
) -> None:
    wait_until(lambda: store.get_campaign(cid).status is status, timeout, f"campaign {status}")


def assert_each_number_once_over_the_pool(
    store: CampaignStateManager, record: SandboxRecord, cid: int, expected: list[str]
) -> Counter[str]:
    """Every number arrived exactly once over the pool, and the ledger's stamp is the session
    the sandbox saw it on. Returns the sends per session."""
    arrived = record.messages()
    assert Counter(m.e164 for m in arrived) == Counter(expected)  # none twice, none missing
    seen_on = {m.e164: m.session for m in arrived}
    rows = store.recipients(cid)
    assert {r["status"] for r in rows} == {RecipientStatus.SENT}
    assert {r["phone"]: r["session_name"] for r in rows} == seen_on
    return Counter(m.session for m in arrived)


def test_a_pool_of_three__one_session_dropped_for_good__the_others_finish_the_campaign(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender,
) -> None:  # fmt: skip
    pool = ["sales1", "sales2", "sales3"]
    for name in pool:
        e2e_store.add_session(name, "waha", sandbox_url, token_env="SANDBOX_TOKEN")
    stack.start_worker(concurrency=4, extra_env=SHORT_DEFAULTS)
    listed = numbers(90)
    cid = processor(e2e_store, enqueuer).process_large_campaign_array(listed, "Hi", pool)

    # every lane sends; then sales3 drops and never comes back
    wait_until(lambda: all(record.count(session=s) >= 3 for s in pool), 60, "every lane sending")
    sandbox.drop("sales3")
    dropped_at = time.time()
    wait_status(e2e_store, cid, CampaignStatus.COMPLETED, 180)

    shares = assert_each_number_once_over_the_pool(e2e_store, record, cid, listed)
    # sales3 sent nothing after its drop (a send already on the wire may land just after it)
    late = [m for m in record.messages(session="sales3") if m.received_at > dropped_at + 1.0]
    assert late == []
    assert shares["sales1"] + shares["sales2"] > 60  # they took sales3's share
    lanes = {lane.session_name: lane for lane in e2e_store.list_lanes(cid, counts=True)}
    assert (lanes["sales3"].state, lanes["sales3"].stop_kind) == (
        LaneState.DOWN,
        StopKind.DISCONNECTED,
    )
    assert {name: lane.sent for name, lane in lanes.items()} == dict(shares)
    for name in pool:  # each session kept its own gap at arrival
        gaps = record.gaps(name)
        assert min(gaps) >= 0.2, (name, sorted(gaps)[:3])


def test_a_pool_of_two__a_session_that_comes_back_rejoins_the_rotation(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender,
) -> None:  # fmt: skip
    pool = ["north", "south"]
    for name in pool:
        e2e_store.add_session(name, "waha", sandbox_url, token_env="SANDBOX_TOKEN")
    stack.start_worker(concurrency=4, extra_env={**SHORT_DEFAULTS, "TASK_TIME_BUDGET": "4"})
    stack.start_beat()
    listed = numbers(120)
    cid = processor(e2e_store, enqueuer).process_large_campaign_array(listed, "Hi", pool)

    wait_until(lambda: record.count(session="south") >= 3, 60, "south sending")
    sandbox.drop("south", seconds=3)  # back by itself three seconds later
    back_at = time.time() + 3
    wait_status(e2e_store, cid, CampaignStatus.COMPLETED, 240)

    assert_each_number_once_over_the_pool(e2e_store, record, cid, listed)
    rejoined = [m for m in record.messages(session="south") if m.received_at > back_at]
    assert rejoined, "south never sent again after it reconnected"
    south = e2e_store.get_lane(cid, "south")
    assert south is not None and south.state is LaneState.ACTIVE
    assert e2e_store.get_campaign(cid).status is CampaignStatus.COMPLETED


def test_every_session_of_a_pool_down__the_campaign_is_interrupted_and_resumes_on_reconnect(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender,
) -> None:  # fmt: skip
    pool = ["east", "west"]
    for name in pool:
        e2e_store.add_session(name, "waha", sandbox_url, token_env="SANDBOX_TOKEN")
    stack.start_worker(concurrency=4, extra_env=SHORT_DEFAULTS)
    stack.start_beat()
    listed = numbers(60)
    cid = processor(e2e_store, enqueuer).process_large_campaign_array(listed, "Hi", pool)

    wait_until(lambda: record.count() >= 6, 60, "the pool sending")
    sandbox.drop("east")
    sandbox.drop("west")
    wait_status(e2e_store, cid, CampaignStatus.INTERRUPTED, 60)
    stopped = e2e_store.get_campaign(cid)
    assert stopped.interrupt_kind is StopKind.DISCONNECTED
    assert "every session of the pool is down" in (stopped.interrupt_reason or "")
    sandbox.restore("west")  # one comes back: the watcher resumes the campaign on it
    wait_status(e2e_store, cid, CampaignStatus.COMPLETED, 180)

    assert_each_number_once_over_the_pool(e2e_store, record, cid, listed)


def test_a_cloud_api_rate_lane__keeps_several_requests_outstanding_at_the_numbers_limit(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender,
) -> None:  # fmt: skip
    sandbox.latency(0.25, dialect="cloud")
    sandbox.throughput(40)
    e2e_store.add_session(
        "cloud", "cloud-api", sandbox_url, token_env="SANDBOX_TOKEN", phone_number_id="cloud",
        tier="unlimited",
        pacing="rate", rate="40", in_flight="8",
    )  # fmt: skip
    stack.start_worker(concurrency=2)
    listed = numbers(200)
    p = processor(e2e_store, enqueuer, batch_size=100, min_interval=0, max_interval=0)
    cid = p.process_large_campaign_array(listed, "Hi", "cloud")
    wait_status(e2e_store, cid, CampaignStatus.COMPLETED, 180)

    assert_each_number_once_over_the_pool(e2e_store, record, cid, listed)
    sent = record.messages(session="cloud")
    # requests overlapped: while one was held 250 ms, others arrived (never more than in_flight)
    overlap = max(
        sum(1 for other in sent if other.received_at <= m.received_at < (other.answered_at or 0))
        for m in sent
    )
    assert 2 <= overlap <= 8, overlap
    # the token bucket kept under the number's limit: the sandbox refused nothing
    assert record.refusals(session="cloud") == []
