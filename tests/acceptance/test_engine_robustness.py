"""End to end, with real `celery worker` processes and the sandbox gateway: errors that are not
the recipients' never fail the list, and a redelivered task cannot fork the chain.

- A Cloud API session added without its token: the campaign waits, interrupted (blocked) with
  the reason, every recipient pending; after the fix `campaigns resume` sends each one once.
- A gateway that hangs on every send (read timeouts): a run of unknowns pauses the campaign.
- An unexpected error in a batch: retried a few times, then the campaign is blocked with the
  error; the recipients already sent stay sent, the others pending, none failed.
- The same send_batch enqueued twice more while it runs (a redelivery): one chain, no duplicate.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from campaigns.dispatch import TaskSender
from campaigns.domain import CampaignStatus, RecipientStatus, StopKind
from campaigns.local.stack import LocalStack, wait_until
from campaigns.processor import CampaignBatchProcessor
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.state import CampaignStateManager
from tests.acceptance.conftest import processor_for

pytestmark = pytest.mark.slow


def processor(
    store: CampaignStateManager, enqueuer: TaskSender, **pacing: Any
) -> CampaignBatchProcessor:
    return processor_for(store, enqueuer, **{"batch_size": 10, **pacing})


def numbers(count: int) -> list[str]:
    return [f"+5511{950000000 + i}" for i in range(count)]


def sql(database_url: str, statement: str, **params: Any) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


def logs(stack: LocalStack) -> str:
    return "".join(child.log() for child in stack.children.values())


def status_is(store: CampaignStateManager, cid: int, status: CampaignStatus) -> bool:
    return store.get_campaign(cid).status is status


def test_cloud_api_session_without_its_token__blocked_with_the_reason_then_resumed(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str, record: SandboxRecord,
    enqueuer: TaskSender, stack_env: dict[str, str], database_url: str,
) -> None:
    e2e_store.add_session("meta", "cloud-api", sandbox_url, phone_number_id="meta")  # no token
    stack.start_worker(concurrency=2)
    listed = numbers(12)
    cid = processor(e2e_store, enqueuer, batch_size=5).process_large_campaign_array(
        listed, "Hi", "meta"
    )

    wait_until(lambda: status_is(e2e_store, cid, CampaignStatus.INTERRUPTED), 60,
               "the campaign to be interrupted")
    blocked = e2e_store.get_campaign(cid)
    assert blocked.interrupt_kind is StopKind.BLOCKED
    assert blocked.interrupt_reason and "needs an access token" in blocked.interrupt_reason
    assert e2e_store.snapshot(cid).counts == {RecipientStatus.PENDING: 12}
    assert record.count() == 0

    # the operator names the token's variable (set in the workers' environment), and resumes
    sql(database_url, "UPDATE campaign_sessions SET token_env = 'SANDBOX_TOKEN'")
    resumed = subprocess.run(
        [sys.executable, "-m", "campaigns.cli", "resume", str(cid)],
        env={**os.environ, **stack_env}, capture_output=True, text=True, timeout=60,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    wait_until(lambda: status_is(e2e_store, cid, CampaignStatus.COMPLETED), 60,
               "the resumed campaign to complete")
    assert sorted(m.e164 for m in record.messages()) == sorted(listed)
    assert record.duplicates() == []
    assert e2e_store.check_invariants(cid) == []


def test_a_gateway_that_hangs_on_every_send__a_run_of_unknowns_pauses_the_campaign(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str,
    sandbox: SandboxControl, record: SandboxRecord, enqueuer: TaskSender,
) -> None:
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN")
    sandbox.hang(5.0, count=100)  # accepted, then no answer within GATEWAY_READ_TIMEOUT (3 s)
    stack.start_worker(concurrency=2, extra_env={"FAILURE_STREAK_LIMIT": "3"})
    cid = processor(e2e_store, enqueuer).process_large_campaign_array(numbers(8), "Hi", "sales")

    wait_until(lambda: status_is(e2e_store, cid, CampaignStatus.PAUSED), 60,
               "the campaign to pause itself")
    paused = e2e_store.get_campaign(cid)
    assert paused.interrupt_reason and "3 recipients in a row got no answer" in (
        paused.interrupt_reason
    )
    counts = e2e_store.snapshot(cid).counts
    assert (counts[RecipientStatus.UNKNOWN], counts[RecipientStatus.PENDING]) == (3, 5)
    assert record.count() == 3
    assert record.duplicates() == []


def test_an_unexpected_error__is_retried_then_blocks_the_campaign_and_fails_nobody(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str, record: SandboxRecord,
    enqueuer: TaskSender, database_url: str,
) -> None:
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN")
    listed = numbers(6)
    cid = processor(e2e_store, enqueuer).process_large_campaign_array(
        [{"phone": n, "name": f"N{i}"} for i, n in enumerate(listed)], "Hi {name}", "sales"
    )
    # the third recipient's variables are no mapping: building its message raises (a bug the
    # engine knows nothing of); the worker starts only now, so nothing was sent before
    sql(database_url, "UPDATE campaign_recipients SET variables = '[\"no\", \"mapping\"]'"
        " WHERE campaign_id = :cid AND position = 3", cid=cid)
    stack.start_worker(concurrency=2)

    wait_until(lambda: status_is(e2e_store, cid, CampaignStatus.INTERRUPTED), 90,
               "the campaign to be blocked after the retries")
    blocked = e2e_store.get_campaign(cid)
    assert blocked.interrupt_kind is StopKind.BLOCKED
    assert blocked.interrupt_reason and "AttributeError" in blocked.interrupt_reason
    assert f"campaigns resume {cid}" in blocked.interrupt_reason
    counts = e2e_store.snapshot(cid).counts
    assert counts == {RecipientStatus.SENT: 2, RecipientStatus.PENDING: 4}
    assert sorted(m.e164 for m in record.messages()) == sorted(listed[:2])
    assert len(re.findall(r"failed \(attempt \d\); retrying", logs(stack))) == 3


def test_a_redelivered_copy_of_a_running_batch__one_chain_and_no_duplicate(
    stack: LocalStack, e2e_store: CampaignStateManager, sandbox_url: str, record: SandboxRecord,
    enqueuer: TaskSender,
) -> None:
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN")
    stack.start_worker(concurrency=4)
    listed = numbers(18)
    p = processor(e2e_store, enqueuer, batch_size=6, min_interval=0.2, max_interval=0.3)
    cid = p.process_large_campaign_array(listed, "Hi", "sales")
    token = e2e_store.get_campaign(cid).run_token
    assert token
    wait_until(lambda: record.count() >= 1, 30, "the first batch to be sending")

    # Redis' visibility timeout, or a worker that lost its broker connection, delivers the
    # running task again: same campaign, batch and token
    enqueuer.send_batch(cid, 1, token)
    enqueuer.send_batch(cid, 1, token)

    wait_until(lambda: status_is(e2e_store, cid, CampaignStatus.COMPLETED), 90,
               "the campaign to complete")
    assert sorted(m.e164 for m in record.messages()) == sorted(listed)
    assert record.duplicates() == []
    assert min(record.gaps("sales")) >= 0.2
    assert e2e_store.check_invariants(cid) == []
    told = logs(stack)
    # one chain: batches 1 and 2 each handed on once, the last completed once
    assert told.count("'next_batch: sent") == 2, told[-4000:]
    assert told.count("'completed: sent") == 1
    assert told.count("'stopped: sent 0'") == 2  # the copies exited without sending
