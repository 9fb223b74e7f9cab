"""``campaigns export``: a campaign's ledger as CSV, one row per input entry in input order,
with the session that sent each recipient (a pool's lanes stamp their sends), the gateway's
message id and the error of a failed one. Streamed page by page from PostgreSQL: a
1,000,000-row ledger is exported in flat memory. Numbers are masked unless ``--full-numbers``."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping
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
        typer.Option("--out", "-o", help="Write to this file (default: standard output)."),
    ] = None,
    full_numbers: bool = typer.Option(False, "--full-numbers", help="Do not mask the numbers."),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON object per recipient and line (JSON Lines), not CSV."
    ),
) -> None:
    """Export a campaign's ledger as CSV: status, sending session, message id, error."""
    with open_store() as store:
        store.get_campaign(campaign_id)  # an unknown id says so before any file is made
        rows = store.iter_recipients(campaign_id, status)
        if out is None:
            count = _write(sys.stdout, rows, full_numbers, as_json)
        else:
            with out.open("w", newline="", encoding="utf-8") as target:
                count = _write(target, rows, full_numbers, as_json)
            typer.echo(f"{count} recipients of campaign {campaign_id} written to {out}", err=True)


def _write(
    target: TextIO, rows: Iterable[Mapping[str, Any]], full_numbers: bool, as_json: bool
) -> int:
    writer = csv.writer(target)
    if not as_json:
        writer.writerow(COLUMNS)
    count = 0
    for row in rows:
        finished = row["finished_at"]
        values = (
            row["position"],
            row["batch_number"],
            row["phone"] if full_numbers else mask_phone(row["phone"]),
            str(row["status"]),
            row["session_name"],
            row["attempts"],
            row["gateway_message_id"],
            row["error_code"],
            row["error_message"],
            finished.isoformat() if finished else None,
        )
        if as_json:
            target.write(json.dumps(dict(zip(COLUMNS, values, strict=True))) + "\n")
        else:
            writer.writerow(["" if v is None else v for v in values])
        count += 1
    return count
