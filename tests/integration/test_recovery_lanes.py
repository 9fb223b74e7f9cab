"""Lane-aware recovery against a real PostgreSQL, the broker replaced by lists of what would be
enqueued: a session that reconnects brings its lane back in a running campaign (the engine's
``start_lane`` hook after the settle delay) and resumes a campaign interrupted because every
lane was down; a lane down for a reason a reconnect does not fix stays down; the watcher polls
the sessions of down lanes; the sweep brings back lanes whose limit ended; an operator's resume
brings back every lane."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from campaigns.domain import CampaignStatus, LaneState, StopKind
from campaigns.recovery import CampaignRecoveryManager
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager

NUMBERS = [f"+5511{950000000 + i}" for i in range(6)]
PACING = Pacing(batch_size=3, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)


@pytest.fixture
def pool(store: CampaignStateManager) -> list[str]:
    for name in ("s1", "s2"):
        store.add_session(name, "console", "console://local")
    return ["s1", "s2"]


class Calls:
    def __init__(self) -> None:
        self.enqueued: list[tuple[Any, ...]] = []
        self.lanes: list[tuple[int, str, float]] = []


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def recovery(store: CampaignStateManager, calls: Calls) -> CampaignRecoveryManager:
    return CampaignRecoveryManager(
        store,
        enqueue=lambda *call: calls.enqueued.append(call),
        settle_delay=5.0,
        start_lane=lambda cid, session, delay: calls.lanes.append((cid, session, delay)),
    )


def _campaign(store: CampaignStateManager, pool: list[str]) -> tuple[int, str]:
    campaign = store.create_campaign(NUMBERS, "Hi", pool, pacing=PACING)
    assert campaign.run_token
    return campaign.id, campaign.run_token


def _state(store: CampaignStateManager, cid: int, session: str) -> LaneState:
    lane = store.get_lane(cid, session)
    assert lane is not None
    return lane.state


def test_reconnect_of_a_down_lanes_session__brings_the_lane_back_in_the_running_campaign(
    store: CampaignStateManager, pool: list[str], recovery: CampaignRecoveryManager, calls: Calls
) -> None:
    cid, token = _campaign(store, pool)
    assert store.mark_lane_down(cid, "s2", "WAHA session STOPPED", run_token=token) is None

    [back] = recovery.resume_session("s2", "session s2 reconnected")

    assert (back.campaign_id, back.lane, back.batch_number) == (cid, "s2", 1)
    assert _state(store, cid, "s2") is LaneState.ACTIVE
    assert calls.lanes == [(cid, "s2", 5.0)]  # the engine starts its run after the settle
    assert calls.enqueued == []  # the campaign kept running: no new chain
    assert store.get_campaign(cid).run_token == token
    assert store.lanes_to_run(cid, token) == ["s1", "s2"]


def test_reconnect__leaves_a_lane_down_for_a_blocked_or_limited_stop(
    store: CampaignStateManager, pool: list[str], recovery: CampaignRecoveryManager, calls: Calls
) -> None:
    cid, token = _campaign(store, pool)
    store.mark_lane_down(cid, "s2", "error 463: timelock", kind=StopKind.BLOCKED, run_token=token)

    assert recovery.resume_session("s2", "session s2 reconnected") == []
    assert _state(store, cid, "s2") is LaneState.DOWN
    assert calls.lanes == []


def test_every_lane_down_then_one_session_reconnects__resumes_the_campaign_on_that_lane(
    store: CampaignStateManager, pool: list[str], recovery: CampaignRecoveryManager, calls: Calls
) -> None:
    cid, token = _campaign(store, pool)
    store.mark_lane_down(cid, "s1", "error 463: timelock", kind=StopKind.BLOCKED, run_token=token)
    stop = store.mark_lane_down(cid, "s2", "Connection Closed", run_token=token)
    assert stop is not None and stop.kind is StopKind.DISCONNECTED
    assert store.get_campaign(cid).status is CampaignStatus.INTERRUPTED

    # the blocked lane's session being healthy resumes nothing
    assert recovery.resume_session("s1", "session s1 reconnected") == []
    [resumed] = recovery.resume_session("s2", "session s2 reconnected")

    campaign = store.get_campaign(cid)
    assert (resumed.campaign_id, resumed.lane) == (cid, None)
    assert campaign.status is CampaignStatus.RUNNING and campaign.run_token != token
    [(_, batch, new_token, delay)] = calls.enqueued
    assert (batch, new_token, delay) == (1, campaign.run_token, 5.0)
    assert _state(store, cid, "s2") is LaneState.ACTIVE
    assert _state(store, cid, "s1") is LaneState.DOWN  # still blocked: only an operator
    assert store.lanes_to_run(cid, campaign.run_token) == ["s2"]


def test_watch_sessions__polls_the_sessions_of_down_lanes_in_running_campaigns(
    store: CampaignStateManager, pool: list[str], recovery: CampaignRecoveryManager, calls: Calls
) -> None:
    cid, token = _campaign(store, pool)
    store.mark_lane_down(cid, "s2", "Connection Closed", run_token=token)
    assert store.sessions_with_interrupted_campaigns(StopKind.DISCONNECTED) == ["s2"]
    polled: list[str] = []

    def is_connected(session: str) -> tuple[bool, str]:
        polled.append(session)
        return True, "WORKING"

    [back] = recovery.watch_sessions(is_connected)

    assert polled == ["s2"]
    assert (back.campaign_id, back.lane) == (cid, "s2")
    assert store.sessions_with_interrupted_campaigns(StopKind.DISCONNECTED) == []


def test_sweep__brings_back_a_lane_whose_limit_ended(
    store: CampaignStateManager, pool: list[str], recovery: CampaignRecoveryManager, calls: Calls
) -> None:
    cid, token = _campaign(store, pool)
    ended = datetime.now(UTC) - timedelta(seconds=1)
    store.mark_lane_down(cid, "s1", "capped (475)", kind=StopKind.LIMITED, resume_at=ended,
                         run_token=token)

    [back] = recovery.sweep()

    assert (back.campaign_id, back.lane) == (cid, "s1")
    assert calls.lanes == [(cid, "s1", 0.0)]
    assert _state(store, cid, "s1") is LaneState.ACTIVE


def test_sweep__resumes_a_pool_limited_as_a_whole_with_its_due_lane_only(
    store: CampaignStateManager, pool: list[str], recovery: CampaignRecoveryManager, calls: Calls
) -> None:
    cid, token = _campaign(store, pool)
    now = datetime.now(UTC)
    store.mark_lane_down(cid, "s1", "capped", kind=StopKind.LIMITED,
                         resume_at=now - timedelta(seconds=1), run_token=token)
    stop = store.mark_lane_down(cid, "s2", "capped", kind=StopKind.LIMITED,
                                resume_at=now + timedelta(hours=1), run_token=token)
    assert stop is not None and stop.kind is StopKind.LIMITED

    [resumed] = recovery.sweep()

    assert (resumed.campaign_id, resumed.lane) == (cid, None)
    assert store.get_campaign(cid).status is CampaignStatus.RUNNING
    assert (_state(store, cid, "s1"), _state(store, cid, "s2")) == (
        LaneState.ACTIVE, LaneState.DOWN
    )


def test_operator_resume__brings_back_every_lane_even_blocked_ones(
    store: CampaignStateManager, pool: list[str], recovery: CampaignRecoveryManager
) -> None:
    cid, token = _campaign(store, pool)
    store.mark_lane_down(cid, "s1", "bad token", kind=StopKind.BLOCKED, run_token=token)
    store.mark_lane_down(cid, "s2", "bad token", kind=StopKind.BLOCKED, run_token=token)
    assert store.get_campaign(cid).interrupt_kind is StopKind.BLOCKED
    assert recovery.resume_session("s1", "healthy") == []  # nothing automatic resumes it

    recovery.recover_campaign(cid, reason="the token was fixed")

    campaign = store.get_campaign(cid)
    assert campaign.status is CampaignStatus.RUNNING
    assert store.lanes_to_run(cid, campaign.run_token or "") == ["s1", "s2"]


def test_recover_campaign__accepts_any_session_of_the_pool(
    store: CampaignStateManager, pool: list[str], recovery: CampaignRecoveryManager
) -> None:
    cid, token = _campaign(store, pool)
    store.mark_interrupted(cid, "down", run_token=token)

    assert recovery.recover_campaign(cid, "s2").campaign_id == cid
