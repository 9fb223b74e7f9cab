"""Reading number lists and normalizing numbers to E.164, one entry at a time.

Everything here streams: a million-line file is never held in memory.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import phonenumbers

from campaigns.errors import InvalidNumberFile

PHONE_COLUMNS = ("phone", "number", "phone_number", "mobile", "whatsapp")
_DELIMITERS = ",;\t"


@dataclass(frozen=True, slots=True)
class Entry:
    """One input entry: the text as given, and its extra CSV columns."""

    raw: str
    variables: Mapping[str, str] | None = None


def normalize(raw: str, region: str) -> str | None:
    """E.164 (``+5511999991234``) for a valid number, None otherwise."""
    text = raw.strip()
    if not text:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def entries_from(source: Iterable[str | Mapping[str, str] | Entry]) -> Iterator[Entry]:
    """Entries from an iterable of numbers, of rows with a phone column, or of Entries."""
    for item in source:
        if isinstance(item, Entry):
            yield item
        elif isinstance(item, str):
            yield Entry(item)
        else:
            yield _entry_from_row(dict(item), line=None)


def read_number_file(path: Path) -> Iterator[Entry]:
    """Stream the entries of a TXT file (one number per line) or a CSV file (a ``phone``
    column; the other columns become per-recipient variables). Blank lines are not entries.

    Raises :class:`InvalidNumberFile` for a missing file, a file that is not UTF-8, or a CSV
    without a phone column — possibly after some entries were yielded, so callers must do
    all their writing in one transaction.
    """
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InvalidNumberFile(f"cannot open number file {str(path)!r}: {exc.strerror}") from exc
    with handle:
        lines = _decoded_lines(handle, path)
        first = next((line for line in lines if line.strip()), None)
        if first is None:
            return
        delimiter = next((d for d in _DELIMITERS if d in first), None)
        if delimiter is None:
            yield Entry(first.strip())
            yield from (Entry(line.strip()) for line in lines if line.strip())
            return
        yield from _csv_entries(first, lines, delimiter, path)


def _decoded_lines(handle: io.TextIOBase, path: Path) -> Iterator[str]:
    number = 0
    while True:
        try:
            line = handle.readline()
        except UnicodeDecodeError as exc:
            raise InvalidNumberFile(
                f"number file {str(path)!r} is not UTF-8 (line {number + 1}: {exc.reason})"
            ) from exc
        if not line:
            return
        number += 1
        yield line


def _csv_entries(first: str, lines: Iterator[str], delimiter: str, path: Path) -> Iterator[Entry]:
    header = [name.strip().lower() for name in next(csv.reader([first], delimiter=delimiter))]
    phone_column = next((c for c in PHONE_COLUMNS if c in header), None)
    if phone_column is None:
        raise InvalidNumberFile(
            f"number file {str(path)!r} has no phone column "
            f"(expected one of {', '.join(PHONE_COLUMNS)}; found {', '.join(header)})"
        )
    reader = csv.reader((line for line in lines if line.strip()), delimiter=delimiter)
    for index, values in enumerate(reader, start=2):
        row = dict(zip(header, (v.strip() for v in values), strict=False))
        yield _entry_from_row(row, line=index, phone_column=phone_column)


def _entry_from_row(
    row: dict[str, str], line: int | None, phone_column: str | None = None
) -> Entry:
    column = phone_column or next((c for c in PHONE_COLUMNS if c in row), None)
    if column is None:
        where = f" on line {line}" if line else ""
        raise InvalidNumberFile(f"row{where} has no phone column: {sorted(row)}")
    raw = row.pop(column, "") or ""
    variables = {k: v for k, v in row.items() if k and v is not None}
    return Entry(raw, variables or None)
