"""What one task run does with each gateway outcome, and how it ends.

The run's state (fence, lease, deadline, streaks) lives on :class:`RunBase`; the sending loop in
:mod:`campaigns.engine` builds on it. Every outcome ends in exactly one store write for its
claim: recorded (sent, failed, unknown) or given back (pending), each retried while PostgreSQL is
briefly unreachable, because giving up early turns a sent message into an unknown, or an unsent
one into a recipient nobody will send to (invariant 3).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from campaigns import metrics
from campaigns.domain import Campaign, CampaignStatus, ClaimedRecipient, RecipientStatus, StopKind
from campaigns.errors import StoreUnavailable
from campaigns.gateway_pool import GatewayPool
from campaigns.gateways.base import Gateway, OutcomeKind, OutgoingMessage, SendOutcome
from campaigns.gateways.http import redact
from campaigns.limits import LaneLimits, defer_recipient, skip_opted_out
from campaigns.masking import mask_phone
from campaigns.pacing import SessionPacer
from campaigns.run_end import RunEnd, RunResult
from campaigns.settings import Settings
from campaigns.store import CampaignStateManager

log = logging.getLogger("campaigns.engine")

BACKOFF_BASE_S = 2.0
"""First wait after a transient gateway error; doubles per consecutive error."""
BACKOFF_CAP_S = 120.0
"""Longest wait after consecutive transient errors or throttling without a Retry-After."""
LIMITED_WAIT_S = 3600.0
"""How long a ``limited`` stop waits when its outcome does not say (adapters give the limit's end
when the gateway tells it)."""
RECORD_RETRY_WINDOW_S = 90.0
"""How long a worker keeps trying to record a send it made while PostgreSQL is unreachable
(a restart takes seconds): giving up turns a sent message into an unknown."""
RELEASE_RETRY_WINDOW_S = 90.0
"""How long a worker keeps trying to give back a claim it did not send (Redis or PostgreSQL
failed between the claim and the call): giving up leaves it to recovery, which cannot tell it
from a send cut off by a crash and makes it unknown."""

T = TypeVar("T")


class Runner(Protocol):
    """What a run uses of its runner (:class:`campaigns.engine.BatchRunner`)."""

    store: CampaignStateManager
    pacer: SessionPacer
    gateways: GatewayPool
    settings: Settings
    sleep: Callable[[float], object]
    clock: Callable[[], float]
    rng: random.Random
    heartbeat_every: float
    sent_through: dict[str, float]


def retry_store(
    runner: Runner, window: float, what: str, campaign_id: int, call: Callable[[], T]
) -> T:
    """``call()``, retried with backoff while the store is unreachable, for ``window`` seconds
    at most; then its :class:`StoreUnavailable` goes up."""
    give_up = runner.clock() + window
    delay = 0.5
    while True:
        try:
            return call()
        except StoreUnavailable:
            if runner.clock() >= give_up:
                raise
            log.warning("campaign %s: database unreachable while %s; retrying", campaign_id, what)
            runner.sleep(delay)
            delay = min(delay * 2, 5.0)


class RunBase:
    """The state of one task run, and what it does with each outcome."""

    def __init__(
        self,
        runner: Runner,
        campaign: Campaign,
        batch: int,
        token: str,
        lease: str,
        started: float,
        *,
        session: str | None = None,
        pooled: bool = False,
        halt: threading.Event | None = None,
    ) -> None:
        self.r = runner
        self.campaign = campaign
        self.batch = batch
        self.token = token
        self.lease = lease
        """This run's id: it holds the campaign's run lease (see ``take_run_lease``)."""
        self.session = session or campaign.session_name
        """The lane's session: this run claims and sends for it only."""
        self.pooled = pooled
        """Whether the campaign's other lanes run beside this one (in the same task run)."""
        self.halt = halt or threading.Event()
        """Set when a lane of the same run failed: every lane ends at its next check."""
        self.deadline = started + runner.settings.task_time_budget
        self.last_beat = started
        self.fence_lost = False
        self.sent = 0
        self.transient_streak = 0
        self.throttle_streak = 0
        # consecutive failed (or unknown) recipients, kept on the campaign row so it spans runs
        self.failure_streak = campaign.failure_streak
        self.limits = LaneLimits(self.session)
        """The lane's windows and caps (set by the runner; none by default)."""
        self.waiting = campaign.waiting_reason is not None
        """The campaign said it waits (for capacity, a window): its next send clears that."""

    def result(self, end: RunEnd, **extra: Any) -> RunResult:
        return RunResult(end, self.campaign.id, self.batch, sent=self.sent, **extra)

    def interrupt(
        self,
        reason: str,
        kind: StopKind = StopKind.DISCONNECTED,
        resume_at: datetime | None = None,
    ) -> RunResult:
        """The lane's session is down: take the lane out of the rotation with the kind of the
        stop, which decides who brings it back: the session watcher (disconnected), the sweep
        at ``resume_at`` (limited), an operator (blocked). The campaign's other lanes take its
        recipients; if it was the last lane, the campaign is interrupted with that kind."""
        stop = self.r.store.mark_lane_down(
            self.campaign.id,
            self.session,
            reason,
            kind=kind,
            resume_at=resume_at,
            run_token=self.token,
        )
        self.r.store.record_session_check(self.session, kind.value, reason)
        if stop is None:
            log.warning(
                "campaign %s: lane %s is down (%s) at batch %s: %s; the other lanes go on",
                self.campaign.id,
                self.session,
                kind.value,
                self.batch,
                reason,
            )
            return self.result(RunEnd.LANE_DOWN, reason=reason)
        reason = stop.reason
        log.warning(
            "campaign %s on %s: interrupted (%s) at batch %s: %s",
            self.campaign.id,
            self.session,
            kind.value,
            self.batch,
            reason,
        )
        return self.result(RunEnd.INTERRUPTED, reason=reason)

    def give_back(self, claim: ClaimedRecipient) -> None:
        """Nothing was sent for ``claim``: back to pending, its attempt given back, so it is
        the next one claimed (input order holds)."""
        retry_store(
            self.r,
            RELEASE_RETRY_WINDOW_S,
            "giving back an unsent claim",
            self.campaign.id,
            lambda: self.r.store.release_claim(claim, counts_as_attempt=False),
        )
        self.limits.give_back([claim])

    def send(
        self, gateway: Gateway, claim: ClaimedRecipient, message: OutgoingMessage
    ) -> RunResult | None:
        """Call the gateway once for ``claim`` and act on its outcome; a result ends the run."""
        began = time.perf_counter()
        try:
            outcome: SendOutcome = gateway.send(message)
        except Exception as exc:
            metrics.send_answered(self.session, gateway, "error", time.perf_counter() - began)
            # adapters classify every answer; one that raises may have sent (its bug may
            # lie after the request): unknown, like a cut-off send, and the run fails
            self.record(
                claim,
                RecipientStatus.UNKNOWN,
                SendOutcome(
                    OutcomeKind.AMBIGUOUS,
                    error_code="gateway_error",
                    error_message=redact(f"{type(exc).__name__}: {exc}"),
                ),
            )
            raise
        metrics.send_answered(
            self.session, gateway, outcome.kind.value, time.perf_counter() - began
        )
        return self.handle(claim, outcome)

    def handle(self, claim: ClaimedRecipient, outcome: SendOutcome) -> RunResult | None:
        """Act on the gateway's answer for ``claim``: exactly one store write for the claim;
        a result ends the lane."""
        kind = outcome.kind
        if kind is OutcomeKind.SENT:
            self.record(claim, RecipientStatus.SENT, outcome)
            if self.failure_streak:
                self.r.store.reset_failure_streak(self.campaign.id)
                self.failure_streak = 0
            self.sent += 1
            self.transient_streak = self.throttle_streak = 0
            self.sends_again()
        elif kind is OutcomeKind.DEFERRED:
            defer_recipient(self, claim, outcome)
        elif kind is OutcomeKind.OPTED_OUT:
            skip_opted_out(self, claim, outcome)
        elif kind is OutcomeKind.RECIPIENT_FAILED:
            log.info(
                "campaign %s: %s failed permanently (%s)",
                self.campaign.id,
                mask_phone(claim.phone),
                outcome.error_code,
            )
            self.record(claim, RecipientStatus.FAILED, outcome)
            return self.after_failure(outcome)
        elif kind is OutcomeKind.AMBIGUOUS:
            return self.ambiguous(claim, outcome)
        elif kind is OutcomeKind.THROTTLED:
            self.release(claim, outcome, counts_as_attempt=False)
            self.throttle_streak += 1
            wait = outcome.retry_after or self.backoff(self.throttle_streak)
            metrics.waited("throttling", wait)
            log.warning(
                "campaign %s on %s: throttled (%s); every worker of the session holds %.1fs",
                self.campaign.id,
                self.session,
                outcome.error_code,
                wait,
            )
            self.r.pacer.hold(self.session, wait)
        elif kind is OutcomeKind.TRANSIENT:
            return self.transient(claim, outcome)
        else:
            self.release(claim, outcome, counts_as_attempt=False)
            reason = outcome.error_message or "the session is down"
            if outcome.auth_failure:
                reason = f"{reason} (the gateway refused the token: fix it, then resume)"
            stop = outcome.stop_kind
            resume_at = None
            if stop is StopKind.LIMITED:
                wait = outcome.retry_after or LIMITED_WAIT_S
                resume_at = datetime.now(UTC) + timedelta(seconds=wait)
            return self.interrupt(reason, stop, resume_at)
        return None

    def sends_again(self) -> None:
        """A send went out: the campaign no longer waits for anything."""
        if self.waiting:
            self.waiting = False
            self.r.store.clear_waiting(self.campaign.id)

    def ambiguous(self, claim: ClaimedRecipient, outcome: SendOutcome) -> RunResult | None:
        """The gateway may or may not have sent: unknown, never resent by default; under the
        opt-in RESEND_UNKNOWN policy released to be sent again, up to ``max_attempts``. An
        unknown counts in the failure streak: a gateway that hangs on every send must pause
        the campaign, not turn the whole list into unknowns."""
        who = mask_phone(claim.phone)
        if self.r.settings.resend_unknown and claim.attempt < self.r.settings.max_attempts:
            log.warning(
                "campaign %s: %s may or may not have been sent (%s); sending again "
                "(RESEND_UNKNOWN)",
                self.campaign.id,
                who,
                outcome.error_message,
            )
            self.release(claim, outcome)
            return None
        log.warning(
            "campaign %s: %s may or may not have been sent (%s); marked unknown",
            self.campaign.id,
            who,
            outcome.error_message,
        )
        self.record(claim, RecipientStatus.UNKNOWN, outcome)
        return self.after_failure(outcome)

    def transient(self, claim: ClaimedRecipient, outcome: SendOutcome) -> RunResult | None:
        if claim.attempt >= self.r.settings.max_attempts:
            log.warning(
                "campaign %s: %s failed after %s attempts (%s)",
                self.campaign.id,
                mask_phone(claim.phone),
                claim.attempt,
                outcome.error_message,
            )
            self.record(claim, RecipientStatus.FAILED, outcome)
            return self.after_failure(outcome)
        self.release(claim, outcome)
        self.transient_streak += 1
        wait = outcome.retry_after or self.backoff(self.transient_streak)
        metrics.waited("backoff", wait)
        log.info(
            "campaign %s: transient gateway error (%s); retrying in %.1fs",
            self.campaign.id,
            outcome.error_message,
            wait,
        )
        self.r.pacer.hold(self.session, wait)
        return None

    def after_failure(self, outcome: SendOutcome) -> RunResult | None:
        """Count a failed or unknown recipient; pause the campaign when too many come in a
        row (a broken or hanging gateway, or a banned number, must not burn the list)."""
        self.failure_streak = self.r.store.bump_failure_streak(self.campaign.id)
        limit = self.r.settings.failure_streak_limit
        if not limit or self.failure_streak < limit:
            return None
        what = (
            "recipients in a row got no answer or failed"
            if outcome.kind is OutcomeKind.AMBIGUOUS
            else "recipients failed in a row"
        )
        reason = (
            f"{self.failure_streak} {what} (last: "
            f"{outcome.error_code or '-'} {outcome.error_message or ''}".rstrip()
            + "); paused to protect the list: check the session and the message, then resume"
        )
        self.r.store.transition(
            self.campaign.id, CampaignStatus.PAUSED, reason=reason, run_token=self.token
        )
        log.warning("campaign %s on %s: %s", self.campaign.id, self.session, reason)
        return self.result(RunEnd.STOPPED, reason=reason)

    def backoff(self, streak: int) -> float:
        return float(min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (streak - 1)))

    def release(
        self, claim: ClaimedRecipient, outcome: SendOutcome, *, counts_as_attempt: bool = True
    ) -> None:
        """Give a claim back after an answer that says nothing was sent, retrying while
        PostgreSQL is briefly unreachable."""
        retry_store(
            self.r,
            RELEASE_RETRY_WINDOW_S,
            "releasing a claim",
            self.campaign.id,
            lambda: self.r.store.release_claim(
                claim,
                error_code=outcome.error_code,
                error_message=outcome.error_message,
                counts_as_attempt=counts_as_attempt,
            ),
        )
        if outcome.kind is not OutcomeKind.AMBIGUOUS:  # it may have been sent: keep its place
            self.limits.give_back([claim])

    def record(
        self, claim: ClaimedRecipient, status: RecipientStatus, outcome: SendOutcome
    ) -> None:
        """Record a call's outcome, retrying while PostgreSQL is briefly unreachable: the
        message went out, so giving up early would turn it into an unknown."""
        retry_store(
            self.r,
            RECORD_RETRY_WINDOW_S,
            "recording",
            self.campaign.id,
            lambda: self.r.store.record_outcome(
                claim,
                status,
                message_id=outcome.message_id,
                error_code=outcome.error_code,
                error_message=outcome.error_message,
            ),
        )
