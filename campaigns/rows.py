"""A campaign's ledger as export rows: the columns, the two formats, and one streamed writer.

Shared by the command line (``campaigns export``, ``campaigns optouts export``) and the web
service's export (:mod:`campaigns.web`), so both write the same columns the same way. Rows are
written one at a time: a 1,000,000-row ledger streams in flat memory.
"""

from __future__ import annotations

import csv
import enum
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

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
