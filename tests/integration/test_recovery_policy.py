"""Recovery against a real PostgreSQL: the unknowns policy (default: never resent; opt-in
RESEND_UNKNOWN: back to pending, at-least-once), the sweep's takeover, and the session
watcher's resume, with the broker replaced by a list of what would be enqueued."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.recovery import CampaignRecoveryManager
from campaigns.settings import Pacing, Settings
from campaigns.state import CampaignStateManager

NUMBERS = [f"+55119999{i:05d}" for i in range(5)]
Enqueued = list[tuple[int, int, str, float]]


@pytest.fixture
def resend_store(database_url: str, settings: Settings) -> Iterator[CampaignStateManager]:
    """A store under the opt-in policy, on the same database as ``store``."""
    manager = CampaignStateManager(
        database_url, settings=dataclasses.replace(settings, resend_unknown=True)
    )
    yield manager
    manager.dispose()


def _campaign(store: CampaignStateManager, session: str) -> tuple[int, str]:
    campaign = store.create_campaign(NUMBERS, "Hi", session, pacing=Pacing(batch_size=3))
    assert campaign.run_token
    return campaign.id, campaign.run_token


def _recovery(store: CampaignStateManager, enqueued: Enqueued) -> CampaignRecoveryManager:
    return CampaignRecoveryManager(
        store, enqueue=lambda *call: enqueued.append(call), settle_delay=5.0
    )


def _status(store: CampaignStateManager, cid: int, position: int) -> RecipientStatus:
    [row] = [r for r in store.recipients(cid) if r["position"] == position]
    return RecipientStatus(row["status"])


def test_cut_off_claim_by_default__becomes_unknown_and_is_never_claimed_again(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    cut_off = store.claim_recipient(cid, 1, token)
    assert cut_off is not None

    assert store.settle_cut_off_claims(cid) == [cut_off.position]

    following = store.claim_recipient(cid, 1, token)
    assert following is not None and following.position == cut_off.position + 1
    assert _status(store, cid, cut_off.position) is RecipientStatus.UNKNOWN
    assert [r["position"] for r in store.recipients(cid, RecipientStatus.UNKNOWN)] == [1]


def test_cut_off_claim_under_resend_unknown__goes_back_to_pending_and_is_claimed_again(
    resend_store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(resend_store, console_session)
    cut_off = resend_store.claim_recipient(cid, 1, token)
    assert cut_off is not None

    assert resend_store.settle_cut_off_claims(cid) == []

    again = resend_store.claim_recipient(cid, 1, token)
    assert again is not None
    assert (again.position, again.attempt) == (cut_off.position, 2)
    assert resend_store.recipients(cid, RecipientStatus.UNKNOWN) == []


def test_cut_off_claim_under_resend_unknown__after_max_attempts_becomes_unknown(
    resend_store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(resend_store, console_session)
    max_attempts = resend_store.settings.max_attempts
    for _ in range(max_attempts - 1):
        assert resend_store.claim_recipient(cid, 1, token) is not None
        assert resend_store.settle_cut_off_claims(cid) == []
    last = resend_store.claim_recipient(cid, 1, token)
    assert last is not None and last.attempt == max_attempts

    assert resend_store.settle_cut_off_claims(cid) == [last.position]
    assert _status(resend_store, cid, last.position) is RecipientStatus.UNKNOWN


def test_late_record_of_a_released_cut_off_claim__still_lands_and_saves_the_resend(
    resend_store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(resend_store, console_session)
    slow = resend_store.claim_recipient(cid, 1, token)
    assert slow is not None
    resend_store.settle_cut_off_claims(cid)  # PostgreSQL was down while the send went out

    assert resend_store.record_outcome(slow, RecipientStatus.SENT, message_id="wamid.1")

    assert _status(resend_store, cid, slow.position) is RecipientStatus.SENT
    following = resend_store.claim_recipient(cid, 1, token)
    assert following is not None and following.position == slow.position + 1


def test_late_record_of_a_released_claim_already_claimed_again__is_refused(
    resend_store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(resend_store, console_session)
    slow = resend_store.claim_recipient(cid, 1, token)
    assert slow is not None
    resend_store.settle_cut_off_claims(cid)
    again = resend_store.claim_recipient(cid, 1, token)
    assert again is not None and again.position == slow.position

    assert not resend_store.record_outcome(slow, RecipientStatus.SENT)
    assert resend_store.record_outcome(again, RecipientStatus.SENT)


def test_sweep__takes_over_a_stalled_campaign_from_its_first_open_batch_and_recipient(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    for _ in range(3):  # batch 1 done
        claim = store.claim_recipient(cid, 1, token)
        assert claim and store.record_outcome(claim, RecipientStatus.SENT)
    assert store.finish_batch(cid, 1, token)
    store.claim_recipient(cid, 2, token)  # cut off by a crash
    enqueued: Enqueued = []
    recovery = _recovery(store, enqueued)
    store.settings = dataclasses.replace(store.settings, stall_timeout=5.0)
    with store.engine.begin() as conn:  # the chain died a minute ago: everything is stale
        conn.exec_driver_sql(
            "UPDATE campaign_batch_state SET next_batch_at = now() - interval '1 minute',"
            " heartbeat_at = now() - interval '1 minute' WHERE id = %s",
            (cid,),
        )
        conn.exec_driver_sql(
            "UPDATE campaign_recipients SET claimed_at = now() - interval '1 minute'"
            " WHERE campaign_id = %s AND status = 'sending'",
            (cid,),
        )

    [recovered] = recovery.sweep()

    assert (recovered.campaign_id, recovered.batch_number, recovered.position) == (cid, 2, 5)
    assert recovered.unknown_positions == (4,)
    [(campaign_id, batch, new_token, delay)] = enqueued
    assert (campaign_id, batch, delay) == (cid, 2, 0.0)
    assert new_token != token
    assert store.get_campaign(cid).run_token == new_token
    assert recovery.sweep() == []  # taken over once: a second sweep finds nothing stalled


def test_resume_session__resumes_interrupted_campaigns_after_the_settle_delay(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    first = store.claim_recipient(cid, 1, token)
    assert first and store.record_outcome(first, RecipientStatus.SENT)
    assert store.mark_interrupted(cid, "WAHA session status STOPPED", run_token=token)
    enqueued: Enqueued = []

    [resumed] = _recovery(store, enqueued).resume_session(console_session, "reconnected")

    assert (resumed.batch_number, resumed.position) == (1, 2)
    [(_, batch, new_token, delay)] = enqueued
    assert (batch, delay) == (1, 5.0)
    campaign = store.get_campaign(cid)
    assert campaign.status is CampaignStatus.RUNNING and campaign.run_token == new_token


def test_watch_sessions__resumes_only_sessions_that_are_connected_again(
    store: CampaignStateManager, console_session: str
) -> None:
    store.add_session("other", "console", "console://local")
    cid, token = _campaign(store, console_session)
    other, other_token = _campaign(store, "other")
    store.mark_interrupted(cid, "down", run_token=token)
    store.mark_interrupted(other, "down", run_token=other_token)
    enqueued: Enqueued = []

    resumed = _recovery(store, enqueued).watch_sessions(
        lambda session: (
            session == console_session,
            "WORKING" if session == console_session else "STOPPED",
        )
    )

    assert [r.campaign_id for r in resumed] == [cid]
    assert store.get_campaign(other).status is CampaignStatus.INTERRUPTED
    assert store.get_session("other").connection_status == "STOPPED"
