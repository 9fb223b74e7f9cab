"""Receipts on the ledger: forward only, idempotent, late failures moving the counters before
and after the batch is counted, receipts parked before the send is recorded and applied by
record_outcome and record_sent_many, the cleanup of old parked ones, and the figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from campaigns.domain import RecipientStatus
from campaigns.receipts import Receipt
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager

NUMBERS = [f"+55119999{i:05d}" for i in range(5)]
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _sent(store: CampaignStateManager, session: str, *, finish: bool) -> tuple[int, str]:
    """A campaign whose first batch (3 recipients, ids m1..m3) is sent, counted if ``finish``."""
    campaign = store.create_campaign(NUMBERS, "Hi", session, pacing=Pacing(batch_size=3))
    token = campaign.run_token
    assert token
    for i in range(1, 4):
        claim = store.claim_recipient(campaign.id, 1, token)
        assert claim and store.record_outcome(claim, RecipientStatus.SENT, message_id=f"m{i}")
    if finish:
        assert store.finish_batch(campaign.id, 1, token)
    return campaign.id, token


def _row(store: CampaignStateManager, cid: int, position: int) -> dict[str, object]:
    return store.recipients(cid)[position - 1]


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_forward_only__a_late_delivered_never_overwrites_read(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, _ = _sent(store, console_session, finish=True)
    assert store.apply_receipts([Receipt("m1", "read", _at(2))]).applied == 1
    result = store.apply_receipts([Receipt("m1", "delivered", _at(1)), Receipt("m1", "sent")])
    assert (result.applied, result.unchanged, result.pending) == (0, 2, 0)
    row = _row(store, cid, 1)
    # read came alone: it implies delivered, at its own time, set once
    assert (row["delivery_status"], row["delivered_at"], row["read_at"]) == ("read", _at(2), _at(2))
    assert store.check_invariants(cid) == []


def test_duplicates_and_out_of_order_in_one_delivery__the_highest_wins_times_set_once(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, _ = _sent(store, console_session, finish=True)
    batch = [Receipt("m2", "read", _at(5)), Receipt("m2", "delivered", _at(3)),
             Receipt("m2", "sent", _at(1)), Receipt("m2", "read", _at(5))]  # fmt: skip
    assert store.apply_receipts(batch).applied == 1
    first = _row(store, cid, 2)
    assert store.apply_receipts(batch).applied == 0  # the same delivery again: nothing moves
    assert _row(store, cid, 2) == first
    assert (first["delivery_status"], first["delivered_at"], first["read_at"]) == (
        "read", _at(3), _at(5))  # fmt: skip
    store.apply_receipts([Receipt("m2", "played", _at(9))])
    again = _row(store, cid, 2)
    assert (again["delivery_status"], again["read_at"]) == ("played", _at(5))


def test_late_failed_after_the_batch_is_counted__moves_details_and_counters(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, _ = _sent(store, console_session, finish=True)
    before = store.get_campaign(cid)
    failure = Receipt("m3", "failed", _at(1), "131026", "Message undeliverable")
    assert store.apply_receipts([failure]).applied == 1
    assert store.apply_receipts([failure]).applied == 0  # twice: counted once
    row = _row(store, cid, 3)
    assert (row["status"], row["error_code"], row["delivery_status"]) == (
        RecipientStatus.FAILED, "131026", "failed")  # fmt: skip
    after = store.get_campaign(cid)
    assert (after.success_count, after.failed_count) == (
        before.success_count - 1, before.failed_count + 1)  # fmt: skip
    assert store.check_invariants(cid) == []
    # nothing moves a failure afterwards
    assert store.apply_receipts([Receipt("m3", "read", _at(2))]).applied == 0
    assert _row(store, cid, 3)["delivery_status"] == "failed"


def test_late_failed_before_the_batch_is_counted__finish_batch_counts_it(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _sent(store, console_session, finish=False)
    store.apply_receipts([Receipt("m1", "failed", None, "131049", "per-user marketing cap")])
    assert store.get_campaign(cid).failed_count == 0  # not counted yet: only the ledger moved
    result = store.finish_batch(cid, 1, token)
    assert result and result.counts[RecipientStatus.FAILED] == 1
    assert result.counts[RecipientStatus.SENT] == 2
    assert store.check_invariants(cid) == []


def test_failed_after_delivered__is_ignored(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, _ = _sent(store, console_session, finish=True)
    store.apply_receipts([Receipt("m1", "delivered", _at(1))])
    assert store.apply_receipts([Receipt("m1", "failed", _at(2), "131026", "x")]).applied == 0
    assert _row(store, cid, 1)["status"] == RecipientStatus.SENT
    assert store.check_invariants(cid) == []


def test_receipts_before_the_send__parked_then_applied_by_record_outcome(
    store: CampaignStateManager, console_session: str
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=Pacing(batch_size=3))
    assert campaign.run_token
    early = [Receipt("true_5511@c.us_3EB0AA", "delivered", _at(1)),
             Receipt("true_5511@c.us_3EB0AA", "read", _at(2))]  # fmt: skip
    assert store.apply_receipts(early).pending == 2
    claim = store.claim_recipient(campaign.id, 1, campaign.run_token)
    assert claim
    # NOWEB stores the bare key; the receipt came serialized: they meet on the key
    assert store.record_outcome(claim, RecipientStatus.SENT, message_id="3EB0AA")
    row = _row(store, campaign.id, 1)
    assert (row["delivery_status"], row["delivered_at"], row["read_at"]) == (
        "read", _at(1), _at(2))  # fmt: skip
    assert _parked(store) == 0


def test_receipts_before_the_send__a_failure_applied_by_record_sent_many_then_counted(
    store: CampaignStateManager, console_session: str
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=Pacing(batch_size=3))
    token = campaign.run_token
    assert token
    serialized = "true_5511999900001@c.us_3EB0BB"
    store.apply_receipts([Receipt("3EB0BB", "failed", _at(1), "131026", "not on WhatsApp"),
                          Receipt("w2", "delivered", _at(1))])  # fmt: skip
    claims = [store.claim_recipient(campaign.id, 1, token) for _ in range(3)]
    assert all(claims)
    ids = [serialized, "w2", "w3"]  # WEBJS stores the serialized id
    assert store.record_sent_many([(c, i) for c, i in zip(claims, ids, strict=True) if c]) == 3
    rows = store.recipients(campaign.id)
    assert [(r["status"], r["delivery_status"]) for r in rows[:3]] == [
        (RecipientStatus.FAILED, "failed"), (RecipientStatus.SENT, "delivered"),
        (RecipientStatus.SENT, None)]  # fmt: skip
    assert _parked(store) == 0
    assert store.finish_batch(campaign.id, 1, token)
    assert store.get_campaign(campaign.id).failed_count == 1
    assert store.check_invariants(campaign.id) == []


def _parked(store: CampaignStateManager) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM campaign_receipts_pending")).scalar())


def test_cleanup__drops_parked_receipts_older_than_the_setting(
    store: CampaignStateManager,
) -> None:
    store.apply_receipts([Receipt("old", "read"), Receipt("new", "read")])
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE campaign_receipts_pending SET received_at = now() - "
                          "interval '73 hours' WHERE gateway_message_id = 'old'"))  # fmt: skip
    assert store.settings.receipt_pending_hours == 72
    assert store.drop_old_receipts() == 1
    assert _parked(store) == 1


def test_delivery_counts__read_counts_as_delivered_rates_over_sent_per_session(
    store: CampaignStateManager, console_session: str
) -> None:
    cid, _ = _sent(store, console_session, finish=True)
    store.apply_receipts([Receipt("m1", "read", _at(1)), Receipt("m2", "delivered", _at(1)),
                          Receipt("m3", "failed", _at(1), "131026", "x")])  # fmt: skip
    figures = store.delivery_counts(cid)
    assert (figures.total.sent, figures.total.delivered, figures.total.read) == (2, 2, 1)
    assert figures.total.read_rate == 0.5
    assert set(figures.sessions) == {console_session}
