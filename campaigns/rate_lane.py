"""A ``rate`` lane: up to ``in_flight`` requests outstanding, at the session's token bucket.

The one-at-a-time loop waits for each answer before the next claim, so a Cloud API number
answering in 250 ms sends 4 messages/s of the 80 it may. This lane keeps ``in_flight`` sends
outstanding: it books as many of the session's send slots as it has free threads
(``SessionPacer.wait_for_rate``: slots 1 / rate apart, a few ahead), claims that many
recipients in one statement (``claim_several_for_lane``, in input order), and hands each to a
thread of its own pool, which waits for its slot, calls the gateway and records the outcome.

**One request first.** A session this worker has not sent through in the last HEALTH_FRESH_S
gets a single request, and the lane opens up to ``in_flight`` once it is answered sent: a
refused template, a blocked number or a bad token costs one call, not a burst.

**The bound on unknowns.** A claim is taken only for a request about to leave, and never more
than ``in_flight`` are open, so a crash (kill -9 of the worker) leaves at most ``in_flight``
recipients of this lane ``sending``, which recovery settles as ``unknown``; nothing else is at
risk. The bound is the session's ``in_flight`` option.

The send threads only wait for their slot and call the gateway; the lane's own thread settles
their answers: the sent ones in one statement per group (``record_sent_many``: a group is what
came back since the lane last looked, so records cost a fraction of a transaction each at high
rates), every other one as the one-at-a-time loop does (streaks, holds, the lane's stop). A
send's thread is free for the next claim only once its answer is recorded, so the bound above
holds. Once an answer ends the lane (its session is down, the campaign paused), no more claims
are taken; the sends already out are waited for and settled.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from campaigns import metrics
from campaigns.domain import ClaimedRecipient, RecipientStatus
from campaigns.gateways.base import Gateway, OutcomeKind, OutgoingMessage, SendOutcome
from campaigns.gateways.http import redact
from campaigns.lane import HEALTH_FRESH_S, LaneRun
from campaigns.limits import wait_out
from campaigns.messages import build_message
from campaigns.outcomes import RECORD_RETRY_WINDOW_S, retry_store
from campaigns.pacing import PacingCancelled, PacingDeferred
from campaigns.run_end import RunEnd, RunResult

log = logging.getLogger("campaigns.engine")

COLLECT_POLL_S = 0.5
"""How long the lane waits for a send to finish before it checks its budget and fence again."""

# which end wins when sends of one lane end it differently
_PRECEDENCE = (RunEnd.INTERRUPTED, RunEnd.LANE_DOWN, RunEnd.STOPPED, RunEnd.CONTINUE)


@dataclass(frozen=True, slots=True)
class _Answer:
    """What one send thread brings back: the gateway's outcome, or the error it raised."""

    claim: ClaimedRecipient
    outcome: SendOutcome | None
    error: BaseException | None = None


