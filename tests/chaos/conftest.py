"""Chaos runs: real worker and beat processes, a private Redis, PostgreSQL, and the sandbox
gateway recording every message it accepts. Faults are real (SIGKILL, FLUSHALL, server
restarts, dropped sessions); every scenario ends by checking design.md's invariants against the
sandbox's own record, and reports what it survived. The table of every scenario is printed at
the end of the run.
"""

from __future__ import annotations

import random
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from campaigns.dispatch import TaskSender
from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.local.postgres import EmbeddedPostgres
from campaigns.local.redis import EmbeddedRedis
from campaigns.local.stack import LocalStack, wait_until
from campaigns.processor import CampaignBatchProcessor
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.settings import Pacing, Settings
from campaigns.state import CampaignStateManager
from tests.acceptance.conftest import FAST_ENV, SANDBOX_TOKEN
from tests.conftest import TEST_DATA

# Fast pacing so a campaign of hundreds of messages runs in seconds; small batches so faults
# land inside and between batches alike.
CHAOS_PACING = Pacing(
    batch_size=20, min_interval=0.05, max_interval=0.1, batch_delay_min=0.1, batch_delay_max=0.3
)
STALL_TIMEOUT_S = float(FAST_ENV["STALL_TIMEOUT"])
SWEEP_INTERVAL_S = float(FAST_ENV["SWEEP_INTERVAL"])


@dataclass
class ScenarioResult:
    """One row of the chaos summary."""

    scenario: str
    faults: int = 0
    crashes: int = 0
    duplicates: int = 0
    lost: int = 0
    unknowns: int = 0
    sent: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def add_latency(self, kind: str, seconds: float) -> None:
        self.latencies.setdefault(kind, []).append(seconds)


