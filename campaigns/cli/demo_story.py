"""What ``campaigns demo`` tells: a campaign over a pool of two sessions; one of them drops and
its lane leaves the rotation while the other sends on, then comes back; later both drop, the
campaign is interrupted and resumes on reconnect — all narrated as it happens, and the summary
at the end checked against the sandbox's own record. :mod:`campaigns.cli.demo` runs the servers
and processes behind it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from campaigns.cli.common import duration
from campaigns.domain import CampaignStatus, LaneState, RecipientStatus, StatusSnapshot
from campaigns.receipts import DeliveryCounts
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.store import CampaignStateManager
from campaigns.timeline import EventKind, Trigger

SESSION = "demo-sandbox"
SECOND = "demo-sandbox-2"
POOL = (SESSION, SECOND)
"""The demo's sender pool: one campaign spread over both sessions."""
LANE_DROP_SECONDS = 3.0
LANE_DROP_AT = 0.2
"""Share of the valid numbers sent when the demo drops the pool's second session alone."""
DROP_SECONDS = 5.0
DROP_AT = 0.55
"""Share of the valid numbers sent when the demo drops every session of the pool."""


@dataclass
class DemoRun:
    """What the run learned, for the story and the summary."""

    campaign_id: int | None = None
    valid: int = 0
    lane_dropped_at: int | None = None
    dropped_at: int | None = None
    interrupted: bool = False
    reconnected: bool = False
    resumed_from: tuple[int | None, int | None] | None = None
    recovered_by: str | None = None
    """Who resumed the interrupted campaign, in words (its timeline's recovery trigger)."""
    started_servers: list[str] = field(default_factory=list)


def story(
    run: DemoRun, store: CampaignStateManager, control: SandboxControl
) -> Callable[[StatusSnapshot, Callable[[str], None]], None]:
    """Each tick of the progress bar: drop the pool's second session once enough is sent (its
    lane leaves the rotation, the first sends on; the follower narrates the lane), later drop
    both, then narrate the interruption, the reconnection and the resume as they happen."""

    def tick(snapshot: StatusSnapshot, say: Callable[[str], None]) -> None:
        c = snapshot.campaign
        sent = snapshot.counts.get(RecipientStatus.SENT, 0)
        if run.lane_dropped_at is None and sent >= LANE_DROP_AT * run.valid:
            control.drop(SECOND, seconds=LANE_DROP_SECONDS)
            run.lane_dropped_at = sent
            say(
                f"WhatsApp session {SECOND} dropped after {sent} messages (the sandbox "
                f"disconnects it for {LANE_DROP_SECONDS:.0f}s); {SESSION} sends on ..."
            )
            return
        if (
            run.dropped_at is None
            and sent >= DROP_AT * run.valid
            and _lane_active(store, c.id, SECOND)  # the pool is whole again first
        ):
            for name in POOL:
                control.drop(name, seconds=DROP_SECONDS)
            run.dropped_at = sent
            say(
                f"WhatsApp session {SESSION} dropped after {sent} messages, and {SECOND} with "
                f"it (the sandbox disconnects both for {DROP_SECONDS:.0f}s) ..."
            )
            return
        if c.status is CampaignStatus.INTERRUPTED:
            run.interrupted = True
        if run.interrupted and not run.reconnected:
            if store.get_session(SESSION).connection_status == "connected":
                run.reconnected = True
                say(f"session {SESSION} reconnected")
        if run.resumed_from is not None and run.recovered_by is None:
            run.recovered_by = _recovered_by(store, c.id)
            if run.recovered_by:
                say(f"the recovery was triggered by {run.recovered_by}")

    return tick


