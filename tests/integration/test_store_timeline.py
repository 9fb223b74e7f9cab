"""The dashboard's data on a real PostgreSQL: each timeline event is written with the state
change it records (creation, batches, pause, resume, cancel, an interruption and its recovery
with trigger and position, lanes down and up, waits once per reason, completion), the activity
per minute and current rate from the ledger's times, and the sessions overview's order (the
numbers at risk first). The engine is played by hand, as in test_store_content.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from campaigns.domain import RecipientStatus, StopKind
from campaigns.errors import InvalidArgument
from campaigns.recovery import CampaignRecoveryManager
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager
from campaigns.timeline import EventKind, Risk

PACING = Pacing(batch_size=3, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)
NUMBERS = [f"+5511{930000000 + i}" for i in range(6)]


@pytest.fixture
def recovery(store: CampaignStateManager) -> CampaignRecoveryManager:
    calls: list[tuple[Any, ...]] = []
    return CampaignRecoveryManager(store, enqueue=lambda *c: calls.append(c), settle_delay=0)


def _kinds(store: CampaignStateManager, cid: int) -> list[str]:
    return [e.kind.value for e in store.events(cid)]


def _send(store: CampaignStateManager, cid: int, batch: int, n: int | None = None) -> None:
    """Claim and record ``n`` recipients of a batch (all when None), failing the first."""
    campaign = store.get_campaign(cid)
    assert campaign.run_token
    done = 0
    while (n is None or done < n) and (claim := store.claim_for_lane(
        cid, batch, campaign.run_token, campaign.session_name
    )) is not None:  # fmt: skip
        failed = claim.position == 1
        store.record_outcome(
            claim, RecipientStatus.FAILED if failed else RecipientStatus.SENT,
            message_id=None if failed else f"m{cid}-{claim.position}",
            error_code="131026" if failed else None,
        )  # fmt: skip
        done += 1


def test_created_batches_and_completed__each_with_its_change(
    store: CampaignStateManager, console_session: str
) -> None:
    cid = store.create_campaign([*NUMBERS, NUMBERS[0]], "Hi", console_session, pacing=PACING).id
    [created] = store.events(cid)
    assert created.kind is EventKind.CREATED
    assert created.detail == "7 numbers (7 valid) in 3 batches on sales"
    token = store.get_campaign(cid).run_token
    assert token
    for batch in (1, 2, 3):
        _send(store, cid, batch)
        assert store.finish_batch(cid, batch, token) is not None
        store.finish_batch(cid, batch, token)  # a second finish counts nothing, tells nothing
    events = store.events(cid)
    assert [e.kind for e in events] == [
        EventKind.CREATED, EventKind.BATCH_DONE, EventKind.BATCH_DONE, EventKind.BATCH_DONE,
        EventKind.COMPLETED,
    ]  # fmt: skip
    assert [e.batch_number for e in events[1:4]] == [1, 2, 3]
    assert events[1].detail == "batch 1/3: 2 sent, 1 failed"
    assert events[3].detail == "batch 3/3: 1 duplicate"
    assert [e.id for e in store.events(cid, after_id=events[2].id)] == [e.id for e in events[3:]]
    assert len(store.events(cid, limit=2)) == 2
    with pytest.raises(InvalidArgument):
        store.events(cid, limit=0)
    assert store.check_invariants(cid) == []


def test_pause_resume_interrupt_recover_cancel__in_order_with_trigger_and_position(
    store: CampaignStateManager, console_session: str, recovery: CampaignRecoveryManager
) -> None:
    cid = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACING).id
    token = store.get_campaign(cid).run_token
    assert token
    _send(store, cid, 1)
    store.finish_batch(cid, 1, token)
    _send(store, cid, 2, n=1)  # position 4 sent (1-based); 5 is the first pending
    store.pause(cid)
    recovery.recover_campaign(cid)  # the operator's resume of a pause
    token = store.get_campaign(cid).run_token
    assert token
    store.mark_interrupted(cid, "session down (WAHA 422)", token, kind=StopKind.DISCONNECTED)
    recovery.resume_session(console_session, "sales reconnected", trigger="watcher")
    store.cancel(cid)
    events = store.events(cid)
    assert [e.kind.value for e in events] == [
        "created", "batch_done", "paused", "resumed", "interrupted", "recovered", "cancelled",
    ]  # fmt: skip
    paused, resumed, interrupted, recovered, cancelled = events[2:]
    assert paused.detail == "paused by operator"
    assert resumed.trigger == "operator"
    assert interrupted.detail == "disconnected: session down (WAHA 422)"
    assert (recovered.trigger, recovered.batch_number, recovered.position) == ("watcher", 2, 5)
    assert recovered.detail == "sales reconnected"
    assert cancelled.detail == "cancelled by operator"
    assert events == sorted(events, key=lambda e: (e.at, e.id))


def test_a_refused_transition__writes_no_event(
    store: CampaignStateManager, console_session: str
) -> None:
    cid = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACING).id
    store.cancel(cid)
    assert not store.transition(cid, store.get_campaign(cid).status.__class__("paused"))
    assert _kinds(store, cid) == ["created", "cancelled"]


def test_sweep_takeover__a_recovery_by_its_trigger_from_the_first_pending(
    store: CampaignStateManager, console_session: str, recovery: CampaignRecoveryManager,
    sql: Engine,
) -> None:  # fmt: skip
    cid = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACING).id
    _send(store, cid, 1, n=2)
    with sql.begin() as conn:
        conn.execute(text(
            "UPDATE campaign_batch_state SET heartbeat_at = now() - interval '1 day', "
            "next_batch_at = NULL WHERE id = :id"), {"id": cid})  # fmt: skip
    assert len(recovery.sweep(trigger="worker_start")) == 1
    last = store.events(cid)[-1]
    assert (last.kind, last.trigger, last.batch_number, last.position) == (
        EventKind.RECOVERED, "worker_start", 1, 3,
    )  # fmt: skip
    assert last.detail and "its chain stopped" in last.detail


def test_lanes_down_and_up__and_every_lane_down_interrupts(
    store: CampaignStateManager, recovery: CampaignRecoveryManager
) -> None:
    for name in ("s1", "s2"):
        store.add_session(name, "console", "console://local")
    cid = store.create_campaign(NUMBERS, "Hi", ["s1", "s2"], pacing=PACING).id
    token = store.get_campaign(cid).run_token
    assert token
    store.mark_lane_down(cid, "s1", "Connection Closed", run_token=token)
    recovery.resume_session("s1", "s1 reconnected", trigger="webhook")
    store.mark_lane_down(cid, "s1", "timelock 463", kind=StopKind.BLOCKED, run_token=token)
    store.mark_lane_down(cid, "s2", "Connection Closed", run_token=token)
    events = store.events(cid)
    assert [(e.kind.value, e.session_name) for e in events[1:]] == [
        ("lane_down", "s1"), ("lane_up", "s1"), ("lane_down", "s1"), ("lane_down", "s2"),
        ("interrupted", None),
    ]  # fmt: skip
    assert events[1].detail == "disconnected: Connection Closed"
    assert events[2].trigger == "webhook"
    assert events[3].detail == "blocked: timelock 463"
    assert events[5].detail and events[5].detail.startswith("disconnected: every session")


def test_waiting__once_per_reason_not_per_poll(
    store: CampaignStateManager, console_session: str
) -> None:
    cid = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACING).id
    token = store.get_campaign(cid).run_token
    assert token
    for until in ("14:05", "14:06", "14:07"):  # the same wait polled again
        store.set_waiting(cid, token, f"waiting for capacity on sales until {until}", 60)
    store.set_waiting(cid, token, "outside the send window of sales; opens Tue 08:00", 60)
    assert not store.set_waiting(cid, "not-the-token", "anything else", 60)
    waits = [e.detail for e in store.events(cid) if e.kind is EventKind.WAITING]
    assert waits == [
        "waiting for capacity on sales until 14:05",
        "outside the send window of sales; opens Tue 08:00",
    ]


def test_activity_and_current_rate__from_the_ledgers_times(
    store: CampaignStateManager, console_session: str, sql: Engine
) -> None:
    cid = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACING).id
    other = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACING).id
    now = datetime.now(UTC) - timedelta(seconds=1)  # every time in the past
    m = lambda k: now - timedelta(minutes=k)  # noqa: E731
    rows = [  # position: status, finished, delivered, read
        (1, "sent", m(0), m(0), None), (2, "sent", m(5), m(3), m(0)),
        (3, "failed", m(5), None, None), (4, "sent", m(300), m(300), m(1)),
        (5, "unknown", m(0), None, None),
    ]  # fmt: skip
    with sql.begin() as conn:
        for cid_ in (cid, other):
            for pos, status, fin, dlv, rd in rows:
                conn.execute(text(
                    "UPDATE campaign_recipients SET status = CAST(:s AS recipient_status), "
                    "finished_at = :f, delivered_at = :d, read_at = :r "
                    "WHERE campaign_id = :c AND position = :p"),
                    {"s": status, "f": fin, "d": dlv, "r": rd, "c": cid_, "p": pos})  # fmt: skip
    minute = lambda k: m(k).replace(second=0, microsecond=0)  # noqa: E731
    assert [tuple(a) for a in store.activity(cid, minutes=120)] == [
        (minute(5), 1, 1, 0, 0), (minute(3), 0, 0, 1, 0), (minute(1), 0, 0, 0, 1),
        (minute(0), 1, 0, 1, 1),
    ]  # fmt: skip
    assert [a.minute for a in store.activity(cid, minutes=2)] == [minute(1), minute(0)]
    # in the last 6 minutes: positions 1 (sent), 2 (sent), 3 (failed), 5 (unknown)
    assert store.current_rate(cid, 600) == pytest.approx(4 / 600)
    assert store.current_rate(cid, 60) >= 2 / 60  # positions 1 and 5, at least
    with pytest.raises(InvalidArgument):
        store.current_rate(cid, 0)


def test_sessions_overview__the_numbers_at_risk_first(
    store: CampaignStateManager, sql: Engine
) -> None:
    store.add_session("a-fine", "console", "console://local")
    store.add_session("b-near", "console", "console://local", cap_day="4", warmup="3,10")
    store.add_session("c-down", "console", "console://local")
    store.add_session("d-limited", "console", "console://local")
    store.add_session("e-blocked", "console", "console://local")
    store.add_session("f-window", "console", "console://local",
                      window_hours="00:00-00:01", window_tz="UTC")  # fmt: skip
    near = store.create_campaign(NUMBERS, "Hi", "b-near", pacing=PACING).id
    _send(store, near, 1)  # 2 sent (position 1 fails)
    _send(store, near, 2, n=1)  # 3 sent: today's warm-up cap (3) reached
    store.record_session_check("c-down", "disconnected", "Connection Closed")
    limited = store.create_campaign(NUMBERS, "Hi", "d-limited", pacing=PACING)
    until = datetime.now(UTC) + timedelta(hours=2)
    store.mark_interrupted(limited.id, "475 capping", kind=StopKind.LIMITED, resume_at=until)
    blocked = store.create_campaign(NUMBERS, "Hi", "e-blocked", pacing=PACING)
    store.mark_interrupted(blocked.id, "463 timelock", kind=StopKind.BLOCKED)
    found = {o.name: o for o in store.sessions_overview()}
    order = [o.name for o in store.sessions_overview()]
    assert order[:4] == ["e-blocked", "d-limited", "c-down", "b-near"]
    assert set(order[4:]) == {"a-fine", "f-window"}
    assert found["e-blocked"].risk is Risk.BLOCKED
    assert found["e-blocked"].stop_reason == "463 timelock"
    assert found["d-limited"].limited_until == until
    assert found["c-down"].disconnected and found["c-down"].last_error == "Connection Closed"
    b = found["b-near"]
    assert (b.cap_day, b.sent_day, b.left_day, b.warmup_day) == (3, 3, 0, 1)
    assert b.caps.startswith("4/day")
    assert found["a-fine"].pacing == "human" and found["a-fine"].campaigns == 0
    assert found["b-near"].campaigns == 1
    w = found["f-window"]
    assert w.window is not None and not w.window.startswith("invalid")
    assert w.window_open is (w.next_open is None)  # open for one minute a day
