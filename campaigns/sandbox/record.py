"""The sandbox's record of accepted messages: one SQLite row per message (WAL mode).

The server writes through one :class:`RecordWriter` (one connection, one lock): opening a
connection per request would cost more than the request itself, and a row must be committed
before the 2xx answer leaves, because tests and operators read the record right after. With WAL
and ``synchronous=NORMAL`` a commit is a write to the log without fsync, cheap enough for
thousands of messages per second.

:class:`SandboxRecord` reads the same file from any process: WAL lets readers run while the
writer commits.

Sends the sandbox refused on purpose (an injected fault, or past a number's throughput) are
recorded too, in their own table: tests assert that nothing refused was counted as delivered,
and that a refused recipient was sent again later.

Presence calls (WAHA's sendSeen/startTyping/stopTyping, Evolution's ``delay`` of "composing"
before a send) go to a third table, so tests can assert the order seen → typing → stop → send
and the wait in between. Delivery receipts sent to webhook receivers go to a fourth
(:mod:`campaigns.sandbox.receipt_record`).
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from campaigns.sandbox import receipt_record
from campaigns.sandbox.receipt_record import RecordedReceipt

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dialect TEXT NOT NULL,
    session TEXT NOT NULL,
    recipient TEXT NOT NULL,
    e164 TEXT NOT NULL,
    text TEXT,
    template TEXT,
    gateway_message_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    answered_at REAL,
    deliverable INTEGER NOT NULL,
    media TEXT
);
CREATE INDEX IF NOT EXISTS messages_session ON messages (session, received_at);
CREATE TABLE IF NOT EXISTS refusals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dialect TEXT NOT NULL,
    session TEXT NOT NULL,
    recipient TEXT NOT NULL,
    e164 TEXT NOT NULL,
    fault TEXT NOT NULL,
    status INTEGER NOT NULL,
    code TEXT,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS presence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dialect TEXT NOT NULL,
    session TEXT NOT NULL,
    chat_id TEXT NOT NULL,
    action TEXT NOT NULL,
    at REAL NOT NULL,
    duration_ms INTEGER
);
"""

_PRESENCE_COLUMNS = "id, dialect, session, chat_id, action, at, duration_ms"

_REFUSAL_COLUMNS = "id, dialect, session, recipient, e164, fault, status, code, received_at"

_COLUMNS = (
    "id, dialect, session, recipient, e164, text, template, gateway_message_id, "
    "received_at, answered_at, deliverable, media"
)


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One message the sandbox accepted."""

    id: int
    dialect: str
    """``cloud``, ``waha`` or ``evolution``."""
    session: str
    recipient: str
    """The recipient exactly as the client sent it (``+5511...``, ``5511...@c.us``...)."""
    e164: str
    """The recipient normalized to E.164 (``+5511...``)."""
    text: str | None
    template_json: str | None
    """The Cloud API ``template`` object as JSON, for template messages."""
    gateway_message_id: str
    received_at: float
    """``time.time()`` when the request arrived."""
    answered_at: float | None
    """``time.time()`` when the answer was sent (None while an accept-then-hang holds it)."""
    deliverable: bool
    """False for accepted-but-undeliverable messages (WAHA to a number not on WhatsApp)."""
    media_json: str | None = None
    """A media send's file as JSON (kind, url, mime, filename); ``text`` is its caption."""

    @property
    def template(self) -> dict[str, Any] | None:
        """The template object, parsed."""
        return None if self.template_json is None else dict(json.loads(self.template_json))

    @property
    def media(self) -> dict[str, Any] | None:
        """The media object, parsed (None for texts and templates)."""
        return None if self.media_json is None else dict(json.loads(self.media_json))


@dataclass(frozen=True, slots=True)
class RecordedRefusal:
    """One send the sandbox refused on purpose (nothing was sent)."""

    id: int
    dialect: str
    session: str
    recipient: str
    e164: str
    fault: str
    """``throughput`` (past the number's limit), or the injected fault: ``throttle``,
    ``refuse``, ``fail``, ``reject``."""
    status: int
    """The HTTP status answered."""
    code: str | None
    """The gateway's error code answered (Cloud API ``130429``...), when it has one."""
    received_at: float


