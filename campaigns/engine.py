"""The batch runner: one task run of one batch, free of Celery.

Per pending recipient, in input order: wait for the session's send turn (Redis pacing), claim
(one conditional UPDATE), call the gateway once, record the outcome. A run ends when its batch is
done (the details row and the state advance in one transaction), when its time budget is spent
(the task enqueues a continuation of the same batch), when the fence is lost (another chain
took over, or an operator paused or cancelled: exit quietly), or when the session is down
(interrupt the campaign with the reason and the kind of the stop: ``disconnected`` for the
session watcher to resume on reconnect, ``limited`` for the sweep to resume at a known time,
``blocked`` for an operator). A session the worker cannot build (a missing token or option) is a
``blocked`` stop too: it would fail every recipient the same way.

**One live run per campaign.** A run first takes the campaign's run lease (a conditional UPDATE,
renewed with every heartbeat, let go when the run ends). A redelivered copy of a running task
(Redis' visibility timeout, a worker's lost broker connection) carries the same token but finds
the lease held and renewed, and exits quietly; and only the run whose details row was inserted
hands the chain on to the next batch. So a redelivery cannot fork the chain.

**Nothing lost between claim and call.** Whatever fails after a claim and before the gateway
call (Redis in the pacing refresh, PostgreSQL in the stop check's heartbeat, a message that
cannot be built), the claim is given back to pending first, retried while PostgreSQL is briefly
unreachable; only a crash of the process leaves it to recovery.

Outcomes are handled in :mod:`campaigns.outcomes`, messages built in :mod:`campaigns.messages`.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable

from campaigns.domain import (
    Campaign,
    CampaignStatus,
    ClaimedRecipient,
    RecipientStatus,
    StopKind,
)
from campaigns.errors import ConfigurationError, InvalidTransition, StoreUnavailable
from campaigns.gateway_pool import GatewayPool
from campaigns.gateways.base import Gateway, OutgoingMessage, SessionHealth
from campaigns.gateways.http import RequestNotSent, paced_sends
from campaigns.messages import build_message, render
from campaigns.outcomes import (
    RECORD_RETRY_WINDOW_S,
    RELEASE_RETRY_WINDOW_S,
    RunBase,
    RunEnd,
    RunResult,
)
from campaigns.pacing import PacingCancelled, PacingDeferred, Reservation, SessionPacer
from campaigns.settings import Settings
from campaigns.store import CampaignStateManager

__all__ = [
    "RECORD_RETRY_WINDOW_S",
    "RELEASE_RETRY_WINDOW_S",
    "BatchRunner",
    "RunEnd",
    "RunResult",
    "build_message",
    "render",
]

log = logging.getLogger("campaigns.engine")

LEASE_POLL_S = 1.0
"""How often a run that found the campaign's lease held asks again while it waits it out."""


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
        # the stop check heartbeats (and so renews the run lease, which lives a stall timeout)
        # while waiting, well inside the stall timeout
        self.heartbeat_every = min(5.0, settings.stall_timeout / 4)

    def run(self, campaign_id: int, batch_number: int, run_token: str) -> RunResult:
        """Send what is pending in the batch, within the time budget (which counts from
        here: waiting out another run's lease spends it too)."""
        started = self.clock()
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
        lease = str(uuid.uuid4())
        deadline = started + self.settings.task_time_budget
        if not self._take_lease(campaign, batch_number, run_token, lease, deadline):
            return RunResult(RunEnd.STOPPED, campaign_id, batch_number)
        run = _Run(self, campaign, batch_number, run_token, lease, started)
        try:
            return run.execute()
        except ConfigurationError as exc:
            # a session this worker cannot build (a missing token or option) would fail every
            # recipient the same way: nothing is sent, and an operator fixes it
            return run.interrupt(
                f"session {run.session} cannot be used: {exc}; fix it, then resume",
                StopKind.BLOCKED,
            )
        finally:
            self._let_go(campaign_id, lease)

    def block(self, campaign_id: int, run_token: str, reason: str) -> bool:
        """Interrupt the campaign as ``blocked`` with ``reason``, if ``run_token`` still holds
        its fence (runs kept failing on an error that is no recipient's): nothing more is
        sent, no recipient is failed, and only an operator resumes it."""
        moved = self.store.mark_interrupted(
            campaign_id, reason, run_token=run_token, kind=StopKind.BLOCKED
        )
        if moved:
            log.error("campaign %s: interrupted (blocked): %s", campaign_id, reason)
        return moved

    def _take_lease(
        self, campaign: Campaign, batch: int, token: str, lease: str, deadline: float
    ) -> bool:
        """Take the campaign's run lease, or say why not. A lease another run holds is waited
        out once, until the end it had when first seen: a holder that died, or could not let
        go (PostgreSQL down at its end), has stopped renewing it by then and this run takes
        over; a live holder has renewed it, and this run (a redelivered copy) exits."""
        seen_until: float | None = None
        while True:
            state = self.store.take_run_lease(campaign.id, batch, token, lease)
            if state.taken:
                return True
            now = self.clock()
            if not state.fenced or state.batch_done:
                log.info(
                    "campaign %s batch %s: %s; exiting",
                    campaign.id,
                    batch,
                    "the batch is finished" if state.batch_done else "not ours to run",
                )
                return False
            if seen_until is None:
                seen_until = now + state.held_for
            if now > seen_until or now >= deadline:
                log.info(
                    "campaign %s batch %s: another live run holds the campaign (this is a "
                    "redelivered copy); exiting quietly",
                    campaign.id,
                    batch,
                )
                return False
            self.sleep(min(LEASE_POLL_S, seen_until - now + 0.05, deadline - now))

    def _let_go(self, campaign_id: int, lease: str) -> None:
        """Release the lease so that the next run need not wait it out; with PostgreSQL
        unreachable it simply expires."""
        try:
            self.store.release_run_lease(campaign_id, lease)
        except StoreUnavailable as exc:
            log.warning("campaign %s: could not release the run lease (%s)", campaign_id, exc)


