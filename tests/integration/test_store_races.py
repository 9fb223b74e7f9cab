"""Races in the store, forced with real interleavings on real PostgreSQL connections.

1. An operator's pause (or cancel) landing between the session watcher's (or the scheduled
   sweep's) read of the campaigns it will start and its write must win: the watcher may only
   start campaigns that are still interrupted.
2. ``finish_batch`` and the late record of a claim that recovery settled as cut off must not
   interleave so that the ledger says ``sent`` while the details row and the state say
   ``unknown``: counters = ledger = details after it.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.recovery import CampaignRecoveryManager
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager

NUMBERS = [f"+55119999{i:05d}" for i in range(4)]


def _interrupted(store: CampaignStateManager, session: str) -> int:
    campaign = store.create_campaign(NUMBERS, "Hi", session, pacing=Pacing(batch_size=2))
    assert store.mark_interrupted(campaign.id, "session down")
    return campaign.id


class _PausedAfterRead(CampaignRecoveryManager):
    """The watcher's read, then the operator's command, then the watcher's write."""

    def __init__(self, store: CampaignStateManager, command: str) -> None:
        super().__init__(store, enqueue=lambda *call: self.enqueued.append(call), settle_delay=0)
        self.enqueued: list[tuple[object, ...]] = []
        self.command = command

    def check_for_interrupted_campaigns(self, session: str | None = None) -> list:  # type: ignore[type-arg]
        found = super().check_for_interrupted_campaigns(session)
        for campaign in found:
            getattr(self.state, self.command)(campaign.id)
        return found


@pytest.mark.parametrize(
    ("command", "expected"),
    [("pause", CampaignStatus.PAUSED), ("cancel", CampaignStatus.CANCELLED)],
)
def test_operator_command_between_the_watchers_read_and_write__is_never_undone(
    store: CampaignStateManager, console_session: str, command: str, expected: CampaignStatus
) -> None:
    cid = _interrupted(store, console_session)
    watcher = _PausedAfterRead(store, command)

    resumed = watcher.resume_session(console_session, "session sales reconnected")

    assert resumed == []
    assert watcher.enqueued == []
    campaign = store.get_campaign(cid)
    assert campaign.status is expected
    assert campaign.run_token is None


def test_pause_between_the_scheduled_sweeps_read_and_write__is_never_undone(
    store: CampaignStateManager, console_session: str
) -> None:
    start_at = datetime.now(UTC) - timedelta(seconds=1)
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, start_at=start_at)
    enqueued: list[tuple[object, ...]] = []
    manager = CampaignRecoveryManager(store, enqueue=lambda *call: enqueued.append(call))
    read = store.find_due_scheduled

    def read_then_pause() -> list:  # type: ignore[type-arg]
        due = read()
        store.pause(campaign.id)
        return due

    store.find_due_scheduled = read_then_pause  # type: ignore[method-assign]

    assert manager.sweep() == []
    assert enqueued == []
    assert store.get_campaign(campaign.id).status is CampaignStatus.PAUSED


def test_operator_resume__still_starts_paused_interrupted_and_scheduled_campaigns(
    store: CampaignStateManager, console_session: str
) -> None:
    enqueued: list[tuple[object, ...]] = []
    manager = CampaignRecoveryManager(store, enqueue=lambda *call: enqueued.append(call))
    paused = _interrupted(store, console_session)
    store.pause(paused)
    interrupted = _interrupted(store, console_session)
    scheduled = store.create_campaign(
        NUMBERS, "Hi", console_session, start_at=datetime.now(UTC) + timedelta(days=1)
    ).id

    for cid in (paused, interrupted, scheduled):
        manager.recover_campaign(cid)
        assert store.get_campaign(cid).status is CampaignStatus.RUNNING
    assert [call[0] for call in enqueued] == [paused, interrupted, scheduled]


