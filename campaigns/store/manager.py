"""CampaignStateManager: the store. The only code that knows which query runs.

Each verb is one statement or one short transaction. Rows come back as frozen domain values;
driver errors come back as :class:`campaigns.errors.StoreUnavailable`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from campaigns import inputs
from campaigns.domain import (
    Campaign,
    CampaignStatus,
    RecipientStatus,
    StatusSnapshot,
)
from campaigns.errors import (
    ConfigurationError,
    InvalidInput,
    UnknownSession,
)
from campaigns.numbers import Entry
from campaigns.settings import Settings
from campaigns.store import queries
from campaigns.store.base import counts_by_status
from campaigns.store.consent import ConsentVerbs
from campaigns.store.creation import CreationVerbs
from campaigns.store.db import create_db_engine, translate_errors
from campaigns.store.lanes import LaneVerbs
from campaigns.store.pacing_state import PacingStateVerbs
from campaigns.store.pages import PageVerbs
from campaigns.store.protection import ProtectionVerbs
from campaigns.store.receipts import ReceiptVerbs
from campaigns.store.recovery import RecoveryVerbs
from campaigns.store.sending import SendingVerbs
from campaigns.store.sessions import SessionVerbs
from campaigns.store.status import StatusVerbs
from campaigns.store.timeline import TimelineVerbs
from campaigns.store.tokens import TokenVerbs
from campaigns.windows import SendWindow, window_from_options

log = logging.getLogger(__name__)

NumberSource = Iterable[str | Mapping[str, str] | Entry] | Path


class CampaignStateManager(
    CreationVerbs,
    ConsentVerbs,
    SendingVerbs,
    StatusVerbs,
    ProtectionVerbs,
    TimelineVerbs,
    SessionVerbs,
    RecoveryVerbs,
    LaneVerbs,
    PacingStateVerbs,
    ReceiptVerbs,
    TokenVerbs,
    PageVerbs,
):
    """Campaigns, their recipient ledger and sender sessions, in PostgreSQL."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        engine: Engine | None = None,
        settings: Settings | None = None,
        pre_ping: bool = True,
    ) -> None:
        self.settings = settings or Settings.from_env()
        if engine is None:
            url = database_url or self.settings.database_url
            if url is None:
                raise ConfigurationError("no database: pass database_url or set DATABASE_URL")
            engine = create_db_engine(url, self.settings.db_pool_size, pre_ping=pre_ping)
        self.engine = engine

    def dispose(self) -> None:
        """Close the pool's connections."""
        self.engine.dispose()

    def list_campaigns(
        self, status: CampaignStatus | None = None, session: str | None = None, limit: int = 100
    ) -> list[Campaign]:
        """Campaigns, newest first, filtered by status and session."""
        status = inputs.optional_member(status, "status", CampaignStatus)
        session = inputs.optional_name(session, "session")
        limit = inputs.positive_int(limit, "limit")
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                queries.LIST_CAMPAIGNS,
                {"status": status.value if status else None, "session": session, "limit": limit},
            ).all()
        return [Campaign.from_row(r._mapping) for r in rows]

    def snapshot(self, campaign_id: int) -> StatusSnapshot:
        """The campaign with its live ledger counts, for display and ETA."""
        campaign = self.get_campaign(campaign_id)
        with translate_errors(), self.engine.connect() as conn:
            counts = counts_by_status(
                conn.execute(queries.CAMPAIGN_COUNTS, {"campaign_id": campaign_id})
            )
            batches_done = conn.execute(
                queries.COUNT_BATCHES_DONE,
                {"id": campaign_id},
            ).scalar_one()
            last_error = conn.execute(
                queries.LAST_ERROR,
                {"id": campaign_id},
            ).scalar()
        windows = self._lane_windows(campaign)
        return StatusSnapshot(
            campaign=campaign,
            counts=counts,
            batches_done=int(batches_done),
            last_error=campaign.interrupt_reason or last_error,
            remaining_batches=campaign.total_batches - int(batches_done),
            lane_windows=windows,
            lane_plans=self.lane_plans(campaign, windows),
            day_seconds=self.settings.day_seconds,
        )

    def _lane_windows(self, campaign: Campaign) -> tuple[tuple[SendWindow, ...], ...]:
        """For each lane of the pool, the windows it obeys: the campaign's and its session's.
        A window that no longer parses (a session edited by hand) is left out with a warning
        rather than breaking every status read."""
        own: tuple[SendWindow, ...] = ()
        try:
            if campaign.send_window:
                own = (SendWindow.from_json(campaign.send_window),)
        except InvalidInput as exc:
            log.warning("campaign %s: send window ignored: %s", campaign.id, exc)
        groups = []
        for name in campaign.sessions:
            try:
                window = window_from_options(self.get_session(name).options)
            except (InvalidInput, UnknownSession) as exc:
                log.warning("session %s: send window ignored: %s", name, exc)
                window = None
            groups.append(own + ((window,) if window else ()))
        return tuple(groups)

    def iter_recipients(
        self, campaign_id: int, status: RecipientStatus | None = None, *, page: int = 5000
    ) -> Iterator[dict[str, Any]]:
        """Every ledger row of a campaign in input order, read ``page`` rows at a time along
        the primary key (for exports: memory stays flat for a million rows). Each row carries
        the session that sent it."""
        campaign_id = inputs.campaign_id(campaign_id)
        status = inputs.optional_member(status, "status", RecipientStatus)
        page = inputs.positive_int(page, "page")
        after = 0
        while True:
            with translate_errors(), self.engine.connect() as conn:
                rows = conn.execute(
                    queries.LIST_RECIPIENTS_AFTER,
                    {
                        "id": campaign_id,
                        "after": after,
                        "status": status.value if status else None,
                        "limit": page,
                    },
                ).all()
            for row in rows:
                yield dict(row._mapping)
            if len(rows) < page:
                return
            after = rows[-1].position

    def recipients(
        self, campaign_id: int, status: RecipientStatus | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Ledger rows of a campaign in input order (for operators and tests)."""
        campaign_id = inputs.campaign_id(campaign_id)
        status = inputs.optional_member(status, "status", RecipientStatus)
        limit = None if limit is None else inputs.positive_int(limit, "limit")
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                queries.LIST_RECIPIENTS,
                {"id": campaign_id, "status": status.value if status else None, "limit": limit},
            ).all()
        return [dict(r._mapping) for r in rows]

    def outcome_reasons(self, campaign_id: int) -> dict[RecipientStatus, dict[str, int]]:
        """A campaign's skipped and duplicate recipients counted by reason (their error code):
        skipped ``opted_out`` (on the list when claimed) or ``131050`` (the person stopped
        marketing); duplicate ``repeated`` (earlier in the list) or ``recently_messaged`` (the
        duplicate window). One pass over the campaign's rows, like its status counts."""
        campaign_id = inputs.campaign_id(campaign_id)
        reasons: dict[RecipientStatus, dict[str, int]] = {
            RecipientStatus.SKIPPED: {}, RecipientStatus.DUPLICATE: {},
        }  # fmt: skip
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(queries.OUTCOME_REASONS, {"campaign_id": campaign_id}).all()
        for row in rows:
            status = RecipientStatus(row.status)
            code = row.error_code or ("repeated" if status is RecipientStatus.DUPLICATE else "-")
            reasons[status][code] = reasons[status].get(code, 0) + int(row.n)
        return reasons
