"""``campaigns export``: a campaign's ledger as CSV or JSON Lines, one row per input entry in
input order, with the session that sent each recipient (a pool's lanes stamp their sends), the
gateway's message id, the error of a failed one, when it was claimed and finished, the
message variant it was given, and what the receipts said (delivery status, delivered and read
times). Streamed page by page from PostgreSQL and written row by row: a
1,000,000-row ledger is exported in flat memory. Numbers are masked unless ``--full-numbers``.

The columns and the one streamed writer live in :mod:`campaigns.rows`, shared with the opt-out
list's export (:mod:`campaigns.cli.optouts`) and the web service's, so every export reads the
same.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from campaigns.cli import options
from campaigns.cli.app import app
from campaigns.cli.common import open_store
from campaigns.domain import RecipientStatus
from campaigns.rows import COLUMNS, ExportFormat, ledger_values, write_rows

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


def write_to(
    out: Path | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: ExportFormat
) -> int:
    """Write to ``out`` (created or truncated), or to standard output without it."""
    if out is None:
        return write_rows(sys.stdout, columns, rows, fmt)
    with out.open("w", newline="", encoding="utf-8") as target:
        return write_rows(target, columns, rows, fmt)


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
