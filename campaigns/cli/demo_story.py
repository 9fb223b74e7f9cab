"""What ``campaigns demo`` tells: the session drop and the recovery as they happen, and the
summary at the end, checked against the sandbox's own record. :mod:`campaigns.cli.demo` runs
the servers and processes behind it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from campaigns.cli.common import duration
from campaigns.domain import CampaignStatus, RecipientStatus, StatusSnapshot
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.store import CampaignStateManager

SESSION = "demo-sandbox"
DROP_SECONDS = 5.0
DROP_AT = 0.4
"""Share of the valid numbers sent when the demo drops the session."""


@dataclass
class DemoRun:
    """What the run learned, for the story and the summary."""

    campaign_id: int | None = None
    valid: int = 0
    dropped_at: int | None = None
    interrupted: bool = False
    reconnected: bool = False
    resumed_from: tuple[int | None, int | None] | None = None
    started_servers: list[str] = field(default_factory=list)


def story(
    run: DemoRun, store: CampaignStateManager, control: SandboxControl
) -> Callable[[StatusSnapshot, Callable[[str], None]], None]:
    """Each tick of the progress bar: drop the session once enough is sent, then narrate the
    interruption, the reconnection and the resume as they happen."""

    def tick(snapshot: StatusSnapshot, say: Callable[[str], None]) -> None:
        c = snapshot.campaign
        sent = snapshot.counts.get(RecipientStatus.SENT, 0)
        if run.dropped_at is None and sent >= DROP_AT * run.valid:
            control.drop(SESSION, seconds=DROP_SECONDS)
            run.dropped_at = sent
            say(
                f"WhatsApp session {SESSION} dropped after {sent} messages (the sandbox "
                f"disconnects it for {DROP_SECONDS:.0f}s) ..."
            )
            return
        if c.status is CampaignStatus.INTERRUPTED:
            run.interrupted = True
        if run.interrupted and not run.reconnected:
            if store.get_session(SESSION).connection_status == "connected":
                run.reconnected = True
                say(f"session {SESSION} reconnected (seen by the session watcher)")

    return tick


def summarize(
    snapshot: StatusSnapshot, record: SandboxRecord, elapsed: float, run: DemoRun
) -> dict[str, Any]:
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
        "sandbox_messages": record.count(SESSION),
        "sandbox_duplicates": len(record.duplicates(SESSION)),
        "sandbox_record": str(record.path),
    }


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
    )
    for label, key in rows:
        table.add_row(label, str(summary[key]))
    table.add_row("duration", duration(summary["duration_seconds"]))
    resumed = summary["resumed_from"]
    if resumed:
        table.add_row(
            "resumed after the drop from",
            f"batch {resumed['batch']}, recipient #{resumed['position']}",
        )
    out.print(table)
    out.print(
        f"sandbox record (SQLite, every accepted message): {summary['sandbox_record']}",
        markup=False,
        highlight=False,
    )
