"""Creating campaigns: normalization, duplicates, invalid entries, files, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.errors import (
    EmptyNumberList,
    InvalidMessage,
    InvalidNumberFile,
    NoValidNumber,
    UnknownSession,
)
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager


def _row_counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        states = conn.execute(text("SELECT count(*) FROM campaign_batch_state")).scalar_one()
        recipients = conn.execute(text("SELECT count(*) FROM campaign_recipients")).scalar_one()
    engine.dispose()
    return states, recipients


def test_create_campaign__normalizes_marks_duplicates_and_invalid_in_input_order(
    store: CampaignStateManager, console_session: str
) -> None:
    numbers = ["+55 11 99999-0001", "(11) 99999-0002", "not a number", "5511999990001", ""]
    campaign = store.create_campaign(numbers, "Hello", console_session)

    rows = store.recipients(campaign.id)
    assert [r["position"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["phone"] for r in rows] == [
        "+5511999990001",
        "+5511999990002",
        None,
        "+5511999990001",
        None,
    ]
    assert [r["status"] for r in rows] == [
        RecipientStatus.PENDING,
        RecipientStatus.PENDING,
        RecipientStatus.INVALID,
        RecipientStatus.DUPLICATE,
        RecipientStatus.INVALID,
    ]
    assert rows[2]["raw"] == "not a number"
    assert campaign.total_numbers == 5
    assert campaign.status is CampaignStatus.RUNNING
    assert campaign.run_token


def test_create_campaign__assigns_batches_by_input_position(
    store: CampaignStateManager, console_session: str
) -> None:
    numbers = [f"+55119999{i:05d}" for i in range(25)]
    campaign = store.create_campaign(numbers, "Hi", console_session, pacing=Pacing(batch_size=10))

    assert campaign.total_batches == 3
    batches = [r["batch_number"] for r in store.recipients(campaign.id)]
    assert batches == [1] * 10 + [2] * 10 + [3] * 5


def test_create_campaign__csv_keeps_extra_columns_as_variables(
    store: CampaignStateManager, console_session: str, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_text("name;Phone;city\nMaria;+5511999990001;SP\nJoão;11 99999-0002;\n")
    campaign = store.create_campaign(path, "Olá {name}", console_session)

    rows = store.recipients(campaign.id)
    assert [r["phone"] for r in rows] == ["+5511999990001", "+5511999990002"]
    assert rows[0]["variables"] == {"name": "Maria", "city": "SP"}
    assert rows[1]["variables"] == {"name": "João", "city": ""}


def test_create_campaign__txt_file_skips_blank_lines(
    store: CampaignStateManager, console_session: str, tmp_path: Path
) -> None:
    path = tmp_path / "list.txt"
    path.write_text("+5511999990001\n\n  \n+5511999990002\n")
    campaign = store.create_campaign(path, "Hi", console_session)
    assert campaign.total_numbers == 2


@pytest.mark.parametrize(
    ("numbers", "message", "error", "words"),
    [
        ([], "Hi", EmptyNumberList, "empty"),
        (["abc", "123"], "Hi", NoValidNumber, "none of the 2 entries"),
        (["+5511999990001"], "", InvalidMessage, "empty"),
        (["+5511999990001"], "   ", InvalidMessage, "empty"),
        (["+5511999990001"], "x" * 4097, InvalidMessage, "4097 characters"),
    ],
)
def test_create_campaign__bad_input_is_refused_and_leaves_nothing(
    store: CampaignStateManager,
    console_session: str,
    database_url: str,
    numbers: list[str],
    message: str,
    error: type[Exception],
    words: str,
) -> None:
    with pytest.raises(error, match=words):
        store.create_campaign(numbers, message, console_session)
    assert _row_counts(database_url) == (0, 0)


def test_create_campaign__message_of_exactly_4096_characters_is_accepted(
    store: CampaignStateManager, console_session: str
) -> None:
    campaign = store.create_campaign(["+5511999990001"], "x" * 4096, console_session)
    assert len(campaign.message) == 4096


def test_create_campaign__unknown_session_is_refused(
    store: CampaignStateManager, database_url: str
) -> None:
    with pytest.raises(UnknownSession, match="nobody"):
        store.create_campaign(["+5511999990001"], "Hi", "nobody")
    assert _row_counts(database_url) == (0, 0)


def test_create_campaign__file_not_utf8_is_refused_and_leaves_nothing(
    store: CampaignStateManager, console_session: str, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"+5511999990001\n+5511999990002\nJos\xe9;+5511999990003\n")
    with pytest.raises(InvalidNumberFile, match="not UTF-8"):
        store.create_campaign(path, "Hi", console_session)
    assert _row_counts(database_url) == (0, 0)


def test_create_campaign__csv_without_phone_column_is_refused(
    store: CampaignStateManager, console_session: str, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_text("name,city\nMaria,SP\n")
    with pytest.raises(InvalidNumberFile, match="no phone column"):
        store.create_campaign(path, "Hi", console_session)
    assert _row_counts(database_url) == (0, 0)


def test_create_campaign__missing_file_is_refused(
    store: CampaignStateManager, console_session: str, tmp_path: Path
) -> None:
    with pytest.raises(InvalidNumberFile, match="cannot open"):
        store.create_campaign(tmp_path / "nope.txt", "Hi", console_session)


def test_create_campaign__failure_half_way_through_a_large_copy_leaves_no_rows(
    store: CampaignStateManager, console_session: str, database_url: str
) -> None:
    class SourceBroke(RuntimeError):
        pass

    def numbers() -> object:
        for i in range(60_000):
            yield f"+5511{900000000 + i}"
        raise SourceBroke("the upload was cut")

    with pytest.raises(SourceBroke):
        store.create_campaign(numbers(), "Hi", console_session)  # type: ignore[arg-type]
    assert _row_counts(database_url) == (0, 0)


def test_create_campaign__scheduled_start_has_no_run_token(
    store: CampaignStateManager, console_session: str
) -> None:
    from datetime import UTC, datetime, timedelta

    start = datetime.now(UTC) + timedelta(hours=1)
    campaign = store.create_campaign(["+5511999990001"], "Hi", console_session, start_at=start)
    assert campaign.status is CampaignStatus.SCHEDULED
    assert campaign.run_token is None
    assert campaign.next_batch_at == start
