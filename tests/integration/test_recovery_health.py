"""The session watcher against a real PostgreSQL and the sandbox's WAHA: a session that is
WORKING again but capped (475) or timelocked (463) does not resume its disconnected campaign;
once the capping's cycle ends (or an operator lifts the timelock) it does."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaigns.domain import CampaignStatus
from campaigns.gateway_pool import gateway_for
from campaigns.recovery import CampaignRecoveryManager
from campaigns.sandbox import SandboxControl, SandboxServer
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager
from tests.integration.test_sandbox_helpers import running_sandbox

NUMBERS = [f"+55119999{i:05d}" for i in range(3)]


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SandboxServer]:
    monkeypatch.setenv("WA_TOKEN", "waha-key")  # the sandbox accepts any non-empty key
    with running_sandbox(tmp_path) as server:
        yield server


def is_connected(store: CampaignStateManager, session: str) -> tuple[bool, str]:
    """What ``workers.tasks.watch_sessions`` does with each session."""
    gateway = gateway_for(store.get_session(session), store.settings)
    try:
        return gateway.health().watch_answer()
    finally:
        gateway.close()


def interrupted(store: CampaignStateManager, sandbox: SandboxServer) -> int:
    store.add_session("wa", "waha", sandbox.url, token_env="WA_TOKEN")
    campaign = store.create_campaign(NUMBERS, "Hi", "wa", pacing=Pacing(batch_size=3))
    assert store.mark_interrupted(campaign.id, "WAHA session is STOPPED",
                                  run_token=campaign.run_token)
    return campaign.id


def test_watch_sessions__capped_session_waits_for_the_cycle_end(
    store: CampaignStateManager, sandbox: SandboxServer
) -> None:
    cid = interrupted(store, sandbox)
    enqueued: list[object] = []
    recovery = CampaignRecoveryManager(store, enqueue=lambda *c: enqueued.append(c))
    with SandboxControl(sandbox.url) as control:
        end = control.cap("wa", 0.5)["capped"]["wa"]["cycleEndTimestamp"]

        assert recovery.watch_sessions(lambda s: is_connected(store, s)) == []

        assert store.get_campaign(cid).status is CampaignStatus.INTERRUPTED
        assert store.get_session("wa").connection_status == "WORKING (limited)"
        time.sleep(max(0.0, end - time.time()) + 0.05)
        [resumed] = recovery.watch_sessions(lambda s: is_connected(store, s))
    assert resumed.campaign_id == cid and len(enqueued) == 1


def test_watch_sessions__timelocked_session_waits_for_an_operator(
    store: CampaignStateManager, sandbox: SandboxServer
) -> None:
    cid = interrupted(store, sandbox)
    recovery = CampaignRecoveryManager(store, enqueue=lambda *c: None)
    with SandboxControl(sandbox.url) as control:
        control.timelock("wa", seconds=600)

        for _ in range(2):
            assert recovery.watch_sessions(lambda s: is_connected(store, s)) == []
        assert store.get_campaign(cid).status is CampaignStatus.INTERRUPTED
        assert store.get_session("wa").connection_status == "WORKING (blocked)"

        control.restore("wa")
        [resumed] = recovery.watch_sessions(lambda s: is_connected(store, s))
    assert resumed.campaign_id == cid
