"""RabbitMQ as the broker, end to end: real workers consume from RabbitMQ, pace through a private
Redis, send to the sandbox; and the start-time check refuses a worker whose task runs could
outlive the broker's patience (RabbitMQ's consumer_timeout, Redis' visibility timeout).

The broker is the machine's RabbitMQ (RABBITMQ_URL, else guest@127.0.0.1): each test uses a queue
of its own and deletes it, with its exchange, at the end, so the shared broker stays clean.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from campaigns.dispatch import TaskSender
from campaigns.domain import CampaignStatus
from campaigns.local.stack import Child, LocalStack, wait_until
from campaigns.processor import CampaignBatchProcessor
from campaigns.sandbox import SandboxRecord
from campaigns.state import CampaignStateManager
from tests.acceptance.conftest import SANDBOX_TOKEN
from tests.conftest import require

pytestmark = pytest.mark.slow

RABBITMQ_URL = os.environ.get("RABBITMQ_URL") or "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The machine's RabbitMQ; skipped locally when it does not answer, a failure in CI."""
    try:
        with Connection(RABBITMQ_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        require(False, f"RabbitMQ is not reachable at {_masked(RABBITMQ_URL)}: {exc}")
    return RABBITMQ_URL


@pytest.fixture
def rabbit_env(stack_env: dict[str, str], rabbitmq_url: str) -> Iterator[dict[str, str]]:
    """The stack's environment with RabbitMQ as broker (pacing stays on the private Redis) and
    a queue of this test's own, deleted with its exchange when the test ends — after the
    workers using it are stopped (fixtures tear down in reverse order)."""
    queue = f"cc-test-{uuid.uuid4().hex[:10]}"
    env = {**stack_env, "CELERY_BROKER_URL": rabbitmq_url, "CAMPAIGNS_QUEUE": queue}
    yield env
    with Connection(rabbitmq_url, connect_timeout=5) as conn:
        channel: Any = conn.channel()  # amqp's Channel (kombu types it as StdChannel)
        channel.queue_delete(queue)
        channel.exchange_delete(queue)


@pytest.fixture
def rabbit_stack(rabbit_env: dict[str, str], tmp_path: Path) -> Iterator[LocalStack]:
    local = LocalStack(env=rabbit_env, log_dir=tmp_path / "rabbit-logs")
    try:
        yield local
    finally:
        local.stop_all()


def numbers(count: int) -> list[str]:
    return [f"+5511{910000000 + i}" for i in range(count)]


def wait_exit(child: Child, timeout: float = 60) -> int:
    wait_until(lambda: not child.alive, timeout, f"{child.name} to exit")
    code = child.process.returncode
    assert code is not None
    return code


def test_campaign_over_rabbitmq__every_valid_number_delivered_exactly_once(
    rabbit_stack: LocalStack, rabbit_env: dict[str, str], e2e_store: CampaignStateManager,
    tmp_path: Path,
) -> None:
    record_path = tmp_path / "sandbox.sqlite"
    sandbox_url = rabbit_stack.start_sandbox(record_path, api_key=SANDBOX_TOKEN)
    e2e_store.add_session("sales", "waha", sandbox_url, token_env="SANDBOX_TOKEN")
    worker = rabbit_stack.start_worker(concurrency=4)
    assert "amqp://" in worker.log()
    entries = numbers(60) + numbers(3) + ["not a number"] * 2  # 3 repeats, 2 invalid
    enqueue = TaskSender.for_broker(rabbit_env["CELERY_BROKER_URL"], rabbit_env["CAMPAIGNS_QUEUE"])
    try:
        processor = CampaignBatchProcessor(
            batch_size=20, min_interval=0, max_interval=0, batch_delay_min=0,
            batch_delay_max=0.3, enqueue=enqueue,
        )
        processor.set_state_manager(e2e_store)
        cid = processor.process_large_campaign_array(entries, "Hi", "sales")
        wait_until(
            lambda: e2e_store.get_campaign(cid).status is not CampaignStatus.RUNNING,
            90, f"campaign {cid} to finish",
        )
    finally:
        enqueue.close()

    campaign = e2e_store.get_campaign(cid)
    assert campaign.status is CampaignStatus.COMPLETED
    assert campaign.total_batches == 4
    assert (campaign.success_count, campaign.duplicate_count, campaign.invalid_count) == (
        60, 3, 2,
    )
    record = SandboxRecord(record_path)
    assert record.duplicates() == []
    assert sorted(m.e164 for m in record.messages()) == sorted(numbers(60))
    assert e2e_store.check_invariants(cid) == []
    assert "PRECONDITION_FAILED" not in worker.log()


def test_rabbitmq_consumer_timeout_below_a_task_run__worker_refuses_to_start(
    rabbit_stack: LocalStack,
) -> None:
    worker = rabbit_stack.start_worker(
        extra_env={"RABBITMQ_CONSUMER_TIMEOUT": "60"}, wait_ready=False
    )

    assert wait_exit(worker) != 0
    log = worker.log()
    assert "refuses to start" in log
    assert "RABBITMQ_CONSUMER_TIMEOUT" in log
    assert " ready." not in log


def test_redis_visibility_timeout_below_a_task_run__worker_refuses_to_start(
    stack: LocalStack,
) -> None:
    worker = stack.start_worker(extra_env={"VISIBILITY_TIMEOUT": "60"}, wait_ready=False)

    assert wait_exit(worker) != 0
    log = worker.log()
    assert "refuses to start" in log
    assert "VISIBILITY_TIMEOUT" in log
    assert " ready." not in log


def _masked(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))
