"""The opt-out list in the store, on a real PostgreSQL: entries global and per session with
their source and time, imports streamed through COPY, and the claim that never takes a listed
number — including one added while the campaign runs — ending it skipped, counted like any
finished recipient (counters = ledger = details)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from campaigns.consent import OPTED_OUT_CODE, SOURCE_131050, SOURCE_META, SOURCE_OPERATOR
from campaigns.domain import ClaimedRecipient, RecipientStatus
from campaigns.errors import InvalidArgument, InvalidInput, UnknownSession
from campaigns.numbers import Entry, read_number_file
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager

PACING = Pacing(batch_size=4, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)
NUMBERS = [f"+5511{910000000 + i}" for i in range(8)]


def _claim_all(store: CampaignStateManager, campaign_id: int, token: str, batch: int,
               session: str) -> list[ClaimedRecipient]:  # fmt: skip
    claims = []
    while (claim := store.claim_for_lane(campaign_id, batch, token, session)) is not None:
        claims.append(claim)
        store.record_outcome(claim, RecipientStatus.SENT, message_id=f"m{claim.position}")
    return claims


def test_optouts__global_and_per_session_with_source_and_time(
    store: CampaignStateManager, console_session: str
) -> None:
    assert store.add_optout("(11) 91000-0001", detail="asked by phone")  # national format, BR
    assert not store.add_optout("+5511910000001")  # the same source again: the first time stays
    assert store.add_optout("+5511910000002", session=console_session)
    assert store.is_opted_out("+5511910000001")
    assert store.is_opted_out("+5511910000002", console_session)
    assert not store.is_opted_out("+5511910000002")  # per session: not global
    entries = list(store.iter_optouts())
    assert [(e.phone, e.session, e.source) for e in entries] == [
        ("+5511910000001", None, SOURCE_OPERATOR),
        ("+5511910000002", console_session, SOURCE_OPERATOR),
    ]
    assert entries[0].detail == "asked by phone" and entries[0].created_at is not None
    assert [e.phone for e in store.iter_optouts(only_global=True)] == ["+5511910000001"]
    assert [e.phone for e in store.iter_optouts(console_session)] == ["+5511910000002"]
    # Meta's resume lifts only Meta's entries
    assert store.remove_optout("+5511910000001") == 1
    assert store.count_optouts() == 1


def test_optouts__a_session_named_global__is_refused_and_an_old_one_is_not_the_global_list(
    store: CampaignStateManager, console_session: str
) -> None:
    for name in ("global", "Global"):
        with pytest.raises(InvalidInput, match="reserved"):
            store.add_session(name, "console", "console://local")
    assert [s.name for s in store.list_sessions()] == [console_session]
    # a session called so before the name was reserved: its list is its own
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO campaign_sessions (name, gateway, base_url, options) "
                          "VALUES ('global', 'console', 'console://local', '{}')"))  # fmt: skip
    store.add_optout("+5511910000001")
    store.add_optout("+5511910000002", session="global")
    assert [e.phone for e in store.iter_optouts("global")] == ["+5511910000002"]
    assert [e.phone for e in store.iter_optouts(only_global=True)] == ["+5511910000001"]
    with pytest.raises(InvalidArgument, match="not both"):
        list(store.iter_optouts("global", only_global=True))


def test_optouts__bad_input_is_refused_by_name(
    store: CampaignStateManager, console_session: str
) -> None:
    with pytest.raises(InvalidArgument, match="not a valid phone number"):
        store.add_optout("12")
    with pytest.raises(UnknownSession):
        store.add_optout("+5511910000001", session="nobody")
    with pytest.raises(InvalidArgument, match="source must be one of"):
        store.add_optout("+5511910000001", source="rumour")
    assert store.count_optouts() == 0


def test_import__streams_a_file_counts_invalid_and_repeats(
    store: CampaignStateManager, console_session: str, tmp_path: Path
) -> None:
    store.add_optout(NUMBERS[0])
    path = tmp_path / "stop.csv"
    path.write_text("phone,name\n" + "\n".join([*NUMBERS[:3], NUMBERS[1], "abc"]) + "\n")
    result = store.import_optouts(read_number_file(path))
    # the operator's entry of NUMBERS[0] stays; the import records its own (a second source)
    assert (result.read, result.added, result.already, result.invalid) == (5, 3, 1, 1)
    assert result.invalid_examples == (5,)
    assert {e.phone for e in store.iter_optouts(only_global=True)} == set(NUMBERS[:3])
    assert [e.source for e in store.iter_optouts()] == ["operator", *["import"] * 3]


def test_claim__never_takes_a_listed_number_and_counts_it_skipped(
    store: CampaignStateManager, console_session: str
) -> None:
    store.add_optout(NUMBERS[0])  # the head of the first batch
    store.add_optout(NUMBERS[1], session=console_session)
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=PACING)
    assert campaign.run_token
    claims = _claim_all(store, campaign.id, campaign.run_token, 1, console_session)
    assert [c.phone for c in claims] == NUMBERS[2:4]
    # added while the campaign runs: the next batch's claim leaves it out too
    store.add_optout(NUMBERS[5])
    assert store.finish_batch(campaign.id, 1, campaign.run_token, delay=0) is not None
    claims = _claim_all(store, campaign.id, campaign.run_token, 2, console_session)
    assert [c.phone for c in claims] == [NUMBERS[4], NUMBERS[6], NUMBERS[7]]
    result = store.finish_batch(campaign.id, 2, campaign.run_token, delay=0)
    assert result is not None and result.completed
    rows = {r["phone"]: r for r in store.recipients(campaign.id)}
    for phone in (NUMBERS[0], NUMBERS[1], NUMBERS[5]):
        assert rows[phone]["status"] == RecipientStatus.SKIPPED
        assert rows[phone]["error_code"] == OPTED_OUT_CODE
        assert "on the opt-out list" in rows[phone]["error_message"]
    done = store.get_campaign(campaign.id)
    assert (done.success_count, done.skipped_count, done.processed_numbers) == (5, 3, 8)
    assert store.check_invariants(campaign.id) == []


def test_claim__a_batch_whose_pending_head_is_all_listed_still_drains(
    store: CampaignStateManager, console_session: str
) -> None:
    for phone in NUMBERS[:3]:
        store.add_optout(phone)
    campaign = store.create_campaign(NUMBERS[:4], "Hi", console_session, pacing=PACING)
    assert campaign.run_token
    claims = store.claim_several_for_lane(
        campaign.id, 1, campaign.run_token, console_session, limit=1
    )
    assert [c.phone for c in claims] == [NUMBERS[3]]


def test_131050__skips_the_claim_and_lists_the_number_globally(
    store: CampaignStateManager, console_session: str
) -> None:
    campaign = store.create_campaign(NUMBERS[:1], "Hi", console_session, pacing=PACING)
    assert campaign.run_token
    claim = store.claim_for_lane(campaign.id, 1, campaign.run_token, console_session)
    assert claim is not None
    assert store.skip_claim(claim, "131050", "stopped marketing", opt_out=True)
    (entry,) = store.iter_optouts()
    assert (entry.phone, entry.session, entry.source, entry.via_session) == (
        NUMBERS[0], None, SOURCE_131050, console_session,
    )  # fmt: skip


def test_entries_of_dicts_import(store: CampaignStateManager) -> None:
    result = store.import_optouts([Entry("+5511910000009")], source="operator")
    assert result.added == 1


def test_meta_resume__lifts_metas_entry_only_and_never_a_newer_stop(
    store: CampaignStateManager,
) -> None:
    from datetime import UTC, datetime, timedelta

    phone = "+5511910000003"
    assert store.add_optout(phone, source=SOURCE_META)
    assert store.add_optout(phone, source="inbound_keyword", detail="Sair")  # its own entry
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    # an old "resume" delivered late (Meta retries for days) leaves the newer stop alone
    assert store.remove_optout(phone, sources=[SOURCE_META, SOURCE_131050], before=an_hour_ago) == 0
    assert store.remove_optout(
        phone, sources=[SOURCE_META, SOURCE_131050], before=datetime.now(UTC) + timedelta(1)
    ) == 1
    # the person also wrote SAIR: still opted out until an operator lifts it
    assert store.is_opted_out(phone)
    assert [e.source for e in store.iter_optouts()] == ["inbound_keyword"]
