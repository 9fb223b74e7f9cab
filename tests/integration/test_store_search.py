"""Searching a campaign's ledger by number on a real PostgreSQL (the dashboard's search): a full
number or its last digits, in input order, with the status filter and a limit, never another
campaign's rows, bad input refused by name; and read through the reversed-number index, so a
search costs its matches, not the campaign's size."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text

from campaigns.domain import RecipientStatus
from campaigns.errors import CampaignNotFound, InvalidArgument
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager
from campaigns.store import queries
from tests.plans import rows_visited

PACING = Pacing(batch_size=500, min_interval=0, max_interval=0, batch_delay_min=0,
                batch_delay_max=0)  # fmt: skip


def _positions(rows: list[dict[str, Any]]) -> list[int]:
    return [row["position"] for row in rows]


def test_search__full_number_or_last_digits_in_input_order(
    store: CampaignStateManager, console_session: str
) -> None:
    numbers = ["+5511912341234", "+5511900001234", "not a number", "+5511955554321",
               "+5521912341234"]  # fmt: skip
    campaign = store.create_campaign(numbers, "Hi", console_session, pacing=PACING)
    other = store.create_campaign(numbers, "Hi", console_session, pacing=PACING)

    assert _positions(store.recipients_by_number(campaign.id, "+5511900001234")) == [2]
    assert _positions(store.recipients_by_number(campaign.id, "1234")) == [1, 2, 5]
    assert _positions(store.recipients_by_number(campaign.id, "12341234")) == [1, 5]
    assert _positions(store.recipients_by_number(campaign.id, "1234", limit=2)) == [1, 2]
    assert store.recipients_by_number(campaign.id, "+5511900009999") == []
    found = store.recipients_by_number(other.id, "4321")
    assert _positions(found) == [4] and found[0]["phone"] == "+5511955554321"


def test_search__status_filter(
    store: CampaignStateManager, console_session: str, sql: Engine
) -> None:
    campaign = store.create_campaign(["+5511912341234", "+5511900001234"], "Hi", console_session,
                                     pacing=PACING)  # fmt: skip
    with sql.begin() as conn:
        conn.execute(
            text("UPDATE campaign_recipients SET status = 'sent'"
                 " WHERE campaign_id = :id AND position = 2"),
            {"id": campaign.id},
        )  # fmt: skip
    sent = store.recipients_by_number(campaign.id, "1234", RecipientStatus.SENT)
    assert _positions(sent) == [2]
    assert _positions(store.recipients_by_number(campaign.id, "1234", "pending")) == [1]


@pytest.mark.parametrize(
    "number",
    ["123", "", "  ", "12a4", "55%", "_234", "+55", "+5511 9123-41234", "1" * 16, "+" + "1" * 16],
)
def test_search__anything_but_a_number_or_its_last_digits_is_refused(
    store: CampaignStateManager, console_session: str, number: str
) -> None:
    campaign = store.create_campaign(["+5511912341234"], "Hi", console_session, pacing=PACING)
    with pytest.raises(InvalidArgument, match=r"number: a full number in E\.164"):
        store.recipients_by_number(campaign.id, number)


def test_search__unknown_campaign_and_bad_limit_refused(
    store: CampaignStateManager, console_session: str
) -> None:
    with pytest.raises(CampaignNotFound):
        store.recipients_by_number(999999, "1234")
    campaign = store.create_campaign(["+5511912341234"], "Hi", console_session, pacing=PACING)
    with pytest.raises(InvalidArgument, match="limit"):
        store.recipients_by_number(campaign.id, "1234", limit=0)


def test_search__reads_its_matches_not_the_campaign(
    store: CampaignStateManager, console_session: str, sql: Engine
) -> None:
    size = 20_000
    campaign = store.create_campaign((f"+5511{900000000 + i}" for i in range(size)), "Hi",
                                     console_session, pacing=PACING)  # fmt: skip
    with sql.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE campaign_recipients"))
    with sql.connect() as conn:
        plan = conn.execute(
            text("EXPLAIN (ANALYZE, FORMAT JSON) " + queries.RECIPIENTS_BY_NUMBER.text),
            {"id": campaign.id, "pattern": "7654%", "exact": None, "status": None,
             "after": 0, "limit": 50},
        ).scalar_one()  # fmt: skip
    # the two numbers ending in 4567 and the index entries leading to them; the whole
    # campaign (20,000 rows) read along its key before the index
    assert rows_visited(plan[0]["Plan"]) < 20


def test_a_large_new_campaign__is_paged_along_its_key_at_once(
    store: CampaignStateManager, console_session: str, sql: Engine
) -> None:
    with sql.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # statistics from before the campaign, as on a deployment whose ledger autovacuum
        # analysed before this list arrived
        conn.execute(text("ANALYZE campaign_recipients"))
    size = 60_000
    campaign = store.create_campaign((f"+5511{900000000 + i}" for i in range(size)), "Hi",
                                     console_session, pacing=PACING)  # fmt: skip
    with sql.connect() as conn:
        plan = conn.execute(
            text("EXPLAIN (ANALYZE, FORMAT JSON) " + queries.LIST_RECIPIENTS_AFTER.text),
            {"id": campaign.id, "after": 0, "status": None, "limit": 51},
        ).scalar_one()
    # the page's 51 rows along the primary key; with the old statistics, a bitmap of the
    # whole campaign (60,000 rows) and a sort, on every poll of the recipients table
    assert rows_visited(plan[0]["Plan"]) < 200
