"""The campaign page's recipients table: a keyset page of the ledger, a search by number, the
CSV export. Numbers are masked unless an operator asked for them in full.

Paging is ``recipients_after`` (position > after, along the primary key): the millionth row
costs what the first does, and nothing but the page is read. There is no "previous" link: a
keyset page knows where the next one starts, and the first page is one click away.

Search runs on submit only, never per keystroke: a full number or its last digits, one range
of the ledger's reversed-number index (``recipients_by_number``; migration 0010), whatever the
campaign's size. It used to read the campaign's rows along the primary key: 6.2 s on a
1,000,000-row campaign.
"""

from __future__ import annotations

import re
from typing import Any

from campaigns.domain import RecipientStatus
from campaigns.store import CampaignStateManager
from campaigns.store.pages import MIN_SEARCH_DIGITS

PAGE_SIZE = 50
SEARCH_LIMIT = 50
MIN_DIGITS = MIN_SEARCH_DIGITS


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
) -> list[dict[str, Any]]:
    """The matching rows, in input order, at most :data:`SEARCH_LIMIT`."""
    _kind, value = query
    found = store.recipients_by_number(campaign_id, value, status, limit=SEARCH_LIMIT)
    return shown(found, full)
