"""What the web service's ``/metrics`` reads from the store at scrape time
(:class:`campaigns.web.routers.metrics.StoreCollector`): two GROUP BYs, no row per campaign.

A function over the store's engine rather than a verb of the manager, so that the figures stay
beside the one caller that needs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine

from campaigns.store.db import translate_errors

CAMPAIGNS_BY_STATUS = text(
    "SELECT status::text, coalesce(interrupt_kind::text, ''), waiting_reason IS NOT NULL,"
    " count(*), max(extract(epoch FROM now() - coalesce(heartbeat_at, updated_at)))"
    " FROM campaign_batch_state GROUP BY 1, 2, 3"
)
"""Every campaign by status, stop kind (interrupted ones) and whether it says it waits; with the
age of the stalest heartbeat in each group."""
LANES_DOWN = text(
    "SELECT l.session_name, l.stop_kind::text, count(*) FROM campaign_lanes l"
    " JOIN campaign_batch_state c ON c.id = l.campaign_id"
    " WHERE l.state = 'down' AND c.status IN ('running', 'interrupted')"
    " GROUP BY 1, 2"
)
"""Down lanes of unfinished campaigns, by session and kind of stop (a session blocked shows
here whether or not its campaigns have other lanes still sending)."""


@dataclass(frozen=True, slots=True)
class CampaignGroup:
    status: str
    stop_kind: str  # '' unless interrupted
    waiting: bool
    count: int
    stalest_heartbeat_s: float | None


@dataclass(frozen=True, slots=True)
class LanesDown:
    session: str
    stop_kind: str
    count: int


def scrape_figures(engine: Engine) -> tuple[list[CampaignGroup], list[LanesDown]]:
    """Campaigns by status and down lanes by session, in one connection;
    :class:`campaigns.errors.StoreUnavailable` when PostgreSQL does not answer."""
    with translate_errors(), engine.connect() as conn:
        campaigns = [
            CampaignGroup(str(s), str(k), bool(w), int(n), None if a is None else float(a))
            for s, k, w, n, a in conn.execute(CAMPAIGNS_BY_STATUS)
        ]
        lanes = [LanesDown(str(s), str(k), int(n)) for s, k, n in conn.execute(LANES_DOWN)]
    return campaigns, lanes