RESULTS: list[ScenarioResult] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what each chaos scenario survived, and how fast it recovered."""
    if not RESULTS:
        return
    tr = terminalreporter
    tr.section("chaos summary")
    tr.write_line(
        f"{'scenario':<44} {'faults':>6} {'crash':>5} {'sent':>5} {'dup':>4} {'lost':>4} "
        f"{'unk':>4}  recovery latency s (kind: n, median / max)"
    )
    for r in RESULTS:
        latency = "; ".join(
            f"{kind}: {len(v)}, {sorted(v)[len(v) // 2]:.1f} / {max(v):.1f}"
            for kind, v in r.latencies.items()
            if v
        )
        tr.write_line(
            f"{r.scenario:<44} {r.faults:>6} {r.crashes:>5} {r.sent:>5} {r.duplicates:>4} "
            f"{r.lost:>4} {r.unknowns:>4}  {latency or '-'}"
        )


def numbers(count: int, start: int = 0) -> list[str]:
    return [f"+5511{910000000 + i}" for i in range(start, start + count)]


@dataclass
class Chaos:
    """One scenario's world: the stack, the store, the sandbox and its record."""

    stack: LocalStack
    store: CampaignStateManager
    sandbox: SandboxControl
    record: SandboxRecord
    enqueuer: TaskSender
    result: ScenarioResult
    rng: random.Random = field(default_factory=lambda: random.Random(4))

    @property
    def sandbox_url(self) -> str:
        assert self.stack.sandbox_url
        return self.stack.sandbox_url

    def add_session(self, name: str = "sales", gateway: str = "waha", **extra: str) -> str:
        # a portfolio without Meta's messaging limit: chaos sends more than a new one's 250
        cloud = {"phone_number_id": name, "tier": "unlimited"}
        options = {**cloud, **extra} if gateway == "cloud-api" else extra
        self.store.add_session(
            name, gateway, self.sandbox_url, token_env="SANDBOX_TOKEN", **options
        )
        return name

    def start_campaign(
        self, count: int, session: str | list[str], pacing: Pacing = CHAOS_PACING
    ) -> int:
        processor = CampaignBatchProcessor(
            pacing.batch_size,
            pacing.min_interval,
            pacing.max_interval,
            pacing.batch_delay_min,
            pacing.batch_delay_max,
            enqueue=self.enqueuer,
        )
        processor.set_state_manager(self.store)
        return processor.process_large_campaign_array(numbers(count), "Hi", session)

    def wait_sent(self, at_least: int, timeout: float = 120) -> None:
        """Until the sandbox accepted ``at_least`` messages in all."""
        wait_until(
            lambda: self.record.count() >= at_least,
            timeout,
            f"{at_least} messages accepted by the sandbox",
        )

    def wait_finished(self, campaign_id: int, timeout: float) -> None:
        wait_until(
            lambda: self.store.get_campaign(campaign_id).status.finished,
            timeout,
            f"campaign {campaign_id} to finish",
        )

    def first_message_after(self, moment: float) -> float:
        """Seconds from ``moment`` (time.time()) to the next message the sandbox accepted."""
        later = [m.received_at for m in self.record.messages() if m.received_at > moment]
        assert later, "no message was accepted after the fault"
        return min(later) - moment

    def restart_workers(self, names: list[str], concurrency: int = 4) -> list[str]:
        """Start as many workers as ``names`` lists, all at once, and wait until all are
        ready (a restarted server: their worker_ready sweeps race each other)."""
        started = [
            self.stack.start_worker(concurrency=concurrency, wait_ready=False) for _ in names
        ]
        for child in started:
            wait_until(
                lambda c=child: " ready." in c.log() or not c.alive, 90, f"{child.name} to be ready"
            )
            assert child.alive, child.log()[-3000:]
        return [c.name for c in started]

    def kill_a_worker(self, while_down: Callable[[], object] | None = None) -> None:
        """SIGKILL a random live worker, start a replacement, and record how long the first
        message after the kill took (the recovery latency of a worker kill). ``while_down``
        runs after the kill, before the replacement starts."""
        victim = self.rng.choice(self.workers())
        killed_at = time.time()
        self.stack.kill(victim)
        self.result.crashes += 1
        self.result.faults += 1
        self.stack.children.pop(victim)
        if while_down is not None:
            while_down()
        self.stack.start_worker(concurrency=4)
        self.wait_sent(self.record.count() + 1, timeout=60)
        self.result.add_latency("worker kill", self.first_message_after(killed_at))

    def workers(self) -> list[str]:
        return [n for n, c in self.stack.children.items() if n.startswith("worker") and c.alive]

    def beats(self) -> list[str]:
        return [n for n in self.stack.children if n.startswith("beat")]

    def verify(
        self,
        campaign_id: int,
        *,
        allow_resent: frozenset[str] = frozenset(),
        unknowns_per_crash: int = 1,
    ) -> None:
        """design.md's invariants against the sandbox's record; fills the result row.

        Every valid number delivered exactly once over the campaign's whole pool except
        recorded unknowns; unknowns never above ``unknowns_per_crash`` per crash (1 for a
        human lane, the lanes' in_flight for rate lanes); counters = ledger = batch-detail
        sums; the campaign completed. ``allow_resent``: numbers the opt-in RESEND_UNKNOWN
        policy may deliver twice."""
        campaign = self.store.get_campaign(campaign_id)
        rows = self.store.recipients(campaign_id)
        by_status: dict[RecipientStatus, set[str]] = {}
        for row in rows:
            by_status.setdefault(RecipientStatus(row["status"]), set()).add(row["phone"])
        sent = by_status.get(RecipientStatus.SENT, set())
        unknown = by_status.get(RecipientStatus.UNKNOWN, set())
        open_ = by_status.get(RecipientStatus.PENDING, set()) | by_status.get(
            RecipientStatus.SENDING, set()
        )
        pool = set(campaign.sessions)
        recorded = [m.e164 for m in self.record.messages() if m.session in pool]
        duplicates = sorted(
            e164
            for e164, times in Counter(recorded).items()
            if times > 1 and e164 not in allow_resent
        )
        lost = (sent - set(recorded)) | open_
        r = self.result
        r.duplicates, r.lost, r.unknowns, r.sent = (
            len(duplicates),
            len(lost),
            len(unknown),
            len(sent),
        )
        logs = "\n".join(f"--- {n}\n{c.log()[-2500:]}" for n, c in self.stack.children.items())

        assert campaign.status is CampaignStatus.COMPLETED, (campaign, logs)
        assert duplicates == [], duplicates
        assert lost == set(), sorted(lost)
        assert set(recorded) <= sent | unknown, sorted(set(recorded) - sent - unknown)
        assert by_status.get(RecipientStatus.FAILED, set()) == set()
        assert len(unknown) <= r.crashes * unknowns_per_crash, (unknown, r.crashes)
        assert self.store.check_invariants(campaign_id) == []


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own: restarting it touches nobody else."""
    server = EmbeddedPostgres(tmp_path / "postgres", durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def chaos_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of the chaos suite's own: scenarios flush and restart it."""
    folder = TEST_DATA / f"chaos-redis-{uuid.uuid4().hex[:6]}"
    server = EmbeddedRedis(folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def chaos_factory(
    chaos_redis: EmbeddedRedis, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Chaos]]:
    """Builds the scenario's world on a given database (the test's, or a private server's)."""
    built: list[tuple[LocalStack, CampaignStateManager, SandboxControl, TaskSender]] = []

    def build(database_url: str, **extra_env: str) -> Chaos:
        if not chaos_redis.is_running():
            chaos_redis.start()
        chaos_redis.flushall()
        url = chaos_redis.url()
        env = {
            **FAST_ENV,
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": url,
            "REDIS_URL": url,
            "CAMPAIGNS_QUEUE": f"chaos-{uuid.uuid4().hex[:8]}",
            "WORKER_CONCURRENCY": "4",
            **extra_env,
        }
        stack = LocalStack(env=env, log_dir=tmp_path / "logs")
        record_path = tmp_path / "sandbox.sqlite"
        stack.start_sandbox(record_path, api_key=SANDBOX_TOKEN)
        assert stack.sandbox_url
        store = CampaignStateManager(database_url, settings=Settings.from_env(env))
        control = SandboxControl(stack.sandbox_url)
        enqueuer = TaskSender.for_broker(url, env["CAMPAIGNS_QUEUE"])
        built.append((stack, store, control, enqueuer))
        result = ScenarioResult(request.node.name.removeprefix("test_"))
        RESULTS.append(result)
        return Chaos(stack, store, control, SandboxRecord(record_path), enqueuer, result)

    yield build
    for stack, store, control, enqueuer in built:
        stack.stop_all()
        enqueuer.close()
        control.close()
        store.dispose()


@pytest.fixture
def chaos(chaos_factory: Callable[..., Chaos], database_url: str) -> Chaos:
    """A scenario's world on a fresh database of the shared test server."""
    return chaos_factory(database_url)
