"""The public Python API against a real PostgreSQL: every bad argument raises the project's own
error naming it, before anything is written (no campaign_batch_state row after it), an entry
refused mid-stream rolls the whole load back, and the URL forms users write all connect."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from campaigns.errors import (
    CampaignError,
    InvalidArgument,
    InvalidInput,
    InvalidMessage,
    UnsupportedDatabaseUrl,
)
from campaigns.processor import CampaignBatchProcessor
from campaigns.recovery import CampaignRecoveryManager
from campaigns.settings import Settings
from campaigns.state import CampaignStateManager
from campaigns.store import db

NUMBERS = ["+5511999990001", "+5511999990002", "+5511999990003"]


def _row_counts(url: str) -> tuple[int, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        states = conn.execute(text("SELECT count(*) FROM campaign_batch_state")).scalar_one()
        recipients = conn.execute(text("SELECT count(*) FROM campaign_recipients")).scalar_one()
    engine.dispose()
    return states, recipients


@pytest.fixture
def enqueued() -> list[tuple[Any, ...]]:
    return []


@pytest.fixture
def processor(store: CampaignStateManager, enqueued: list[tuple[Any, ...]]) -> Any:
    p = CampaignBatchProcessor(10, 0, 0, 0, 0, enqueue=lambda *a: enqueued.append(a))
    p.set_state_manager(store)
    return p


def _with_form(url: str, driver: str) -> str:
    return make_url(url).set(drivername=driver).render_as_string(hide_password=False)


# ------------------------------------------------------------- process_large_campaign_array


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "words"),
    [
        ((None, "Hi", "sales"), {}, InvalidArgument, "numbers must be an iterable"),
        (("+5511999990001", "Hi", "sales"), {}, InvalidArgument, "numbers must be an iterable"),
        (("numbers.csv", "Hi", "sales"), {}, InvalidArgument, "pathlib.Path"),
        (([*NUMBERS, 5511999990004],), {}, InvalidArgument, "numbers entry #4 must be a phone"),
        (([*NUMBERS, None],), {}, InvalidArgument, "numbers entry #4 must be a phone"),
        (([*NUMBERS, ["+5511"]],), {}, InvalidArgument, "numbers entry #4"),
        (([*NUMBERS, "+5511\x00999990004"],), {}, InvalidArgument, "U+0000"),
        (([{"phone": "+5511999990001", "n": 1}],), {}, InvalidArgument, "variable 'n'"),
        ((NUMBERS, "Hi\x00", "sales"), {}, InvalidMessage, "control character U+0000"),
        ((NUMBERS, "Hi\x0b", "sales"), {}, InvalidMessage, "control character U+000B"),
        ((NUMBERS, "Hi \ud800", "sales"), {}, InvalidMessage, "surrogate U+D800"),
        ((NUMBERS, b"Hi", "sales"), {}, InvalidMessage, "message must be text"),
        ((NUMBERS, None, "sales"), {}, InvalidMessage, "message must be text"),
        ((NUMBERS, "Hi", None), {}, InvalidArgument, "session must be a non-empty name"),
        ((NUMBERS, "Hi", ""), {}, InvalidArgument, "session must be a non-empty name"),
        ((NUMBERS, "Hi", 7), {}, InvalidArgument, "session must be a non-empty name"),
        ((NUMBERS, "Hi", "sales"), {"start_at": "tomorrow"}, InvalidArgument, "start_at"),
        ((NUMBERS, "Hi", "sales"), {"start_at": datetime(2030, 1, 1)}, InvalidArgument, "zone"),
        ((NUMBERS, "Hi", "sales"), {"region": "XX"}, InvalidArgument, "region must be"),
        ((NUMBERS, "Hi", "sales"), {"region": 55}, InvalidArgument, "region must be"),
        ((NUMBERS, "Hi", "sales"), {"template": "offer"}, InvalidArgument, "template must be"),
        ((NUMBERS, "Hi", "sales"), {"template": {"lang": "en"}}, InvalidArgument, "'name'"),
    ],
)
def test_process_large_campaign_array__bad_argument_is_named_and_nothing_is_written(
    processor: Any,
    console_session: str,
    database_url: str,
    enqueued: list[tuple[Any, ...]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    error: type[Exception],
    words: str,
) -> None:
    full = (*args, "Hi", console_session)[:3] if len(args) == 1 else args
    with pytest.raises(error) as caught:
        processor.process_large_campaign_array(*full, **kwargs)
    assert words in str(caught.value)
    assert isinstance(caught.value, InvalidInput)
    assert _row_counts(database_url) == (0, 0)
    assert enqueued == []


def test_process_large_campaign_array__good_arguments_still_work(
    processor: Any, store: CampaignStateManager, console_session: str
) -> None:
    from datetime import UTC, timedelta

    cid = processor.process_large_campaign_array(
        [*NUMBERS, {"phone": "+5511999990004", "name": "Ana"}],
        "Olá {name|cliente}\n\tfim",
        console_session,
    )
    assert store.get_campaign(cid).total_numbers == 4
    later = processor.process_large_campaign_array(
        NUMBERS, "Hi", console_session, start_at=datetime.now(UTC) + timedelta(hours=1), region="us"
    )
    assert store.get_campaign(later).status.value == "scheduled"


def test_create_campaign__entry_refused_mid_stream_rolls_the_whole_load_back(
    store: CampaignStateManager, console_session: str, database_url: str
) -> None:
    def numbers() -> Iterator[object]:
        for i in range(30_000):  # several COPY chunks are already sent when it is refused
            yield f"+5511{900000000 + i}"
        yield 5511999990000

    with pytest.raises(InvalidArgument, match="numbers entry #30001 must be a phone number"):
        store.create_campaign(numbers(), "Hi", console_session)  # type: ignore[arg-type]
    assert _row_counts(database_url) == (0, 0)


def test_create_campaign__nul_in_a_number_file_is_refused_not_a_copy_error(
    store: CampaignStateManager, console_session: str, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("+5511999990001\n+5511\x00999990002\n", encoding="utf-8")
    with pytest.raises(InvalidArgument, match="numbers entry #2 has a control character U\\+0000"):
        store.create_campaign(path, "Hi", console_session)
    assert _row_counts(database_url) == (0, 0)


def test_create_campaign__pacing_must_be_a_pacing(
    store: CampaignStateManager, console_session: str, database_url: str
) -> None:
    with pytest.raises(InvalidArgument, match="pacing must be a Pacing"):
        store.create_campaign(NUMBERS, "Hi", console_session, pacing={"batch_size": 3})  # type: ignore[arg-type]
    assert _row_counts(database_url) == (0, 0)


# ---------------------------------------------------------------- the other public verbs


@pytest.mark.parametrize("bad", ["1", True, 0, -3, 1.0, None, 2**40])
def test_campaign_ids__resume_recover_pause_cancel_status_refuse_a_bad_id(
    processor: Any, store: CampaignStateManager, console_session: str, bad: object
) -> None:
    cid = processor.process_large_campaign_array(NUMBERS, "Hi", console_session)
    recovery = CampaignRecoveryManager(store, enqueue=lambda *a: None)
    calls = [
        lambda: processor.resume_campaign(bad),
        lambda: recovery.recover_campaign(bad),
        lambda: store.pause(bad),
        lambda: store.cancel(bad),
        lambda: store.get_campaign(bad),
        lambda: store.snapshot(bad),
        lambda: store.recipients(bad),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match=r"^campaign_id must be a whole number"):
            call()
    assert store.get_campaign(cid).status.value == "running"  # untouched


def test_recover_campaign__session_reason_and_delay_are_checked(
    processor: Any, store: CampaignStateManager, console_session: str
) -> None:
    cid = processor.process_large_campaign_array(NUMBERS, "Hi", console_session)
    store.pause(cid)
    recovery = CampaignRecoveryManager(store, enqueue=lambda *a: None)
    for kwargs, words in [
        ({"session": 5}, "session must be"),
        ({"session": ""}, "session must be"),
        ({"reason": None}, "reason must be text"),
        ({"delay": math.nan}, "delay must be a finite number of seconds"),
        ({"delay": -1}, "delay must be a finite number of seconds"),
    ]:
        with pytest.raises(InvalidArgument, match=words):
            recovery.recover_campaign(cid, **kwargs)
    assert store.get_campaign(cid).status.value == "paused"


def test_recover_campaign__a_reason_quoting_a_gateway_answer_is_not_refused(
    processor: Any, store: CampaignStateManager, console_session: str
) -> None:
    # the sweep builds reasons from stored gateway answers; they are only logged, so any text
    cid = processor.process_large_campaign_array(NUMBERS, "Hi", console_session)
    store.pause(cid)
    recovery = CampaignRecoveryManager(store, enqueue=lambda *a: None)
    reason = "its limit ended (HTTP 429:\r\n\x1b[0m" + "x" * 2000 + ")"
    assert recovery.recover_campaign(cid, reason=reason).reason == reason


def test_pause_and_cancel__reason_is_checked_and_nothing_changes(
    processor: Any, store: CampaignStateManager, console_session: str
) -> None:
    cid = processor.process_large_campaign_array(NUMBERS, "Hi", console_session)
    for reason, words in [(5, "reason must be text"), ("a\x00b", "U\\+0000"), ("x" * 1001, "1001")]:
        with pytest.raises(InvalidArgument, match=words):
            store.pause(cid, reason)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match=words):
            store.cancel(cid, reason)  # type: ignore[arg-type]
    assert store.get_campaign(cid).status.value == "running"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"limit": 0}, "limit must be a whole number"),
        ({"limit": "10"}, "limit must be a whole number"),
        ({"limit": True}, "limit must be a whole number"),
        ({"limit": 2**40}, "limit must be a whole number"),
        ({"status": "asleep"}, "status must be one of"),
        ({"session": 3}, "session must be"),
    ],
)
def test_list_campaigns__bad_filters_are_named(
    store: CampaignStateManager, kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidArgument, match=words):
        store.list_campaigns(**kwargs)


def test_list_campaigns_and_recipients__good_filters(
    processor: Any, store: CampaignStateManager, console_session: str
) -> None:
    cid = processor.process_large_campaign_array(NUMBERS, "Hi", console_session)
    assert [c.id for c in store.list_campaigns("running", console_session, 1)] == [cid]
    assert len(store.recipients(cid, "pending", limit=2)) == 2
    for kwargs in ({"limit": 0}, {"limit": 2.5}, {"status": "lost"}):
        with pytest.raises(InvalidArgument):
            store.recipients(cid, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"older_than_days": math.nan}, "older_than_days must be a finite number of days"),
        ({"older_than_days": math.inf}, "older_than_days must be a finite number of days"),
        ({"older_than_days": -1}, "older_than_days must be a finite number of days"),
        ({"older_than_days": "30"}, "older_than_days must be a finite number of days"),
        ({"older_than_days": 30, "dry_run": "no"}, "dry_run must be True or False"),
    ],
)
def test_cleanup_finished__bad_age_is_named(
    store: CampaignStateManager, kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidArgument, match=words):
        store.cleanup_finished(**kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        ((None, "console", "console://local"), {}, "name must be a non-empty name"),
        (("  ", "console", "console://local"), {}, "name must be a non-empty name"),
        (("sa\nles", "console", "console://local"), {}, "name has a control character"),
        (("x" * 101, "console", "console://local"), {}, "over 100"),
        (("sales", None, "console://local"), {}, "gateway must be"),
        (("sales", "console", 8080), {}, "base_url must be"),
        (("sales", "waha", "http://waha\x00:3000"), {}, "base_url has a control character"),
        (("sales", "console", "console://local"), {"token_env": 5}, "token_env must be"),
        (("sales", "waha", "http://waha:3000"), {"session": 3}, "option session must be"),
    ],
)
def test_add_session__bad_argument_is_named_and_nothing_is_stored(
    store: CampaignStateManager, args: tuple[Any, ...], kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidArgument, match=words):
        store.add_session(*args, **kwargs)
    assert store.list_sessions() == []


# ------------------------------------------------------------------------- database URLs


@pytest.mark.parametrize("driver", ["postgresql", "postgres", "postgresql+psycopg2"])
def test_state_manager__every_url_form_users_write_connects(
    database_url: str, settings: Settings, driver: str
) -> None:
    manager = CampaignStateManager(_with_form(database_url, driver), settings=settings)
    try:
        assert manager.list_campaigns() == []
        assert manager.engine.dialect.driver == "psycopg2"
    finally:
        manager.dispose()


@pytest.mark.parametrize("driver", ["postgresql", "postgres"])
def test_migrations__plain_url_forms_upgrade_and_report_the_revision(
    empty_database_url: str, driver: str
) -> None:
    url = _with_form(empty_database_url, driver)
    db.upgrade(url)
    assert db.current_revision(url) is not None
    db.downgrade(url, "base")
    assert db.current_revision(url) is None


@pytest.mark.parametrize("driver", ["postgresql+asyncpg", "postgresql+psycopg", "mysql"])
def test_state_manager__unsupported_driver_is_a_configuration_error(
    database_url: str, settings: Settings, driver: str
) -> None:
    with pytest.raises(UnsupportedDatabaseUrl, match=r"^DATABASE_URL uses") as caught:
        CampaignStateManager(_with_form(database_url, driver), settings=settings)
    assert isinstance(caught.value, CampaignError)
