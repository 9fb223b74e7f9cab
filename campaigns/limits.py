"""Sender protection inside a lane: send windows, capacity, and answers about one recipient.

Before a lane waits for its send turn it checks its windows (its session's and its campaign's:
both must be open); after a claim, and right before the send leaves, it takes capacity for it
(:mod:`campaigns.capacity`). Either one closed makes the lane *wait*, which interrupts nothing:

- in a pool whose other lanes are active, the lane leaves the rotation as ``limited`` until
  the window opens or the capacity returns (the other lanes take its recipients; the lane is
  brought back when its limit ends, by the running batch or the next run);
- otherwise the campaign stays ``running``, says what it waits for and until when ("waiting
  for capacity on sales until 14:05"), and the run hands on to a continuation that comes back
  then (never later than half the stall timeout, so the sweep sees it alive).

Recipient-level answers stay with the recipient: a deferral (Cloud API 131049, 131056) gives
the claim back to be sent later (:meth:`ProtectionVerbs.defer_claim`) and the lane goes on; an
opt-out (131050) skips it. None of them holds the session or uses up its turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from campaigns import metrics
from campaigns.capacity import WHY, SessionCapacity
from campaigns.caps import Caps, caps_from_options
from campaigns.domain import Campaign, ClaimedRecipient, RecipientStatus, SenderSession, StopKind
from campaigns.domain import send_id as make_send_id
from campaigns.errors import ConfigurationError, InvalidArgument
from campaigns.gateways.base import SendOutcome
from campaigns.masking import mask_phone
from campaigns.run_end import RunEnd, RunResult
from campaigns.timescale import REAL_DAY_S, scale, virtual_now
from campaigns.windows import SendWindow, wait_seconds, window_from_options

log = logging.getLogger("campaigns.engine")

SHORT_DEFERRALS = 10
"""How often a short deferral (131056, the pair rate) may repeat for one recipient before it
fails: a pair rate that never clears is a problem the operator must see."""
LONG_DEFERRAL_S = 3600.0
"""A deferral at least this long moves the recipient to the campaign's retry batch, so its
batch finishes meanwhile; a shorter one keeps it in its batch."""

WINDOW_CLOSED = "outside the send window of"
"""How the reason of a wait for a closed window begins (the metrics tell it from capacity)."""


class Run(Protocol):
    """What these functions use of a lane's run (:class:`campaigns.outcomes.RunBase`)."""

    r: Any  # the runner: store, settings
    campaign: Campaign
    session: str
    token: str
    lease: str
    pooled: bool
    limits: LaneLimits

    def interrupt(
        self, reason: str, kind: StopKind = ..., resume_at: datetime | None = None
    ) -> RunResult: ...

    def result(self, end: RunEnd, **extra: Any) -> RunResult: ...


