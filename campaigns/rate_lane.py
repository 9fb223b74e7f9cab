"""A ``rate`` lane: up to ``in_flight`` requests outstanding, at the session's token bucket.

The one-at-a-time loop waits for each answer before the next claim, so a Cloud API number
answering in 250 ms sends 4 messages/s of the 80 it may. This lane keeps ``in_flight`` sends
outstanding: it books as many of the session's send slots as it has free threads
(``SessionPacer.wait_for_rate``: slots 1 / rate apart, a few ahead), claims that many
recipients in one statement (``claim_several_for_lane``, in input order), and hands each to a
thread of its own pool, which waits for its slot, calls the gateway and records the outcome.

**The bound on unknowns.** A claim is taken only for a request about to leave, and never more
than ``in_flight`` are open, so a crash (kill -9 of the worker) leaves at most ``in_flight``
recipients of this lane ``sending``, which recovery settles as ``unknown``; nothing else is at
risk. The bound is the session's ``in_flight`` option.

A sent outcome is recorded by its own thread without holding the lane (records are independent
transactions); every other outcome is handled under the lane's lock, one at a time, so streaks,
holds and the lane's stop are decided as in the one-at-a-time loop. Once an outcome ends the
lane (its session is down, the campaign paused), no more claims are taken; the sends already
out are waited for and recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from campaigns.domain import ClaimedRecipient, RecipientStatus
from campaigns.gateways.base import Gateway, OutcomeKind, OutgoingMessage, SendOutcome
from campaigns.lane import LaneRun
from campaigns.messages import build_message
from campaigns.outcomes import RunEnd, RunResult
from campaigns.pacing import PacingCancelled, PacingDeferred

log = logging.getLogger("campaigns.engine")

COLLECT_POLL_S = 0.5
"""How long the lane waits for a send to finish before it checks its budget and fence again."""

# which end wins when sends of one lane end it differently
_PRECEDENCE = (RunEnd.INTERRUPTED, RunEnd.LANE_DOWN, RunEnd.STOPPED, RunEnd.CONTINUE)


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
        self._lock = threading.Lock()
        self._ends: list[RunResult] = []
        slots = self.profile.in_flight
        pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=f"rate-{self.session}")
        open_sends: set[Future[None]] = set()
        try:
            end = self._loop(gateway, pool, open_sends, slots)
        finally:
            # the sends already out are answered and recorded before the lane ends
            wait(open_sends)
            pool.shutdown(wait=True)
        for future in open_sends:
            error = future.exception()
            if error is not None:
                raise error
        ends = [*self._ends, end]
        return min(ends, key=lambda r: _PRECEDENCE.index(r.end) if r.end in _PRECEDENCE else 9)

    def _loop(
        self,
        gateway: Gateway,
        pool: ThreadPoolExecutor,
        open_sends: set[Future[None]],
        slots: int,
    ) -> RunResult:
        while True:
            _collect(open_sends, 0)
            if self._ends:
                return self._ends[0]
            now = self.r.clock()
            end = self.out_of_time(now)
            if end is not None:
                return end
            free = slots - len(open_sends)
            if free <= 0:
                _collect(open_sends, COLLECT_POLL_S)
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
                    _collect(open_sends, None)
                    continue
                return self.drained()
            booked = time.monotonic()
            leave_at = [booked + grant.delay(i) for i in range(len(claims))]
            self._dispatch(gateway, pool, open_sends, claims, leave_at)

    def _dispatch(
        self,
        gateway: Gateway,
        pool: ThreadPoolExecutor,
        open_sends: set[Future[None]],
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
            open_sends.add(pool.submit(self._send_one, gateway, claim, message, slots[index]))

    def _send_one(
        self, gateway: Gateway, claim: ClaimedRecipient, message: OutgoingMessage, slot: float
    ) -> None:
        early = slot - time.monotonic()
        if early > 0:
            self.r.sleep(early)  # the slot is at most the session's burst ahead
        end = self.send(gateway, claim, message)
        if end is not None:
            with self._lock:
                self._ends.append(end)

    def handle(self, claim: ClaimedRecipient, outcome: SendOutcome) -> RunResult | None:
        if outcome.kind is OutcomeKind.SENT:
            # the hot path: recorded by this thread, only the counters under the lock
            self.record(claim, RecipientStatus.SENT, outcome)
            with self._lock:
                self.sent += 1
                self.transient_streak = self.throttle_streak = 0
                reset = self.failure_streak > 0
                self.failure_streak = 0
            if reset:
                self.r.store.reset_failure_streak(self.campaign.id)
            return None
        with self._lock:
            return super().handle(claim, outcome)


def _collect(open_sends: set[Future[None]], timeout: float | None) -> None:
    """Drop the finished sends from ``open_sends``, waiting up to ``timeout`` for one (None:
    until one finishes). A send that raised (its claim was recorded or given back first)
    raises here, and the lane ends with its error once the other sends are answered."""
    if not open_sends:
        return
    done, _ = wait(open_sends, timeout=timeout, return_when=FIRST_COMPLETED)
    for future in done:
        open_sends.discard(future)
        error = future.exception()
        if error is not None:
            raise error
