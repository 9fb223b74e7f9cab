"""CampaignStateManager: the store. The only code that knows which query runs.

Each verb is one statement or one short transaction. Rows come back as frozen domain values;
driver errors come back as :class:`campaigns.errors.StoreUnavailable`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, insert

from campaigns import inputs
from campaigns.domain import (
    Campaign,
    CampaignStatus,
    RecipientStatus,
    StatusSnapshot,
)
from campaigns.errors import (
    ConfigurationError,
    EmptyNumberList,
    InvalidArgument,
    InvalidInput,
    NoValidNumber,
    UnknownSession,
)
from campaigns.numbers import Entry
from campaigns.settings import Pacing, Settings
from campaigns.store import queries
from campaigns.store.base import counts_by_status
from campaigns.store.consent import ConsentVerbs
from campaigns.store.db import create_db_engine, translate_errors
from campaigns.store.lanes import LaneVerbs
from campaigns.store.loading import copy_entries
from campaigns.store.models import CampaignBatchState
from campaigns.store.pacing_state import PacingStateVerbs
from campaigns.store.protection import ProtectionVerbs
from campaigns.store.recovery import RecoveryVerbs
from campaigns.store.sending import SendingVerbs
from campaigns.store.sessions import SessionVerbs
from campaigns.store.status import StatusVerbs
from campaigns.windows import SendWindow, window_from_options

log = logging.getLogger(__name__)

NumberSource = Iterable[str | Mapping[str, str] | Entry] | Path


class CampaignStateManager(
    ConsentVerbs,
    SendingVerbs,
    StatusVerbs,
    ProtectionVerbs,
    SessionVerbs,
    RecoveryVerbs,
    LaneVerbs,
    PacingStateVerbs,
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

    def create_campaign(
        self,
        numbers: NumberSource,
        message: str,
        session: str | Sequence[str],
        *,
        pacing: Pacing | None = None,
        region: str | None = None,
        template: Mapping[str, Any] | None = None,
        start_at: datetime | None = None,
        sticky: bool = True,
        window: SendWindow | None = None,
    ) -> Campaign:
        """Create a campaign and its whole ledger in one transaction.

        ``session`` is one session name or a sender pool (a list of distinct names, in lane
        order; see :mod:`campaigns.store.lanes`). With ``sticky`` (the default) and a pool,
        each recipient prefers the pool session that last sent to its phone successfully.
        ``window`` is the campaign's own send window (stored as its JSON), which its lanes obey
        on top of their sessions' windows.

        Numbers are normalized to E.164; later repeats are marked duplicate and unparseable
        entries invalid, both kept in the ledger at their input position. The campaign starts
        ``running`` with a fresh run token (or ``scheduled`` when ``start_at`` is given): the
        caller enqueues its first batch. Bad input raises a specific
        :class:`campaigns.errors.InvalidInput` and leaves nothing behind.
        """
        # Every argument is checked before the first write. The entries are checked one by
        # one as COPY consumes them (a list may hold millions), inside the transaction below,
        # which an error rolls back whole.
        if pacing is not None and not isinstance(pacing, Pacing):
            raise InvalidArgument(f"pacing must be a Pacing or None, got {type(pacing).__name__}")
        pacing = (pacing or self.settings.pacing).validate()
        region = inputs.region_code(region) or self.settings.default_region
        message = inputs.message_text(message)
        pool = inputs.session_names(session)
        template = inputs.template_spec(template)
        start_at = inputs.start_time(start_at)
        sticky = inputs.flag(sticky, "sticky")
        if window is not None and not isinstance(window, SendWindow):
            raise InvalidArgument(
                f"window must be a SendWindow or None, got {type(window).__name__}"
            )
        entries = inputs.number_entries(numbers)
        self.check_pool(pool)  # every session exists
        status = CampaignStatus.SCHEDULED if start_at else CampaignStatus.RUNNING
        token = None if start_at else str(uuid.uuid4())
        with translate_errors(), self.engine.begin() as conn:
            campaign_id = self._insert_state(
                conn, pool, message, pacing, status, token, template, start_at, window
            )
            self._insert_pool(conn, campaign_id, pool)
            counter = self._copy(conn, campaign_id, entries, pacing.batch_size, region)
            if counter.total == 0:
                raise EmptyNumberList()
            if counter.valid == 0:
                raise NoValidNumber(
                    f"none of the {counter.total} entries is a valid phone number for region "
                    f"{region}; nothing was created"
                )
            # The table's statistics know nothing of the rows just copied in: the planner
            # expects one row and picks a nested loop that re-reads the new campaign per row
            # (quadratic: 20k numbers took 87 s once other campaigns were analysed). Hash or
            # merge joins are right for a bulk load, so nested loops are off for this statement.
            conn.execute(queries.NESTLOOP_OFF)
            conn.execute(queries.MARK_DUPLICATES, {"campaign_id": campaign_id})
            conn.execute(queries.NESTLOOP_ON)
            if sticky:
                self._prefer_sticky(conn, campaign_id, pool)
            total_batches = (counter.total + pacing.batch_size - 1) // pacing.batch_size
            conn.execute(
                queries.SET_TOTALS,
                {"total": counter.total, "batches": total_batches, "id": campaign_id},
            )
        log.info(
            "campaign %s created on session %s: %s numbers (%s valid) in %s batches",
            campaign_id,
            ", ".join(pool),
            counter.total,
            counter.valid,
            total_batches,
        )
        return self.get_campaign(campaign_id)

    def _insert_state(
        self,
        conn: Connection,
        pool: Sequence[str],
        message: str,
        pacing: Pacing,
        status: CampaignStatus,
        token: str | None,
        template: Mapping[str, Any] | None,
        start_at: datetime | None,
        window: SendWindow | None = None,
    ) -> int:
        values: dict[str, Any] = {
            "session_name": pool[0],
            "sessions": list(pool),
            "message": message,
            "status": status,
            "run_token": token,
            "batch_size": pacing.batch_size,
            "min_interval": pacing.min_interval,
            "max_interval": pacing.max_interval,
            "batch_delay_min": pacing.batch_delay_min,
            "batch_delay_max": pacing.batch_delay_max,
            "template": dict(template) if template else None,
            "next_batch_at": start_at,
            # the campaign's own send window; its lanes also obey their session's
            "send_window": window.to_json() if window else None,
            # a fresh heartbeat: if the first batch is never enqueued (broker down right after
            # the commit), the sweep sees a stalled campaign and starts it
            "heartbeat_at": func.now(),
        }
        statement = insert(CampaignBatchState).values(**values).returning(CampaignBatchState.id)
        return int(conn.execute(statement).scalar_one())

    @staticmethod
    def _copy(
        conn: Connection, campaign_id: int, entries: Iterable[Entry], batch_size: int, region: str
    ) -> Any:
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        cursor = dbapi.cursor()
        try:
            return copy_entries(cursor, campaign_id, entries, batch_size, region)
        finally:
            cursor.close()

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
