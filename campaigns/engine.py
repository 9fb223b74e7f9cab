"""The batch runner: one task run of one batch, free of Celery.

Per pending recipient, in input order: wait for the session's send turn (Redis pacing), claim
(one conditional UPDATE), call the gateway once, record the outcome. A run ends when its batch is
done (the details row and the state advance in one transaction), when its time budget is spent
(the task enqueues a continuation of the same batch), when the fence is lost (another chain
took over, or an operator paused or cancelled: exit quietly), or when the session is down
(interrupt the campaign with the reason and the kind of the stop: ``disconnected`` for the
session watcher to resume on reconnect, ``limited`` for the sweep to resume at a known time,
``blocked`` for an operator).

The module is longer than the house's ~400 lines because one task run is one piece of state
(its fence, deadline, streaks and gateway) that every outcome branch reads and changes; split
across modules, each branch would take that whole state as arguments.
"""

from __future__ import annotations

import enum
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from campaigns.domain import (
    Campaign,
    CampaignStatus,
    ClaimedRecipient,
    RecipientStatus,
    StopKind,
)
from campaigns.errors import InvalidTransition, StoreUnavailable
from campaigns.gateway_pool import GatewayPool
from campaigns.gateways.base import (
    OutcomeKind,
    OutgoingMessage,
    SendOutcome,
    SessionHealth,
    TemplateSpec,
)
from campaigns.gateways.http import RequestNotSent, paced_sends
from campaigns.masking import mask_phone
from campaigns.pacing import PacingCancelled, PacingDeferred, Reservation, SessionPacer
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
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RunEnd(enum.StrEnum):
    """Why a task run ended; the task maps each to what it enqueues."""

    NEXT_BATCH = "next_batch"
    CONTINUE = "continue"
    COMPLETED = "completed"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class RunResult:
    end: RunEnd
    campaign_id: int
    batch_number: int
    next_batch: int | None = None
    delay: float = 0.0
    sent: int = 0
    reason: str | None = None


def render(text: str, variables: Mapping[str, Any] | None) -> str:
    """Fill ``{name}`` placeholders from the recipient's variables; unknown ones stay as
    written (a message with braces is not an error)."""
    if not variables:
        return text
    return _PLACEHOLDER.sub(lambda m: str(variables.get(m.group(1), m.group(0))), text)


def build_message(campaign: Campaign, claim: ClaimedRecipient) -> OutgoingMessage:
    """The outgoing message of one recipient: text, or a Cloud API template, filled in."""
    variables = claim.variables or {}
    if campaign.template:
        components = _render_any(campaign.template.get("components", []), variables)
        spec = TemplateSpec(
            name=str(campaign.template["name"]),
            language=str(campaign.template.get("language", "en_US")),
            components=tuple(components),
        )
        return OutgoingMessage(to=claim.phone, template=spec)
    return OutgoingMessage(to=claim.phone, text=render(campaign.message, variables))


