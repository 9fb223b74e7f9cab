"""Store verbs for recovery and upkeep: stalled, stuck, scheduled and interrupted campaigns,
takeover, cut-off claims, cleanup, and the invariant check."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from campaigns import inputs
from campaigns.domain import (
    Campaign,
    RecipientStatus,
    StopKind,
)
from campaigns.errors import (
    InvalidTransition,
)
from campaigns.store import queries
from campaigns.store.base import COUNTED_STATUSES, StoreBase, counts_by_status
from campaigns.store.db import translate_errors
from campaigns.store.events import write_recovered

log = logging.getLogger(__name__)


class RecoveryVerbs(StoreBase):
    """Finding campaigns that need a hand, taking them over, and checking the ledger."""

    def find_interrupted_campaigns(
        self, session: str | None = None, *, kind: StopKind | None = None
    ) -> list[Campaign]:
        """Interrupted campaigns of a session (of every session when None), oldest first;
        with ``kind``, only those whose stop is of that kind (the session watcher and the
        webhooks resume only ``disconnected`` ones)."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                queries.FIND_INTERRUPTED,
                {"session": session, "kind": kind.value if kind else None},
            ).all()
        return [Campaign.from_row(r._mapping) for r in rows]

    def find_due_limited(self) -> list[Campaign]:
        """Campaigns interrupted by a limit (``limited``) whose ``resume_at`` has come."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(queries.FIND_DUE_LIMITED).all()
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
        days = inputs.finite_number(
            older_than_days, "older_than_days", unit="days", maximum=inputs.MAX_DAYS
        )
        dry_run = inputs.flag(dry_run, "dry_run")
        params = {"days": days}
        with translate_errors(), self.engine.begin() as conn:
            if dry_run:
                return int(conn.execute(queries.COUNT_FINISHED, params).scalar_one())
            deleted = conn.execute(queries.DELETE_FINISHED, params).all()
        log.info(
            "cleanup: deleted %s completed campaigns older than %s days",
            len(deleted),
            older_than_days,
        )
        return len(deleted)

    def delete_campaign(self, campaign_id: int) -> None:
        """Delete one finished (completed, failed or cancelled) campaign with its batch details
        and ledger. :class:`InvalidTransition` for a campaign that could still send."""
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(
                queries.DELETE_ONE_FINISHED,
                {"id": campaign_id},
            ).first()
        if row is None:
            current = self.get_campaign(campaign_id).status
            raise InvalidTransition(
                f"campaign {campaign_id} is {current.value}; only a finished campaign can be "
                "deleted (cancel it first)"
            )

    def first_pending_position(self, campaign_id: int) -> int | None:
        """Input position of the first recipient still to send (for recovery logs)."""
        with translate_errors(), self.engine.connect() as conn:
            return conn.execute(
                queries.FIRST_PENDING_POSITION,
                {"id": campaign_id},
            ).scalar()

    def find_due_scheduled(self) -> list[Campaign]:
        """Scheduled campaigns whose start time has come."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                queries.FIND_DUE_SCHEDULED
            ).all()
        return [Campaign.from_row(r._mapping) for r in rows]

    def sessions_with_interrupted_campaigns(self, kind: StopKind | None = None) -> list[str]:
        """Names of sessions that have interrupted campaigns (of ``kind``, when given) waiting
        for them."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                queries.SESSIONS_WITH_INTERRUPTED, {"kind": kind.value if kind else None}
            ).all()
        return [r[0] for r in rows]

    def take_over_stalled(
        self,
        campaign: Campaign,
        stall_timeout: float | None = None,
        *,
        trigger: str = "sweep",
        reason: str | None = None,
    ) -> str | None:
        """Swap the run token of a stalled running campaign, if it is still stalled and
        nobody took it over since ``campaign`` was read. Returns the new token or None. The
        timeline records the recovery with ``trigger`` (the beat's sweep or a worker's start)
        and ``reason``, in the same transaction."""
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
            if row is not None:
                write_recovered(conn, campaign.id, trigger, reason)
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

    def check_invariants(self, campaign_id: int) -> list[str]:
        """Invariant 4 (and 1): state counters = ledger counts of finished batches = sums of
        the batch details. Returns the violations, empty when all hold."""
        campaign = self.get_campaign(campaign_id)
        with translate_errors(), self.engine.connect() as conn:
            ledger = counts_by_status(
                conn.execute(queries.FINISHED_LEDGER_COUNTS, {"campaign_id": campaign_id})
            )
            sums = conn.execute(queries.DETAILS_SUMS, {"campaign_id": campaign_id}).one()
            rows = conn.execute(
                queries.COUNT_LEDGER_ROWS,
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
        for status, name in COUNTED_STATUSES.items():
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