@dataclass(frozen=True, slots=True)
class RecordedPresence:
    """One presence call: what the recipient was shown, and when."""

    id: int
    dialect: str
    session: str
    chat_id: str
    """The chat as the client named it (``5511...@c.us``, Evolution's ``number``)."""
    action: str
    """WAHA: ``seen``, ``start_typing``, ``stop_typing``; Evolution: ``composing`` (the
    send's ``delay``)."""
    at: float
    """``time.time()`` when the request arrived."""
    duration_ms: int | None
    """Evolution's ``delay`` (ms the sandbox waited before answering); None for WAHA."""


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A recipient accepted more than once on one session."""

    session: str
    e164: str
    count: int
    ids: tuple[int, ...]


def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        uri = f"{path.resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=10.0, check_same_thread=False)
    return sqlite3.connect(path, timeout=10.0, check_same_thread=False, isolation_level=None)


class RecordWriter:
    """The server's single writer. Thread-safe; each call commits before returning."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = _connect(self.path, readonly=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA + receipt_record.SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(messages)")}
        if "media" not in columns:  # a record file written before media sends were recorded
            self._conn.execute("ALTER TABLE messages ADD COLUMN media TEXT")

    def add(self, *, dialect: str, session: str, recipient: str, e164: str, text: str | None,
            template: Mapping[str, Any] | None, gateway_message_id: str, received_at: float,
            answered_at: float | None, deliverable: bool,
            media: Mapping[str, Any] | None = None) -> int:
        """Insert one accepted message; returns its row id."""
        template_json = None if template is None else json.dumps(template, sort_keys=True)
        media_json = None if media is None else json.dumps(media, sort_keys=True)
        with self._lock:
            conn = self._require()
            cursor = conn.execute(
                "INSERT INTO messages (dialect, session, recipient, e164, text, template,"
                " gateway_message_id, received_at, answered_at, deliverable, media)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (dialect, session, recipient, e164, text, template_json, gateway_message_id,
                 received_at, answered_at, int(deliverable), media_json),
            )
            return int(cursor.lastrowid or 0)

    def refused(self, *, dialect: str, session: str, recipient: str, e164: str, fault: str,
                status: int, code: str | None, received_at: float) -> None:
        """Record one send refused on purpose."""
        with self._lock:
            self._require().execute(
                "INSERT INTO refusals (dialect, session, recipient, e164, fault, status, code,"
                " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (dialect, session, recipient, e164, fault, status, code, received_at),
            )

    def presence(self, *, dialect: str, session: str, chat_id: str, action: str, at: float,
                 duration_ms: int | None = None) -> None:
        """Record one presence call."""
        with self._lock:
            self._require().execute(
                "INSERT INTO presence (dialect, session, chat_id, action, at, duration_ms)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (dialect, session, chat_id, action, at, duration_ms),
            )

    def receipt(self, *values: Any) -> None:
        """Record one receipt delivery attempt (the columns of
        :data:`campaigns.sandbox.receipt_record.INSERT`, in order)."""
        with self._lock:
            self._require().execute(receipt_record.INSERT, values)

    def answered(self, row_id: int, answered_at: float) -> None:
        """Stamp ``answered_at`` on a row recorded before its answer was held back."""
        with self._lock:
            self._require().execute(
                "UPDATE messages SET answered_at = ? WHERE id = ?", (answered_at, row_id)
            )

    def clear(self) -> None:
        """Delete every row (control API ``reset`` with ``record: true``)."""
        with self._lock:
            self._require().execute("DELETE FROM messages")
            self._require().execute("DELETE FROM refusals")
            self._require().execute("DELETE FROM presence")
            self._require().execute("DELETE FROM receipts")

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the sandbox record is closed")
        return self._conn

    def close(self) -> None:
        """Checkpoint and close; later writes raise."""
        with self._lock:
            if self._conn is not None:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._conn.close()
                self._conn = None


