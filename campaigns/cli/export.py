"""``campaigns export``: a campaign's ledger as CSV or JSON Lines, one row per input entry in
input order, with the session that sent each recipient (a pool's lanes stamp their sends), the
gateway's message id, the error of a failed one, when it was claimed and finished, the
message variant it was given, and what the receipts said (delivery status, delivered and read
times). Streamed page by page from PostgreSQL and written row by row: a
1,000,000-row ledger is exported in flat memory. Numbers are masked unless ``--full-numbers``.

:func:`write_rows` is the one writer of the command line's streamed exports (the ledger here,
the opt-out list in :mod:`campaigns.cli.optouts`), so both formats read the same everywhere.
"""

from __future__ import annotations

import csv
import enum
import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from campaigns.cli import options
from campaigns.cli.app import app
from campaigns.cli.common import open_store
from campaigns.domain import RecipientStatus
from campaigns.masking import mask_phone

COLUMNS = (
    "position",
    "batch",
    "phone",
    "status",
    "session",
    "attempts",
    "gateway_message_id",
    "error_code",
    "error_message",
    "finished_at",
    # added after the first release: at the end, so a consumer reading columns by index
    # keeps working
    "claimed_at",
    "variant",
    # what the gateway's receipts said after the send (delivered, read, played, failed)
    "delivery_status",
    "delivered_at",
    "read_at",
)


class ExportFormat(enum.StrEnum):
    """What an export writes: CSV with a header line, or one JSON object per line."""

    CSV = "csv"
    JSONL = "jsonl"


FORMAT_HELP = "csv (a header line, then one row per line) or jsonl (one JSON object per line)."
FULL_NUMBERS_HELP = (
    "Write the numbers unmasked. An export is for your own systems (a CRM, a suppression "
    "list), where masked numbers are of no use; masked is the default so that no command "
    "prints a whole number unless asked."
)


def pick_format(chosen: ExportFormat | None, as_json: bool) -> ExportFormat:
    """``--format``, with ``--json`` as the older spelling of ``--format jsonl``."""
    if as_json and chosen is ExportFormat.CSV:
        raise typer.BadParameter(
            "--json means --format jsonl; it cannot go with --format csv", param_hint="--json"
        )
    if as_json:
        return ExportFormat.JSONL
    return chosen or ExportFormat.CSV


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def write_rows(
    target: TextIO, columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: ExportFormat
) -> int:
    """Write ``rows`` (values in ``columns`` order: str, int or None) as ``fmt``, one at a
    time; returns how many. None is an empty CSV field and a JSON null."""
    count = 0
    if fmt is ExportFormat.CSV:
        writer = csv.writer(target)
        writer.writerow(columns)
        for values in rows:
            writer.writerow(values)  # csv writes None as an empty field
            count += 1
        return count
    for values in rows:
        target.write(json.dumps(dict(zip(columns, values, strict=True)), ensure_ascii=False))
        target.write("\n")
        count += 1
    return count


def write_to(
    out: Path | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: ExportFormat
) -> int:
    """Write to ``out`` (created or truncated), or to standard output without it."""
    if out is None:
        return write_rows(sys.stdout, columns, rows, fmt)
    with out.open("w", newline="", encoding="utf-8") as target:
        return write_rows(target, columns, rows, fmt)


def ledger_values(
    rows: Iterable[Mapping[str, Any]], full_numbers: bool
) -> Iterator[tuple[Any, ...]]:
    """Ledger rows (``iter_recipients``) as :data:`COLUMNS` values."""
    for row in rows:
        yield (
            row["position"],
            row["batch_number"],
            row["phone"] if full_numbers else mask_phone(row["phone"]),
            str(row["status"]),
            row["session_name"],
            row["attempts"],
            row["gateway_message_id"],
            row["error_code"],
            row["error_message"],
            iso(row["finished_at"]),
            iso(row["claimed_at"]),
            row["variant"],
            row["delivery_status"],
            iso(row["delivered_at"]),
            iso(row["read_at"]),
        )


@app.command()
def export(
    campaign_id: int = typer.Argument(
        ..., metavar="ID", help="Campaign id.", callback=options.campaign_id
    ),
    status: Annotated[
        RecipientStatus | None, typer.Option("--status", help="Only recipients in this status.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Write to this file (default: standard output).", dir_okay=False
        ),
    ] = None,
    fmt: Annotated[
        ExportFormat | None, typer.Option("--format", help=FORMAT_HELP + " [default: csv]")
    ] = None,
    full_numbers: bool = typer.Option(False, "--full-numbers", help=FULL_NUMBERS_HELP),
    as_json: bool = typer.Option(False, "--json", help="The same as --format jsonl."),
) -> None:
    """Export a campaign's ledger: number, status, sending session, message id, error,
    claim and finish times, variant, delivery status and times. Streamed: flat memory for
    any size."""
    chosen = pick_format(fmt, as_json)
    with open_store() as store:
        store.get_campaign(campaign_id)  # an unknown id says so before any file is made
        rows = ledger_values(store.iter_recipients(campaign_id, status), full_numbers)
        count = write_to(out, COLUMNS, rows, chosen)
    if out is not None:
        typer.echo(f"{count} recipients of campaign {campaign_id} written to {out}", err=True)
