"""Bulk-loading a number list into the recipient ledger with PostgreSQL COPY.

The entries are normalized and written to COPY as they are read, through a small file-like
adapter, so memory stays flat whatever the list's size. Duplicates are then marked inside
PostgreSQL (a window over the campaign's rows), not with a Python set of every number.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from campaigns.numbers import Entry, normalize

COPY_RECIPIENTS = (
    "COPY campaign_recipients"
    " (campaign_id, position, batch_number, phone, raw, variables, status, variant)"
    " FROM STDIN WITH (FORMAT csv, FORCE_NULL (phone, variables, variant))"
)
_CHUNK_ROWS = 2000


class StreamReader(io.RawIOBase):
    """A read-only file over an iterator of text chunks, for ``cursor.copy_expert``."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                chunk = next(self._chunks, None)
            except BaseException as exc:
                # psycopg2 turns an error in read() into QueryCanceled; keep the real one so
                # the caller sees "not UTF-8", not "COPY failed"
                self.error = exc
                raise
            if chunk is None:
                break
            self._buffer += chunk.encode("utf-8")
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class LoadCounter:
    """How many entries went through the loader, and how many were valid."""

    def __init__(self) -> None:
        self.total = 0
        self.valid = 0


def _csv_chunks(
    campaign_id: int,
    entries: Iterable[Entry],
    batch_size: int,
    region: str,
    counter: LoadCounter,
    checker: Callable[[Mapping[str, str] | None], None] | None,
    variant: Callable[[int], str] | None,
) -> Iterator[str]:
    buffer = io.StringIO()
    # QUOTE_NONNUMERIC quotes every string, so an empty raw stays '' and never becomes NULL;
    # None is written as "" too, which FORCE_NULL turns back into NULL for phone and variables.
    writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    rows = 0
    for position, entry in enumerate(entries, start=1):
        phone = normalize(entry.raw, region)
        counter.total = position
        label = None
        if phone is not None:
            counter.valid += 1
            if checker is not None:  # only numbers that may be sent need their variables
                checker(entry.variables)
            label = variant(position) if variant is not None else None
        variables: Any = json.dumps(entry.variables) if entry.variables else None
        writer.writerow(
            [
                campaign_id,
                position,
                (position - 1) // batch_size + 1,
                phone,
                entry.raw,
                variables,
                "pending" if phone is not None else "invalid",
                label,
            ]
        )
        rows += 1
        if rows >= _CHUNK_ROWS:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            rows = 0
    if rows:
        yield buffer.getvalue()


def copy_entries(
    cursor: Any,
    campaign_id: int,
    entries: Iterable[Entry],
    batch_size: int,
    region: str,
    *,
    checker: Callable[[Mapping[str, str] | None], None] | None = None,
    variant: Callable[[int], str] | None = None,
) -> LoadCounter:
    """COPY every entry into the ledger of ``campaign_id`` on ``cursor`` (a psycopg2 cursor
    inside the caller's transaction). ``checker`` sees each valid entry's variables (what the
    message needs of the list, checked in the same pass); ``variant`` gives each valid
    entry's variant label from its position. Returns the counts; raises whatever reading
    raised."""
    counter = LoadCounter()
    chunks = _csv_chunks(campaign_id, entries, batch_size, region, counter, checker, variant)
    stream = StreamReader(chunks)
    try:
        cursor.copy_expert(COPY_RECIPIENTS, stream, size=65536)
    except Exception:
        if stream.error is not None:
            raise stream.error from None
        raise
    return counter