def summarize(
    snapshot: StatusSnapshot, record: SandboxRecord, elapsed: float, run: DemoRun,
    delivery: DeliveryCounts,
) -> dict[str, Any]:  # fmt: skip
    """The run's outcome, from the ledger and from the sandbox's own record."""
    counts = snapshot.counts
    return {
        "campaign_id": snapshot.campaign.id,
        "status": snapshot.campaign.status.value,
        "entries": snapshot.campaign.total_numbers,
        "sent": counts.get(RecipientStatus.SENT, 0),
        "failed": counts.get(RecipientStatus.FAILED, 0),
        "duplicates": counts.get(RecipientStatus.DUPLICATE, 0),
        "invalid": counts.get(RecipientStatus.INVALID, 0),
        "unknown": counts.get(RecipientStatus.UNKNOWN, 0),
        "duration_seconds": round(elapsed, 1),
        "interrupted": run.interrupted,
        "resumed_from": None
        if run.resumed_from is None
        else {"batch": run.resumed_from[0], "position": run.resumed_from[1]},
        "sandbox_messages": sum(record.count(name) for name in POOL),
        "sandbox_duplicates": _pool_duplicates(record),
        "sent_per_session": {name: record.count(name) for name in POOL},
        "delivered": delivery.delivered,
        "read": delivery.read,
        "recovered_by": run.recovered_by,
        "sandbox_record": str(record.path),
    }


TRIGGERS = {
    Trigger.WEBHOOK: "the gateway's webhook (WAHA session.status WORKING)",
    Trigger.WATCHER: "the session watcher (it polls the gateway)",
    Trigger.SWEEP: "the sweep (a stalled run)",
    Trigger.WORKER_START: "a worker's start",
    Trigger.OPERATOR: "an operator",
}


def _recovered_by(store: CampaignStateManager, campaign_id: int) -> str | None:
    """The newest recovery's trigger in words, from the campaign's timeline."""
    found = [e for e in store.events(campaign_id, limit=1000) if e.kind is EventKind.RECOVERED]
    if not found or found[-1].trigger is None:
        return None
    trigger = found[-1].trigger
    try:
        return TRIGGERS[Trigger(trigger)]
    except (ValueError, KeyError):
        return trigger  # a trigger newer than this table: its own word


def _lane_active(store: CampaignStateManager, campaign_id: int, session: str) -> bool:
    lane = store.get_lane(campaign_id, session)
    return lane is not None and lane.state is LaneState.ACTIVE


def _pool_duplicates(record: SandboxRecord) -> int:
    """Numbers the sandbox accepted more than once over the whole pool (on one session or
    on two: either would be a person messaged twice)."""
    seen = Counter(m.e164 for name in POOL for m in record.messages(session=name))
    return sum(1 for times in seen.values() if times > 1)


def print_summary(out: Console, summary: dict[str, Any]) -> None:
    """The summary as a table, and where the sandbox's record is."""
    table = Table(
        title=f"campaign {summary['campaign_id']}: {summary['status']}",
        show_header=False,
        show_edge=False,
    )
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = (
        ("entries", "entries"),
        ("sent", "sent"),
        ("failed", "failed"),
        ("duplicates (not sent)", "duplicates"),
        ("invalid (not sent)", "invalid"),
        ("unknown", "unknown"),
        ("messages the sandbox accepted", "sandbox_messages"),
        ("sandbox duplicates", "sandbox_duplicates"),
        ("delivered (receipts)", "delivered"),
        ("read (receipts)", "read"),
    )
    for label, key in rows:
        table.add_row(label, str(summary[key]))
    for name, count in summary["sent_per_session"].items():
        table.add_row(f"accepted from {name}", str(count))
    table.add_row("duration", duration(summary["duration_seconds"]))
    resumed = summary["resumed_from"]
    if resumed:
        table.add_row(
            "resumed after the drop from",
            f"batch {resumed['batch']}, recipient #{resumed['position']}",
        )
    if summary["recovered_by"]:
        table.add_row("recovered by", summary["recovered_by"])
    out.print(table)
    out.print(
        f"sandbox record (SQLite, every accepted message): {summary['sandbox_record']}",
        markup=False,
        highlight=False,
    )
