"""Every status change in the store's SQL is guarded by the source statuses of the transition
tables in ``campaigns.domain`` — no more, no fewer.

Recipient statuses: each UPDATE of ``campaign_recipients.status`` in ``campaigns.store.queries``
is parsed for the statuses it writes and the statuses its WHERE accepts; every (source, target)
pair must be in ``RECIPIENT_TRANSITIONS``, and together they must make the whole table.
Campaign statuses: the one TRANSITION statement is driven for every (source, target) pair on a
real database and must move exactly when ``TRANSITIONS`` allows it; the only other writer of a
campaign's status (finishing its last batch) is parsed like the recipients' statements.
"""

from __future__ import annotations

import re
from itertools import product

import pytest
from sqlalchemy import TextClause, create_engine, text

from campaigns.domain import (
    RECIPIENT_TRANSITIONS,
    TRANSITIONS,
    CampaignStatus,
    RecipientStatus,
)
from campaigns.state import CampaignStateManager
from campaigns.store import queries

_LITERAL = r"'([a-z_]+)'"
# What record_outcome may write through its CAST(:status AS recipient_status) parameter.
_RECORDED = {RecipientStatus.SENT, RecipientStatus.FAILED, RecipientStatus.UNKNOWN}


def _statements(table: str) -> dict[str, str]:
    found = {}
    for name in dir(queries):
        value = getattr(queries, name)
        if isinstance(value, TextClause) and re.search(rf"UPDATE {table}\b", value.text):
            found[name] = value.text
    return found


def _pairs(
    sql: str, table: str, kind: type[RecipientStatus] | type[CampaignStatus]
) -> set[tuple[str, str]]:
    """(source, target) pairs of one statement that writes a status of ``kind`` in ``table``:
    targets from its SET clause, sources from every status test elsewhere in it."""
    values = {member.value for member in kind}
    clause = re.search(rf"UPDATE {table}\b(?: r)?\s+SET\b(.*?)(?=\bFROM\b|\bWHERE\b)", sql, re.S)
    if clause is None:
        return set()
    assigned = clause.group(1)
    targets = set(re.findall(r"(?<![_.])\bstatus\s*=\s*" + _LITERAL, assigned))
    targets |= set(re.findall(r"THEN " + _LITERAL + r"::campaign_status", assigned))
    if re.search(r"(?<![_.])\bstatus\s*=\s*CAST\(:status AS recipient_status\)", assigned):
        targets |= {s.value for s in _RECORDED}
    targets &= values
    if not targets:
        return set()
    rest = sql[: clause.start(1)] + sql[clause.end(1):]
    sources = set(re.findall(r"\bstatus\s*=\s*" + _LITERAL, rest))
    for group in re.findall(r"\bstatus\s+IN\s*\(([^)]*)\)", rest):
        sources |= set(re.findall(_LITERAL, group))
    sources &= values
    assert sources, f"a status change without a source guard:\n{sql}"
    return set(product(sources, targets))


def _table_pairs(table: dict[RecipientStatus, frozenset[RecipientStatus]]) -> set[tuple[str, str]]:
    return {(s.value, t.value) for s, targets in table.items() for t in targets}


def test_recipient_status_updates__are_guarded_exactly_by_the_recipient_table() -> None:
    statements = _statements("campaign_recipients")
    found: dict[str, set[tuple[str, str]]] = {
        name: _pairs(sql, "campaign_recipients", RecipientStatus)
        for name, sql in statements.items()
    }
    writers = {name for name, pairs in found.items() if pairs}
    # the claim, record, release, two cut-off settlements and duplicates (no statement fails
    # a pending recipient wholesale: errors that are not the recipient's never fail one)
    assert writers >= {
        "CLAIM_NEXT", "RECORD_OUTCOME", "RELEASE_CLAIM", "MARK_CUT_OFF_CLAIMS_UNKNOWN",
        "RELEASE_CUT_OFF_CLAIMS", "MARK_DUPLICATES",
        "CLAIM_FOR_LANE",  # a lane's claim: pending -> sending, stamped with its session
    }
    table = _table_pairs(dict(RECIPIENT_TRANSITIONS))
    for name, pairs in found.items():
        assert pairs <= table, f"{name} allows {sorted(pairs - table)}, not in the table"
    assert set().union(*found.values()) == table


def test_finishing_the_last_batch__completes_only_a_running_campaign() -> None:
    pairs = _pairs(queries.ADVANCE_STATE.text, "campaign_batch_state", CampaignStatus)
    assert pairs == {("running", "completed")}
    assert CampaignStatus.COMPLETED in TRANSITIONS[CampaignStatus.RUNNING]


def test_only_the_store_statements_above_write_a_campaign_status() -> None:
    writers = set()
    for name, sql in _statements("campaign_batch_state").items():
        clause = re.search(r"UPDATE campaign_batch_state\s+SET\b(.*?)(?=\bWHERE\b)", sql, re.S)
        if clause and re.search(r"(?<![_.])\bstatus\s*=", clause.group(1)):
            writers.add(name)
    assert writers == {"TRANSITION", "ADVANCE_STATE"}


@pytest.mark.parametrize("source", list(CampaignStatus))
def test_transition_statement__moves_exactly_when_the_campaign_table_allows(
    store: CampaignStateManager, console_session: str, database_url: str, source: CampaignStatus
) -> None:
    campaign = store.create_campaign(["+5511999990000"], "Hi", console_session)
    engine = create_engine(database_url, pool_size=1)
    try:
        for target in CampaignStatus:
            with engine.begin() as conn:  # put the campaign in `source`, whatever the table says
                conn.execute(
                    text(
                        "UPDATE campaign_batch_state SET status = CAST(:s AS campaign_status)"
                        " WHERE id = :id"
                    ),
                    {"s": source.value, "id": campaign.id},
                )
            token = "t" if target is CampaignStatus.RUNNING else None
            moved = store.transition(campaign.id, target, new_token=token)
            assert moved == (target in TRANSITIONS[source]), f"{source} -> {target}"
            assert store.get_campaign(campaign.id).status is (target if moved else source)
    finally:
        engine.dispose()
