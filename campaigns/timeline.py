"""Values of the campaign dashboard's data: a campaign's timeline events, its activity per
minute, and each sender session's overview. Pure values; the store builds them
(:mod:`campaigns.store.timeline`)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple


class EventKind(enum.StrEnum):
    """What a timeline event records. Each is written by the store in the transaction of the
    state change it records, so the timeline never disagrees with the state."""

    CREATED = "created"
    STARTED = "started"
    """A scheduled campaign's start time came."""
    BATCH_DONE = "batch_done"
    """``batch_number`` and its counts in ``detail``."""
    INTERRUPTED = "interrupted"
    """``detail``: the stop's kind and reason (and a limited one's end)."""
    RECOVERED = "recovered"
    """``trigger`` (see :class:`Trigger`), ``batch_number`` and ``position``: the first pending
    recipient it resumes from."""
    PAUSED = "paused"
    RESUMED = "resumed"
    """A paused campaign running again (an operator's resume)."""
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    FAILED = "failed"
    LANE_DOWN = "lane_down"
    """``session_name`` and ``detail`` (the stop's kind and reason)."""
    LANE_UP = "lane_up"
    WAITING = "waiting"
    """``detail``: what it waits for, and until when (one per distinct reason, not per poll;
    ``session_name`` set when one lane of a pool waits while the others go on)."""


class Trigger(enum.StrEnum):
    """Who resumed a campaign (the metrics' labels of recoveries)."""

    SWEEP = "sweep"
    WATCHER = "watcher"
    WEBHOOK = "webhook"
    WORKER_START = "worker_start"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class CampaignEvent:
    """One entry of a campaign's timeline, oldest first by ``id``."""

    id: int
    campaign_id: int
    at: datetime
    kind: EventKind
    trigger: str | None = None
    detail: str | None = None
    batch_number: int | None = None
    position: int | None = None
    session_name: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> CampaignEvent:
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["kind"] = EventKind(values["kind"])
        return cls(**values)


class MinuteActivity(NamedTuple):
    """A campaign's messages of one minute: sent and failed by the time they were recorded,
    delivered and read by the time their receipts said."""

    minute: datetime
    sent: int
    failed: int
    delivered: int
    read: int


class Risk(enum.IntEnum):
    """How much a session's numbers are at risk, most first (the sessions page's order)."""

    BLOCKED = 0
    LIMITED = 1
    DISCONNECTED = 2
    NEAR_CAP = 3
    OK = 4


NEAR_CAP_SHARE = 0.9
"""A session that used this share of a cap (per day or per hour) is near it."""


@dataclass(frozen=True, slots=True)
class SessionOverview:
    """A sender session as the sessions page shows it."""

    name: str
    gateway: str
    connection_status: str
    last_checked_at: datetime | None
    last_error: str | None
    pacing: str
    """The pacing profile (``human``, ``rate 80/s, 16 in flight``, or why it is invalid)."""
    caps: str
    """The caps as a person reads them (``1000/day, 100/h, ...`` or ``no caps``)."""
    cap_day: int | None
    """Today's cap per rolling day (warm-up included; a Cloud API portfolio's limit)."""
    sent_day: int
    """Sends of the rolling day (the ledger's sent rows; a portfolio's unique recipients)."""
    cap_hour: int | None
    sent_hour: int
    warmup_day: int | None
    """Day of the warm-up schedule (1 = the day of the first send), None without warm-up."""
    window: str | None
    window_open: bool
    next_open: datetime | None
    """When a closed window opens (None when open or without a window)."""
    disconnected: bool
    limited_until: datetime | None
    """Set when a campaign's lane (or campaign) of this session is limited: until then."""
    blocked: bool
    stop_reason: str | None
    """The reason of the most serious stop in force, if any."""
    campaigns: int
    """Unfinished campaigns with this session in their pool."""

    @property
    def left_day(self) -> int | None:
        return None if self.cap_day is None else max(self.cap_day - self.sent_day, 0)

    @property
    def left_hour(self) -> int | None:
        return None if self.cap_hour is None else max(self.cap_hour - self.sent_hour, 0)

    @property
    def limited(self) -> bool:
        return self.limited_until is not None

    @property
    def near_cap(self) -> bool:
        return any(
            cap is not None and used >= cap * NEAR_CAP_SHARE
            for cap, used in ((self.cap_day, self.sent_day), (self.cap_hour, self.sent_hour))
        )

    @property
    def risk(self) -> Risk:
        if self.blocked:
            return Risk.BLOCKED
        if self.limited:
            return Risk.LIMITED
        if self.disconnected:
            return Risk.DISCONNECTED
        if self.near_cap:
            return Risk.NEAR_CAP
        return Risk.OK
