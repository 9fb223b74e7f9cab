"""How a task run (or one lane of it) ends: the task maps each end to what it enqueues.

Its own module so that the engine's parts (outcomes, lanes, sender protection) share it
without importing each other."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RunEnd(enum.StrEnum):
    """Why a task run ended; the task maps each to what it enqueues. ``DRAINED`` and
    ``LANE_DOWN`` end one lane of a run only (the runner turns them into one of the others)."""

    NEXT_BATCH = "next_batch"
    CONTINUE = "continue"
    COMPLETED = "completed"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    DRAINED = "drained"
    """Nothing this lane may claim is pending in the batch now."""
    LANE_DOWN = "lane_down"
    """This lane's session is down; the campaign's other lanes go on."""


@dataclass(frozen=True, slots=True)
class RunResult:
    end: RunEnd
    campaign_id: int
    batch_number: int
    next_batch: int | None = None
    delay: float = 0.0
    sent: int = 0
    reason: str | None = None
