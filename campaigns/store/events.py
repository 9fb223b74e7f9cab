"""Writing the campaign timeline: each function runs one INSERT on the caller's connection,
inside the transaction of the state change it records, so the timeline can never disagree
with the state (a rolled-back change leaves no event; a committed one always has its event).
Never called per message: creation, batch ends, stops, resumes, lanes and waits only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import Connection

from campaigns.domain import CampaignStatus, StopKind
from campaigns.store import queries
from campaigns.timeline import EventKind, Trigger

# What a move to each status records (RUNNING depends on where it came from: see below).
_KIND_OF_TARGET = {
    CampaignStatus.PAUSED: EventKind.PAUSED,
    CampaignStatus.CANCELLED: EventKind.CANCELLED,
    CampaignStatus.COMPLETED: EventKind.COMPLETED,
    CampaignStatus.FAILED: EventKind.FAILED,
    CampaignStatus.INTERRUPTED: EventKind.INTERRUPTED,
}


def write_event(
    conn: Connection,
    campaign_id: int,
    kind: EventKind,
    *,
    trigger: str | None = None,
    detail: str | None = None,
    batch_number: int | None = None,
    position: int | None = None,
    session: str | None = None,
) -> None:
    conn.execute(
        queries.INSERT_EVENT,
        {
            "campaign_id": campaign_id, "kind": kind.value, "trigger": trigger,
            "detail": detail, "batch_number": batch_number, "position": position,
            "session": session,
        },
    )  # fmt: skip


def write_recovered(conn: Connection, campaign_id: int, trigger: str, detail: str | None) -> None:
    """A recovery, with the batch and first pending recipient it resumes from."""
    conn.execute(
        queries.INSERT_RECOVERED_EVENT,
        {"campaign_id": campaign_id, "kind": EventKind.RECOVERED.value, "trigger": trigger,
         "detail": detail},
    )  # fmt: skip


def write_lanes_up(
    conn: Connection, lanes: Sequence[tuple[int, str]], trigger: str | None, detail: str | None
) -> None:
    """(campaign id, session) of each lane put back in the rotation."""
    if lanes:
        conn.execute(
            queries.INSERT_LANE_UP_EVENTS,
            {"campaign_ids": [c for c, _ in lanes], "sessions": [s for _, s in lanes],
             "trigger": trigger, "detail": detail},
        )  # fmt: skip


def write_waiting(
    conn: Connection, campaign_id: int, reason: str, session: str | None = None
) -> None:
    """A wait, unless the campaign's latest event already tells the same one."""
    conn.execute(
        queries.INSERT_WAITING_EVENT,
        {"campaign_id": campaign_id, "detail": reason, "session": session},
    )


def stop_text(kind: StopKind, reason: str | None, resume_at: datetime | None) -> str:
    """``limited: <reason> (until <time>)``: an interruption's or a lane stop's detail."""
    until = f" (until {resume_at.isoformat(timespec='seconds')})" if resume_at else ""
    return f"{kind.value}: {reason or '-'}{until}"


def write_transition(
    conn: Connection,
    campaign_id: int,
    target: CampaignStatus,
    previous: CampaignStatus | None,
    *,
    reason: str | None,
    kind: StopKind | None,
    resume_at: datetime | None,
    trigger: str | None,
) -> None:
    """The event of a status change that took (``previous``: the status it left, known when
    ``target`` is running). Into running: from paused it is the operator's resume; from
    scheduled its start; from interrupted (or running, a chain taken over) a recovery, with
    ``trigger`` (the operator's when none is given)."""
    if target is CampaignStatus.RUNNING:
        if previous is CampaignStatus.PAUSED:
            write_event(conn, campaign_id, EventKind.RESUMED, trigger=trigger or Trigger.OPERATOR)
        elif previous is CampaignStatus.SCHEDULED:
            write_event(conn, campaign_id, EventKind.STARTED, detail="its start time came")
        else:
            write_recovered(conn, campaign_id, trigger or Trigger.OPERATOR, reason)
        return
    event = _KIND_OF_TARGET.get(target)
    if event is None:
        return
    if event is EventKind.INTERRUPTED:
        reason = stop_text(kind or StopKind.DISCONNECTED, reason, resume_at)
    write_event(conn, campaign_id, event, detail=reason)


def batch_text(tally: Mapping[str, int], total_batches: int, batch_number: int) -> str:
    """``batch 3/10: 290 sent, 4 failed, 6 duplicate`` (the counts that are not zero)."""
    said = ", ".join(f"{n} {name}" for name, n in tally.items() if n) or "nothing counted"
    return f"batch {batch_number}/{total_batches}: {said}"
