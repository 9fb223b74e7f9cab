"""Domain values: statuses, their transitions, and frozen records read from the store.

Pure: no database, no Redis. The store turns rows into these values with ``from_row`` and the
engine only ever sees these.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from campaigns.errors import InvalidArgument
from campaigns.eta import LanePlan, finish_seconds
from campaigns.windows import SendWindow, finish_after_any


class CampaignStatus(enum.StrEnum):
    """Status of a campaign (``campaign_batch_state.status``)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    SCHEDULED = "scheduled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset(
    {CampaignStatus.COMPLETED, CampaignStatus.FAILED, CampaignStatus.CANCELLED}
)

# Which status may follow which. Every status change goes through this table: the store's
# TRANSITION statement is guarded by sources_of(target) (narrowed further by callers that must
# only start one kind of campaign), and finishing the last batch (running -> completed) is
# guarded by the fenced row lock. So an operator's `cancel` and a worker's `completed` can race
# without reviving a finished campaign, and a test checks every pair against the SQL.
TRANSITIONS: Mapping[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.SCHEDULED: frozenset(
        {CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.CANCELLED}
    ),
    CampaignStatus.RUNNING: frozenset(
        {CampaignStatus.COMPLETED, CampaignStatus.FAILED, CampaignStatus.INTERRUPTED,
         CampaignStatus.PAUSED, CampaignStatus.CANCELLED}
    ),
    CampaignStatus.INTERRUPTED: frozenset(
        {CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.CANCELLED,
         CampaignStatus.FAILED}
    ),
    CampaignStatus.PAUSED: frozenset(
        {CampaignStatus.RUNNING, CampaignStatus.CANCELLED, CampaignStatus.FAILED}
    ),
    CampaignStatus.COMPLETED: frozenset(),
    CampaignStatus.FAILED: frozenset(),
    CampaignStatus.CANCELLED: frozenset(),
}


def sources_of(target: CampaignStatus) -> frozenset[CampaignStatus]:
    """The statuses from which ``target`` may be reached."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


RESUMABLE_BY_OPERATOR = sources_of(CampaignStatus.RUNNING)
"""What an operator's resume starts: paused, interrupted or scheduled. The automatic triggers
start narrower sets (the watcher only interrupted, the scheduled sweep only scheduled), so an
operator's pause landing between their read and their write is never undone."""


