"""Stops have a kind: the batch runner in-process against real PostgreSQL, Redis and the
sandbox gateway, with the session watcher, the sweep and the operator's resume driven by hand
(the broker is replaced by a list of what would be enqueued, drained by running the runner).

The loop of issue 9: a send refused for a reason that is not a connection problem (WAHA 463
timelock, Cloud API 132001 template not approved) interrupted the campaign, the health check
still said connected, the watcher resumed it, and the same recipient was sent again, forever.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from campaigns.domain import CampaignStatus, RecipientStatus, StopKind
from campaigns.engine import BatchRunner, RunEnd
from campaigns.gateway_pool import GatewayPool, gateway_for
from campaigns.pacing import SessionPacer
from campaigns.processor import CampaignBatchProcessor
from campaigns.recovery import CampaignRecoveryManager
from campaigns.sandbox import SandboxControl, SandboxRecord, SandboxServer
from campaigns.state import CampaignStateManager
from campaigns.webhooks import WebhookReceiver
from tests.conftest import ROOT
from tests.integration.test_sandbox_helpers import running_sandbox

TOKEN_ENV = "STOP_KINDS_SANDBOX_TOKEN"
NUMBERS = [f"+5511{930000000 + i}" for i in range(4)]
Enqueued = tuple[int, int, str, float]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    from campaigns.local.redis import EmbeddedRedis

    server = EmbeddedRedis(ROOT / ".data" / f"test-redis-stops-{uuid.uuid4().hex[:6]}")
    server.start()
    yield server.url()
    server.stop()


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    monkeypatch.setenv(TOKEN_ENV, "sandbox-token")
    with running_sandbox(tmp_path) as server:
        yield server


@pytest.fixture
def control(sandbox: SandboxServer) -> Iterator[SandboxControl]:
    with SandboxControl(sandbox.url) as client:
        yield client


@dataclass
class Harness:
    """A worker, beat and an operator in one process: ``drain`` runs what was enqueued the way
    ``send_batch`` does, ``watch`` is one session-watcher cycle, ``sweep`` one beat sweep."""

    store: CampaignStateManager
    runner: BatchRunner
    queue: list[Enqueued] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.recovery = CampaignRecoveryManager(
            self.store, enqueue=lambda *call: self.queue.append(call), settle_delay=0.0
        )
        self.processor = CampaignBatchProcessor(
            3, 0, 0, 0, 0, enqueue=lambda *call: self.queue.append(call)
        )
        self.processor.set_state_manager(self.store)

    def drain(self, limit: int = 20) -> list[RunEnd]:
        ends: list[RunEnd] = []
        while self.queue and len(ends) < limit:
            cid, batch, token, _ = self.queue.pop(0)
            result = self.runner.run(cid, batch, token)
            ends.append(result.end)
            if result.end is RunEnd.NEXT_BATCH and result.next_batch is not None:
                self.queue.append((cid, result.next_batch, token, result.delay))
            elif result.end is RunEnd.CONTINUE:
                self.queue.append((cid, batch, token, result.delay))
        return ends

    def watch(self) -> None:
        """One cycle of ``campaigns.watch_sessions``, health checks through the real adapter."""

        def is_connected(session: str) -> tuple[bool, str]:
            gateway = gateway_for(self.store.get_session(session), self.store.settings)
            try:
                health = gateway.health()
            finally:
                gateway.close()
            return health.connected, health.state

        self.recovery.watch_sessions(is_connected)

    def start(self, session: str, template: dict[str, str] | None = None) -> int:
        return self.processor.process_large_campaign_array(
            NUMBERS, "Hi there", session, template=template
        )


@pytest.fixture
def harness(store: CampaignStateManager, redis_url: str) -> Iterator[Harness]:
    pacer = SessionPacer(redis.Redis.from_url(redis_url), key_prefix=f"t-{uuid.uuid4().hex}:")
    pool = GatewayPool(store, store.settings)
    yield Harness(store, BatchRunner(store, pacer, pool, store.settings))
    pool.close()


def sends(sandbox: SandboxServer, control: SandboxControl) -> dict[str, int]:
    """The sandbox's count of send requests by dialect and answer (every call, refused or
    not: the record only holds accepted messages)."""
    return {k: v for k, v in control.stats()["requests"].items() if ".send." in k}


LOOP_CASES = [
    pytest.param("waha", {}, 463, None, "waha.send.500", id="waha-463-timelock"),
    pytest.param(
        "cloud-api",
        {"phone_number_id": "sales"},
        132001,
        {"name": "offer", "language": "pt_BR"},
        "cloud.send.400",
        id="cloud-132001-template",
    ),
]


@pytest.mark.parametrize(("gateway", "options", "code", "template", "answer"), LOOP_CASES)
def test_a_refusal_while_health_says_connected__makes_one_call_and_waits_for_the_operator(
    gateway: str,
    options: dict[str, str],
    code: int,
    template: dict[str, str] | None,
    answer: str,
    harness: Harness,
    sandbox: SandboxServer,
    control: SandboxControl,
) -> None:
    store = harness.store
    store.add_session("sales", gateway, sandbox.url, token_env=TOKEN_ENV, **options)
    control.refuse(code, session="sales")
    cid = harness.start("sales", template)

    assert harness.drain() == [RunEnd.INTERRUPTED]
    for _ in range(3):  # the watcher sees a healthy session every few seconds...
        harness.watch()
        harness.drain()
    harness.recovery.sweep()  # ...and beat sweeps
    harness.drain()

    assert sends(sandbox, control) == {answer: 1}  # one call, for the first recipient only
    campaign = store.get_campaign(cid)
    assert (campaign.status, campaign.interrupt_kind) == (
        CampaignStatus.INTERRUPTED,
        StopKind.BLOCKED,
    )
    assert campaign.interrupt_reason and str(code) in campaign.interrupt_reason
    assert store.recipients(cid, RecipientStatus.PENDING)[0]["position"] == 1
    assert store.get_session("sales").connection_status == "blocked"

    control.reset()  # the operator fixed the template / waited out the timelock
    harness.processor.resume_campaign(cid)
    resumed = store.get_campaign(cid)
    assert (resumed.status, resumed.interrupt_kind) == (CampaignStatus.RUNNING, None)
    harness.drain()
    assert store.get_campaign(cid).status is CampaignStatus.COMPLETED
    record = SandboxRecord(sandbox.record_path)
    assert sorted(m.e164 for m in record.messages()) == sorted(NUMBERS)
    assert store.check_invariants(cid) == []


def test_130497_country_restricted__fails_that_recipient_only_and_the_campaign_goes_on(
    harness: Harness, sandbox: SandboxServer, control: SandboxControl
) -> None:
    store = harness.store
    store.add_session(
        "sales", "cloud-api", sandbox.url, token_env=TOKEN_ENV, phone_number_id="sales"
    )
    control.refuse(130497, numbers=[NUMBERS[1]], session="sales")
    cid = harness.start("sales")

    harness.drain()

    campaign = store.get_campaign(cid)
    assert campaign.status is CampaignStatus.COMPLETED
    assert (campaign.success_count, campaign.failed_count) == (3, 1)
    [failed] = store.recipients(cid, RecipientStatus.FAILED)
    assert (failed["phone"], failed["error_code"]) == (NUMBERS[1], "130497")
    assert sends(sandbox, control) == {"cloud.send.200": 3, "cloud.send.400": 1}
    assert store.check_invariants(cid) == []


def test_a_disconnected_session__is_still_resumed_by_the_watcher_once_it_reconnects(
    harness: Harness, sandbox: SandboxServer, control: SandboxControl
) -> None:
    store = harness.store
    store.add_session("sales", "waha", sandbox.url, token_env=TOKEN_ENV)
    cid = harness.start("sales")
    control.drop("sales", waha_status="SCAN_QR_CODE")  # sends wait, then WAHA answers 422

    assert harness.drain() == [RunEnd.INTERRUPTED]
    campaign = store.get_campaign(cid)
    assert campaign.interrupt_kind is StopKind.DISCONNECTED
    harness.watch()  # still down: nothing resumes
    assert harness.queue == [] and store.get_campaign(cid).status is CampaignStatus.INTERRUPTED

    control.restore("sales")
    harness.watch()
    assert store.get_campaign(cid).status is CampaignStatus.RUNNING
    harness.drain()
    assert store.get_campaign(cid).status is CampaignStatus.COMPLETED
    assert SandboxRecord(sandbox.record_path).count() == len(NUMBERS)


def test_a_webhook_reconnect__resumes_the_disconnected_campaigns_of_the_session_only(
    harness: Harness, sandbox: SandboxServer
) -> None:
    store = harness.store
    store.add_session("sales", "waha", sandbox.url, token_env=TOKEN_ENV)
    dropped, timelocked, capped = (harness.start("sales") for _ in range(3))
    harness.queue.clear()  # nothing runs: the stops are set by hand
    for cid, kind in ((dropped, StopKind.DISCONNECTED), (timelocked, StopKind.BLOCKED)):
        assert store.mark_interrupted(cid, f"stopped: {kind}", kind=kind)
    assert store.mark_interrupted(
        capped, "capped", kind=StopKind.LIMITED, resume_at=datetime.now(UTC) + timedelta(hours=1)
    )

    def resume_session(session: str, reason: str) -> None:
        # the receiver enqueues campaigns.resume_session; here its body runs at once
        harness.recovery.resume_session(session, reason)

    receiver = WebhookReceiver(store, resume_session)
    event = {"event": "session.status", "session": "sales", "payload": {"status": "WORKING"}}

    assert receiver.handle("/webhooks/waha", {}, json.dumps(event).encode()).status == 200

    assert [q[0] for q in harness.queue] == [dropped]
    statuses = {cid: store.get_campaign(cid).status for cid in (dropped, timelocked, capped)}
    assert statuses == {
        dropped: CampaignStatus.RUNNING,
        timelocked: CampaignStatus.INTERRUPTED,
        capped: CampaignStatus.INTERRUPTED,
    }


def test_a_watcher_cycle__polls_only_sessions_with_disconnected_campaigns(
    harness: Harness, sandbox: SandboxServer, control: SandboxControl
) -> None:
    store = harness.store
    store.add_session("sales", "waha", sandbox.url, token_env=TOKEN_ENV)
    cid = harness.start("sales")
    harness.queue.clear()
    store.mark_interrupted(cid, "WhatsApp refused to send (error 463)", kind=StopKind.BLOCKED)

    harness.watch()

    assert not any(k.startswith("waha.session") for k in control.stats()["requests"])
    assert store.get_campaign(cid).status is CampaignStatus.INTERRUPTED


def test_waha_475_capping__stops_limited_and_the_sweep_resumes_it_once_the_limit_ends(
    harness: Harness, sandbox: SandboxServer, control: SandboxControl
) -> None:
    store = harness.store
    store.add_session("sales", "waha", sandbox.url, token_env=TOKEN_ENV)
    control.refuse(475, session="sales", count=1)
    before = datetime.now(UTC)
    cid = harness.start("sales")

    assert harness.drain() == [RunEnd.INTERRUPTED]
    campaign = store.get_campaign(cid)
    assert campaign.interrupt_kind is StopKind.LIMITED and campaign.resume_at is not None
    assert campaign.resume_at >= before + timedelta(hours=23)  # no cycle end given: a day
    harness.watch()  # a healthy session says nothing about a cap
    assert harness.recovery.sweep() == []  # not before resume_at
    assert store.get_campaign(cid).status is CampaignStatus.INTERRUPTED

    with store.engine.begin() as conn:  # the day has passed
        conn.exec_driver_sql(
            "UPDATE campaign_batch_state SET resume_at = now() - interval '1 second'"
            " WHERE id = %s",
            (cid,),
        )
    [resumed] = harness.recovery.sweep()

    assert resumed.campaign_id == cid and resumed.position == 1
    assert store.get_campaign(cid).status is CampaignStatus.RUNNING
    harness.drain()
    assert store.get_campaign(cid).status is CampaignStatus.COMPLETED
    assert sends(sandbox, control) == {"waha.send.500": 1, "waha.send.201": len(NUMBERS)}


def test_a_token_missing_on_the_worker__blocks_the_campaign_before_any_call(
    harness: Harness, sandbox: SandboxServer, control: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = harness.store
    store.add_session("sales", "waha", sandbox.url, token_env="STOP_KINDS_UNSET_TOKEN")
    monkeypatch.delenv("STOP_KINDS_UNSET_TOKEN", raising=False)
    cid = harness.start("sales")

    assert harness.drain() == [RunEnd.INTERRUPTED]
    harness.watch()
    harness.recovery.sweep()

    campaign = store.get_campaign(cid)
    assert (campaign.status, campaign.interrupt_kind) == (
        CampaignStatus.INTERRUPTED,
        StopKind.BLOCKED,
    )
    assert campaign.interrupt_reason and "STOP_KINDS_UNSET_TOKEN" in campaign.interrupt_reason
    assert harness.queue == [] and sends(sandbox, control) == {}


def test_a_cloud_api_token_that_expires__blocks_until_the_operator_resumes_even_once_valid(
    harness: Harness, sandbox: SandboxServer, control: SandboxControl
) -> None:
    store = harness.store
    store.add_session(
        "sales", "cloud-api", sandbox.url, token_env=TOKEN_ENV, phone_number_id="sales"
    )
    cid = harness.start("sales")
    control.drop("sales")  # the sandbox's Cloud API "drop": code 190, the token expired

    assert harness.drain() == [RunEnd.INTERRUPTED]
    control.restore("sales")  # a new token is valid again...
    harness.watch()  # ...but nothing automatic resumes a refused token
    harness.recovery.sweep()
    campaign = store.get_campaign(cid)
    assert (campaign.status, campaign.interrupt_kind) == (
        CampaignStatus.INTERRUPTED,
        StopKind.BLOCKED,
    )
    assert campaign.interrupt_reason and "token" in campaign.interrupt_reason

    harness.processor.resume_campaign(cid)
    harness.drain()
    assert store.get_campaign(cid).status is CampaignStatus.COMPLETED
