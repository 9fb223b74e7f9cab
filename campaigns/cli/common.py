"""Helpers shared by the commands: the store, JSON output, tables, campaign values."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from campaigns import consent
from campaigns.domain import Campaign, StatusSnapshot
from campaigns.local import DATABASE, resolve_settings
from campaigns.settings import Settings
from campaigns.store import CampaignStateManager

# the JSON views moved to campaigns.views (the HTTP API shows the same); re-exported for the
# commands that import them from here
from campaigns.views import campaign_data as campaign_data
from campaigns.views import lane_data as lane_data
from campaigns.views import share as share
from campaigns.views import snapshot_data as snapshot_data

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