class RecipientStatus(enum.StrEnum):
    """Status of one ledger row (``campaign_recipients.status``)."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"


# Which status may follow which for one ledger row. Every UPDATE of a recipient's status in
# campaigns/store/queries.py is guarded by exactly these sources (a test parses the SQL and
# compares). Rows are born pending or invalid (the bulk load); pending becomes duplicate when
# the load marks later repeats. The claim is pending -> sending; a claim ends sent, failed or
# unknown, or is given back (pending). A batch that kept failing fails its pending rows. The
# late record of a claim that recovery settled as cut off (pending under RESEND_UNKNOWN, or
# unknown) still takes its real outcome while its batch is not yet counted.
RECIPIENT_TRANSITIONS: Mapping[RecipientStatus, frozenset[RecipientStatus]] = {
    RecipientStatus.PENDING: frozenset(
        {
            RecipientStatus.SENDING,
            RecipientStatus.DUPLICATE,
            RecipientStatus.FAILED,
            RecipientStatus.SENT,
            RecipientStatus.UNKNOWN,
            RecipientStatus.SKIPPED,  # on the opt-out list when its claim came
        }
    ),
    RecipientStatus.SENDING: frozenset(
        {
            RecipientStatus.SENT,
            RecipientStatus.FAILED,
            RecipientStatus.UNKNOWN,
            RecipientStatus.PENDING,
            RecipientStatus.SKIPPED,  # the recipient opted out (Cloud API 131050)
        }
    ),
    RecipientStatus.UNKNOWN: frozenset(
        {RecipientStatus.SENT, RecipientStatus.FAILED, RecipientStatus.UNKNOWN}
    ),
    # a receipt's late failure (accepted, then 131026...), before any delivered (receipts.RANKS)
    RecipientStatus.SENT: frozenset({RecipientStatus.FAILED}),
    **{s: frozenset() for s in (RecipientStatus.FAILED, RecipientStatus.DUPLICATE,
                                RecipientStatus.INVALID, RecipientStatus.SKIPPED)},  # for good
}


def recipient_sources_of(target: RecipientStatus) -> frozenset[RecipientStatus]:
    """The recipient statuses from which ``target`` may be reached."""
    return frozenset(s for s, targets in RECIPIENT_TRANSITIONS.items() if target in targets)


# Statuses a send never leaves (unknown may under RESEND_UNKNOWN; sent by a late failure).
SETTLED_RECIPIENT_STATUSES = frozenset(
    {
        RecipientStatus.SENT,
        RecipientStatus.FAILED,
        RecipientStatus.DUPLICATE,
        RecipientStatus.INVALID,
        RecipientStatus.UNKNOWN,
        RecipientStatus.SKIPPED,
    }
)


class StopKind(enum.StrEnum):
    """Why an interrupted campaign stopped, which decides who may resume it
    (``campaign_batch_state.interrupt_kind``; design.md, "Sender protection")."""

    DISCONNECTED = "disconnected"
    """The session lost its connection: the session watcher and the gateways' webhooks resume
    it when the session is connected again."""
    LIMITED = "limited"
    """A limit with a known end (``resume_at``): the recovery sweep resumes it then."""
    BLOCKED = "blocked"
    """WhatsApp or the configuration refuses the sender (timelock, ban, template, payment,
    permission, token): only an operator resumes it. A healthy health check proves nothing
    here, so nothing automatic may send again on that number."""


@dataclass(frozen=True, slots=True)
class Campaign:
    """A campaign as stored in ``campaign_batch_state``. An interrupted campaign carries the
    kind of its stop (``interrupt_kind``) with its reason; a ``limited`` one, ``resume_at``."""

    id: int
    session_name: str
    status: CampaignStatus
    message: str
    total_numbers: int
    total_batches: int
    current_batch: int
    processed_numbers: int
    success_count: int
    failed_count: int
    duplicate_count: int
    invalid_count: int
    unknown_count: int
    skipped_count: int
    batch_size: int
    min_interval: float
    max_interval: float
    batch_delay_min: float
    batch_delay_max: float
    run_token: str | None
    heartbeat_at: datetime | None
    next_batch_at: datetime | None
    interrupt_reason: str | None
    template: Mapping[str, Any] | None
    created_at: datetime
    updated_at: datetime
    failure_streak: int = 0
    interrupt_kind: StopKind | None = None
    resume_at: datetime | None = None
    sessions: tuple[str, ...] = ()
    """The sender pool in lane order; ``session_name`` is its first session. A one-session
    campaign is a pool of one (filled in when not given)."""
    send_window: Mapping[str, Any] | None = None  # its own window (campaigns.windows JSON)
    waiting_reason: str | None = None  # what a running campaign waits for (capacity, window)
    waiting_until: datetime | None = None
    retry_batch: int | None = None  # the trailing batch of recipients deferred for a day
    variants: tuple[str, ...] = ()  # texts besides ``message``, one chosen per recipient
    columns: tuple[str, ...] = ()  # the list's variable names ({name} placeholders)
    media: Mapping[str, Any] | None = None  # an image/document/audio/video by URL, captioned
    legal_basis: str = "consent"  # consent or legitimate_interest (LGPD), with its note
    legal_note: str | None = None
    dedupe_days: float | None = None  # skip numbers the pool messaged this recently
    retry_of: int | None = None  # the campaign whose failed recipients this one retries

    def __post_init__(self) -> None:
        if not self.sessions:
            object.__setattr__(self, "sessions", (self.session_name,))

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Campaign:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["status"] = CampaignStatus(values["status"])
        if values["interrupt_kind"] is not None:
            values["interrupt_kind"] = StopKind(values["interrupt_kind"])
        values["sessions"] = tuple(values["sessions"] or ())
        values["variants"] = tuple(values["variants"] or ())
        values["columns"] = tuple(values["columns"] or ())
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ClaimedRecipient:
    """A recipient this worker holds the claim of (status ``sending``, attempt ``attempt``)."""

    campaign_id: int
    position: int
    batch_number: int
    phone: str
    variables: Mapping[str, str] | None
    attempt: int
    variant: str | None = None
    """The message variant chosen for this recipient at creation (:mod:`campaigns.content`)."""


@dataclass(frozen=True, slots=True)
class SenderSession:
    """A WhatsApp sender account reached through a gateway. Holds the *name* of the
    environment variable with its token, never the token."""

    name: str
    gateway: str
    base_url: str
    token_env: str | None
    options: Mapping[str, str]
    connection_status: str
    last_checked_at: datetime | None
    last_error: str | None
    created_at: datetime
    first_sent_at: datetime | None = None
    """Day 0 of the session's warm-up: its first send (None: nothing sent yet)."""

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> SenderSession:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["options"] = dict(values["options"] or {})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What ``finish_batch`` wrote for one batch."""

    campaign_id: int
    batch_number: int
    counts: Mapping[RecipientStatus, int]
    next_batch: int | None
    """The next batch with work, derived from the ledger; None when the campaign is done."""
    completed: bool
    inserted: bool = True
    """Whether this call wrote the details row. Only the run that did hands the chain on: a
    second finish of the same batch (a redelivered copy) enqueues nothing."""


@dataclass(frozen=True, slots=True)
class RunLease:
    """The answer to a task run asking for its campaign's run lease (``take_run_lease``):
    the right to send and to enqueue what comes next, held by one live run at a time."""

    taken: bool
    fenced: bool = True
    """False when the run's token no longer holds the campaign (not running, taken over)."""
    batch_done: bool = False
    """The run's batch has its details row already: a stale copy, nothing left to do."""
    held_for: float = 0.0
    """Seconds until the lease another run holds ends, unless that run renews it."""


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """A campaign and the live counts of its ledger, for display and ETA."""

    campaign: Campaign
    counts: Mapping[RecipientStatus, int]
    batches_done: int
    last_error: str | None
    remaining_batches: int = field(default=0)
    lane_windows: tuple[tuple[SendWindow, ...], ...] = ()
    """For each lane of the pool, the send windows it obeys (its campaign's, its session's);
    empty when nothing has a window."""
    lane_plans: tuple[LanePlan, ...] = ()
    """Each lane's pace, caps and recent sends, for a pool or a capped session: the ETA is
    then simulated (:mod:`campaigns.eta`)."""
    day_seconds: float = 86_400.0

    @property
    def windows(self) -> tuple[SendWindow, ...]:
        """Every distinct window of the campaign and its sessions, the campaign's first."""
        return tuple(dict.fromkeys(w for group in self.lane_windows for w in group))

    @property
    def remaining(self) -> int:
        return self.counts.get(RecipientStatus.PENDING, 0) + self.counts.get(
            RecipientStatus.SENDING, 0
        )

    def eta_seconds(self, now: datetime | None = None) -> float:
        """Expected seconds to finish at the mean pacing: messages × mean interval + the
        mean delay between the remaining batches. With send windows, that much *open* time
        is counted from ``now`` (lanes wait while closed), so the ETA is wall-clock time: work
        goes on while any lane has all its windows open."""
        c = self.campaign
        mean_gap = (c.min_interval + c.max_interval) / 2
        mean_delay = (c.batch_delay_min + c.batch_delay_max) / 2
        if self.lane_plans:  # caps: the lanes are played forward
            simulated = finish_seconds(
                self.remaining, self.lane_plans, batch_size=c.batch_size,
                batch_delay=mean_delay, day_seconds=self.day_seconds, now=now,
            )  # fmt: skip
            if simulated is not None:
                return simulated
        work = self.remaining * mean_gap + max(self.remaining_batches - 1, 0) * mean_delay
        if work <= 0 or not any(self.lane_windows):
            return work
        start = now or datetime.now(UTC)
        try:
            return (finish_after_any(self.lane_windows, start, work) - start).total_seconds()
        except InvalidArgument:
            return work  # windows that never open: the sweep and status say so, not the ETA


