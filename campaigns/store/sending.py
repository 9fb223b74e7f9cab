"""Store verbs of the sending loop: the run lease, claim a recipient, record or release its
claim, heartbeat, finish a batch, and the failure streak. Each is one statement or one short
transaction, fenced by the caller's run token (and, for the lease's holder, by its lease)."""

from __future__ import annotations

from collections.abc import Sequence

from campaigns.domain import BatchResult, ClaimedRecipient, RecipientStatus, RunLease
from campaigns.errors import InvalidTransition
from campaigns.store import queries
from campaigns.store.base import COUNTED_STATUSES, StoreBase, counts_by_status
from campaigns.store.db import translate_errors
from campaigns.store.events import batch_text, write_event
from campaigns.store.receipts import apply_parked
from campaigns.timeline import EventKind


class SendingVerbs(StoreBase):
    """What a batch task run asks of the store, message by message."""

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
            variant=row.variant,
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
            # Serialise with finish_batch, which holds the campaign row FOR UPDATE from its count
            # to its commit: a late record of a claim settled as cut off waits here, and its
            # UPDATE (a new snapshot) then sees the details row and leaves the counted status
            # alone. KEY SHARE does not conflict with the heartbeats and claims of live tasks.
            conn.execute(queries.LOCK_CAMPAIGN_KEY_SHARE, {"campaign_id": claim.campaign_id})
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
            if count and message_id:
                # a receipt can beat the record of its send: parked, it is applied now
                apply_parked(conn, [message_id])
        return bool(count)

    def record_sent_many(self, sent: Sequence[tuple[ClaimedRecipient, str | None]]) -> int:
        """Record a group of claims of one campaign as sent, with their gateway message ids,
        in one transaction (as :meth:`record_outcome` does one). Returns how many were still
        held."""
        if not sent:
            return 0
        campaign_id = sent[0][0].campaign_id
        if any(claim.campaign_id != campaign_id for claim, _ in sent):
            raise ValueError("record_sent_many takes the claims of one campaign")
        with translate_errors(), self.engine.begin() as conn:
            conn.execute(queries.LOCK_CAMPAIGN_KEY_SHARE, {"campaign_id": campaign_id})
            count = conn.execute(
                queries.RECORD_SENT_MANY,
                {
                    "campaign_id": campaign_id,
                    "positions": [claim.position for claim, _ in sent],
                    "attempts": [claim.attempt for claim, _ in sent],
                    "message_ids": [message_id for _, message_id in sent],
                },
            ).rowcount
            if count:
                apply_parked(conn, [message_id for _, message_id in sent])
        return int(count)

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

    def take_run_lease(
        self, campaign_id: int, batch_number: int, run_token: str, lease: str
    ) -> RunLease:
        """Take the campaign's run lease for the task run ``lease`` (a fresh id per run): the
        right to send and to enqueue what comes next, held by one live run at a time. Taken if
        ``run_token`` holds the fence, the batch has no details row yet, and the lease is free,
        already this run's, or expired. It lasts the stall timeout and each heartbeat with
        ``lease`` renews it, so a run that stops renewing (dead, or cut off from PostgreSQL)
        loses it within that time. Sender pools extend this to one lease per lane, keyed by
        (campaign, session): the same verbs with a session."""
        params = {
            "campaign_id": campaign_id,
            "batch_number": batch_number,
            "run_token": run_token,
            "lease": lease,
            "ttl": self.settings.stall_timeout,
        }
        with translate_errors(), self.engine.begin() as conn:
            if conn.execute(queries.TAKE_RUN_LEASE, params).first() is not None:
                return RunLease(taken=True)
            row = conn.execute(
                queries.RUN_LEASE_STATE,
                {"campaign_id": campaign_id, "batch_number": batch_number, "run_token": run_token},
            ).first()
        if row is None:
            return RunLease(taken=False, fenced=False)
        return RunLease(
            taken=False,
            fenced=bool(row.fenced),
            batch_done=bool(row.batch_done),
            held_for=float(row.held_for),
        )

    def release_run_lease(self, campaign_id: int, lease: str) -> bool:
        """Let go of the run lease (if ``lease`` still holds it): the next run of the campaign
        can take it at once instead of waiting for it to expire."""
        with translate_errors(), self.engine.begin() as conn:
            count = conn.execute(
                queries.RELEASE_RUN_LEASE, {"campaign_id": campaign_id, "lease": lease}
            ).rowcount
        return bool(count)

    def heartbeat(self, campaign_id: int, run_token: str, *, lease: str | None = None) -> bool:
        """Stamp the heartbeat; False means the caller lost the fence and must stop. With
        ``lease``, also renew the caller's run lease: False as well once another run took it."""
        params: dict[str, object] = {"campaign_id": campaign_id, "run_token": run_token}
        statement = queries.HEARTBEAT
        if lease is not None:
            params.update(lease=lease, ttl=self.settings.stall_timeout)
            statement = queries.HEARTBEAT_LEASED
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(statement, params).first()
        return row is not None

    def finish_batch(
        self,
        campaign_id: int,
        batch_number: int,
        run_token: str,
        *,
        delay: float = 0.0,
        error_message: str | None = None,
        lease: str | None = None,
    ) -> BatchResult | None:
        """Write the batch's details row and advance the state counters, in one transaction.

        The next batch is derived from the ledger; when there is none the campaign becomes
        ``completed``. ``delay`` seconds go into ``next_batch_at``. Idempotent: finishing a
        batch twice counts it once, and only the call that wrote the row gets ``inserted``
        (only it may enqueue the next batch). ``lease`` is let go in the same transaction, so
        the next batch's run never waits for it. None if the caller lost the fence.
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
                # the timeline, with the change it records (only the finish that counted it)
                text = batch_text(tally, state.total_batches, batch_number)
                write_event(conn, campaign_id, EventKind.BATCH_DONE, detail=text,
                            batch_number=batch_number)  # fmt: skip
                if completed:
                    write_event(conn, campaign_id, EventKind.COMPLETED)
            if lease is not None:
                conn.execute(
                    queries.RELEASE_RUN_LEASE, {"campaign_id": campaign_id, "lease": lease}
                )
        return BatchResult(
            campaign_id=campaign_id,
            batch_number=batch_number,
            counts=counts,
            next_batch=next_batch,
            completed=completed,
            inserted=inserted is not None,
        )

    def bump_failure_streak(self, campaign_id: int) -> int:
        """One more recipient failed in a row; returns the streak."""
        with translate_errors(), self.engine.begin() as conn:
            return int(
                conn.execute(
                    queries.BUMP_FAILURE_STREAK,
                    {"id": campaign_id},
                ).scalar_one()
            )

    def reset_failure_streak(self, campaign_id: int) -> None:
        """A recipient was sent: the failure streak is over."""
        with translate_errors(), self.engine.begin() as conn:
            conn.execute(
                queries.RESET_FAILURE_STREAK,
                {"id": campaign_id},
            )
