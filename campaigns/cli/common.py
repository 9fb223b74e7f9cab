"""Helpers shared by the commands: the store, JSON output, tables, campaign values."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from campaigns import consent
from campaigns.domain import Campaign, Lane, RecipientStatus, StatusSnapshot
from campaigns.local import DATABASE, resolve_settings
from campaigns.settings import Settings
from campaigns.store import CampaignStateManager

JSON_HELP = "Print machine-readable JSON on stdout instead of text."

console = Console(highlight=False, soft_wrap=True)
"""Human output (stdout). Errors go to stderr through :func:`campaigns.cli.app.fail`."""


@contextmanager
def open_store(settings: Settings | None = None) -> Iterator[CampaignStateManager]:
    """The store on the configured database, its schema checked first; with no DATABASE_URL,
    the embedded PostgreSQL of the data folder is started or adopted (the production code path)
    and migrated on first use.

    Only the database is resolved here: a command that sends tasks gets its broker when it
    first sends one (:mod:`campaigns.dispatch`), so reading a campaign never starts a Redis.
    A configured database whose schema is missing or behind is not migrated: the command
    stops with one line saying to run ``campaigns db upgrade``."""
    from campaigns.store.schema import require_current

    store = CampaignStateManager(settings=settings or resolve_settings(need=DATABASE))
    try:
        require_current(store.engine)
        yield store
    finally:
        store.dispose()


def emit_json(data: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(json.dumps(data, indent=2, default=_jsonable, ensure_ascii=False))


def emit_json_line(data: Any) -> None:
    """One JSON object per line (streams: ``watch --json``)."""
    typer.echo(json.dumps(data, default=_jsonable, ensure_ascii=False))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


def campaign_data(campaign: Campaign) -> dict[str, Any]:
    """A campaign for JSON output. The message text is left out (it may be personal); its
    length says enough to recognise it."""
    return {
        "id": campaign.id,
        "session": campaign.session_name,
        # the sender pool in lane order (its first is "session")
        "sessions": list(campaign.sessions),
        "status": campaign.status.value,
        "total_numbers": campaign.total_numbers,
        "total_batches": campaign.total_batches,
        "current_batch": campaign.current_batch,
        "processed_numbers": campaign.processed_numbers,
        "sent": campaign.success_count,
        "failed": campaign.failed_count,
        "duplicates": campaign.duplicate_count,
        "invalid": campaign.invalid_count,
        "unknown": campaign.unknown_count,
        "skipped": campaign.skipped_count,
        "batch_size": campaign.batch_size,
        "min_interval": campaign.min_interval,
        "max_interval": campaign.max_interval,
        "batch_delay_min": campaign.batch_delay_min,
        "batch_delay_max": campaign.batch_delay_max,
        "message_length": len(campaign.message),
        # consent and content: the basis relied on (LGPD), how many texts (the message and its
        # variants, left out like it), the list's variables, media, the duplicate window, and
        # the campaign a follow-up retries
        "legal_basis": campaign.legal_basis,
        "legal_note": campaign.legal_note,
        "texts": 1 + len(campaign.variants),
        "columns": list(campaign.columns),
        "media": dict(campaign.media) if campaign.media else None,
        "dedupe_days": campaign.dedupe_days,
        "retry_of": campaign.retry_of,
        "interrupt_reason": campaign.interrupt_reason,
        # who resumes an interrupted campaign: the watcher (disconnected), the sweep at
        # resume_at (limited), or only an operator (blocked)
        "interrupt_kind": campaign.interrupt_kind.value if campaign.interrupt_kind else None,
        "resume_at": campaign.resume_at,
        # what a running campaign waits for (capacity, a window, deferred recipients): a wait
        # interrupts nothing and ends by itself
        "waiting_reason": campaign.waiting_reason,
        "waiting_until": campaign.waiting_until,
        "heartbeat_at": campaign.heartbeat_at,
        "next_batch_at": campaign.next_batch_at,
        "created_at": campaign.created_at,
        "updated_at": campaign.updated_at,
    }


def snapshot_data(
    snapshot: StatusSnapshot,
    lanes: Sequence[Lane] | None = None,
    *,
    reasons: Mapping[RecipientStatus, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """A status snapshot for JSON output: the campaign, live ledger counts and the ETA; with
    ``lanes`` (read with their counts), each lane's state and share of the sends; with
    ``reasons`` (:meth:`~campaigns.store.CampaignStateManager.outcome_reasons`), the skipped
    and duplicate counts by reason."""
    data = {
        **campaign_data(snapshot.campaign),
        "ledger": {status.value: snapshot.counts.get(status, 0) for status in RecipientStatus},
        "remaining": snapshot.remaining,
        "batches_done": snapshot.batches_done,
        "eta_seconds": round(snapshot.eta_seconds(), 1),
        "last_error": snapshot.last_error,
    }
    if lanes is not None:
        data["lanes"] = [lane_data(lane, lanes) for lane in lanes]
    if reasons is not None:
        data["skipped_reasons"] = dict(reasons.get(RecipientStatus.SKIPPED, {}))
        data["duplicate_reasons"] = dict(reasons.get(RecipientStatus.DUPLICATE, {}))
    return data


RECENTLY_MESSAGED = "recently_messaged"
"""The error code of a duplicate inside the campaign's duplicate window (``--dedupe-days``)."""

