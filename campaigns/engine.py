"""The batch runner: one task run of one batch, free of Celery.

A run sends the batch through the campaign's lanes, one per session of its pool that is in the
rotation (``store.lanes_to_run``): one lane runs in the task's own thread, several run side by
side in threads of the task, each at its own session's pace (:mod:`campaigns.lane`; ``rate``
lanes keep several requests outstanding, :mod:`campaigns.rate_lane`). Per pending recipient, in
input order: wait for the session's send turn (Redis pacing), claim (one conditional UPDATE),
call the gateway once, record the outcome. A run ends when its batch is done (every lane
drained; the details row and the state advance in one transaction), when its time budget is
spent (the task enqueues a continuation of the same batch), when the fence is lost (another
chain took over, or an operator paused or cancelled: exit quietly), or when the last lane's
session is down (the campaign is interrupted with the reason and the kind of the stop:
``disconnected`` for the session watcher to resume on reconnect, ``limited`` for the sweep to
resume at a known time, ``blocked`` for an operator). A lane whose session goes down while
others are up leaves the rotation; the others take its recipients. A session the worker cannot
build (a missing token or option) is a ``blocked`` stop of its lane: it would fail every
recipient the same way.

Why threads of one task rather than one task per lane: the run lease, the fence and the chain's
hand-on stay the campaign's, one per campaign, exactly as for one session; a lane that comes
back (a session reconnected, a limit ended) joins at the chain's next run, within a budget.

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
The bound on unknowns a crash can leave: one per ``human`` lane, ``in_flight`` per ``rate``
lane (claims are taken only for requests about to leave).
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence

from campaigns.capacity import SessionCapacity
from campaigns.domain import Campaign, CampaignStatus, StopKind
from campaigns.errors import ConfigurationError, StoreUnavailable
from campaigns.gateway_pool import GatewayPool
from campaigns.lane import LaneRun
from campaigns.limits import LaneLimits
from campaigns.messages import build_message, render
from campaigns.outcomes import RECORD_RETRY_WINDOW_S, RELEASE_RETRY_WINDOW_S
from campaigns.pacing import SessionPacer
from campaigns.profiles import profile_from_options
from campaigns.rate_lane import RateLaneRun
from campaigns.run_end import RunEnd, RunResult
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
LANE_JOIN_POLL_S = 1.0
"""How often a pooled run looks for lanes put back in the rotation while its lanes send."""


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
        capacity: SessionCapacity | None = None,
    ) -> None:
        self.store = store
        self.pacer = pacer
        self.gateways = gateways
        self.settings = settings
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        # sender capacity counts live in the pacing Redis, rebuilt from the ledger
        self.capacity = capacity or SessionCapacity(
            pacer.redis_client,
            store.sends_since,
            store.portfolio_sessions,
            day=settings.day_seconds,
            key_prefix=pacer.key_prefix,  # beside the pacing state, and gone with it
        )
        self.sent_through: dict[str, float] = {}
        """Session -> when a run of it that sent something last ended (``clock``)."""
        # the stop check heartbeats (and so renews the run lease, which lives a stall timeout)
        # while waiting, four times per stall timeout: with thousands of waiting lanes these
        # UPDATEs are most of a worker's work (a pause is still seen at the next claim)
        self.heartbeat_every = settings.stall_timeout / 4

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
        try:
            return self._run_lanes(campaign, batch_number, run_token, lease, started)
        finally:
            self._let_go(campaign_id, lease)

    def _run_lanes(
        self, campaign: Campaign, batch: int, token: str, lease: str, started: float
    ) -> RunResult:
        sessions = self.store.lanes_to_run(campaign.id, token)
        if not sessions:
            # the fence is lost, or every lane is down (a resume raced a lane's stop)
            stop = self.store.interrupt_if_all_lanes_down(campaign.id, token)
            if stop is None:
                return RunResult(RunEnd.STOPPED, campaign.id, batch)
            log.warning("campaign %s: interrupted (%s): %s", campaign.id, stop.kind, stop.reason)
            return RunResult(RunEnd.INTERRUPTED, campaign.id, batch, reason=stop.reason)
        halt = threading.Event()
        if len(campaign.sessions) == 1:
            run = self._lane(campaign, batch, token, lease, started, sessions[0], False, halt)
            return _combine([run], [_guarded(run)], sessions[0])

        def make(session: str) -> LaneRun:
            return self._lane(campaign, batch, token, lease, started, session, True, halt)

        runs, results = self._side_by_side(campaign.id, token, sessions, make, halt, started)
        return _combine(runs, results, ", ".join(campaign.sessions))

    def _side_by_side(
        self,
        campaign_id: int,
        token: str,
        sessions: Sequence[str],
        make: Callable[[str], LaneRun],
        halt: threading.Event,
        started: float,
    ) -> tuple[list[LaneRun], list[RunResult | BaseException]]:
        """Run each lane in a thread of its own until all have ended. While they run, a lane
        put back in the rotation (its session reconnected, its limit ended) joins this run
        within LANE_JOIN_POLL_S instead of waiting for the chain's next run."""
        runs: list[LaneRun] = []
        results: list[RunResult | BaseException] = []
        threads: dict[str, threading.Thread] = {}
        came_back: set[str] = set()  # lanes of this run that ended down: they may rejoin
        lock = threading.Lock()

        def start(session: str) -> None:
            run = make(session)

            def one() -> None:
                result = _guarded(run)
                with lock:
                    results.append(result)
                    if isinstance(result, RunResult) and result.end is RunEnd.LANE_DOWN:
                        came_back.add(session)

            runs.append(run)
            threads[session] = threading.Thread(target=one, name=f"lane-{session}", daemon=True)
            threads[session].start()

        for session in sessions:
            start(session)
        deadline = started + self.settings.task_time_budget
        while alive := [t for t in threads.values() if t.is_alive()]:
            alive[0].join(timeout=LANE_JOIN_POLL_S)
            if halt.is_set() or self.clock() >= deadline:
                continue
            try:
                active = self.store.lanes_to_run(campaign_id, token)
            except StoreUnavailable:
                continue  # the lanes find the outage themselves
            with lock:
                # a lane not started in this run, or one that went down and is active again;
                # never one that drained or ended for its budget (it would only end again)
                idle = [
                    s for s in active
                    if s not in threads or (s in came_back and not threads[s].is_alive())
                ]  # fmt: skip
                came_back.difference_update(idle)
            if idle and any(t.is_alive() for t in threads.values()):
                for session in idle:
                    log.info("campaign %s: lane %s joins the running batch", campaign_id, session)
                    start(session)
        for thread in threads.values():
            thread.join()
        return runs, results

    def _lane(
        self,
        campaign: Campaign,
        batch: int,
        token: str,
        lease: str,
        started: float,
        session: str,
        pooled: bool,
        halt: threading.Event,
    ) -> LaneRun:
        """The run of one lane, of the kind its session's profile asks for."""
        args = (self, campaign, batch, token, lease, started)
        try:
            found = self.store.get_session(session)
            profile = profile_from_options(found.gateway, found.options)
            limits = LaneLimits.of(
                found, campaign, self.capacity, lambda: self.store.warmup_age(session)
            )
        except ConfigurationError as exc:
            return _Unusable(*args, session=session, pooled=pooled, halt=halt, error=exc)
        # a rate lane's concurrency serves a session without campaign intervals; with them
        # the lane's own gap paces it one message at a time (the session's bucket still holds)
        kind = RateLaneRun if profile.is_rate and campaign.max_interval <= 0 else LaneRun
        run = kind(*args, session=session, pooled=pooled, halt=halt)
        run.profile = profile
        run.limits = limits
        return run

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


