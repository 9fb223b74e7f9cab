"""The campaign page's recipients table: a keyset page of the ledger, a search by number, the
CSV export. Numbers are masked unless an operator asked for them in full.

Paging is ``recipients_after`` (position > after, along the primary key): the millionth row
costs what the first does, and nothing but the page is read. There is no "previous" link: a
keyset page knows where the next one starts, and the first page is one click away.

Search runs on submit only, never per keystroke. Its cost, said plainly: the ledger has no
index on (campaign, phone) — its phone index is partial (sent rows, for the sticky sender) —
so a search reads the campaign's rows along the primary key in pages of
:data:`SEARCH_PAGE`, stopping at :data:`SEARCH_LIMIT` matches or :data:`SEARCH_ROWS` rows read:
on a 1,000,000-row campaign up to a second or two of one connection, bounded and never
holding the ledger in memory. An index ``(campaign_id, phone)`` would make an exact E.164
search one probe; a search by last digits would need an index on the reversed number (or
pg_trgm); both are migrations for the store, left for when searching is measured to matter.
"""

from __future__ import annotations

import re
from typing import Any

from campaigns.domain import RecipientStatus
from campaigns.store import CampaignStateManager

PAGE_SIZE = 50
SEARCH_LIMIT = 50
SEARCH_PAGE = 5000
SEARCH_ROWS = 2_000_000
MIN_DIGITS = 4
"""Fewer last digits would match a large part of any list: not a search."""


def parse_query(text: str | None) -> tuple[str, str] | None:
    """``+5511999991234`` → ``("exact", ...)``; ``1234`` → ``("suffix", "1234")``; None for
    an empty query. :class:`ValueError` with a sentence for anything else."""
    if text is None or not text.strip():
        return None
    given = text.strip().replace(" ", "").replace("-", "")
    if re.fullmatch(r"\+\d{8,15}", given):
        return "exact", given
    if re.fullmatch(r"\d+", given) and len(given) >= MIN_DIGITS:
        return "suffix", given
    raise ValueError(
        f"search: a full number in E.164 (+5511999991234) or its last {MIN_DIGITS} or more digits"
    )


def shown(rows: list[dict[str, Any]], full: bool) -> list[dict[str, Any]]:
    """Rows for the table, the number masked unless ``full``."""
    return [{**row, "phone": row["phone"] if full else mask_phone_always(row["phone"])}
            for row in rows]  # fmt: skip


def mask_phone_always(number: str | None) -> str:
    """:func:`campaigns.masking.mask_phone`, but masked whatever LOG_FULL_NUMBERS says: that
    switch is for a developer's logs, not for every reader of a page."""
    if number is None:
        return "-"
    plus = "+" if number.startswith("+") else ""
    digits = number[len(plus) :]
    if len(digits) <= 5:
        return plus + "*" * len(digits)
    return plus + digits[:3] + "*" * (len(digits) - 5) + digits[-2:]  # mask_phone's shape


def page(
    store: CampaignStateManager,
    campaign_id: int,
    status: RecipientStatus | None,
    after: int,
    full: bool,
) -> tuple[list[dict[str, Any]], int | None]:
    """One page and the ``after`` of the next (None on the last page)."""
    rows = store.recipients_after(campaign_id, status, after=after, limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return shown(rows, full), (rows[-1]["position"] if more and rows else None)


def search(
    store: CampaignStateManager,
    campaign_id: int,
    status: RecipientStatus | None,
    query: tuple[str, str],
    full: bool,
) -> tuple[list[dict[str, Any]], int]:
    """The matching rows (at most :data:`SEARCH_LIMIT`) and how many rows were read."""
    kind, value = query
    found, read = [], 0
    for row in store.iter_recipients(campaign_id, status, page=SEARCH_PAGE):
        read += 1
        phone = row["phone"] or ""
        if (phone == value) if kind == "exact" else phone.endswith(value):
            found.append(row)
            if len(found) >= SEARCH_LIMIT:
                break
        if read >= SEARCH_ROWS:
            break
    return shown(found, full), read
