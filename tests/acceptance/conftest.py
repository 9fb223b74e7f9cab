"""Fixtures for end-to-end runs: real worker processes, a private Redis, the sandbox gateway
in its own process, and a fresh PostgreSQL database per test."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.dispatch import TaskSender
from campaigns.local.redis import EmbeddedRedis
from campaigns.local.stack import LocalStack
from campaigns.processor import CampaignBatchProcessor
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.settings import Settings
from campaigns.state import CampaignStateManager
from tests.conftest import TEST_DATA

SANDBOX_TOKEN = "sandbox-token"

# Short timings so failures and recoveries happen within seconds. STALL_TIMEOUT must exceed one
# gateway call (connect + read timeouts).
FAST_ENV = {
    "GATEWAY_CONNECT_TIMEOUT": "1",
    "GATEWAY_READ_TIMEOUT": "3",
    "STALL_TIMEOUT": "6",
    "SWEEP_INTERVAL": "2",
    "SESSION_WATCH_INTERVAL": "1",
    "TASK_TIME_BUDGET": "20",
    "SANDBOX_TOKEN": SANDBOX_TOKEN,
    "CAMPAIGNS_LOG_LEVEL": "INFO",
    # the documented deployment default (tests/conftest.py sets it for commands): the stores
    # built from these settings create campaigns without naming a legal basis each time
    "LEGAL_BASIS": "consent",
}


@pytest.fixture(scope="session")
def private_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of the tests' own (never the machine's shared one): tests flush and restart it.
    Its folder is this session's alone, so it goes with the server."""
    folder = TEST_DATA / f"test-redis-{uuid.uuid4().hex[:6]}"
    server = EmbeddedRedis(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def stack_env(database_url: str, private_redis: EmbeddedRedis) -> dict[str, str]:
    if not private_redis.is_running():
        private_redis.start()
    private_redis.flushall()
    url = private_redis.url()
    return {
        **FAST_ENV,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": url,
        "REDIS_URL": url,
        "CAMPAIGNS_QUEUE": f"campaigns-{uuid.uuid4().hex[:8]}",
    }


@pytest.fixture
def stack(stack_env: dict[str, str], tmp_path: Path) -> Iterator[LocalStack]:
    local = LocalStack(env=stack_env, log_dir=tmp_path / "logs")
    try:
        yield local
    finally:
        local.stop_all()


@pytest.fixture
def record_path(tmp_path: Path) -> Path:
    return tmp_path / "sandbox.sqlite"


@pytest.fixture
def sandbox_url(stack: LocalStack, record_path: Path) -> str:
    return stack.start_sandbox(record_path, api_key=SANDBOX_TOKEN)


@pytest.fixture
def sandbox(sandbox_url: str) -> Iterator[SandboxControl]:
    with SandboxControl(sandbox_url) as control:
        yield control


@pytest.fixture
def record(record_path: Path, sandbox_url: str) -> SandboxRecord:
    return SandboxRecord(record_path)


@pytest.fixture
def e2e_store(database_url: str, stack_env: dict[str, str]) -> Iterator[CampaignStateManager]:
    manager = CampaignStateManager(database_url, settings=Settings.from_env(stack_env))
    yield manager
    manager.dispose()


@pytest.fixture
def enqueuer(stack_env: dict[str, str]) -> Iterator[TaskSender]:
    """Sends batch tasks to the stack's broker and queue, as the public API does."""
    enqueue = TaskSender.for_broker(stack_env["CELERY_BROKER_URL"], stack_env["CAMPAIGNS_QUEUE"])
    yield enqueue
    enqueue.close()


def processor_for(
    store: CampaignStateManager, enqueuer: TaskSender, **pacing: Any
) -> CampaignBatchProcessor:
    """The public entry point on ``store``, enqueuing through ``enqueuer``; zero intervals and
    batch delays of at most 0.2 s unless ``pacing`` says otherwise."""
    values = {"batch_size": 300, "min_interval": 0, "max_interval": 0, "batch_delay_min": 0,
              "batch_delay_max": 0.2, **pacing}  # fmt: skip
    p = CampaignBatchProcessor(**values, enqueue=enqueuer)
    p.set_state_manager(store)
    return p