def test_finish_batch_and_a_late_record_of_a_cut_off_claim__never_leave_counters_off_the_ledger(
    store: CampaignStateManager, console_session: str, database_url: str
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=Pacing(batch_size=2))
    token = campaign.run_token
    assert token
    late = store.claim_recipient(campaign.id, 1, token)  # its worker hangs after the call
    other = store.claim_recipient(campaign.id, 1, token)
    assert late and other
    store.record_outcome(other, RecipientStatus.SENT)
    assert store.settle_cut_off_claims(campaign.id, 1) == [late.position]  # recovery: unknown

    # A third connection holds the details table, so finish_batch stops right after it has
    # counted the batch (late = unknown) and before it writes the details row and commits.
    blocker = create_engine(database_url, pool_size=1).connect()
    blocker.begin()
    blocker.execute(text("LOCK TABLE campaign_batch_details IN EXCLUSIVE MODE"))
    finished: list[object] = []
    finisher = threading.Thread(
        target=lambda: finished.append(store.finish_batch(campaign.id, 1, token))
    )
    finisher.start()
    _wait_for_lock_wait(blocker, "campaign_batch_details")

    # Meanwhile the hung worker wakes up and records what really happened: the message went.
    recorded: list[bool] = []
    recorder = threading.Thread(
        target=lambda: recorded.append(store.record_outcome(late, RecipientStatus.SENT))
    )
    recorder.start()
    recorder.join(timeout=1.5)  # without the fix it commits at once, inside finish_batch

    blocker.rollback()
    blocker.close()
    finisher.join(timeout=30)
    recorder.join(timeout=30)
    assert not finisher.is_alive() and not recorder.is_alive()
    assert finished and finished[0] is not None

    assert store.check_invariants(campaign.id) == []
    # the batch was counted with the claim unknown, so the record arrived too late to count
    assert recorded == [False]
    [row] = [r for r in store.recipients(campaign.id) if r["position"] == late.position]
    assert row["status"] == "unknown"


def _wait_for_lock_wait(conn: object, table: str) -> None:
    """Until some backend waits for a lock on ``table`` (finish_batch reached its insert)."""
    import time

    engine = conn.engine  # type: ignore[attr-defined]
    with engine.connect() as probe:
        for _ in range(300):
            waiting = probe.execute(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                    " WHERE NOT l.granted AND c.relname = :table"
                ),
                {"table": table},
            ).scalar_one()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError(f"nobody waited for {table}")


def test_a_stop_that_became_blocked_between_the_watchers_read_and_write__stays_blocked(
    store: CampaignStateManager, console_session: str, database_url: str
) -> None:
    cid = _interrupted(store, console_session)  # disconnected
    engine = create_engine(database_url, pool_size=1)
    enqueued: list[tuple[object, ...]] = []

    class BlockedAfterRead(CampaignRecoveryManager):
        def check_for_interrupted_campaigns(self, session: str | None = None) -> list:  # type: ignore[type-arg]
            found = super().check_for_interrupted_campaigns(session)
            with engine.begin() as conn:  # e.g. a webhook or a second run said: timelocked
                conn.execute(
                    text(
                        "UPDATE campaign_batch_state SET interrupt_kind = 'blocked' WHERE id = :id"
                    ),
                    {"id": cid},
                )
            return found

    watcher = BlockedAfterRead(store, enqueue=lambda *call: enqueued.append(call), settle_delay=0)
    try:
        assert watcher.resume_session(console_session, "session sales reconnected") == []
    finally:
        engine.dispose()
    assert enqueued == []
    campaign = store.get_campaign(cid)
    assert campaign.status is CampaignStatus.INTERRUPTED
    assert campaign.interrupt_kind == "blocked"


def test_operator_resume_of_a_running_campaign__restarts_its_chain_under_a_new_token(
    store: CampaignStateManager, console_session: str
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session)
    enqueued: list[tuple[object, ...]] = []
    manager = CampaignRecoveryManager(store, enqueue=lambda *call: enqueued.append(call))

    recovery = manager.recover_campaign(campaign.id)

    after = store.get_campaign(campaign.id)
    assert after.status is CampaignStatus.RUNNING
    assert after.run_token not in (None, campaign.run_token)
    assert enqueued == [(campaign.id, recovery.batch_number, after.run_token, 0.0)]
