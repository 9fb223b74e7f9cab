"""The store's shared base: its engine and settings, and reading one campaign. The verbs live
in :mod:`campaigns.store.manager` (creation, the engine's verbs, status changes),
:mod:`campaigns.store.sessions` and :mod:`campaigns.store.recovery`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine

from campaigns import inputs
from campaigns.domain import (
    Campaign,
    RecipientStatus,
)
from campaigns.errors import CampaignNotFound
from campaigns.settings import Settings
from campaigns.store import queries
from campaigns.store.db import translate_errors

# The settled statuses that batch details and state counters count, and their column stems.
COUNTED_STATUSES = {
    RecipientStatus.SENT: "sent",
    RecipientStatus.FAILED: "failed",
    RecipientStatus.DUPLICATE: "duplicate",
    RecipientStatus.INVALID: "invalid",
    RecipientStatus.UNKNOWN: "unknown",
    RecipientStatus.SKIPPED: "skipped",
}


def counts_by_status(rows: Iterable[Any]) -> dict[RecipientStatus, int]:
    """Rows of (status, n) as a mapping."""
    return {RecipientStatus(row.status): int(row.n) for row in rows}


class StoreBase:
    """What every group of store verbs shares."""

    engine: Engine
    settings: Settings

    def get_campaign(self, campaign_id: int) -> Campaign:
        """The campaign; :class:`CampaignNotFound` if there is none."""
        campaign_id = inputs.campaign_id(campaign_id)  # not a driver error for "7" or 2**40
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(
                queries.GET_CAMPAIGN, {"id": campaign_id}
            ).first()
        if row is None:
            raise CampaignNotFound(campaign_id=campaign_id)
        return Campaign.from_row(row._mapping)