class RateLaneRun(LaneRun):
    """The sending loop of one ``rate`` lane (see the module docstring)."""

    def execute(self) -> RunResult:
        c = self.campaign
        log.info(
            "campaign %s on %s: batch %s/%s starting (rate %g/s, %s in flight)",
            c.id,
            self.session,
            self.batch,
            c.total_batches,
            self.profile.rate,
            self.profile.in_flight,
        )
        gateway = self.open_gateway()
        if isinstance(gateway, RunResult):
            return gateway
        self._ends: list[RunResult] = []
        self._error: BaseException | None = None
        slots = self.profile.in_flight
        # a session this worker has not sent through lately gets one request first: a refused
        # template or a blocked number then costs one call, not a burst of them
        last = self.r.sent_through.get(self.session)
        self._probing = last is None or self.r.clock() - last >= HEALTH_FRESH_S
        pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=f"rate-{self.session}")
        open_sends: set[Future[_Answer]] = set()
        try:
            end = self._loop(gateway, pool, open_sends, slots)
        finally:
            # the sends already out are answered and settled before the lane ends
            while open_sends:
                self._settle(open_sends, None)
            pool.shutdown(wait=True)
        if self._error is not None:
            raise self._error
        ends = [*self._ends, end]
        return min(ends, key=lambda r: _PRECEDENCE.index(r.end) if r.end in _PRECEDENCE else 9)

    def _loop(
        self,
        gateway: Gateway,
        pool: ThreadPoolExecutor,
        open_sends: set[Future[_Answer]],
        slots: int,
    ) -> RunResult:
        while True:
            self._settle(open_sends, 0)
            if self._error is not None:
                return self.result(RunEnd.CONTINUE)  # execute raises it once all are settled
            if self._ends:
                return self._ends[0]
            now = self.r.clock()
            end = self.before_turn(now)  # the sends still out are settled by execute
            if end is not None:
                return end
            free = (1 if self._probing else slots) - len(open_sends)
            if free <= 0:
                self._settle(open_sends, COLLECT_POLL_S)
                continue
            try:
                grant = self.r.pacer.wait_for_rate(
                    self.session,
                    self.profile,
                    free,
                    self.r.sleep,
                    self.should_stop,
                    budget=self.deadline - now,
                )
            except PacingCancelled:
                if self.fence_lost:
                    return self.stopped()
                continue  # budget spent (or another lane failed): the loop head ends the lane
            except PacingDeferred as deferred:
                return self.defer(deferred)
            claims = self.r.store.claim_several_for_lane(
                self.campaign.id, self.batch, self.token, self.session, limit=grant.tokens
            )
            if not claims:
                if open_sends:
                    # an answer still out may give its recipient back (throttled): wait for
                    # them before deciding the lane has nothing left
                    self._settle(open_sends, None)
                    continue
                return self.drained()
            claims, short = self._within_capacity(claims)
            booked = time.monotonic()
            leave_at = [booked + grant.delay(i) for i in range(len(claims))]
            self._dispatch(gateway, pool, open_sends, claims, leave_at)
            if short is not None:
                return short

    def _within_capacity(
        self, claims: list[ClaimedRecipient]
    ) -> tuple[list[ClaimedRecipient], RunResult | None]:
        """The claims the session has capacity for; the others go back (next in line once it
        returns) and the lane's end says it waits."""
        granted, short = self.limits.take(claims)
        for unsent in claims[granted:]:
            self.give_back(unsent)
        return claims[:granted], None if short is None else wait_out(self, *short)

    def _dispatch(
        self,
        gateway: Gateway,
        pool: ThreadPoolExecutor,
        open_sends: set[Future[_Answer]],
        claims: list[ClaimedRecipient],
        slots: list[float],
    ) -> None:
        """Hand each claim to a send thread, to leave no earlier than its slot (monotonic
        time); a message that cannot be built gives back every claim not handed over yet
        (nothing was sent for them) before the error goes up."""
        for index, claim in enumerate(claims):
            try:
                message = build_message(self.campaign, claim)
            except BaseException:
                for unsent in claims[index:]:
                    self.give_back(unsent)
                raise
            open_sends.add(
                pool.submit(_send_one, gateway, claim, message, slots[index], self.session)
            )

    def _settle(self, open_sends: set[Future[_Answer]], timeout: float | None) -> None:
        """Record the answers that came back (waiting up to ``timeout`` for one; None: until
        one does): the sent ones in one group, the others one by one."""
        if not open_sends:
            return
        done, _ = wait(open_sends, timeout=timeout, return_when=FIRST_COMPLETED)
        if not done:
            return
        answers = [future.result() for future in done]
        sent = [
            (a.claim, a.outcome.message_id)
            for a in answers
            if a.outcome is not None and a.outcome.kind is OutcomeKind.SENT
        ]
        if sent:
            retry_store(
                self.r,
                RECORD_RETRY_WINDOW_S,
                "recording",
                self.campaign.id,
                lambda: self.r.store.record_sent_many(sent),
            )
            self.sent += len(sent)
            self.sends_again()
            self._probing = False
            self.transient_streak = self.throttle_streak = 0
            if self.failure_streak:
                self.r.store.reset_failure_streak(self.campaign.id)
                self.failure_streak = 0
        for answer in answers:
            if answer.error is not None:
                # an adapter that raises may have sent (its bug may lie after the request):
                # unknown, like a cut-off send, and the lane fails once the others settle
                error = answer.error
                self.record(
                    answer.claim,
                    RecipientStatus.UNKNOWN,
                    SendOutcome(
                        OutcomeKind.AMBIGUOUS,
                        error_code="gateway_error",
                        error_message=redact(f"{type(error).__name__}: {error}"),
                    ),
                )
                self._error = self._error or error
            elif answer.outcome is not None and answer.outcome.kind is not OutcomeKind.SENT:
                end = self.handle(answer.claim, answer.outcome)
                if end is not None:
                    self._ends.append(end)
        open_sends.difference_update(done)


def _send_one(
    gateway: Gateway,
    claim: ClaimedRecipient,
    message: OutgoingMessage,
    slot: float,
    session: str,
) -> _Answer:
    """A send thread: wait for the slot (at most the session's burst ahead), call once. The
    metrics are taken here, in the thread that made the call (they never raise)."""
    early = slot - time.monotonic()
    if early > 0:
        time.sleep(early)
    began = time.monotonic()
    metrics.pacing_lag(session, began - slot)
    try:
        outcome = gateway.send(message)
    except Exception as exc:
        metrics.send_answered(session, gateway, "error", time.monotonic() - began)
        return _Answer(claim, None, exc)
    metrics.send_answered(session, gateway, outcome.kind.value, time.monotonic() - began)
    return _Answer(claim, outcome)
