"""CampaignStateManager: the store. The only code that knows which query runs.

Each verb is one statement or one short transaction. Rows come back as frozen domain values;
driver errors come back as :class:`campaigns.errors.StoreUnavailable`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, text
from sqlalchemy.exc import IntegrityError

from campaigns import queries
from campaigns.db import create_db_engine, translate_errors
from campaigns.domain import (
    BatchResult,
    Campaign,
    CampaignStatus,
    ClaimedRecipient,
    RecipientStatus,
    SenderSession,
    StatusSnapshot,
    sources_of,
)
from campaigns.errors import (
    CampaignNotFound,
    ConfigurationError,
    EmptyNumberList,
    InvalidInput,
    InvalidMessage,
    InvalidTransition,
    NoValidNumber,
    SessionExists,
    SessionInUse,
    UnknownSession,
)
from campaigns.loading import copy_entries
from campaigns.models import CampaignBatchState, SessionRow
from campaigns.numbers import Entry, entries_from, read_number_file
from campaigns.session_config import validate_session_options
from campaigns.settings import Pacing, Settings

log = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = 4096
NumberSource = Iterable[str | Mapping[str, str] | Entry] | Path

_COUNTED = {
    RecipientStatus.SENT: "sent",
    RecipientStatus.FAILED: "failed",
    RecipientStatus.DUPLICATE: "duplicate",
    RecipientStatus.INVALID: "invalid",
    RecipientStatus.UNKNOWN: "unknown",
    RecipientStatus.SKIPPED: "skipped",
}


def _counts(rows: Iterable[Any]) -> dict[RecipientStatus, int]:
    return {RecipientStatus(row.status): int(row.n) for row in rows}


class CampaignStateManager:
    """Campaigns, their recipient ledger and sender sessions, in PostgreSQL."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        engine: Engine | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        if engine is None:
            url = database_url or self.settings.database_url
            if url is None:
                raise ConfigurationError("no database: pass database_url or set DATABASE_URL")
            engine = create_db_engine(url, self.settings.db_pool_size)
        self.engine = engine

    def dispose(self) -> None:
        """Close the pool's connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ sessions
    def add_session(
        self,
        name: str,
        gateway: str,
        base_url: str,
        token_env: str | None = None,
        **options: str,
    ) -> SenderSession:
        """Register a sender session. ``token_env`` is the *name* of the environment variable
        holding the gateway token; the token itself is never stored."""
        name = name.strip()
        if not name:
            raise InvalidInput("a session needs a name")
        options = validate_session_options(gateway, name, base_url, dict(options))
        if token_env is not None and not token_env.replace("_", "").isalnum():
            raise InvalidInput(
                f"--token-env takes the NAME of an environment variable, got {token_env!r}"
            )
        row = {
            "name": name,
            "gateway": gateway,
            "base_url": base_url.rstrip("/"),
            "token_env": token_env,
            "options": options,
        }
        try:
            with translate_errors(), self.engine.begin() as conn:
                conn.execute(insert(SessionRow).values(**row))
        except IntegrityError:
            raise SessionExists(name=name) from None
        return self.get_session(name)

    def get_session(self, name: str) -> SenderSession:
        """The session called ``name``; :class:`UnknownSession` if there is none."""
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(
                select(*SessionRow.__table__.columns).where(SessionRow.name == name)
            ).first()
        if row is None:
            raise UnknownSession(name=name)
        return SenderSession.from_row(row._mapping)

    def list_sessions(self) -> list[SenderSession]:
        """Every session, by name."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                select(*SessionRow.__table__.columns).order_by(SessionRow.name)
            ).all()
        return [SenderSession.from_row(r._mapping) for r in rows]

    def remove_session(self, name: str) -> None:
        """Remove a session that has no unfinished campaign."""
        with translate_errors(), self.engine.begin() as conn:
            busy = conn.execute(
                text(
                    "SELECT count(*) FROM campaign_batch_state WHERE session_name = :name"
                    " AND status NOT IN ('completed', 'failed', 'cancelled')"
                ),
                {"name": name},
            ).scalar_one()
            if busy:
                raise SessionInUse(name=name, unfinished_campaigns=busy)
            deleted = conn.execute(delete(SessionRow).where(SessionRow.name == name)).rowcount
        if not deleted:
            raise UnknownSession(name=name)

    def record_session_check(self, name: str, status: str, error: str | None = None) -> None:
        """Store the result of a health check of the session."""
        with translate_errors(), self.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE campaign_sessions SET connection_status = :status,"
                    " last_error = :error, last_checked_at = now() WHERE name = :name"
                ),
                {"name": name, "status": status, "error": error},
            )

    # ------------------------------------------------------------------ creation
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
            conn.execute(queries.MARK_DUPLICATES, {"campaign_id": campaign_id})
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

    # ------------------------------------------------------------------ reading
    def get_campaign(self, campaign_id: int) -> Campaign:
        """The campaign; :class:`CampaignNotFound` if there is none."""
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT * FROM campaign_batch_state WHERE id = :id"), {"id": campaign_id}
            ).first()
        if row is None:
            raise CampaignNotFound(campaign_id=campaign_id)
        return Campaign.from_row(row._mapping)

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

    def find_interrupted_campaigns(self, session: str | None = None) -> list[Campaign]:
        """Interrupted campaigns of a session (of every session when None), oldest first."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT * FROM campaign_batch_state WHERE status = 'interrupted'"
                    " AND (CAST(:session AS text) IS NULL OR session_name = :session)"
                    " ORDER BY id"
                ),
                {"session": session},
            ).all()
        return [Campaign.from_row(r._mapping) for r in rows]

    def find_stalled_campaigns(self, stall_timeout: float | None = None) -> list[Campaign]:
        """Running campaigns whose heartbeat and next-batch time are older than the timeout."""
        stall = self.settings.stall_timeout if stall_timeout is None else stall_timeout
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(queries.FIND_STALLED, {"stall": stall}).all()
        return [Campaign.from_row(r._mapping) for r in rows]

    def find_stuck_campaigns(self, older_than: timedelta = timedelta(hours=24)) -> list[Campaign]:
        """Campaigns ``running`` for longer than ``older_than`` (the original design's stuck
        report), oldest first. Unlike stalled ones they may still be sending: a person looks."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                queries.FIND_STUCK, {"older_than": older_than.total_seconds()}
            ).all()
        return [Campaign.from_row(r._mapping) for r in rows]

    def cleanup_finished(self, older_than_days: float = 30, *, dry_run: bool = False) -> int:
        """Delete completed campaigns finished more than ``older_than_days`` ago, with their
        batch details and recipient ledger. Returns how many (would be, with ``dry_run``)."""
        if older_than_days < 0:
            raise InvalidInput(f"older_than_days must not be negative, got {older_than_days}")
        params = {"days": float(older_than_days)}
        with translate_errors(), self.engine.begin() as conn:
            if dry_run:
                return int(conn.execute(queries.COUNT_FINISHED, params).scalar_one())
            deleted = conn.execute(queries.DELETE_FINISHED, params).all()
        log.info("cleanup: deleted %s completed campaigns older than %s days",
                 len(deleted), older_than_days)
        return len(deleted)

    def delete_campaign(self, campaign_id: int) -> None:
        """Delete one finished (completed, failed or cancelled) campaign with its batch details
        and ledger. :class:`InvalidTransition` for a campaign that could still send."""
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(
                text(
                    "DELETE FROM campaign_batch_state WHERE id = :id"
                    " AND status IN ('completed', 'failed', 'cancelled') RETURNING id"
                ),
                {"id": campaign_id},
            ).first()
        if row is None:
            current = self.get_campaign(campaign_id).status
            raise InvalidTransition(
                f"campaign {campaign_id} is {current.value}; only a finished campaign can be "
                "deleted (cancel it first)"
            )

    def snapshot(self, campaign_id: int) -> StatusSnapshot:
        """The campaign with its live ledger counts, for display and ETA."""
        campaign = self.get_campaign(campaign_id)
        with translate_errors(), self.engine.connect() as conn:
            counts = _counts(conn.execute(queries.CAMPAIGN_COUNTS, {"campaign_id": campaign_id}))
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

    # ------------------------------------------------------------------ the engine's verbs
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
            counts = _counts(conn.execute(queries.BATCH_COUNTS, params))
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
            tally = {name: counts.get(status, 0) for status, name in _COUNTED.items()}
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

    # ------------------------------------------------------------------ status changes
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

    def first_pending_position(self, campaign_id: int) -> int | None:
        """Input position of the first recipient still to send (for recovery logs)."""
        with translate_errors(), self.engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT min(position) FROM campaign_recipients WHERE campaign_id = :id"
                    " AND status IN ('pending', 'sending')"
                ),
                {"id": campaign_id},
            ).scalar()

    def find_due_scheduled(self) -> list[Campaign]:
        """Scheduled campaigns whose start time has come."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT * FROM campaign_batch_state WHERE status = 'scheduled'"
                    " AND next_batch_at <= now() ORDER BY id"
                )
            ).all()
        return [Campaign.from_row(r._mapping) for r in rows]

    def sessions_with_interrupted_campaigns(self) -> list[str]:
        """Names of sessions that have interrupted campaigns waiting for them."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT DISTINCT session_name FROM campaign_batch_state"
                    " WHERE status = 'interrupted' ORDER BY session_name"
                )
            ).all()
        return [r[0] for r in rows]

    def take_over_stalled(
        self, campaign: Campaign, stall_timeout: float | None = None
    ) -> str | None:
        """Swap the run token of a stalled running campaign, if it is still stalled and
        nobody took it over since ``campaign`` was read. Returns the new token or None."""
        token = str(uuid.uuid4())
        stall = self.settings.stall_timeout if stall_timeout is None else stall_timeout
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(
                queries.TAKEOVER_STALLED,
                {
                    "campaign_id": campaign.id,
                    "new_token": token,
                    "seen_token": campaign.run_token,
                    "stall": stall,
                },
            ).first()
        return token if row is not None else None

    def settle_cut_off_claims(
        self, campaign_id: int, batch_number: int | None = None, *, older_than: float = 0.0
    ) -> list[int]:
        """Settle claims left ``sending`` longer than ``older_than`` seconds (no live task
        holds them: every gateway call ends well within the stall timeout). By default they
        become ``unknown`` and are never resent; under ``settings.resend_unknown`` they go back
        to ``pending`` (at-least-once) unless they used up ``max_attempts``. Returns the
        positions that became unknown."""
        params = {
            "campaign_id": campaign_id,
            "batch_number": batch_number,
            "older_than": older_than,
            "max_attempts": self.settings.max_attempts,
        }
        with translate_errors(), self.engine.begin() as conn:
            released: list[Any] = []
            if self.settings.resend_unknown:
                released = list(conn.execute(queries.RELEASE_CUT_OFF_CLAIMS, params).all())
            rows = conn.execute(queries.MARK_CUT_OFF_CLAIMS_UNKNOWN, params).all()
        if released:
            log.warning(
                "campaign %s: %s claims cut off by a crash go back to pending and will be resent "
                "(RESEND_UNKNOWN): positions %s",
                campaign_id,
                len(released),
                ", ".join(str(r.position) for r in released),
            )
        return [r.position for r in rows]

    def first_open_batch(self, campaign_id: int) -> int | None:
        """The first batch with recipients still to send, or with no details row yet."""
        campaign = self.get_campaign(campaign_id)
        with translate_errors(), self.engine.connect() as conn:
            open_batch = conn.execute(
                queries.FIRST_OPEN_BATCH, {"campaign_id": campaign_id}
            ).scalar()
            unfinished = conn.execute(
                queries.NEXT_UNFINISHED_BATCH,
                {"campaign_id": campaign_id, "total_batches": campaign.total_batches},
            ).scalar()
        candidates = [b for b in (open_batch, unfinished) if b is not None]
        return min(candidates) if candidates else None

    # ------------------------------------------------------------------ checks
    def check_invariants(self, campaign_id: int) -> list[str]:
        """Invariant 4 (and 1): state counters = ledger counts of finished batches = sums of
        the batch details. Returns the violations, empty when all hold."""
        campaign = self.get_campaign(campaign_id)
        with translate_errors(), self.engine.connect() as conn:
            ledger = _counts(
                conn.execute(queries.FINISHED_LEDGER_COUNTS, {"campaign_id": campaign_id})
            )
            sums = conn.execute(queries.DETAILS_SUMS, {"campaign_id": campaign_id}).one()
            rows = conn.execute(
                text("SELECT count(*) FROM campaign_recipients WHERE campaign_id = :id"),
                {"id": campaign_id},
            ).scalar_one()
        state = {
            "sent": campaign.success_count,
            "failed": campaign.failed_count,
            "duplicate": campaign.duplicate_count,
            "invalid": campaign.invalid_count,
            "unknown": campaign.unknown_count,
            "skipped": campaign.skipped_count,
        }
        problems = []
        if rows != campaign.total_numbers:
            problems.append(f"ledger has {rows} rows, total_numbers is {campaign.total_numbers}")
        for status, name in _COUNTED.items():
            values = (state[name], ledger.get(status, 0), int(getattr(sums, name)))
            if len(set(values)) != 1:
                problems.append(f"{name}: state={values[0]} ledger={values[1]} details={values[2]}")
        in_flight = ledger.get(RecipientStatus.PENDING, 0) + ledger.get(RecipientStatus.SENDING, 0)
        if in_flight:
            problems.append(f"{in_flight} recipients still open in finished batches")
        if campaign.processed_numbers != sum(state.values()):
            problems.append(
                f"processed_numbers={campaign.processed_numbers}, counters sum to "
                f"{sum(state.values())}"
            )
        return problems
