"""Rows of the operators' API: ledger rows (the recipients page, the streamed export) and
sender sessions, in the command line's shapes.

The export's columns and values, and a session's JSON view, are the command line's own
(``campaigns export``, ``campaigns sessions list --json``), imported rather than copied so the
two can never disagree; those modules are being extended by other work right now (receipts add
the export's delivery columns), so moving them to :mod:`campaigns.views` is left for after.
The service is started by the command line (``campaigns web``), so importing it costs nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from campaigns.gateway_pool import gateway_for
from campaigns.rows import COLUMNS, ExportFormat, ledger_values
from campaigns.store import CampaignStateManager
from campaigns.views import session_data
from campaigns.web.routers.api_errors import ApiError

MEDIA_TYPES = {ExportFormat.CSV: "text/csv; charset=utf-8",
               ExportFormat.JSONL: "application/x-ndjson"}  # fmt: skip
FLUSH_BYTES = 64 * 1024
"""A chunk of the streamed export: big enough to keep the socket busy, small enough that
memory stays flat whatever the ledger's size."""


def export_format(value: str) -> ExportFormat:
    try:
        return ExportFormat(value.strip().lower())
    except ValueError:
        choices = ", ".join(f.value for f in ExportFormat)
        raise ApiError(422, "invalid_input", f"format must be {choices}, got {value!r}") from None


def as_dicts(rows: Iterable[Mapping[str, Any]], full_numbers: bool) -> list[dict[str, Any]]:
    """Ledger rows as the export's columns (masked numbers unless ``full_numbers``)."""
    return [dict(zip(COLUMNS, v, strict=True)) for v in ledger_values(rows, full_numbers)]


def stream(
    rows: Iterable[Mapping[str, Any]], full_numbers: bool, fmt: ExportFormat
) -> Iterator[bytes]:
    """The ledger as ``fmt``, the bytes of :func:`campaigns.cli.export.write_rows` (a CSV
    header line then a row per line, or one JSON object per line), in chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if fmt is ExportFormat.CSV:
        writer.writerow(COLUMNS)
    for values in ledger_values(rows, full_numbers):
        if fmt is ExportFormat.CSV:
            writer.writerow(values)  # None is an empty field, as in write_rows
        else:
            buffer.write(json.dumps(dict(zip(COLUMNS, values, strict=True)), ensure_ascii=False))
            buffer.write("\n")
        if buffer.tell() >= FLUSH_BYTES:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


def sessions(store: CampaignStateManager) -> list[dict[str, Any]]:
    return [session_data(s) for s in store.list_sessions()]


def check(store: CampaignStateManager, name: str) -> dict[str, Any]:
    """``campaigns sessions check NAME``: the gateway asked now, the answer stored."""
    session = store.get_session(name)
    gateway = gateway_for(session, store.settings)
    try:
        health = gateway.health()
    finally:
        gateway.close()
    status = "connected" if health.connected else health.state
    error = None if health.connected else (health.detail or health.state)
    store.record_session_check(session.name, status, error)
    return {"name": session.name, "connected": health.connected, "state": health.state,
            "detail": health.detail}  # fmt: skip
