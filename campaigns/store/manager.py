"""CampaignStateManager: the store. The only code that knows which query runs.

Each verb is one statement or one short transaction. Rows come back as frozen domain values;
driver errors come back as :class:`campaigns.errors.StoreUnavailable`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, insert, text

from campaigns.domain import (
    BatchResult,
    Campaign,
    CampaignStatus,
    ClaimedRecipient,
    RecipientStatus,
    StatusSnapshot,
    sources_of,
)
from campaigns.errors import (
    ConfigurationError,
    EmptyNumberList,
    InvalidMessage,
    InvalidTransition,
    NoValidNumber,
)
from campaigns.numbers import Entry, entries_from, read_number_file
from campaigns.settings import Pacing, Settings
from campaigns.store import queries
from campaigns.store.base import COUNTED_STATUSES, counts_by_status
from campaigns.store.db import create_db_engine, translate_errors
from campaigns.store.loading import copy_entries
from campaigns.store.models import CampaignBatchState
from campaigns.store.recovery import RecoveryVerbs
from campaigns.store.sessions import SessionVerbs

log = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = 4096
NumberSource = Iterable[str | Mapping[str, str] | Entry] | Path


class CampaignStateManager(SessionVerbs, RecoveryVerbs):
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
        session: str,
        *,
        pacing: Pacing | None = None,
        region: str | None = None,
        template: Mapping[str, Any] | None = None,
        start_at: datetime | None = None,
    ) -> Campaign:
        """Create a campaign and its whole ledger in one transaction.

        Numbers are normalized to E.164; later repeats are marked duplicate and unparseable
        entries invalid, both kept in the ledger at their input position. The campaign starts
        ``running`` with a fresh run token (or ``scheduled`` when ``start_at`` is given): the
        caller enqueues its first batch. Bad input raises a specific
        :class:`campaigns.errors.InvalidInput` and leaves nothing behind.
        """
        pacing = (pacing or self.settings.pacing).validate()
        region = (region or self.settings.default_region).upper()
        if not message or not message.strip():
            raise InvalidMessage("the message is empty; nothing was created")
        if len(message) > MAX_MESSAGE_LENGTH:
            raise InvalidMessage(
                f"the message has {len(message)} characters, over WhatsApp's limit of "
                f"{MAX_MESSAGE_LENGTH}; nothing was created"
            )
        self.get_session(session)
        entries = read_number_file(numbers) if isinstance(numbers, Path) else entries_from(numbers)
        status = CampaignStatus.SCHEDULED if start_at else CampaignStatus.RUNNING
        token = None if start_at else str(uuid.uuid4())
        with translate_errors(), self.engine.begin() as conn:
            campaign_id = self._insert_state(
                conn, session, message, pacing, status, token, template, start_at
            )
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
            conn.execute(text("SET LOCAL enable_nestloop = off"))
            conn.execute(queries.MARK_DUPLICATES, {"campaign_id": campaign_id})
            conn.execute(text("SET LOCAL enable_nestloop = on"))
            total_batches = (counter.total + pacing.batch_size - 1) // pacing.batch_size
            conn.execute(
                text(
                    "UPDATE campaign_batch_state SET total_numbers = :total,"
                    " total_batches = :batches, current_batch = 1 WHERE id = :id"
                ),
                {"total": counter.total, "batches": total_batches, "id": campaign_id},
            )
        log.info(
            "campaign %s created on session %s: %s numbers (%s valid) in %s batches",
            campaign_id,
            session,
            counter.total,
            counter.valid,
            total_batches,
        )
        return self.get_campaign(campaign_id)

    def _insert_state(
        self,
        conn: Connection,
        session: str,
        message: str,
        pacing: Pacing,
        status: CampaignStatus,
        token: str | None,
        template: Mapping[str, Any] | None,
        start_at: datetime | None,
    ) -> int:
        values: dict[str, Any] = {
            "session_name": session,
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
            # a fresh heartbeat: if the first batch is never enqueued (broker down right after
            # the commit), the sweep sees a stalled campaign and starts it
            "heartbeat_at": text("now()"),
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
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT * FROM campaign_batch_state"
                    " WHERE (CAST(:status AS campaign_status) IS NULL OR status = :status)"
                    " AND (CAST(:session AS text) IS NULL OR session_name = :session)"
                    " ORDER BY id DESC LIMIT :limit"
                ),
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
                text("SELECT count(*) FROM campaign_batch_details WHERE campaign_id = :id"),
                {"id": campaign_id},
            ).scalar_one()
            last_error = conn.execute(
                text(
                    "SELECT error_message FROM campaign_recipients WHERE campaign_id = :id"
                    " AND error_message IS NOT NULL ORDER BY updated_at DESC NULLS LAST LIMIT 1"
                ),
                {"id": campaign_id},
            ).scalar()
        return StatusSnapshot(
            campaign=campaign,
            counts=counts,
            batches_done=int(batches_done),
            last_error=campaign.interrupt_reason or last_error,
            remaining_batches=campaign.total_batches - int(batches_done),
        )

    def recipients(
        self, campaign_id: int, status: RecipientStatus | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Ledger rows of a campaign in input order (for operators and tests)."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT position, batch_number, phone, raw, variables, status, attempts,"
                    " gateway_message_id, error_code, error_message, claimed_at, finished_at"
                    " FROM campaign_recipients WHERE campaign_id = :id"
                    " AND (CAST(:status AS recipient_status) IS NULL OR status = :status)"
                    " ORDER BY position LIMIT :limit"
                ),
                {"id": campaign_id, "status": status.value if status else None, "limit": limit},
            ).all()
        return [dict(r._mapping) for r in rows]

    def claim_recipient(
        self, campaign_id: int, batch_number: int, run_token: str
    ) -> ClaimedRecipient | None:
        """Claim the next pending recipient of a batch (pending → sending), if the caller
        still holds the campaign's fence. None when the batch has nothing left to claim or
        the fence was lost (check :meth:`heartbeat` to tell which)."""
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(
                queries.CLAIM_NEXT,
                {"campaign_id": campaign_id, "batch_number": batch_number, "run_token": run_token},
            ).first()
        if row is None:
            return None
        return ClaimedRecipient(
            campaign_id=campaign_id,
            position=row.position,
            batch_number=row.batch_number,
            phone=row.phone,
            variables=row.variables,
            attempt=row.attempts,
        )

    def record_outcome(
        self,
        claim: ClaimedRecipient,
        status: RecipientStatus,
        *,
        message_id: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> bool:
        """Record the outcome of a claim's gateway call (sent, failed or unknown). False if
        the claim is no longer held (recovery marked it unknown meanwhile)."""
        if status not in (RecipientStatus.SENT, RecipientStatus.FAILED, RecipientStatus.UNKNOWN):
            raise ValueError(f"a claim ends sent, failed or unknown, not {status}")
        with translate_errors(), self.engine.begin() as conn:
            count = conn.execute(
                queries.RECORD_OUTCOME,
                {
                    "campaign_id": claim.campaign_id,
                    "position": claim.position,
                    "attempt": claim.attempt,
                    "status": status.value,
                    "message_id": message_id,
                    "error_code": error_code,
                    "error_message": error_message,
                },
            ).rowcount
        return bool(count)

    def release_claim(
        self,
        claim: ClaimedRecipient,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        counts_as_attempt: bool = True,
    ) -> bool:
        """Give a claim back (sending → pending): nothing was sent. A release that is no
        fault of the recipient (throttled, session down, cancelled) does not use up one of its
        MAX_ATTEMPTS tries: ``counts_as_attempt=False`` gives the attempt back."""
        with translate_errors(), self.engine.begin() as conn:
            count = conn.execute(
                queries.RELEASE_CLAIM,
                {
                    "campaign_id": claim.campaign_id,
                    "position": claim.position,
                    "attempt": claim.attempt,
                    "error_code": error_code,
                    "error_message": error_message,
                    "give_back": 0 if counts_as_attempt else 1,
                },
            ).rowcount
        return bool(count)

    def heartbeat(self, campaign_id: int, run_token: str) -> bool:
        """Stamp the heartbeat; False means the caller lost the fence and must stop."""
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(
                queries.HEARTBEAT, {"campaign_id": campaign_id, "run_token": run_token}
            ).first()
        return row is not None

    def finish_batch(
        self,
        campaign_id: int,
        batch_number: int,
        run_token: str,
        *,
        delay: float = 0.0,
        error_message: str | None = None,
    ) -> BatchResult | None:
        """Write the batch's details row and advance the state counters, in one transaction.

        The next batch is derived from the ledger; when there is none the campaign becomes
        ``completed``. ``delay`` seconds go into ``next_batch_at``. Idempotent: finishing a
        batch twice counts it once. None if the caller lost the fence.
        """
        params = {"campaign_id": campaign_id, "batch_number": batch_number}
        with translate_errors(), self.engine.begin() as conn:
            state = conn.execute(
                queries.LOCK_FENCED, {"campaign_id": campaign_id, "run_token": run_token}
            ).first()
            if state is None:
                return None
            counts = counts_by_status(conn.execute(queries.BATCH_COUNTS, params))
            still_open = counts.get(RecipientStatus.PENDING, 0) + counts.get(
                RecipientStatus.SENDING, 0
            )
            if still_open:
                raise InvalidTransition(
                    "the batch still has recipients to send",
                    campaign_id=campaign_id,
                    batch_number=batch_number,
                    open=still_open,
                )
            tally = {name: counts.get(status, 0) for status, name in COUNTED_STATUSES.items()}
            inserted = conn.execute(
                queries.INSERT_BATCH_DETAILS,
                {
                    **params,
                    **tally,
                    "success": error_message is None,
                    "error_message": error_message,
                },
            ).first()
            next_batch = conn.execute(
                queries.NEXT_UNFINISHED_BATCH,
                {"campaign_id": campaign_id, "total_batches": state.total_batches},
            ).scalar()
            completed = next_batch is None
            if inserted is not None:
                conn.execute(
                    queries.ADVANCE_STATE,
                    {
                        "campaign_id": campaign_id,
                        "processed": sum(tally.values()),
                        **tally,
                        "current_batch": state.total_batches if completed else next_batch,
                        "completed": completed,
                        "delay": float(delay),
                    },
                )
        return BatchResult(
            campaign_id=campaign_id,
            batch_number=batch_number,
            counts=counts,
            next_batch=next_batch,
            completed=completed,
        )

    def bump_failure_streak(self, campaign_id: int) -> int:
        """One more recipient failed in a row; returns the streak."""
        with translate_errors(), self.engine.begin() as conn:
            return int(
                conn.execute(
                    text(
                        "UPDATE campaign_batch_state SET failure_streak = failure_streak + 1"
                        " WHERE id = :id RETURNING failure_streak"
                    ),
                    {"id": campaign_id},
                ).scalar_one()
            )

    def reset_failure_streak(self, campaign_id: int) -> None:
        """A recipient was sent: the failure streak is over."""
        with translate_errors(), self.engine.begin() as conn:
            conn.execute(
                text("UPDATE campaign_batch_state SET failure_streak = 0 WHERE id = :id"),
                {"id": campaign_id},
            )

    def fail_open_recipients(
        self, campaign_id: int, batch_number: int, run_token: str, error: str
    ) -> int:
        """Mark the still-pending recipients of a batch failed with ``error`` (a batch that
        kept failing): the chain goes on with the next batch."""
        with translate_errors(), self.engine.begin() as conn:
            if (
                conn.execute(
                    queries.HEARTBEAT, {"campaign_id": campaign_id, "run_token": run_token}
                ).first()
                is None
            ):
                return 0
            return int(
                conn.execute(
                    text(
                        "UPDATE campaign_recipients SET status = 'failed', error_code = 'batch',"
                        " error_message = :error, finished_at = now(), updated_at = now()"
                        " WHERE campaign_id = :id AND batch_number = :batch"
                        " AND status = 'pending'"
                    ),
                    {"id": campaign_id, "batch": batch_number, "error": error[:2000]},
                ).rowcount
            )

    def transition(
        self,
        campaign_id: int,
        target: CampaignStatus,
        *,
        reason: str | None = None,
        run_token: str | None = None,
        new_token: str | None = None,
    ) -> bool:
        """Move a campaign to ``target`` if its status allows it (and, with ``run_token``, if
        the caller holds the fence). False when the guard did not match."""
        sources = sorted(s.value for s in sources_of(target))
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(
                queries.TRANSITION,
                {
                    "campaign_id": campaign_id,
                    "target": target.value,
                    "sources": "{" + ",".join(sources) + "}",
                    "set_reason": reason is not None or target is CampaignStatus.RUNNING,
                    "reason": reason,
                    "new_token": new_token,
                    "finished": target.finished,
                    "check_token": run_token is not None,
                    "run_token": run_token,
                },
            ).first()
        return row is not None

    def _transition_or_raise(
        self, campaign_id: int, target: CampaignStatus, reason: str | None = None
    ) -> None:
        if not self.transition(campaign_id, target, reason=reason):
            current = self.get_campaign(campaign_id).status
            raise InvalidTransition(
                f"campaign {campaign_id} is {current.value}; it cannot become {target.value}"
            )

    def mark_interrupted(self, campaign_id: int, reason: str, run_token: str | None = None) -> bool:
        """Interrupt a running campaign with a reason (session down, error threshold)."""
        return self.transition(
            campaign_id, CampaignStatus.INTERRUPTED, reason=reason, run_token=run_token
        )

    def mark_completed(self, campaign_id: int, run_token: str | None = None) -> bool:
        """Mark a running campaign completed."""
        return self.transition(campaign_id, CampaignStatus.COMPLETED, run_token=run_token)

    def mark_failed(self, campaign_id: int, reason: str, run_token: str | None = None) -> bool:
        """Mark a campaign failed for good, with the reason."""
        return self.transition(
            campaign_id, CampaignStatus.FAILED, reason=reason, run_token=run_token
        )

    def pause(self, campaign_id: int, reason: str = "paused by operator") -> None:
        """Pause: the running task stops before its next message."""
        self._transition_or_raise(campaign_id, CampaignStatus.PAUSED, reason)

    def cancel(self, campaign_id: int, reason: str = "cancelled by operator") -> None:
        """Cancel for good: nothing more is sent."""
        self._transition_or_raise(campaign_id, CampaignStatus.CANCELLED, reason)

    def start_run(self, campaign_id: int) -> str:
        """Put a paused, interrupted or scheduled campaign back to running under a new run
        token, which fences off any task of an earlier chain. Returns the token."""
        token = str(uuid.uuid4())
        if not self.transition(campaign_id, CampaignStatus.RUNNING, new_token=token):
            current = self.get_campaign(campaign_id).status
            raise InvalidTransition(
                f"campaign {campaign_id} is {current.value}; only a paused, interrupted or "
                "scheduled campaign can be resumed"
            )
        return token

    def restart_run(self, campaign_id: int) -> str:
        """Give a running campaign a new run token whatever its heartbeat (operator resume):
        the old chain stops before its next message. Returns the token."""
        token = str(uuid.uuid4())
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(
                text(
                    "UPDATE campaign_batch_state SET run_token = :token, heartbeat_at = now(),"
                    " updated_at = now() WHERE id = :id AND status = 'running' RETURNING id"
                ),
                {"id": campaign_id, "token": token},
            ).first()
        if row is None:
            raise InvalidTransition(f"campaign {campaign_id} is not running")
        return token