class LaneState(enum.StrEnum):
    """State of one lane of a campaign (``campaign_lanes.state``)."""

    ACTIVE = "active"
    """The lane claims recipients through its session."""
    DOWN = "down"
    """The session cannot send for this campaign (with the kind of its stop, as an
    interruption): the other lanes take its unclaimed recipients."""


@dataclass(frozen=True, slots=True)
class Lane:
    """One lane of a campaign: its sending through one session of the pool. ``sent`` and
    ``claimed`` (recipients stamped with this session, whatever became of them) are filled
    only when asked for (``list_lanes(..., counts=True)``)."""

    campaign_id: int
    session_name: str
    position: int
    state: LaneState
    stop_kind: StopKind | None
    reason: str | None
    resume_at: datetime | None
    heartbeat_at: datetime | None
    updated_at: datetime
    sent: int = 0
    claimed: int = 0

    @property
    def active(self) -> bool:
        return self.state is LaneState.ACTIVE

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Lane:
        values = {name: row[name] for name in cls.__dataclass_fields__ if name in row}
        values["state"] = LaneState(values["state"])
        if values["stop_kind"] is not None:
            values["stop_kind"] = StopKind(values["stop_kind"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class PoolStop:
    """Why a campaign whose every lane is down stopped: ``disconnected`` if any lane is
    (a reconnect of that session resumes it), else ``limited`` at the earliest lane's
    ``resume_at``, else ``blocked`` (only an operator resumes it)."""

    kind: StopKind
    reason: str
    resume_at: datetime | None = None


def send_id(campaign_id: int, position: int) -> str:
    """The id of a recipient's send in the capacity counts (:mod:`campaigns.capacity`): the
    same for the live take and the rebuild from the ledger, so neither counts a send twice."""
    return f"{campaign_id}:{position}"