_REASONS = {
    consent.OPTED_OUT_CODE: "on the opt-out list",
    "131050": "stopped marketing (131050)",
    "repeated": "repeated in the list",
    RECENTLY_MESSAGED: "messaged recently",
}


def reasons_label(count: int, reasons: Mapping[str, int]) -> str:
    """``3: 2 on the opt-out list, 1 stopped marketing (131050)``; the bare count when
    nothing is counted or there is one reason only worth naming."""
    if not count or not reasons:
        return str(count)
    parts = [
        f"{n} {_REASONS.get(code, code)}"
        for code, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    ]
    return f"{count}: {', '.join(parts)}"


def media_label(value: Mapping[str, Any]) -> str:
    """``image https://.../promo.jpg``, a document with its file name."""
    label = f"{value.get('kind', 'media')} {value.get('url', '')}".strip()
    filename = value.get("filename")
    return f"{label} as {filename!r}" if filename else label


def texts_label(campaign: Campaign) -> str:
    """``1``, ``1 (no caption)`` for a media without one, or ``3 (the message and 2
    variants)``."""
    count = 1 + len(campaign.variants)
    if count > 1:
        return f"{count} (the message and {plural(count - 1, 'variant')})"
    return "1 (no caption)" if campaign.media and not campaign.message else "1"


def lane_data(lane: Lane, lanes: Sequence[Lane]) -> dict[str, Any]:
    """One lane for JSON output: its state, the kind of its stop, and its share of what the
    pool has sent so far."""
    return {
        "session": lane.session_name,
        "position": lane.position,
        "state": lane.state.value,
        "stop_kind": lane.stop_kind.value if lane.stop_kind else None,
        "reason": lane.reason,
        "resume_at": lane.resume_at,
        "heartbeat_at": lane.heartbeat_at,
        "claimed": lane.claimed,
        "sent": lane.sent,
        "share": round(share(lane, lanes), 4),
    }


def share(lane: Lane, lanes: Sequence[Lane]) -> float:
    """The lane's part of the pool's sends, 0 to 1 (0 before anything is sent)."""
    total = sum(other.sent for other in lanes)
    return lane.sent / total if total else 0.0


def settled(snapshot: StatusSnapshot) -> int:
    """Recipients with a final outcome (duplicates and invalid ones count from the start)."""
    return snapshot.campaign.total_numbers - snapshot.remaining


def plural(count: int, word: str) -> str:
    """``1 recipient``, ``2 recipients``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
    """``75`` → ``1m15s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def when(value: datetime | None) -> str:
    """A timestamp for tables, in local time, to the second."""
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def new_table(*columns: str, title: str | None = None) -> Table:
    """A table with the house style."""
    table = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table
