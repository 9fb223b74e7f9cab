"""One lane of a task run: the sending loop of one session of a campaign's pool.

Per pending recipient of the batch, in input order: wait for *this session's* send turn (Redis
pacing), claim one recipient for the lane (one conditional UPDATE that stamps it with the
session, leaving another live lane's sticky recipients alone), call the gateway once, record
the outcome. A lane ends when nothing it may claim is pending (``DRAINED``: the runner finishes
the batch once every lane has), when the run's time budget is spent or its turn lies beyond it
(``CONTINUE``), when the fence is lost (``STOPPED``), or when its session is down (``LANE_DOWN``:
the other lanes take its recipients; ``INTERRUPTED`` when it was the last one).

``rate`` lanes without campaign intervals send with several requests outstanding
(:mod:`campaigns.rate_lane`); every other lane is this one-at-a-time loop.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime

from campaigns import metrics
from campaigns.domain import ClaimedRecipient, RecipientStatus, StopKind
from campaigns.errors import InvalidTransition
from campaigns.gateways.base import Gateway, OutgoingMessage, SessionHealth
from campaigns.gateways.http import RequestNotSent, paced_sends
from campaigns.limits import wait_out
from campaigns.messages import build_message, typing_plan
from campaigns.outcomes import LIMITED_WAIT_S, RunBase
from campaigns.pacing import PacingCancelled, PacingDeferred, Reservation
from campaigns.profiles import PacingProfile
from campaigns.run_end import RunEnd, RunResult

log = logging.getLogger("campaigns.engine")

HEALTH_FRESH_S = 30.0
"""A lane skips its start-of-run health check when this worker's last run of the session ended
with sends this recently."""


def conclusively_down(health: SessionHealth) -> bool:
    """Whether a health answer says the session cannot send. An unreachable gateway or an
    error answer proves nothing: the sends themselves will classify what happens."""
    if health.stop_in_force() is not None:
        return True  # connected, but WhatsApp limits the number (WAHA 475 capping, 463)
    if health.connected:
        return False
    state = health.state.lower()
    return health.auth_failure or not (
        state == "unreachable" or state.startswith(("http 5", "error"))
    )


class LaneRun(RunBase):
    """The sending loop of one lane in one task run (kept off the runner so the runner is
    shareable); ``profile`` is its session's pacing profile."""

    profile: PacingProfile = PacingProfile()

    def claim(self) -> ClaimedRecipient | None:
        return self.r.store.claim_for_lane(self.campaign.id, self.batch, self.token, self.session)

    def open_gateway(self) -> Gateway | RunResult:
        """The lane's gateway, or the lane's end when the session is known to be down. A
        session this worker sent through moments ago (the chain's previous run) is not asked
        again: its sends classify whatever changed, and a Cloud API health call costs a round
        trip per batch."""
        gateway = self.r.gateways.get(self.session)
        last = self.r.sent_through.get(self.session)
        if last is not None and self.r.clock() - last < HEALTH_FRESH_S:
            return gateway
        health = gateway.health()
        if conclusively_down(health):
            stop = health.stop_in_force()
            if stop is not None:
                until = health.until if stop is StopKind.LIMITED else None
                resume_at = None
                if stop is StopKind.LIMITED:  # a limited stop resumes at a known time
                    resume_at = datetime.fromtimestamp(until or time.time() + LIMITED_WAIT_S, UTC)
                return self.interrupt(
                    f"session {self.session} is {health.state} but {stop.value}: "
                    f"{health.detail or 'the gateway reports a limit'}",
                    stop,
                    resume_at,
                )
            # a refused token stays refused through any reconnect: an operator fixes it
            return self.interrupt(
                f"session {self.session} is not connected ({health.state}"
                f"{': ' + health.detail if health.detail else ''})",
                StopKind.BLOCKED if health.auth_failure else StopKind.DISCONNECTED,
            )
        return gateway

    def out_of_time(self, now: float) -> RunResult | None:
        """The lane's end when the run's budget is spent or another lane failed."""
        if self.halt.is_set():
            return self.result(RunEnd.CONTINUE)
        if now < self.deadline:
            return None
        log.info(
            "campaign %s batch %s on %s: time budget spent after %s sends; continuing in a "
            "new task run",
            self.campaign.id,
            self.batch,
            self.session,
            self.sent,
        )
        return self.result(RunEnd.CONTINUE)

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
        gateway = self.open_gateway()
        if isinstance(gateway, RunResult):
            return gateway
        typing, lead = typing_plan(gateway, c)
        while True:
            now = self.r.clock()
            end = self.before_turn(now)
            if end is not None:
                return end
            low, high, typing_now = self.gap_with_typing(typing, lead)
            try:
                turn = self.r.pacer.wait_for_turn(
                    self.session,
                    low,
                    high,
                    sleep=self.r.sleep,
                    stop=self.should_stop,
                    profile=self.profile,
                    lane=str(c.id),  # a continuation keeps the lane's place in the queue
                    budget=self.deadline - now,
                )
            except PacingCancelled:
                if self.fence_lost:
                    return self.stopped()
                continue  # the budget ran out while waiting: the loop head continues the batch
            except PacingDeferred as deferred:
                return self.defer(deferred)
            claim = self.claim_to_send()
            if isinstance(claim, RunResult):
                return claim
            try:
                # the claim took time after the grant: if more than the pacing guard allows,
                # queue behind grants made meanwhile so the gap still holds at the HTTP call;
                # the refreshed grant is the one the send's gate checks again
                turn = self.r.pacer.refresh(
                    self.session,
                    c.min_interval,
                    turn,
                    sleep=self.r.sleep,
                    stop=self.should_stop,
                )
                message = replace(build_message(c, claim), typing_s=typing_now)
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

    def gap_with_typing(self, typing: float, lead: float) -> tuple[float, float, float]:
        """``(low, high)`` of the gap to wait for, and the typing to show before the text.
        Typing before the text request (WAHA) is pre-send work like check-exists: the send
        gate re-takes the turn after it, so the gap on the wire never drops below
        ``min_interval``, through any interleaving of campaigns. To keep it *inside* the gap,
        the lane draws the gap g itself, types for at most g - min of it and waits for the
        rest: the text leaves g after the previous one, as without typing."""
        c = self.campaign
        if not lead:  # no typing, or typing inside the request (Evolution's delay)
            return c.min_interval, c.max_interval, typing
        gap = self.r.rng.uniform(c.min_interval, c.max_interval)
        shown = min(typing, gap - c.min_interval)
        return gap - shown, gap - shown, shown

    def before_turn(self, now: float) -> RunResult | None:
        """The lane's end before it waits for a turn: its budget is spent, another lane
        failed, or a send window of the lane is closed (it waits for it to open)."""
        end = self.out_of_time(now)
        if end is not None:
            return end
        closed = self.limits.window_wait()
        return None if closed is None else wait_out(self, *closed)

    def claim_to_send(self) -> ClaimedRecipient | RunResult:
        """The next recipient, with the session's capacity taken for it; or the lane's end:
        nothing left to claim, or no capacity (the claim goes back, next in line once
        capacity returns, and the lane waits). The window is checked again after the turn:
        a turn waited for across the window's end must not send outside it."""
        closed = self.limits.window_wait()
        if closed is not None:
            return wait_out(self, *closed)
        claim = self.claim()
        if claim is None:
            return self.drained()
        _, short = self.limits.take([claim])
        if short is None:
            return claim
        self.give_back(claim)
        return wait_out(self, *short)

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
        gate = metrics.LagGate(  # times the request leaving against the granted turn
            self.r.pacer.gate(
                self.session, self.campaign.min_interval, turn, self.r.sleep, self.should_stop
            ),
            self.session,
            turn.slot_at,
        )
        try:
            with paced_sends(gate):
                end = self.send(gateway, claim, message)
            gate.observe()
            return end
        except RequestNotSent as unsent:
            self.give_back(claim)  # not one byte left: the recipient is next in line again
            if not isinstance(unsent.cause, PacingCancelled):
                raise unsent.cause from unsent
            # fence lost, or the budget ran out while re-taking: the continuation goes on
            return self.stopped() if self.fence_lost else self.result(RunEnd.CONTINUE)

    def should_stop(self) -> bool:
        """Checked while waiting for a send turn: True once the run's time budget is spent,
        another lane of the run failed, or the fence is lost (pause, cancel, takeover, or
        another run took the lease; found by the heartbeat it stamps, which also renews this
        run's lease, and in a pool the lane's heartbeat that keeps its sticky recipients)."""
        now = self.r.clock()
        if now >= self.deadline or self.halt.is_set():
            return True
        if now - self.last_beat >= self.r.heartbeat_every:
            self.last_beat = now
            store, cid = self.r.store, self.campaign.id
            if not store.heartbeat(cid, self.token, lease=self.lease) or (
                self.pooled and not store.lane_heartbeat(cid, self.session, self.token)
            ):
                self.fence_lost = True
        return self.fence_lost

    def drained(self) -> RunResult:
        """Nothing this lane may claim is pending now: the fence is gone, or the lane is done
        with the batch (the runner finishes it once every lane is)."""
        if not self.r.store.heartbeat(self.campaign.id, self.token, lease=self.lease):
            return self.stopped()
        return self.result(RunEnd.DRAINED)

    def stopped(self) -> RunResult:
        log.info(
            "campaign %s batch %s: fence lost (paused, cancelled, taken over, or its lease "
            "went to another run); stopping before the next message",
            self.campaign.id,
            self.batch,
        )
        return self.result(RunEnd.STOPPED)

    def finish(self, sent: int, sessions: str) -> RunResult:
        """Every lane of the run drained or went down: finish the batch (details row and state
        advance in one transaction), or come back shortly while it is still open. ``sent``:
        the run's sends over all its lanes; ``sessions``: the pool, for the log."""
        self.sent = sent
        if not self.r.store.heartbeat(self.campaign.id, self.token, lease=self.lease):
            return self.stopped()
        c = self.campaign
        delay = self.r.rng.uniform(c.batch_delay_min, c.batch_delay_max)
        try:
            result = self.r.store.finish_batch(
                c.id, self.batch, self.token, delay=delay, lease=self.lease
            )
        except InvalidTransition:
            # claims of a dead task run of this batch are still open (settle the cut-off ones,
            # older than any live call could be), or recipients are kept for a sticky lane
            # that is live but not in this run, or whose lane went down since (the next run's
            # lanes take them): come back shortly
            settled = self.r.store.settle_cut_off_claims(
                c.id, self.batch, older_than=self.r.settings.stall_timeout
            )
            deferred = self.r.store.next_not_before(c.id, self.batch)
            if deferred is not None and deferred > 5.0:
                # what is left waits for its deferral (131049 a day): the campaign says so and
                # the chain comes back then (every lane drained: no lane leaves the rotation)
                self.r.store.set_waiting(
                    c.id, self.token, "waiting to send recipients deferred for their own "
                    "limits (Meta's per-user marketing cap)", deferred,
                )  # fmt: skip
                delay = min(deferred, self.r.settings.stall_timeout / 2)
                return self.result(RunEnd.CONTINUE, delay=delay)
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
            sessions,
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
            log.info("campaign %s on %s: campaign finished", c.id, sessions)
            return self.result(RunEnd.COMPLETED)
        log.info("campaign %s: waiting %.1fs before batch %s", c.id, delay, result.next_batch)
        return self.result(RunEnd.NEXT_BATCH, next_batch=result.next_batch, delay=delay)