class _Run(RunBase):
    """The sending loop of one task run (kept off the runner so the runner is shareable)."""

    def execute(self) -> RunResult:
        c = self.campaign
        log.info(
            "campaign %s on %s: batch %s/%s starting (%s batches remaining)",
            c.id,
            self.session,
            self.batch,
            c.total_batches,
            c.total_batches - self.batch + 1,
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
                    stop=self.should_stop,
                )
                message = build_message(c, claim)
            except PacingCancelled:
                self.give_back(claim)
                if self.fence_lost:
                    return self.stopped()
                continue  # the budget ran out: the loop head continues the batch
            except BaseException:
                # Redis or PostgreSQL failed before the call: nothing was sent, so the
                # recipient goes back to pending (next in line), not to recovery as unknown
                self.give_back(claim)
                raise
            # instrumentation point (bench/sessions.py joins it with the sandbox's arrival
            # times to measure schedule lag); DEBUG only, no phone number
            log.debug(
                "campaign %s batch %s: position %s reserved slot %.6f",
                c.id,
                self.batch,
                claim.position,
                turn.slot_at,
            )
            end = self.send_paced(gateway, claim, message, turn)
            if end is not None:
                return end

    def defer(self, deferred: PacingDeferred) -> RunResult:
        """The lane's turn lies beyond this run's budget: end the run and come back for the
        turn (heartbeat first, and never later than the sweep allows)."""
        if not self.r.store.heartbeat(self.campaign.id, self.token, lease=self.lease):
            return self.stopped()
        delay = min(deferred.wait, self.r.settings.stall_timeout / 2)
        return self.result(RunEnd.CONTINUE, delay=delay)

    def send_paced(
        self,
        gateway: Gateway,
        claim: ClaimedRecipient,
        message: OutgoingMessage,
        turn: Reservation,
    ) -> RunResult | None:
        """Send, the gap holding on the wire: right before the send's bytes leave (after any
        pre-send call and the connect) the turn is re-taken if its grant got stale."""
        gate = self.r.pacer.gate(
            self.session, self.campaign.min_interval, turn, self.r.sleep, self.should_stop
        )
        try:
            with paced_sends(gate):
                return self.send(gateway, claim, message)
        except RequestNotSent as unsent:
            self.give_back(claim)  # not one byte left: the recipient is next in line again
            if not isinstance(unsent.cause, PacingCancelled):
                raise unsent.cause from unsent
            # fence lost, or the budget ran out while re-taking: the continuation goes on
            return self.stopped() if self.fence_lost else self.result(RunEnd.CONTINUE)

    def should_stop(self) -> bool:
        """Checked while waiting for a send turn: True once the run's time budget is spent
        or the fence is lost (pause, cancel, takeover, or another run took the lease; found
        by the heartbeat it stamps, which also renews this run's lease)."""
        now = self.r.clock()
        if now >= self.deadline:
            return True
        if now - self.last_beat >= self.r.heartbeat_every:
            self.last_beat = now
            if not self.r.store.heartbeat(self.campaign.id, self.token, lease=self.lease):
                self.fence_lost = True
        return self.fence_lost

    def stopped(self) -> RunResult:
        log.info(
            "campaign %s batch %s: fence lost (paused, cancelled, taken over, or its lease "
            "went to another run); stopping before the next message",
            self.campaign.id,
            self.batch,
        )
        return self.result(RunEnd.STOPPED)

    def batch_without_pending(self) -> RunResult:
        """No pending recipient was claimable: the fence is gone, or the batch is done."""
        if not self.r.store.heartbeat(self.campaign.id, self.token, lease=self.lease):
            return self.stopped()
        c = self.campaign
        delay = self.r.rng.uniform(c.batch_delay_min, c.batch_delay_max)
        try:
            result = self.r.store.finish_batch(
                c.id, self.batch, self.token, delay=delay, lease=self.lease
            )
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
        if not result.inserted:
            # another run of this batch wrote its details row: that run hands the chain on
            log.info(
                "campaign %s batch %s: already finished by another run; nothing to hand on",
                c.id,
                self.batch,
            )
            return self.result(RunEnd.STOPPED)
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