class _Unusable(LaneRun):
    """A lane whose session's options are malformed (found before anything is claimed)."""

    def __init__(self, *args: object, error: ConfigurationError, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.error = error

    def execute(self) -> RunResult:
        raise self.error


def _guarded(run: LaneRun) -> RunResult | BaseException:
    """Run one lane; a session this worker cannot build (a missing token or option) would fail
    every recipient the same way, so nothing is sent and its lane stops for an operator. Any
    other error is returned (and ends the other lanes at their next check)."""
    try:
        try:
            result = run.execute()
            if result.end in (RunEnd.LANE_DOWN, RunEnd.INTERRUPTED):
                run.r.sent_through.pop(run.session, None)  # the next run asks its health
            elif result.sent:
                run.r.sent_through[run.session] = run.r.clock()
            return result
        except ConfigurationError as exc:
            return run.interrupt(
                f"session {run.session} cannot be used: {exc}; fix it, then resume",
                StopKind.BLOCKED,
            )
    except BaseException as exc:  # re-raised by _combine once every lane has ended
        run.halt.set()
        return exc


def _combine(
    runs: Sequence[LaneRun], results: Sequence[RunResult | BaseException], sessions: str
) -> RunResult:
    """One run's end from its lanes' ends. An error goes up (every lane gave back what it had
    not sent); an interruption (the last lane went down) or a lost fence ends the run; a lane
    that still has work continues the batch, after the shortest wait any lane asked for;
    else every lane drained or went down, and the batch is finished."""
    for result in results:
        if isinstance(result, BaseException):
            raise result
    done = [r for r in results if isinstance(r, RunResult)]
    sent = sum(r.sent for r in done)
    first = runs[0]
    for end in (RunEnd.INTERRUPTED, RunEnd.STOPPED):
        for r in done:
            if r.end is end:
                return RunResult(end, r.campaign_id, r.batch_number, sent=sent, reason=r.reason)
    going_on = [r for r in done if r.end is RunEnd.CONTINUE]
    if going_on:
        delay = min(r.delay for r in going_on)
        return RunResult(RunEnd.CONTINUE, first.campaign.id, first.batch, sent=sent, delay=delay)
    return first.finish(sent, sessions)
