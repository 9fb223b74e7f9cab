"""CampaignRecoveryManager: resumes every interrupted or dead campaign, untouched by a human.

Three triggers call it: the beat-scheduled sweep (chains that died: heartbeat and next-batch
time stale; limited stops whose end has come), the session watcher and webhook receiver (a
session is connected again: its disconnected campaigns only), and the worker_ready signal (a
restarted server). A blocked stop is resumed by nothing automatic: only the operator's
``recover_campaign``. What remains is always computed from the ledger, and
every takeover is one conditional UPDATE that swaps the run token, so two beats, many workers
and redelivered tasks can race safely: one wins, the others' tasks see the mismatch and stop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from campaigns import inputs, metrics
from campaigns.dispatch import Enqueue, configured_enqueue
from campaigns.domain import RESUMABLE_BY_OPERATOR, Campaign, CampaignStatus, StopKind
from campaigns.errors import InvalidTransition
from campaigns.store import CampaignStateManager

log = logging.getLogger("campaigns.recovery")

StartLane = Callable[[int, str, float], object]
"""(campaign id, session, delay in seconds): start the run of one lane of a running campaign."""

RECONNECT_SETTLE_S = 5.0
"""Wait after a session reconnects before sending again (the original design's 5 s): a session
that flaps right after reconnecting should not get the first message."""


@dataclass(frozen=True, slots=True)
class Recovery:
    """One campaign put back to work: from which batch and recipient, and why."""

    campaign_id: int
    session: str
    batch_number: int
    position: int | None
    reason: str
    unknown_positions: tuple[int, ...] = ()
    lane: str | None = None
    """Set when only this session's lane came back, in a campaign that kept running on its
    other lanes; None when the campaign as a whole was resumed."""


class CampaignRecoveryManager:
    """Finds campaigns that need resuming and resumes them."""

    def __init__(
        self,
        state_manager: CampaignStateManager,
        *,
        enqueue: Enqueue | None = None,
        settle_delay: float = RECONNECT_SETTLE_S,
        start_lane: StartLane | None = None,
    ) -> None:
        self.state = state_manager
        self._enqueue = enqueue or configured_enqueue
        self.settle_delay = settle_delay
        # where the engine starts the run of one lane that came back in a running campaign;
        # without it the lane joins at the campaign's next batch (lanes_to_run)
        self._start_lane = start_lane

    def check_for_interrupted_campaigns(
        self, session: str | None = None, kind: StopKind | None = None
    ) -> list[Campaign]:
        """Interrupted campaigns of a session (of all sessions when None), of one stop kind
        when given."""
        return self.state.find_interrupted_campaigns(session, kind=kind)

    def recover_campaign(
        self,
        campaign_id: int,
        session: str | None = None,
        *,
        reason: str = "an operator asked",
        delay: float = 0.0,
        only_from: frozenset[CampaignStatus] | None = None,
        if_kind: StopKind | None = None,
        trigger: str | None = None,
    ) -> Recovery:
        """The one resume path: put an interrupted, paused or scheduled campaign back to
        running (or restart a running one's chain) from the first batch with work, under a new
        run token that fences off any task of an earlier chain. The operator's resume
        (``only_from`` None) takes every resumable status and restarts the chain of a running
        campaign; automatic triggers pass a narrower ``only_from`` and the kind
        of stop they resume (``if_kind``); the guard is in the UPDATE, so a pause, or a stop
        that became blocked, landing meanwhile is never undone. ``trigger`` (sweep, watcher,
        webhook, worker_start; the operator's by default) labels the recovery in the
        timeline, whose event the store writes with the token swap.
        :class:`InvalidTransition` when it is finished or has nothing left to send."""
        campaign_id = inputs.campaign_id(campaign_id)
        session = inputs.optional_name(session, "session")
        reason = inputs.any_text(reason, "reason")  # only logged; may quote a gateway's answer
        delay = inputs.finite_seconds(delay, "delay")
        campaign = self.state.get_campaign(campaign_id)
        if session is not None and session not in campaign.sessions:
            raise InvalidTransition(
                f"campaign {campaign_id} belongs to session {', '.join(campaign.sessions)}, "
                f"not {session}"
            )
        if not campaign.status.finished and self.state.first_open_batch(campaign_id) is None:
            # checked before the token swap: a campaign made running with nothing to enqueue
            # would look stalled to every sweep after it
            raise InvalidTransition(f"campaign {campaign_id} has nothing left to send")
        # lanes first: a run that started with every lane still down would interrupt again
        if only_from is None:
            self.state.activate_lanes(campaign_id)  # the operator resumes every lane
        elif if_kind is StopKind.LIMITED:
            # the campaign's resume_at is its earliest lane's: once it is due, so is a lane;
            # should none be (the campaign's time was moved), its limited lanes all come back
            # and a lane still limited is told so by its gateway again
            if not self.state.activate_lanes(campaign_id, kind=StopKind.LIMITED, due_only=True):
                self.state.activate_lanes(campaign_id, kind=StopKind.LIMITED)
        elif if_kind is StopKind.DISCONNECTED and session is not None:
            self.state.activate_lanes(campaign_id, session=session, kind=StopKind.DISCONNECTED)
        if only_from is None and campaign.status is CampaignStatus.RUNNING:
            token = self.state.restart_run(campaign_id, reason=reason)
        else:
            token = self.state.start_run(
                campaign_id, only_from=only_from or RESUMABLE_BY_OPERATOR, if_kind=if_kind,
                trigger=trigger or "operator", reason=reason,
            )  # fmt: skip
        recovery = self._launch(campaign, token, reason, delay)
        if recovery is None:
            raise InvalidTransition(f"campaign {campaign_id} has nothing left to send")
        if only_from is None:  # the automatic triggers count theirs where they are told apart
            metrics.recovered("operator")
        return recovery

    def sweep(self, trigger: str = "sweep") -> list[Recovery]:
        """Take over every stalled running campaign, start every due scheduled one, and resume
        every limited one whose limit has ended. ``trigger`` labels the recoveries in the
        metrics (beat's sweep, or the one a worker runs at start); scheduled starts are none."""
        recovered = []
        stall = self.state.settings.stall_timeout
        for campaign in self.state.find_stalled_campaigns():
            why = (
                "its chain stopped (no heartbeat and no next batch for "
                f"{stall:.0f}s: worker crash, restart or lost broker message)"
            )
            token = self.state.take_over_stalled(campaign, trigger=trigger, reason=why)
            if token is None:
                continue  # another sweep, or the campaign's own chain, got there first
            unknown = self.state.settle_cut_off_claims(campaign.id, older_than=stall)
            result = self._launch(campaign, token, why, 0.0, tuple(unknown))
            if result:
                recovered.append(result)
        scheduled = 0  # a scheduled start is no recovery
        for campaign in self.state.find_due_scheduled():
            try:
                token = self.state.start_run(campaign.id, only_from={CampaignStatus.SCHEDULED})
            except InvalidTransition:
                continue  # paused, cancelled or started meanwhile
            result = self._launch(campaign, token, "its scheduled start time came", 0.0)
            if result:
                recovered.append(result)
                scheduled += 1
        for campaign in self.state.find_due_limited():
            try:
                recovered.append(
                    self.recover_campaign(
                        campaign.id,
                        reason=f"its limit ended ({campaign.interrupt_reason})",
                        only_from=frozenset({CampaignStatus.INTERRUPTED}),
                        if_kind=StopKind.LIMITED,
                        trigger=trigger,
                    )
                )
            except InvalidTransition:
                continue  # resumed, paused or cancelled meanwhile, or nothing left to send
        for campaign_id, session in self.state.activate_running_lanes(
            kind=StopKind.LIMITED, due_only=True, trigger=trigger
        ):
            lane = self._lane_back(campaign_id, session, f"the limit of {session} ended", 0.0)
            if lane:
                recovered.append(lane)
        metrics.recovered(trigger, len(recovered) - scheduled)
        return recovered

    def resume_session(
        self, session: str, reason: str, trigger: str = "webhook"
    ) -> list[Recovery]:
        """A session is connected again: resume its disconnected campaigns after the settle
        delay, and put its disconnected lanes back in the rotation of running campaigns
        (their runs start after the settle delay too). Blocked and limited ones stay: a
        reconnect fixes neither a timelock, a template nor a cap. ``trigger`` labels the
        metrics: a gateway's webhook, or the session watcher."""
        resumed = []
        for campaign in self.check_for_interrupted_campaigns(session):
            if campaign.interrupt_kind is not StopKind.DISCONNECTED:
                continue  # a reconnect says nothing about a blocked or limited stop
            if not self._reconnect_resumes(campaign, session):
                continue
            try:
                result = self.recover_campaign(
                    campaign.id,
                    session,
                    reason=reason,
                    delay=self.settle_delay,
                    only_from=frozenset({CampaignStatus.INTERRUPTED}),
                    if_kind=StopKind.DISCONNECTED,
                    trigger=trigger,
                )
            except InvalidTransition:
                continue  # resumed by another watcher, or paused or cancelled, meanwhile
            if result:
                resumed.append(result)
        for campaign_id, _ in self.state.activate_running_lanes(
            session=session, kind=StopKind.DISCONNECTED, trigger=trigger
        ):
            lane = self._lane_back(campaign_id, session, reason, self.settle_delay)
            if lane:
                resumed.append(lane)
        metrics.recovered(trigger, len(resumed))
        return resumed

    def _reconnect_resumes(self, campaign: Campaign, session: str) -> bool:
        """Whether ``session`` reconnecting resumes this disconnected campaign: its lane is
        down as disconnected (every lane was down), or the campaign stopped as a whole and
        ``session`` is its first (as before pools). A lane down for another kind waits."""
        lane = self.state.get_lane(campaign.id, session)
        if lane is not None and not lane.active:
            return lane.stop_kind is StopKind.DISCONNECTED
        return session == campaign.session_name

    def _lane_back(
        self, campaign_id: int, session: str, reason: str, delay: float
    ) -> Recovery | None:
        """A lane is active again in a running campaign: start its run (the engine's hook)."""
        batch = self.state.first_open_batch(campaign_id)
        if batch is None:
            return None  # the other lanes finished meanwhile
        if self._start_lane is not None:
            try:
                self._start_lane(campaign_id, session, delay)
            except Exception:
                # the lane is active: the campaign's next batch starts it anyway
                log.exception("campaign %s: could not start the lane of %s", campaign_id, session)
        log.info(
            "campaign %s: lane %s back in the rotation from batch %s, in %.0fs, because %s",
            campaign_id,
            session,
            batch,
            delay,
            reason,
        )
        position = self.state.first_pending_position(campaign_id)
        return Recovery(campaign_id, session, batch, position, reason, lane=session)

    def watch_sessions(self, is_connected: Callable[[str], tuple[bool, str]]) -> list[Recovery]:
        """Ask each session with disconnected campaigns (or disconnected lanes of running
        ones) whether it is connected again; resume the campaigns of those that are.
        Sessions whose campaigns are only blocked or limited are not polled: their health
        says nothing about those stops. ``is_connected`` must answer False for a session that
        is connected but reports a stop in force (WAHA's 475 capping before its cycle end, a
        463 timelock): :meth:`SessionHealth.watch_answer` reads a health answer that way."""
        resumed = []
        for session in self.state.sessions_with_interrupted_campaigns(StopKind.DISCONNECTED):
            connected, state = is_connected(session)
            self.state.record_session_check(session, "connected" if connected else state)
            if connected:
                resumed += self.resume_session(
                    session, f"session {session} reconnected", trigger="watcher"
                )
        return resumed

    def _launch(
        self,
        campaign: Campaign,
        token: str,
        reason: str,
        delay: float,
        unknown: tuple[int, ...] = (),
    ) -> Recovery | None:
        batch = self.state.first_open_batch(campaign.id)
        if batch is None:
            log.warning("campaign %s has nothing left to send; nothing resumed", campaign.id)
            return None
        position = self.state.first_pending_position(campaign.id)
        self._enqueue(campaign.id, batch, token, delay)
        log.info(
            "campaign %s on %s: resuming from batch %s/%s, recipient #%s, in %.0fs, because %s%s",
            campaign.id,
            campaign.session_name,
            batch,
            campaign.total_batches,
            position,
            delay,
            reason,
            f"; {len(unknown)} cut-off claims marked unknown" if unknown else "",
        )
        return Recovery(campaign.id, campaign.session_name, batch, position, reason, unknown)
