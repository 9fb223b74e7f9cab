"""The ``receipts`` table of the sandbox record: one row per delivery attempt of a delivery
receipt (:mod:`campaigns.sandbox.receipts`), and one per receipt dropped because too many were
scheduled. Kept apart from :mod:`campaigns.sandbox.record` so that module stays small; the
record's writer and reader call into it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Query = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]

SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dialect TEXT NOT NULL,
    session TEXT NOT NULL,
    gateway_message_id TEXT NOT NULL,
    receipt_id TEXT NOT NULL,
    status TEXT NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    http_status INTEGER,
    outcome TEXT NOT NULL,
    error TEXT,
    duplicate INTEGER NOT NULL,
    target INTEGER,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_message ON receipts (gateway_message_id);
"""

COLUMNS = ("id, dialect, session, gateway_message_id, receipt_id, status, step, attempt,"
           " http_status, outcome, error, duplicate, target, at")

INSERT = ("INSERT INTO receipts (dialect, session, gateway_message_id, receipt_id, status, step,"
          " attempt, http_status, outcome, error, duplicate, target, at)"
          " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

OUTCOMES = ("delivered", "retrying", "given_up", "refused", "dropped")
"""``delivered``: the receiver answered 2xx; ``retrying``: 5xx, 429 or no answer, tried again
later; ``given_up``: the same, past the retry time (or the sandbox stopped); ``refused``: any
other 4xx (not retried, like Evolution's non-retryable statuses); ``dropped``: never sent, too
many receipts were scheduled."""


@dataclass(frozen=True, slots=True)
class RecordedReceipt:
    """One delivery attempt of one receipt."""

    id: int
    dialect: str
    session: str
    gateway_message_id: str
    """The id the send's answer gave (the recorded message's)."""
    receipt_id: str
    """The id the receipt carried (WAHA: ``true_<chat>_<id>``)."""
    status: str
    """The dialect's own name: ``sent``/``delivered``/``read``/``failed`` (Cloud),
    ``SERVER``/``DEVICE``/``READ``/``ERROR`` (WAHA), ``SERVER_ACK``/``DELIVERY_ACK``/``READ``/
    ``ERROR`` (Evolution)."""
    step: str
    """The same in common words: ``sent``, ``delivered``, ``read``, ``failed``."""
    attempt: int
    """1 for the first try (0 for a dropped receipt)."""
    http_status: int | None
    """What the receiver answered (None: no answer, or never sent)."""
    outcome: str
    """One of :data:`OUTCOMES`."""
    error: str | None
    duplicate: bool
    """The deliberate second copy of a receipt."""
    target: int | None
    at: float
    """``time.time()`` of the attempt."""


def row_to_receipt(row: tuple[Any, ...]) -> RecordedReceipt:
    return RecordedReceipt(
        int(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], int(row[7]),
        None if row[8] is None else int(row[8]), row[9], row[10], bool(row[11]),
        None if row[12] is None else int(row[12]), float(row[13]))


def attempts(query: Query, message_id: str | None, dialect: str | None
             ) -> list[RecordedReceipt]:
    """:meth:`SandboxRecord.receipts`."""
    clauses = [(name, value) for name, value in
               (("gateway_message_id", message_id), ("dialect", dialect)) if value is not None]
    where = " AND ".join(f"{name} = ?" for name, _ in clauses)
    sql = f"SELECT {COLUMNS} FROM receipts{' WHERE ' + where if where else ''} ORDER BY id"
    try:
        rows = query(sql, tuple(value for _, value in clauses))
    except sqlite3.OperationalError:
        return []  # a record written before receipts were recorded
    return [row_to_receipt(row) for row in rows]


def counts(query: Query) -> dict[str, int]:
    """:meth:`SandboxRecord.receipt_counts`."""
    try:
        rows = query("SELECT outcome, COUNT(*) FROM receipts GROUP BY outcome", ())
        rows += query("SELECT 'step.' || step, COUNT(*) FROM receipts"
                      " WHERE outcome = 'delivered' GROUP BY step", ())
    except sqlite3.OperationalError:
        return {}
    return {str(row[0]): int(row[1]) for row in sorted(rows)}
