"""A campaign's latest error message, shown by every status view (the CLI's status, the API's,
the dashboard's polls), on a real PostgreSQL: the newest recorded error whatever the campaign's
size, read through ``ix_campaign_recipients_last_error`` (migration 0011) instead of the
campaign's rows."""

from __future__ import annotations

from sqlalchemy import Engine, text

from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager
from campaigns.store import queries
from tests.plans import rows_visited

PACING = Pacing(batch_size=500, min_interval=0, max_interval=0, batch_delay_min=0,
                batch_delay_max=0)  # fmt: skip
SIZE = 20_000


def test_last_error__the_newest_one_read_from_the_errors_alone(
    store: CampaignStateManager, console_session: str, sql: Engine
) -> None:
    campaign = store.create_campaign((f"+5511{900000000 + i}" for i in range(SIZE)), "Hi",
                                     console_session, pacing=PACING)  # fmt: skip
    other = store.create_campaign(["+5511911110000"], "Hi", console_session, pacing=PACING)
    with sql.begin() as conn:
        # most of the campaign sent, one row in 100 failed, each a moment after the one before
        conn.execute(text(
            "UPDATE campaign_recipients SET status = CASE WHEN position % 100 = 0 "
            "THEN 'failed'::recipient_status ELSE 'sent'::recipient_status END, "
            "error_message = CASE WHEN position % 100 = 0 THEN 'error at ' || position END, "
            "finished_at = now(), updated_at = now() + (position || ' ms')::interval "
            "WHERE campaign_id = :id AND position <= 15000"), {"id": campaign.id})  # fmt: skip
        conn.execute(text(
            "UPDATE campaign_recipients SET error_message = 'not this campaign', "
            "updated_at = now() + interval '1 hour' WHERE campaign_id = :id"),
            {"id": other.id})  # fmt: skip
    with sql.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE campaign_recipients"))

    assert store.snapshot(campaign.id).last_error == "error at 15000"
    with sql.connect() as conn:
        plan = conn.execute(
            text("EXPLAIN (ANALYZE, FORMAT JSON) " + queries.LAST_ERROR.text), {"id": campaign.id}
        ).scalar_one()
    # one index entry; the campaign's 20,000 rows (or its 150 errors) read and sorted before
    assert rows_visited(plan[0]["Plan"]) < 5