@dataclass(slots=True)
class LaneLimits:
    """The limits of one lane in one run: its session's caps and warm-up day, and the windows
    of its session and its campaign."""

    session: str
    caps: Caps = field(default_factory=Caps)
    windows: tuple[SendWindow, ...] = ()
    capacity: SessionCapacity | None = None
    day: int | None = None
    """The session's warm-up day (1 = the day of its first send), when it has a warm-up."""

    @classmethod
    def of(
        cls,
        found: SenderSession,
        campaign: Campaign,
        capacity: SessionCapacity | None,
        warmup_age: Callable[[], float | None] = lambda: None,
    ) -> LaneLimits:
        """The lane's limits from its session's options and its campaign's window.
        ``warmup_age()``: seconds since the session's first send (asked only with a warm-up)."""
        caps = caps_from_options(found.gateway, found.name, found.options)
        windows = [w for w in (window_from_options(found.options),) if w is not None]
        if campaign.send_window:
            windows.append(SendWindow.from_json(campaign.send_window))
        day = None
        if caps.warmup and capacity is not None:
            age = warmup_age()
            day = 1 if age is None else int(age // capacity.day) + 1
        return cls(found.name, caps, tuple(windows), capacity, day)

    def window_wait(self) -> tuple[float, str] | None:
        """Seconds until every window of the lane is open, with the reason; None when open."""
        if not self.windows:
            return None
        day = self.capacity.day if self.capacity is not None else REAL_DAY_S
        now = virtual_now(day)  # the real clock unless days are made fast
        try:
            wait = wait_seconds(self.windows, now) / scale(day)
        except InvalidArgument as exc:  # the session's and the campaign's never overlap
            raise ConfigurationError(str(exc)) from None  # a blocked stop, for an operator
        if wait <= 0:
            return None
        opens = (now + timedelta(seconds=wait * scale(day))).astimezone(_zone(self.windows[0]))
        said = "; ".join(w.describe() for w in self.windows)
        return wait, f"{WINDOW_CLOSED} {self.session} ({said}); opens {_at(opens)}"

    def take(self, claims: Sequence[ClaimedRecipient]) -> tuple[int, tuple[float, str] | None]:
        """Take capacity for ``claims`` in order: how many may be sent, and when fewer than
        all, the wait until the next one may be, with the reason."""
        if self.capacity is None or not self.caps.limited:
            return len(claims), None
        sends = [(make_send_id(c.campaign_id, c.position), c.phone) for c in claims]
        taken = self.capacity.take(self.session, self.caps, sends, self.day)
        if taken.granted >= len(claims):
            return taken.granted, None
        until = (datetime.now(UTC) + timedelta(seconds=taken.wait)).astimezone()
        what = WHY.get(taken.why, taken.why)
        return taken.granted, (
            taken.wait,
            f"waiting for capacity on {self.session} until {_at(until)} ({what}: "
            f"{self.caps.describe()})",
        )

    def give_back(self, claims: Sequence[ClaimedRecipient]) -> None:
        """Claims that were taken capacity for but never sent give it back."""
        if self.capacity is not None and claims:
            ids = [make_send_id(c.campaign_id, c.position) for c in claims]
            self.capacity.give_back(self.session, self.caps, ids)


def wait_out(run: Run, wait: float, reason: str) -> RunResult:
    """The lane must wait ``wait`` seconds (a closed window, no capacity): leave the rotation
    of a pool whose other lanes go on (until then), else keep the campaign running and come
    back then. Nothing is interrupted either way."""
    store, c = run.r.store, run.campaign
    # both reasons are built in this module: a closed window's starts with WINDOW_CLOSED
    metrics.waited("window" if reason.startswith(WINDOW_CLOSED) else "capacity", wait)
    resume_at = datetime.now(UTC) + timedelta(seconds=wait)
    if run.pooled and store.park_lane(c.id, run.session, reason, resume_at, run.token):
        log.info("campaign %s: lane %s waits (%s); the other lanes go on", c.id, run.session,
                 reason)  # fmt: skip
        return run.result(RunEnd.LANE_DOWN, reason=reason)
    if not store.heartbeat(c.id, run.token, lease=run.lease):
        return run.result(RunEnd.STOPPED)
    store.set_waiting(c.id, run.token, reason, wait)
    log.info("campaign %s on %s: %s", c.id, run.session, reason)
    return run.result(RunEnd.CONTINUE, delay=min(wait, run.r.settings.stall_timeout / 2))


def defer_recipient(run: Run, claim: ClaimedRecipient, outcome: SendOutcome) -> None:
    """A limit of this recipient (131049 a day, 131056 seconds): send it again later, in the
    retry batch when the wait is long; after MAX_DEFERRALS deferrals it fails with the reason.
    The lane goes on with the others at once."""
    settings = run.r.settings
    wait = outcome.retry_after if outcome.retry_after is not None else settings.day_seconds
    long_wait = wait >= min(LONG_DEFERRAL_S, settings.day_seconds)
    detail = outcome.error_message or "a limit of the recipient"
    status = run.r.store.defer_claim(
        claim,
        wait,
        max_deferrals=settings.max_deferrals if long_wait else SHORT_DEFERRALS,
        to_retry_batch=long_wait,
        error_code=outcome.error_code,
        error_message=f"deferred {wait:g}s: {detail}",
        final_message=f"deferred {settings.max_deferrals if long_wait else SHORT_DEFERRALS} "
        f"times, still refused: {detail}",
    )
    log.info(
        "campaign %s: %s %s (%s)",
        run.campaign.id,
        mask_phone(claim.phone),
        "failed after its deferrals" if status is RecipientStatus.FAILED else
        f"deferred {wait:g}s",
        outcome.error_code,
    )  # fmt: skip
    run.limits.give_back([claim])  # it was not sent: its place in the caps goes back


def skip_opted_out(run: Run, claim: ClaimedRecipient, outcome: SendOutcome) -> None:
    """The recipient stopped these messages (131050): skipped, never retried, and put on the
    opt-out list so that no later campaign tries the number again."""
    run.r.store.skip_claim(
        claim,
        outcome.error_code or "opted_out",
        f"the recipient stopped marketing messages from this business "
        f"({outcome.error_message or 'opt-out'}); skipped, not retried",
        opt_out=True,
    )
    log.info("campaign %s: %s opted out; skipped", run.campaign.id, mask_phone(claim.phone))
    run.limits.give_back([claim])


def _zone(window: SendWindow) -> tzinfo:
    return ZoneInfo(window.tz)


def _at(moment: datetime) -> str:
    """``14:05`` today, ``Tue 08:00`` otherwise (the moment's own zone)."""
    today = datetime.now(moment.tzinfo).date()
    return moment.strftime("%H:%M" if moment.date() == today else "%a %d %b %H:%M")
