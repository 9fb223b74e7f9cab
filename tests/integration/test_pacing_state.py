"""The store verb the pacer rebuilds lost Redis state from: the session's last recorded send."""

from __future__ import annotations

from sqlalchemy import text

from campaigns.domain import RecipientStatus
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager

NUMBERS = [f"+5511{900000000 + i}" for i in range(25)]
PACED = Pacing(batch_size=10, min_interval=0, max_interval=0, batch_delay_min=0,
               batch_delay_max=0)  # fmt: skip


def send(store: CampaignStateManager, campaign_id: int, token: str, batch: int, n: int) -> None:
    for _ in range(n):
        claim = store.claim_recipient(campaign_id, batch, token)
        assert claim is not None
        store.record_outcome(claim, RecipientStatus.SENT, message_id="m")


def finished_at(store: CampaignStateManager, campaign_id: int) -> float:
    with store.engine.connect() as conn:
        value = conn.execute(
            text("SELECT extract(epoch FROM max(finished_at)) FROM campaign_recipients "
                 "WHERE campaign_id = :id"),
            {"id": campaign_id},
        ).scalar()  # fmt: skip
    assert value is not None
    return float(value)


def test_last_send_of_a_session_is_its_latest_recorded_send(
    store: CampaignStateManager, console_session: str
) -> None:
    assert store.session_last_send(console_session) is None  # nothing sent yet
    first = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACED)
    second = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACED)
    assert first.run_token and second.run_token
    send(store, first.id, first.run_token, 1, 3)
    send(store, second.id, second.run_token, 1, 2)
    assert store.session_last_send(console_session) == finished_at(store, second.id)
    send(store, first.id, first.run_token, 1, 1)
    assert store.session_last_send(console_session) == finished_at(store, first.id)
    # an open claim (a send that may be in flight) is not a recorded send
    assert store.claim_recipient(second.id, 1, second.run_token) is not None
    assert store.session_last_send(console_session) == finished_at(store, first.id)


def test_last_send_is_the_sessions_own(store: CampaignStateManager, console_session: str) -> None:
    store.add_session("other", "console", "console://local")
    campaign = store.create_campaign(NUMBERS, "Hi", "other", pacing=PACED)
    assert campaign.run_token
    send(store, campaign.id, campaign.run_token, 1, 2)
    assert store.session_last_send(console_session) is None
    assert store.session_last_send("other") == finished_at(store, campaign.id)


def test_last_send_counts_the_campaigns_whose_pool_holds_the_session(
    store: CampaignStateManager, console_session: str
) -> None:
    store.add_session("first", "console", "console://local")
    campaign = store.create_campaign(NUMBERS, "Hi", ["first", console_session], pacing=PACED)
    assert campaign.run_token
    send(store, campaign.id, campaign.run_token, 1, 2)
    assert store.session_last_send(console_session) == finished_at(store, campaign.id)