class SandboxRecord:
    """Reads a sandbox record file, from any process, while the server writes it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []  # the server has not created it yet: nothing was accepted
        conn = _connect(self.path, readonly=True)
        try:
            return list(conn.execute(sql, params).fetchall())
        finally:
            conn.close()

    def messages(
        self, session: str | None = None, dialect: str | None = None
    ) -> list[RecordedMessage]:
        """Accepted messages in arrival order, optionally of one session and/or dialect."""
        clauses, params = _where(session, dialect)
        rows = self._query(f"SELECT {_COLUMNS} FROM messages{clauses} ORDER BY id", params)
        return [_message(row) for row in rows]

    def count(self, session: str | None = None, dialect: str | None = None) -> int:
        """How many messages were accepted."""
        clauses, params = _where(session, dialect)
        rows = self._query(f"SELECT COUNT(*) FROM messages{clauses}", params)
        return int(rows[0][0]) if rows else 0

    def refusals(
        self, session: str | None = None, dialect: str | None = None
    ) -> list[RecordedRefusal]:
        """Sends refused on purpose, in arrival order of their check."""
        clauses, params = _where(session, dialect)
        rows = self._query(f"SELECT {_REFUSAL_COLUMNS} FROM refusals{clauses} ORDER BY id", params)
        return [
            RecordedRefusal(int(r[0]), r[1], r[2], r[3], r[4], r[5], int(r[6]), r[7], float(r[8]))
            for r in rows
        ]

    def presence(
        self, session: str | None = None, dialect: str | None = None
    ) -> list[RecordedPresence]:
        """Presence calls in arrival order, optionally of one session and/or dialect."""
        clauses, params = _where(session, dialect)
        try:
            rows = self._query(
                f"SELECT {_PRESENCE_COLUMNS} FROM presence{clauses} ORDER BY id", params
            )
        except sqlite3.OperationalError:
            return []  # a record written before presence was recorded
        return [
            RecordedPresence(int(r[0]), r[1], r[2], r[3], r[4], float(r[5]),
                             None if r[6] is None else int(r[6]))
            for r in rows
        ]

    def receipts(self, message_id: str | None = None, dialect: str | None = None
                 ) -> list[RecordedReceipt]:
        """Receipt delivery attempts in order, optionally of one message (the id its send
        answered) and/or dialect."""
        return receipt_record.attempts(self._query, message_id, dialect)

    def receipt_counts(self) -> dict[str, int]:
        """Attempts per outcome (``delivered``, ``retrying``, ``dropped``...) and receipts
        delivered per step (``step.read``...)."""
        return receipt_record.counts(self._query)

    def tally(self, column: str) -> dict[str, int]:
        """Message counts per ``session``, ``dialect`` or ``deliverable`` value."""
        if column not in ("session", "dialect", "deliverable"):
            raise ValueError(f"cannot tally by {column!r}")
        rows = self._query(f"SELECT {column}, COUNT(*) FROM messages GROUP BY {column}"
                           f" ORDER BY {column}")
        return {str(row[0]): int(row[1]) for row in rows}

    def duplicates(self, session: str | None = None) -> list[Duplicate]:
        """Recipients accepted more than once on the same session (the thing a campaign
        engine must never do)."""
        clauses, params = _where(session, None)
        rows = self._query(
            f"SELECT session, e164, COUNT(*), GROUP_CONCAT(id) FROM messages{clauses}"
            " GROUP BY session, e164 HAVING COUNT(*) > 1 ORDER BY session, e164",
            params,
        )
        return [
            Duplicate(
                row[0], row[1], int(row[2]), tuple(sorted(int(i) for i in str(row[3]).split(",")))
            )
            for row in rows
        ]

    def gaps(self, session: str) -> list[float]:
        """Seconds between consecutive arrivals on ``session`` (pacing checks)."""
        rows = self._query(
            "SELECT received_at FROM messages WHERE session = ? ORDER BY received_at", (session,)
        )
        times = [float(row[0]) for row in rows]
        return [later - earlier for earlier, later in itertools.pairwise(times)]


def _where(session: str | None, dialect: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if session is not None:
        clauses.append("session = ?")
        params.append(session)
    if dialect is not None:
        clauses.append("dialect = ?")
        params.append(dialect)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _message(row: tuple[Any, ...]) -> RecordedMessage:
    return RecordedMessage(
        id=int(row[0]),
        dialect=row[1],
        session=row[2],
        recipient=row[3],
        e164=row[4],
        text=row[5],
        template_json=row[6],
        gateway_message_id=row[7],
        received_at=float(row[8]),
        answered_at=None if row[9] is None else float(row[9]),
        deliverable=bool(row[10]),
        media_json=row[11],
    )
