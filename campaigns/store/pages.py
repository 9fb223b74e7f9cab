"""Store verbs for reading a campaign's ledger a page at a time (the HTTP API's recipients).

Pages are keyset pages along the ledger's primary key (campaign, position): page N costs the
same as page 1, where ``OFFSET`` would read and throw away every row before it (a million rows
for the last page of a million-number campaign).
"""

from __future__ import annotations

import re
from typing import Any

from campaigns import inputs
from campaigns.domain import RecipientStatus
from campaigns.errors import InvalidArgument
from campaigns.store import queries
from campaigns.store.base import StoreBase
from campaigns.store.db import translate_errors

MAX_PAGE = 1000
"""The most rows one page returns: a page is held in memory and sent as one JSON document."""
MIN_SEARCH_DIGITS = 4
"""Fewer last digits would match a large part of any list: not a search."""


class PageVerbs(StoreBase):
    """One page of a campaign's ledger."""

    def recipients_after(
        self,
        campaign_id: int,
        status: RecipientStatus | str | None = None,
        *,
        after: int = 0,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """At most ``limit`` ledger rows of the campaign with a position above ``after``, in
        input order (as :meth:`iter_recipients` reads them); the last row's position is the
        next page's ``after``. :class:`CampaignNotFound` for an unknown campaign."""
        campaign_id = self.get_campaign(campaign_id).id
        chosen = inputs.optional_member(status, "status", RecipientStatus)
        after = inputs.whole_number(after, "after", minimum=0)
        limit = inputs.positive_int(limit, "limit", maximum=MAX_PAGE)
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                queries.LIST_RECIPIENTS_AFTER,
                {"id": campaign_id, "after": after,
                 "status": chosen.value if chosen else None, "limit": limit},
            ).all()  # fmt: skip
        return [dict(r._mapping) for r in rows]

    def recipients_by_number(
        self,
        campaign_id: int,
        number: str,
        status: RecipientStatus | str | None = None,
        *,
        after: int = 0,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """The campaign's ledger rows whose number is ``number`` (a full E.164 number,
        ``+5511999991234``) or ends with it (its last :data:`MIN_SEARCH_DIGITS` or more
        digits), in input order after position ``after``, at most ``limit``: one range of the
        reversed-number index, whatever the campaign's size. :class:`InvalidArgument` for
        anything else."""
        campaign_id = self.get_campaign(campaign_id).id
        chosen = inputs.optional_member(status, "status", RecipientStatus)
        limit = inputs.positive_int(limit, "limit", maximum=MAX_PAGE)
        after = inputs.whole_number(after, "after", minimum=0)
        given = inputs.any_text(number, "number").strip()
        exact = re.fullmatch(r"\+\d{8,15}", given) is not None
        if not exact and not re.fullmatch(rf"\d{{{MIN_SEARCH_DIGITS},15}}", given):
            raise InvalidArgument(
                f"number: a full number in E.164 (+5511999991234) or its last "
                f"{MIN_SEARCH_DIGITS} or more digits, got {given[:40]!r}"
            )
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                queries.RECIPIENTS_BY_NUMBER,
                # digits and "+" only: nothing in the pattern that LIKE would read as a wildcard
                {"id": campaign_id, "pattern": given[::-1] + "%",
                 "exact": given if exact else None,
                 "status": chosen.value if chosen else None, "after": after, "limit": limit},
            ).all()  # fmt: skip
        return [dict(r._mapping) for r in rows]