def _render_any(value: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return render(value, variables)
    if isinstance(value, list):
        return [_render_any(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _render_any(v, variables) for k, v in value.items()}
    return value


def _conclusively_down(health: SessionHealth) -> bool:
    """Whether a health answer says the session cannot send. An unreachable gateway or an
    error answer proves nothing: the sends themselves will classify what happens."""
    if health.connected:
        return False
    state = health.state.lower()
    return health.auth_failure or not (
        state == "unreachable" or state.startswith(("http 5", "error"))
    )


class BatchRunner:
    """Runs one batch of one campaign for at most ``settings.task_time_budget`` seconds."""

    def __init__(
        self,
        store: CampaignStateManager,
        pacer: SessionPacer,
        gateways: GatewayPool,
        settings: Settings,
        *,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.pacer = pacer
        self.gateways = gateways
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        # the stop check heartbeats while waiting, well inside the stall timeout
        self.heartbeat_every = min(5.0, settings.stall_timeout / 4)

    def run(self, campaign_id: int, batch_number: int, run_token: str) -> RunResult:
        """Send what is pending in the batch, within the time budget."""
        campaign = self.store.get_campaign(campaign_id)
        if campaign.status is not CampaignStatus.RUNNING or campaign.run_token != run_token:
            log.info(
                "campaign %s batch %s: not ours to run (status %s, token changed=%s); exiting",
                campaign_id,
                batch_number,
                campaign.status.value,
                campaign.run_token != run_token,
            )
            return RunResult(RunEnd.STOPPED, campaign_id, batch_number)
        return _Run(self, campaign, batch_number, run_token).execute()

    def fail_batch(
        self, campaign_id: int, batch_number: int, run_token: str, error: str
    ) -> RunResult:
        """A batch kept failing with an unexpected error: its claims left open by the failed
        runs become unknown (the error may have struck after a gateway call), its pending
        recipients fail with the error, its details row says so, and the chain goes on with
        the next batch. A failing batch never ends the campaign."""
        store = self.store
        unknown = store.settle_cut_off_claims(campaign_id, batch_number, older_than=0.0)
        failed = store.fail_open_recipients(campaign_id, batch_number, run_token, error)
        campaign = store.get_campaign(campaign_id)
        delay = self.rng.uniform(campaign.batch_delay_min, campaign.batch_delay_max)
        result = store.finish_batch(
            campaign_id, batch_number, run_token, delay=delay, error_message=error[:2000]
        )
        log.error(
            "campaign %s batch %s failed for good (%s): %s recipients failed, %s unknown; "
            "the campaign goes on",
            campaign_id, batch_number, error, failed, len(unknown),
        )
        if result is None:
            return RunResult(RunEnd.STOPPED, campaign_id, batch_number)
        if result.completed:
            return RunResult(RunEnd.COMPLETED, campaign_id, batch_number)
        return RunResult(
            RunEnd.NEXT_BATCH, campaign_id, batch_number, next_batch=result.next_batch,
            delay=delay,
        )


class _Run:
    """The state of one task run (kept off the runner so the runner is shareable)."""

    def __init__(self, runner: BatchRunner, campaign: Campaign, batch: int, token: str) -> None:
        self.r = runner
        self.campaign = campaign
        self.batch = batch
        self.token = token
        self.session = campaign.session_name
        self.deadline = runner.clock() + runner.settings.task_time_budget
        self.last_beat = runner.clock()
        self.fence_lost = False
        self.sent = 0
        self.transient_streak = 0
        self.throttle_streak = 0
        # consecutive failed recipients, kept on the campaign row so it spans task runs
        self.failure_streak = campaign.failure_streak

    def result(self, end: RunEnd, **extra: Any) -> RunResult:
        return RunResult(end, self.campaign.id, self.batch, sent=self.sent, **extra)

    def execute(self) -> RunResult:
        c = self.campaign
        remaining = c.total_batches - self.batch + 1
        log.info(
            "campaign %s on %s: batch %s/%s starting (%s batches remaining)",
            c.id,
            self.session,
            self.batch,
            c.total_batches,
            remaining,
        )
        gateway = self.r.gateways.get(self.session)
        health = gateway.health()
        if _conclusively_down(health):
            # a refused token stays refused through any reconnect: an operator fixes it
            return self.interrupt(
                f"session {self.session} is not connected ({health.state}"
                f"{': ' + health.detail if health.detail else ''})",
                StopKind.BLOCKED if health.auth_failure else StopKind.DISCONNECTED,
            )
        while True:
            now = self.r.clock()
            if now >= self.deadline:
                log.info(
                    "campaign %s batch %s: time budget spent after %s sends; continuing "
                    "in a new task run",
                    c.id,
                    self.batch,
                    self.sent,
                )
                return self.result(RunEnd.CONTINUE)
            try:
                turn = self.r.pacer.wait_for_turn(
                    self.session,
                    c.min_interval,
                    c.max_interval,
                    sleep=self.r.sleep,
                    stop=self.should_stop,
                    lane=str(c.id),  # a continuation keeps the lane's place in the queue
                    budget=self.deadline - now,
                )
            except PacingCancelled:
                if self.fence_lost:
                    return self.stopped()
                continue  # the budget ran out while waiting: the loop head continues the batch
            except PacingDeferred as deferred:
                return self.defer(deferred)
            claim = self.r.store.claim_recipient(c.id, self.batch, self.token)
            if claim is None:
                return self.batch_without_pending()
            try:
                # the claim took time after the grant: if more than the pacing guard allows,
                # queue behind grants made meanwhile so the gap still holds at the HTTP call
                self.r.pacer.refresh(
                    self.session,
                    c.min_interval,
                    turn,
                    sleep=self.r.sleep,
                    stop=lambda: self.should_stop() and self.fence_lost,
                )
            except PacingCancelled:
                self.r.store.release_claim(claim, counts_as_attempt=False)
                return self.stopped()
            # instrumentation point (bench/sessions.py joins it with the sandbox's arrival
            # times to measure schedule lag); DEBUG only, no phone number
            log.debug(
                "campaign %s batch %s: position %s reserved slot %.6f",
                c.id,
                self.batch,
                claim.position,
                turn.slot_at,
            )
            end = self.send_paced(gateway, claim, turn)
            if end is not None:
                return end

    def defer(self, deferred: PacingDeferred) -> RunResult:
        """The lane's turn lies beyond this run's budget: end the run and come back for the
        turn (heartbeat first, and never later than the sweep allows)."""
        if not self.r.store.heartbeat(self.campaign.id, self.token):
            return self.stopped()
        delay = min(deferred.wait, self.r.settings.stall_timeout / 2)
        return self.result(RunEnd.CONTINUE, delay=delay)

    def send_paced(
        self, gateway: Any, claim: ClaimedRecipient, turn: Reservation
    ) -> RunResult | None:
        """Send, the gap holding on the wire: right before the send's bytes leave (after any
        pre-send call and the connect) the turn is re-taken if its grant got stale."""
        gate = self.r.pacer.gate(
            self.session,
            self.campaign.min_interval,
            turn,
            self.r.sleep,
            lambda: self.should_stop() and self.fence_lost,
        )
        try:
            with paced_sends(gate):
                return self.send(gateway, claim)
        except RequestNotSent as unsent:
            # not one byte left: the recipient is next in line again
            self.r.store.release_claim(claim, counts_as_attempt=False)
            if not isinstance(unsent.cause, PacingCancelled):
                raise unsent.cause from unsent
            return self.stopped()

    def should_stop(self) -> bool:
        """Checked while waiting for a send turn: True once the fence is lost (pause, cancel,
        takeover; found by the heartbeat it stamps) or the run's time budget is spent."""
        now = self.r.clock()
        if now - self.last_beat >= self.r.heartbeat_every:
            self.last_beat = now
            if not self.r.store.heartbeat(self.campaign.id, self.token):
                self.fence_lost = True
        return self.fence_lost or now >= self.deadline

    def stopped(self) -> RunResult:
        log.info(
            "campaign %s batch %s: fence lost (paused, cancelled or taken over); "
            "stopping before the next message",
            self.campaign.id,
            self.batch,
        )
        return self.result(RunEnd.STOPPED)

    def interrupt(
        self,
        reason: str,
        kind: StopKind = StopKind.DISCONNECTED,
        resume_at: datetime | None = None,
    ) -> RunResult:
        """Stop the campaign with the kind of the stop, which decides who resumes it: the
        session watcher (disconnected), the sweep at ``resume_at`` (limited), an operator
        (blocked)."""
        self.r.store.mark_interrupted(
            self.campaign.id, reason, run_token=self.token, kind=kind, resume_at=resume_at
        )
        self.r.store.record_session_check(self.session, kind.value, reason)
        log.warning(
            "campaign %s on %s: interrupted (%s) at batch %s: %s",
            self.campaign.id,
            self.session,
            kind.value,
            self.batch,
            reason,
        )
        return self.result(RunEnd.INTERRUPTED, reason=reason)

    def send(self, gateway: Any, claim: ClaimedRecipient) -> RunResult | None:
        outcome: SendOutcome = gateway.send(build_message(self.campaign, claim))
        kind = outcome.kind
        who = mask_phone(claim.phone)
        if kind is OutcomeKind.SENT:
            self.record(claim, RecipientStatus.SENT, outcome)
            if self.failure_streak:
                self.r.store.reset_failure_streak(self.campaign.id)
                self.failure_streak = 0
            self.sent += 1
            self.transient_streak = self.throttle_streak = 0
        elif kind is OutcomeKind.RECIPIENT_FAILED:
            log.info(
                "campaign %s: %s failed permanently (%s)", self.campaign.id, who, outcome.error_code
            )
            self.record(claim, RecipientStatus.FAILED, outcome)
            return self.after_failure(outcome)
        elif kind is OutcomeKind.AMBIGUOUS:
            self.ambiguous(claim, outcome)
        elif kind is OutcomeKind.THROTTLED:
            self.r.store.release_claim(
                claim, error_code=outcome.error_code, error_message=outcome.error_message,
                counts_as_attempt=False,
            )
            self.throttle_streak += 1
            wait = outcome.retry_after or self.backoff(self.throttle_streak)
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
            self.r.store.release_claim(
                claim, error_code=outcome.error_code, error_message=outcome.error_message,
                counts_as_attempt=False,
            )
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

    def ambiguous(self, claim: ClaimedRecipient, outcome: SendOutcome) -> None:
        """The gateway may or may not have sent: unknown, never resent by default; under the
        opt-in RESEND_UNKNOWN policy released to be sent again, up to ``max_attempts``."""
        who = mask_phone(claim.phone)
        if self.r.settings.resend_unknown and claim.attempt < self.r.settings.max_attempts:
            log.warning(
                "campaign %s: %s may or may not have been sent (%s); sending again "
                "(RESEND_UNKNOWN)",
                self.campaign.id,
                who,
                outcome.error_message,
            )
            self.r.store.release_claim(
                claim, error_code=outcome.error_code, error_message=outcome.error_message
            )
            return
        log.warning(
            "campaign %s: %s may or may not have been sent (%s); marked unknown",
            self.campaign.id,
            who,
            outcome.error_message,
        )
        self.record(claim, RecipientStatus.UNKNOWN, outcome)

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
        self.r.store.release_claim(
            claim, error_code=outcome.error_code, error_message=outcome.error_message
        )
        self.transient_streak += 1
        wait = outcome.retry_after or self.backoff(self.transient_streak)
        log.info(
            "campaign %s: transient gateway error (%s); retrying in %.1fs",
            self.campaign.id,
            outcome.error_message,
            wait,
        )
        self.r.pacer.hold(self.session, wait)
        return None

    def after_failure(self, outcome: SendOutcome) -> RunResult | None:
        """Count a failed recipient; pause the campaign when too many fail in a row (a broken
        gateway or a banned number must not burn the whole contact list)."""
        self.failure_streak = self.r.store.bump_failure_streak(self.campaign.id)
        limit = self.r.settings.failure_streak_limit
        if not limit or self.failure_streak < limit:
            return None
        reason = (
            f"{self.failure_streak} recipients failed in a row (last: "
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

    def record(
        self, claim: ClaimedRecipient, status: RecipientStatus, outcome: SendOutcome
    ) -> None:
        """Record a call's outcome, retrying while PostgreSQL is briefly unreachable: the
        message went out, so giving up early would turn it into an unknown."""
        give_up = self.r.clock() + RECORD_RETRY_WINDOW_S
        delay = 0.5
        while True:
            try:
                self.r.store.record_outcome(
                    claim,
                    status,
                    message_id=outcome.message_id,
                    error_code=outcome.error_code,
                    error_message=outcome.error_message,
                )
                return
            except StoreUnavailable:
                if self.r.clock() >= give_up:
                    raise
                log.warning(
                    "campaign %s: database unreachable while recording; retrying", self.campaign.id
                )
                self.r.sleep(delay)
                delay = min(delay * 2, 5.0)

    def batch_without_pending(self) -> RunResult:
        """No pending recipient was claimable: the fence is gone, or the batch is done."""
        if not self.r.store.heartbeat(self.campaign.id, self.token):
            return self.stopped()
        c = self.campaign
        delay = self.r.rng.uniform(c.batch_delay_min, c.batch_delay_max)
        try:
            result = self.r.store.finish_batch(c.id, self.batch, self.token, delay=delay)
        except InvalidTransition:
            # claims of a dead task run of this batch are still open: settle the cut-off ones
            # (older than any live call could be) and come back shortly
            settled = self.r.store.settle_cut_off_claims(
                c.id, self.batch, older_than=self.r.settings.stall_timeout
            )
            if settled:
                log.warning(
                    "campaign %s batch %s: %s claims cut off by a crash are unknown "
                    "(positions %s; not resent)",
                    c.id,
                    self.batch,
                    len(settled),
                    ", ".join(map(str, settled)),
                )
            return self.result(RunEnd.CONTINUE, delay=min(5.0, self.r.settings.stall_timeout))
        if result is None:
            return self.stopped()
        counts = result.counts
        done = c.total_batches if result.completed else self.batch
        log.info(
            "campaign %s on %s: batch %s done: sent %s, failed %s, duplicates %s, invalid %s, "
            "unknown %s; progress %.0f%% (%s/%s batches)",
            c.id,
            self.session,
            self.batch,
            counts.get(RecipientStatus.SENT, 0),
            counts.get(RecipientStatus.FAILED, 0),
            counts.get(RecipientStatus.DUPLICATE, 0),
            counts.get(RecipientStatus.INVALID, 0),
            counts.get(RecipientStatus.UNKNOWN, 0),
            100 * done / max(c.total_batches, 1),
            done,
            c.total_batches,
        )
        if result.completed:
            log.info("campaign %s on %s: campaign finished", c.id, self.session)
            return self.result(RunEnd.COMPLETED)
        log.info("campaign %s: waiting %.1fs before batch %s", c.id, delay, result.next_batch)
        return self.result(RunEnd.NEXT_BATCH, next_batch=result.next_batch, delay=delay)
