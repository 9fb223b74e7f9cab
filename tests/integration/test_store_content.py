"""Creation checks consent and content before anything is kept, on a real PostgreSQL: the legal
basis, the variables a message needs of its list, each recipient's variant chosen as its row
is copied, the cross-campaign duplicate window, and follow-up campaigns that retry exactly the
failed recipients."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine, text

from campaigns import content
from campaigns.domain import RecipientStatus
from campaigns.errors import InvalidArgument, InvalidMessage
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager

PACING = Pacing(batch_size=3, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)
NUMBERS = [f"+5511{920000000 + i}" for i in range(6)]


def _counts(sql: Engine) -> tuple[int, int]:
    with sql.connect() as conn:
        return (
            int(conn.execute(text("SELECT count(*) FROM campaign_batch_state")).scalar_one()),
            int(conn.execute(text("SELECT count(*) FROM campaign_recipients")).scalar_one()),
        )


def _send_all(store: CampaignStateManager, campaign_id: int, fail: set[str]) -> None:
    """Play the engine by hand: claim every recipient, record sent or failed, finish."""
    campaign = store.get_campaign(campaign_id)
    assert campaign.run_token
    for batch in range(1, campaign.total_batches + 1):
        while (claim := store.claim_for_lane(
            campaign_id, batch, campaign.run_token, campaign.session_name
        )) is not None:  # fmt: skip
            failed = claim.phone in fail
            store.record_outcome(
                claim,
                RecipientStatus.FAILED if failed else RecipientStatus.SENT,
                message_id=None if failed else f"m{campaign_id}-{claim.position}",
                error_code="131026" if failed else None,
                error_message="not on WhatsApp" if failed else None,
            )
        store.finish_batch(campaign_id, batch, campaign.run_token, delay=0)


def test_legal_basis__required_stored_and_checked(
    store: CampaignStateManager, console_session: str, sql: Engine
) -> None:
    no_default = replace(store.settings, legal_basis=None)
    bare = CampaignStateManager(engine=store.engine, settings=no_default)
    with pytest.raises(InvalidArgument, match="legal_basis is required"):
        bare.create_campaign(NUMBERS, "Hi", console_session, pacing=PACING)
    with pytest.raises(InvalidArgument, match="legal_basis must be one of consent"):
        store.create_campaign(NUMBERS, "Hi", console_session, legal_basis="because")
    assert _counts(sql) == (0, 0)
    campaign = bare.create_campaign(
        NUMBERS, "Hi", console_session, pacing=PACING, legal_basis="legitimate-interest",
        legal_note="customers of the last 12 months, weighed on 2026-11-02",
    )  # fmt: skip
    assert campaign.legal_basis == "legitimate_interest"
    assert campaign.legal_note == "customers of the last 12 months, weighed on 2026-11-02"
    assert store.create_campaign(NUMBERS, "Hi", console_session).legal_basis == "consent"


def test_variables__a_missing_column_or_empty_values_leave_nothing(
    store: CampaignStateManager, console_session: str, sql: Engine
) -> None:
    rows: list[Any] = [{"phone": n, "city": "Recife"} for n in NUMBERS]
    with pytest.raises(InvalidMessage, match=r"uses \{name\}.*no 'name' column"):
        store.create_campaign(rows, "Olá {name}", console_session)
    rows = [{"phone": n, "name": "Ana" if i % 2 else " "} for i, n in enumerate(NUMBERS)]
    with pytest.raises(InvalidMessage, match="3 recipients have an empty 'name'"):
        store.create_campaign(rows, "Olá {name}", console_session)
    assert _counts(sql) == (0, 0)
    campaign = store.create_campaign(rows, "Olá {name|cliente}", console_session)
    assert campaign.columns == ("name",)


def test_variants__chosen_at_creation_stored_and_claimed(
    store: CampaignStateManager, console_session: str
) -> None:
    texts = ("{Olá|Oi|Bom dia} {name|cliente}!", "E aí, {name|cliente}?")
    rows = [{"phone": n, "name": f"P{i}"} for i, n in enumerate(NUMBERS)]
    campaign = store.create_campaign(
        rows, texts[0], console_session, pacing=PACING, variants=[texts[1]]
    )
    assert campaign.variants == (texts[1],)
    plan = content.plan(*texts[:1], texts[1:])
    stored = {r["position"]: r["variant"] for r in store.recipients(campaign.id)}
    assert stored == {
        p: content.choose(plan, campaign.columns, campaign.id, p) for p in range(1, 7)
    }
    assert campaign.run_token
    claim = store.claim_for_lane(campaign.id, 1, campaign.run_token, console_session)
    assert claim is not None and claim.variant == stored[claim.position]


def test_duplicate_window__numbers_the_pool_messaged_recently_are_duplicates_named(
    store: CampaignStateManager, console_session: str
) -> None:
    first = store.create_campaign(NUMBERS[:3], "Hi", console_session, pacing=PACING)
    _send_all(store, first.id, fail={NUMBERS[2]})
    second = store.create_campaign(
        NUMBERS, "Hi again", console_session, pacing=PACING, dedupe_days=7
    )
    rows = {r["phone"]: r for r in store.recipients(second.id)}
    for phone in NUMBERS[:2]:  # sent by the first campaign
        assert rows[phone]["status"] == RecipientStatus.DUPLICATE
        assert rows[phone]["error_code"] == "recently_messaged"
        assert f"messaged by campaign {first.id} through {console_session}" in (
            rows[phone]["error_message"]
        )
    # failed before: never messaged, so sent now
    assert [rows[p]["status"] for p in NUMBERS[2:]] == [RecipientStatus.PENDING] * 4
    # without the window, the same list is all pending
    third = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACING)
    assert {r["status"] for r in store.recipients(third.id)} == {RecipientStatus.PENDING}
    with pytest.raises(InvalidArgument, match="dedupe_days must be"):
        store.create_campaign(NUMBERS, "Hi", console_session, dedupe_days=-1)


def test_followup__exactly_the_failed_with_variants_once_and_not_the_opted_out(
    store: CampaignStateManager, console_session: str
) -> None:
    rows = [{"phone": n, "name": f"P{i}"} for i, n in enumerate(NUMBERS)]
    original = store.create_campaign(
        rows, "{Olá|Oi} {name}", console_session, pacing=PACING, variants=["Bom dia {name}"]
    )
    failing = {NUMBERS[1], NUMBERS[3], NUMBERS[4]}
    _send_all(store, original.id, fail=failing)
    store.add_optout(NUMBERS[4])  # said stop since: left out of the retry
    followup, counts = store.create_followup(original.id)
    assert counts == {"matching": 3, "opted_out": 1, "already_retried": 0}
    assert followup.retry_of == original.id and followup.total_numbers == 2
    assert (followup.message, followup.variants) == (original.message, original.variants)
    before = {r["phone"]: r for r in store.recipients(original.id)}
    after = store.recipients(followup.id)
    assert [r["phone"] for r in after] == [NUMBERS[1], NUMBERS[3]]
    for row in after:
        assert row["status"] == RecipientStatus.PENDING
        assert row["variant"] == before[row["phone"]]["variant"]
    with pytest.raises(InvalidArgument, match=r"nothing to retry.*2 already in a follow-up"):
        store.create_followup(original.id)
    with pytest.raises(InvalidArgument, match="a retry takes failed or unknown"):
        store.create_followup(original.id, statuses=["sent"])
    with pytest.raises(InvalidArgument, match="nothing to retry"):
        store.create_followup(original.id, statuses=["unknown"])
