"""Store verbs of sender protection: what the capacity counts are rebuilt from, warm-up days,
recipient-level answers that defer or skip one recipient, and what a campaign waits for.

A deferred recipient goes back to ``pending`` with ``not_before`` (claims skip it until then)
and its attempt given back: the answer was about the recipient's limits, not a failed send.
A short wait (131056, the pair rate) keeps it in its batch, which finishes once it is sent. A
day's wait (131049, Meta's per-user marketing cap) moves it to the campaign's *retry batch*,
one trailing batch added on the first such deferral (``total_batches`` grows by one), so the
list's other batches go on and finish; ``deferrals`` bounds how often, then it fails with the
reason. Both keep counters = ledger = details: a batch is counted once nothing in it is open.
"""

from __future__ import annotations

from collections.abc import Sequence

from campaigns import inputs
from campaigns.domain import ClaimedRecipient, RecipientStatus, send_id
from campaigns.store import queries
from campaigns.store.base import StoreBase
from campaigns.store.db import translate_errors


class ProtectionVerbs(StoreBase):
    """Capacity rebuilds, warm-up, deferrals and waits."""

    def sends_since(self, sessions: Sequence[str], seconds: float) -> list[tuple[float, str, str]]:
        """The recorded sends of ``sessions`` in the last ``seconds``: ``(epoch seconds, send
        id, phone)`` rows, for the capacity counts rebuilt after Redis lost them."""
        names = [inputs.session_name(s) for s in sessions]
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                queries.SENDS_SINCE, {"sessions": names, "seconds": float(seconds)}
            ).all()
        return [(float(r.at), send_id(r.campaign_id, r.position), str(r.phone)) for r in rows]

    def portfolio_sessions(self, portfolio: str) -> list[str]:
        """The Cloud API sessions sharing ``portfolio``'s messaging limit."""
        with translate_errors(), self.engine.connect() as conn:
            return list(
                conn.execute(queries.PORTFOLIO_SESSIONS, {"portfolio": portfolio}).scalars()
            )

    def warmup_age(self, session: str) -> float | None:
        """Seconds since the session's first send (its warm-up's day 0), set to now by the
        first caller; None for an unknown session."""
        with translate_errors(), self.engine.begin() as conn:
            age = conn.execute(
                queries.WARMUP_START, {"session": inputs.session_name(session)}
            ).scalar()
        return None if age is None else float(age)

    def defer_claim(
        self,
        claim: ClaimedRecipient,
        wait: float,
        *,
        max_deferrals: int,
        to_retry_batch: bool,
        error_code: str | None,
        error_message: str,
        final_message: str,
    ) -> RecipientStatus | None:
        """Send ``claim``'s recipient again ``wait`` seconds from now (``pending``; in the
        retry batch when ``to_retry_batch``), or, after ``max_deferrals`` deferrals, fail it
        with ``final_message``. None if the claim is no longer held."""
        params = {
            "campaign_id": claim.campaign_id,
            "position": claim.position,
            "attempt": claim.attempt,
        }
        with translate_errors(), self.engine.begin() as conn:
            state = conn.execute(
                queries.LOCK_RETRY_BATCH, {"campaign_id": claim.campaign_id}
            ).first()
            deferrals = conn.execute(queries.CLAIM_DEFERRALS, params).scalar()
            if state is None or deferrals is None:
                return None
            if deferrals >= max_deferrals:
                conn.execute(
                    queries.RECORD_OUTCOME,
                    {
                        **params,
                        "status": RecipientStatus.FAILED.value,
                        "message_id": None,
                        "error_code": error_code,
                        "error_message": final_message,
                    },
                )
                return RecipientStatus.FAILED
            batch = claim.batch_number
            if to_retry_batch:
                if state.retry_batch is not None and state.retry_batch >= state.current_batch:
                    batch = state.retry_batch
                else:
                    batch = conn.execute(
                        queries.ADD_RETRY_BATCH, {"campaign_id": claim.campaign_id}
                    ).scalar_one()
            conn.execute(
                queries.DEFER_CLAIM,
                {
                    **params,
                    "wait": float(wait),
                    "batch_number": batch,
                    "error_code": error_code,
                    "error_message": error_message,
                },
            )
        return RecipientStatus.PENDING

    def skip_claim(self, claim: ClaimedRecipient, error_code: str, error_message: str) -> bool:
        """End ``claim`` skipped (never sent, never retried). False if no longer held."""
        with translate_errors(), self.engine.begin() as conn:
            conn.execute(queries.LOCK_CAMPAIGN_KEY_SHARE, {"campaign_id": claim.campaign_id})
            count = conn.execute(
                queries.SKIP_CLAIM,
                {
                    "campaign_id": claim.campaign_id,
                    "position": claim.position,
                    "attempt": claim.attempt,
                    "error_code": error_code,
                    "error_message": error_message,
                },
            ).rowcount
        return bool(count)

    def next_not_before(self, campaign_id: int, batch_number: int) -> float | None:
        """Seconds until the batch's first deferred recipient may be claimed; None if none
        waits."""
        with translate_errors(), self.engine.connect() as conn:
            value = conn.execute(
                queries.NEXT_NOT_BEFORE,
                {"campaign_id": campaign_id, "batch_number": batch_number},
            ).scalar()
        return None if value is None else float(value)

    def set_waiting(self, campaign_id: int, run_token: str, reason: str, wait: float) -> bool:
        """Say what the running campaign waits for and for how long (shown by ``status``)."""
        with translate_errors(), self.engine.begin() as conn:
            count = conn.execute(
                queries.SET_WAITING,
                {
                    "campaign_id": campaign_id,
                    "run_token": run_token,
                    "reason": reason,
                    "wait": float(wait),
                },
            ).rowcount
        return bool(count)

    def clear_waiting(self, campaign_id: int) -> None:
        """The campaign sends again: it waits for nothing."""
        with translate_errors(), self.engine.begin() as conn:
            conn.execute(queries.CLEAR_WAITING, {"campaign_id": campaign_id})
