"""The engine's verbs on the ledger: claim, record, release, heartbeat, finish, transitions."""

from __future__ import annotations

import pytest

from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.errors import InvalidTransition
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager

NUMBERS = [f"+55119999{i:05d}" for i in range(5)]


def _campaign(
    store: CampaignStateManager, session: str, numbers: list[str] = NUMBERS, batch_size: int = 3
) -> tuple[int, str]:
    campaign = store.create_campaign(numbers, "Hi", session, pacing=Pacing(batch_size=batch_size))
    assert campaign.run_token
    return campaign.id, campaign.run_token


def test_claim__takes_pending_recipients_of_the_batch_in_input_order(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    first = store.claim_recipient(cid, 1, token)
    second = store.claim_recipient(cid, 1, token)
    assert first and second
    assert (first.position, second.position) == (1, 2)
    assert first.phone == NUMBERS[0]
    assert first.attempt == 1


def test_claim__nothing_left_in_the_batch_returns_none(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    for _ in range(3):
        assert store.claim_recipient(cid, 1, token)
    assert store.claim_recipient(cid, 1, token) is None
    assert store.heartbeat(cid, token)


def test_claim__with_a_stale_run_token_claims_nothing(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, _ = _campaign(store, console_session)
    assert store.claim_recipient(cid, 1, "not-the-token") is None
    assert not store.heartbeat(cid, "not-the-token")


def test_record__only_the_claim_holder_of_that_attempt_can_record(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    claim = store.claim_recipient(cid, 1, token)
    assert claim
    assert store.release_claim(claim, error_code="429", error_message="throttled")
    again = store.claim_recipient(cid, 1, token)
    assert again and again.position == claim.position and again.attempt == 2
    assert not store.record_outcome(claim, RecipientStatus.SENT, message_id="old")
    assert store.record_outcome(again, RecipientStatus.SENT, message_id="wamid.1")
    row = store.recipients(cid)[0]
    assert (row["status"], row["gateway_message_id"], row["attempts"]) == (
        RecipientStatus.SENT,
        "wamid.1",
        2,
    )


def test_finish_batch__refuses_while_recipients_are_open(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    store.claim_recipient(cid, 1, token)
    with pytest.raises(InvalidTransition, match="still has recipients"):
        store.finish_batch(cid, 1, token)


def _drain(store: CampaignStateManager, cid: int, batch: int, token: str) -> None:
    while claim := store.claim_recipient(cid, batch, token):
        store.record_outcome(claim, RecipientStatus.SENT, message_id=f"m{claim.position}")


def test_finish_batch__writes_details_advances_counters_and_completes_at_the_end(
    store: CampaignStateManager, console_session: str
) -> None:
    numbers = [*NUMBERS[:4], NUMBERS[0], "junk"]  # 6 entries: 4 valid, 1 duplicate, 1 invalid
    cid, token = _campaign(store, console_session, numbers)
    _drain(store, cid, 1, token)
    first = store.finish_batch(cid, 1, token, delay=20)
    assert first and first.next_batch == 2 and not first.completed
    campaign = store.get_campaign(cid)
    assert (campaign.current_batch, campaign.success_count, campaign.processed_numbers) == (2, 3, 3)
    assert campaign.next_batch_at is not None
    assert store.check_invariants(cid) == []

    _drain(store, cid, 2, token)
    last = store.finish_batch(cid, 2, token)
    assert last and last.completed and last.next_batch is None
    done = store.get_campaign(cid)
    assert done.status is CampaignStatus.COMPLETED
    assert (done.success_count, done.duplicate_count, done.invalid_count) == (4, 1, 1)
    assert done.processed_numbers == done.total_numbers == 6
    assert store.check_invariants(cid) == []


def test_finish_batch__twice_counts_the_batch_once(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    _drain(store, cid, 1, token)
    store.finish_batch(cid, 1, token)
    store.finish_batch(cid, 1, token)
    assert store.get_campaign(cid).success_count == 3
    assert store.check_invariants(cid) == []


def test_finish_batch__a_batch_of_only_duplicates_and_invalid_needs_no_send(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session, [NUMBERS[0], NUMBERS[0], "x"], batch_size=1)
    _drain(store, cid, 1, token)
    store.finish_batch(cid, 1, token)
    result = store.finish_batch(cid, 2, token)
    assert result and result.counts == {RecipientStatus.DUPLICATE: 1}
    assert store.check_invariants(cid) == []


def test_transition__pause_clears_the_token_and_stops_claims(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    store.pause(cid)
    assert store.claim_recipient(cid, 1, token) is None
    assert store.get_campaign(cid).status is CampaignStatus.PAUSED
    new_token = store.start_run(cid)
    assert new_token != token
    assert store.claim_recipient(cid, 1, new_token)


def test_transition__a_finished_campaign_cannot_be_resumed_or_paused(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, _ = _campaign(store, console_session)
    store.cancel(cid)
    with pytest.raises(InvalidTransition, match="cancelled"):
        store.start_run(cid)
    with pytest.raises(InvalidTransition, match="cancelled"):
        store.pause(cid)


def test_mark_interrupted__needs_the_holders_token_and_keeps_the_reason(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    assert not store.mark_interrupted(cid, "session down", run_token="other")
    assert store.mark_interrupted(cid, "WAHA session status SCAN_QR_CODE", run_token=token)
    found = store.find_interrupted_campaigns(console_session)
    assert [c.id for c in found] == [cid]
    assert found[0].interrupt_reason == "WAHA session status SCAN_QR_CODE"
    assert store.find_interrupted_campaigns("other-session") == []


def test_take_over_stalled__only_one_of_two_racing_sweeps_wins(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, _ = _campaign(store, console_session)
    seen = store.find_stalled_campaigns(stall_timeout=0)
    assert [c.id for c in seen] == [cid]
    winner = store.take_over_stalled(seen[0], stall_timeout=0)
    loser = store.take_over_stalled(seen[0], stall_timeout=0)
    assert winner and loser is None


def test_cut_off_claims__become_unknown_and_count_in_the_batch(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    store.claim_recipient(cid, 1, token)
    [stalled] = store.find_stalled_campaigns(stall_timeout=0)
    new_token = store.take_over_stalled(stalled, stall_timeout=0)
    assert new_token
    assert store.settle_cut_off_claims(cid) == [1]
    _drain(store, cid, 1, new_token)
    result = store.finish_batch(cid, 1, new_token)
    assert result and result.counts[RecipientStatus.UNKNOWN] == 1
    assert store.get_campaign(cid).unknown_count == 1
    assert store.check_invariants(cid) == []


def test_snapshot__live_counts_and_eta(store: CampaignStateManager, console_session: str) -> None:
    campaign = store.create_campaign(
        NUMBERS,
        "Hi",
        console_session,
        pacing=Pacing(
            batch_size=2, min_interval=4, max_interval=10, batch_delay_min=15, batch_delay_max=30
        ),
    )
    assert campaign.run_token
    claim = store.claim_recipient(campaign.id, 1, campaign.run_token)
    assert claim
    store.record_outcome(claim, RecipientStatus.FAILED, error_code="131026", error_message="nope")
    snap = store.snapshot(campaign.id)
    assert snap.counts == {RecipientStatus.FAILED: 1, RecipientStatus.PENDING: 4}
    assert snap.remaining == 4
    assert snap.last_error == "nope"
    assert snap.eta_seconds() == pytest.approx(4 * 7 + 2 * 22.5)


def test_release__throttling_does_not_use_up_the_recipients_attempts(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    for _ in range(5):
        claim = store.claim_recipient(cid, 1, token)
        assert claim and claim.attempt == 1
        assert store.release_claim(claim, error_code="130429", counts_as_attempt=False)
    claim = store.claim_recipient(cid, 1, token)
    assert claim and claim.attempt == 1
    assert store.release_claim(claim, error_code="131000")  # a transient error counts
    again = store.claim_recipient(cid, 1, token)
    assert again and again.attempt == 2


def test_record_sent_many__records_a_group_with_its_message_ids_and_only_held_claims(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session)
    claims = store.claim_several_for_lane(cid, 1, token, console_session, limit=3)
    assert [c.position for c in claims] == [1, 2, 3]
    assert store.release_claim(claims[1])  # given back meanwhile: no longer held

    recorded = store.record_sent_many([(c, f"wamid.{c.position}") for c in claims])

    assert recorded == 2
    rows = store.recipients(cid)
    assert [(r["status"], r["gateway_message_id"]) for r in rows[:3]] == [
        (RecipientStatus.SENT, "wamid.1"),
        (RecipientStatus.PENDING, None),
        (RecipientStatus.SENT, "wamid.3"),
    ]
    assert store.record_sent_many([]) == 0
    other, other_token = _campaign(store, console_session)
    [foreign] = store.claim_several_for_lane(other, 1, other_token, console_session, limit=1)
    with pytest.raises(ValueError, match="one campaign"):
        store.record_sent_many([(claims[0], "x"), (foreign, "y")])
