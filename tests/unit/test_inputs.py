"""Argument checks without a database: every bad value raises the project's own error naming
the argument (campaigns.inputs), the settings refuse non-finite values, database URLs in the
forms users write all mean psycopg2, and the number check stays lazy."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from campaigns import inputs
from campaigns.errors import (
    ConfigurationError,
    InvalidArgument,
    InvalidInput,
    InvalidMessage,
    UnsupportedDatabaseUrl,
)
from campaigns.numbers import Entry
from campaigns.processor import CampaignBatchProcessor
from campaigns.settings import Settings
from campaigns.store import db

# ---------------------------------------------------------------------------- the processor


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"min_interval": math.nan}, "min_interval must be a finite number of seconds"),
        ({"max_interval": math.inf}, "max_interval must be a finite number of seconds"),
        ({"batch_delay_min": -math.inf}, "batch_delay_min must be a finite number"),
        ({"batch_delay_max": math.nan}, "batch_delay_max must be a finite number"),
        ({"min_interval": "4"}, "min_interval must be a finite number of seconds"),
        ({"max_interval": None}, "max_interval must be a finite number of seconds"),
        ({"min_interval": True}, "min_interval must be a finite number of seconds"),
        ({"min_interval": 90_000}, "min_interval must be a finite number of seconds"),
        ({"min_interval": -1}, "min_interval must be a finite number of seconds"),
        ({"batch_size": 2.5}, "batch_size must be a whole number from 1 to 100000"),
        ({"batch_size": 2.0}, "batch_size must be a whole number"),
        ({"batch_size": True}, "batch_size must be a whole number"),
        ({"batch_size": "300"}, "batch_size must be a whole number"),
        ({"batch_size": 0}, "batch_size must be a whole number"),
        ({"batch_size": 10**9}, "batch_size must be a whole number from 1 to 100000"),
        ({"min_interval": 5, "max_interval": 1}, "min_interval (5) is above max_interval (1)"),
        ({"enqueue": "celery"}, "enqueue must be a callable"),
    ],
)
def test_processor__bad_pacing_raises_invalid_argument_naming_it(
    kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(").replace(")", r"\)")):
        CampaignBatchProcessor(**kwargs)


def test_processor__nan_reported_as_nan() -> None:
    with pytest.raises(InvalidArgument) as caught:
        CampaignBatchProcessor(min_interval=float("nan"))
    assert str(caught.value) == (
        "min_interval must be a finite number of seconds from 0 to 86400, got nan"
    )


def test_processor__good_pacing_is_kept_as_whole_size_and_float_seconds() -> None:
    pacing = CampaignBatchProcessor(100_000, 0, 86_400, 1, 2).pacing
    assert (pacing.batch_size, pacing.min_interval, pacing.max_interval) == (100_000, 0.0, 86400.0)
    assert isinstance(pacing.min_interval, float)


# ------------------------------------------------------------------------------ the settings


@pytest.mark.parametrize(
    "env",
    [
        {"MIN_INTERVAL": "nan"},
        {"MAX_INTERVAL": "inf"},
        {"BATCH_DELAY_MIN": "-inf"},
        {"BATCH_DELAY_MAX": "NaN"},
        {"BATCH_SIZE": "2.5"},
        {"BATCH_SIZE": "1000000"},
        {"STALL_TIMEOUT": "nan"},
        {"STALL_TIMEOUT": "inf"},
        {"SWEEP_INTERVAL": "nan"},
        {"TASK_TIME_BUDGET": "inf"},
        {"GATEWAY_READ_TIMEOUT": "nan"},
        {"RECONNECT_SETTLE": "nan"},
        {"MAX_ATTEMPTS": "2.5"},
        {"DB_POOL_SIZE": "0"},
        {"FAILURE_STREAK_LIMIT": "-1"},
        {"STUCK_HOURS": "nan"},
        {"CLEANUP_DAYS": "inf"},
    ],
)
def test_settings__non_finite_or_fractional_values_name_their_variable(
    env: dict[str, str],
) -> None:
    (name,) = env
    with pytest.raises(ConfigurationError, match=name) as caught:
        Settings.from_env(env)
    assert "\n" not in str(caught.value)


def test_settings__reconnect_settle_may_be_zero_and_streak_limit_zero_means_never() -> None:
    settings = Settings.from_env({"RECONNECT_SETTLE": "0", "FAILURE_STREAK_LIMIT": "0"})
    assert settings.reconnect_settle == 0 and settings.failure_streak_limit == 0


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:secret@db:5432/campaigns",
        "postgres://app:secret@db:5432/campaigns",
        "postgresql+psycopg2://app:secret@db:5432/campaigns",
        "PostgreSQL://app:secret@db:5432/campaigns",
    ],
)
def test_database_url__every_form_users_write_means_psycopg2(url: str) -> None:
    expected = "postgresql+psycopg2://app:secret@db:5432/campaigns"
    assert inputs.database_url(url) == expected
    assert Settings.from_env({"DATABASE_URL": url}).database_url == expected
    # what SQLAlchemy 2.1 makes of it: no ModuleNotFoundError 'psycopg', no NoSuchModuleError
    engine = db.create_db_engine(url, 1)
    try:
        assert engine.dialect.driver == "psycopg2"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://app:secret@db/campaigns",
        "postgresql+psycopg://app:secret@db/campaigns",
        "mysql://app:secret@db/campaigns",
        "sqlite:///campaigns.db",
        "app:secret@db/campaigns",
    ],
)
def test_database_url__unsupported_driver_is_one_line_naming_database_url(url: str) -> None:
    for call in (
        lambda: Settings.from_env({"DATABASE_URL": url}),
        lambda: db.create_db_engine(url),
        lambda: db.current_revision(url),
    ):
        with pytest.raises(UnsupportedDatabaseUrl) as caught:
            call()
        text = str(caught.value)
        assert text.startswith("DATABASE_URL ") and "\n" not in text
        assert "secret" not in text  # the URL may hold a password: never echoed
        assert isinstance(caught.value, ConfigurationError)


# ----------------------------------------------------------------------------------- scalars


@pytest.mark.parametrize("value", [True, 0, -1, 2.5, "7", None, 2**31, [1]])
def test_campaign_id__only_a_positive_int_within_postgres_integer(value: object) -> None:
    with pytest.raises(InvalidArgument, match=r"^campaign_id must be a whole number"):
        inputs.campaign_id(value)


def test_campaign_id__ints_pass_through() -> None:
    assert inputs.campaign_id(1) == 1 and inputs.campaign_id(2**31 - 1) == 2**31 - 1


@pytest.mark.parametrize(
    ("value", "shown"),
    [("4", "the text '4'"), (True, "True (a bool)"), (None, "None"), ([4], "a list")],
)
def test_finite_seconds__names_the_argument_and_what_it_got(value: object, shown: str) -> None:
    with pytest.raises(InvalidArgument, match="delay") as caught:
        inputs.finite_seconds(value, "delay")
    assert str(caught.value).endswith(f"got {shown}")


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ("Hi\x00there", "control character U+0000 at position 2"),
        ("Hi\x1b[31m", "control character U+001B"),
        ("Hi\x7f", "control character U+007F"),
        ("Hi \ud800", "surrogate U+D800 at position 3, which has no UTF-8 encoding"),
        (b"Hi", "must be text"),
        (None, "must be text"),
        (42, "must be text"),
        ("  \n\t", "is empty"),
        ("x" * 4097, "over WhatsApp's limit"),
    ],
)
def test_message_text__refused_with_the_reason(message: object, words: str) -> None:
    with pytest.raises(InvalidMessage, match="message") as caught:
        inputs.message_text(message)
    assert words in str(caught.value)
    assert isinstance(caught.value, InvalidInput)


def test_message_text__tab_newline_crlf_emoji_and_joiners_are_fine() -> None:
    text = "Olá {name},\r\n\tsegue a oferta 👩\u200d💻 até sexta!\n"
    assert inputs.message_text(text) == text


@pytest.mark.parametrize("value", ["", "   ", None, 5, ["sales"], "sa\x00les", "a\nb", "x" * 101])
def test_session_name__refused(value: object) -> None:
    with pytest.raises(InvalidArgument, match=r"^session "):
        inputs.session_name(value)


@pytest.mark.parametrize("value", ["XX", "", 55, "brazil"])
def test_region__unknown_region_is_refused(value: object) -> None:
    with pytest.raises(InvalidArgument, match="region must be a region phonenumbers knows"):
        inputs.region_code(value)


def test_region__known_region_is_upper_cased() -> None:
    assert inputs.region_code(" us ") == "US" and inputs.region_code(None) is None


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("2030-01-01T09:00:00Z", "start_at must be a datetime"),
        (1_900_000_000, "start_at must be a datetime"),
        (datetime(2030, 1, 1, 9), "start_at must carry a time zone"),
    ],
)
def test_start_time__refused(value: object, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        inputs.start_time(value)


def test_start_time__aware_datetime_passes() -> None:
    moment = datetime(2030, 1, 1, 9, tzinfo=UTC)
    assert inputs.start_time(moment) is moment


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("hello_world", "template must be a mapping"),
        ({"language": "en_US"}, "needs a 'name'"),
        ({"name": "offer", "language": 1}, "language"),
        ({"name": "offer", "components": "header"}, "components"),
        ({"name": "offer", "components": [{"text": "a\x00b"}]}, "control character U+0000"),
        ({"name": "offer", "components": [{"value": math.nan}]}, "finite number"),
        ({"name": "offer", "components": [{1: "x"}]}, "key that is not text"),
        ({"name": "offer", "components": [object()]}, "must be a JSON value"),
    ],
)
def test_template_spec__refused(template: object, words: str) -> None:
    with pytest.raises(InvalidArgument, match="template") as caught:
        inputs.template_spec(template)
    assert words in str(caught.value)


def test_optional_member__status_by_value_or_member() -> None:
    from campaigns.domain import CampaignStatus

    assert inputs.optional_member("paused", "status", CampaignStatus) is CampaignStatus.PAUSED
    with pytest.raises(InvalidArgument, match="status must be one of running, "):
        inputs.optional_member("asleep", "status", CampaignStatus)
    with pytest.raises(InvalidArgument, match="status must be one of"):
        inputs.optional_member(["paused"], "status", CampaignStatus)


# ----------------------------------------------------------------------------------- entries


@pytest.mark.parametrize("numbers", [None, "+5511999990001", b"+5511", {"phone": "+55"}, 5])
def test_number_entries__a_source_that_is_no_list_is_refused_at_once(numbers: object) -> None:
    with pytest.raises(InvalidArgument, match=r"^numbers must be an iterable"):
        inputs.number_entries(numbers)


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (5511999990002, "numbers entry #2 must be a phone number (str)"),
        (None, "numbers entry #2 must be a phone number (str) or a mapping"),
        (["+5511999990002"], "got a list"),
        ({"name": "Ana"}, "numbers entry #2 has no phone column"),
        ({"phone": 5511999990002}, "the phone number must be text (str), got a int"),
        ({"phone": "+5511999990002", "age": 30}, "variable 'age' must be text (str)"),
        ({"phone": "+5511999990002", 3: "x"}, "a variable name is a int"),
        ({"phone": "+5511999990002", "name": "A\x00na"}, "variable 'name' has a control"),
        ({"phone": "+5511999990002", "name": "A\x07na"}, "variable 'name' has a control"),
        ("+5511\x00999990002", "numbers entry #2 has a control character U+0000"),
        ("+5511\udc00", "numbers entry #2 has a surrogate U+DC00"),
        (Entry(5511999990002), "the phone number must be text"),  # type: ignore[arg-type]
    ],
)
def test_number_entries__a_bad_entry_is_refused_naming_its_position(
    entry: object, words: str
) -> None:
    entries = inputs.number_entries(["+5511999990001", entry, "+5511999990003"])
    assert next(entries).raw == "+5511999990001"
    with pytest.raises(InvalidArgument) as caught:
        list(entries)
    assert words in str(caught.value)
    assert "5511999990002" not in str(caught.value)  # an entry's value is never echoed


def test_number_entries__good_entries_of_every_kind() -> None:
    entries = list(
        inputs.number_entries(
            [
                "+5511999990001",
                {"phone": "+5511999990002", "name": "Ana", "city": None},
                Entry("+5511999990003", {"name": "Bia"}),
                "junk\x1b is kept as an invalid entry",
            ]
        )
    )
    assert [e.raw for e in entries][:3] == ["+5511999990001", "+5511999990002", "+5511999990003"]
    assert entries[1].variables == {"name": "Ana"}
    assert len(entries) == 4


def test_number_entries__is_lazy_a_million_entries_are_never_held() -> None:
    pulled = 0

    def million() -> Iterator[str]:
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield f"+5511{900000000 + i}"

    entries = inputs.number_entries(million())
    assert pulled == 0  # checking the source consumed nothing
    for _ in range(3):
        next(entries)
    assert pulled == 3
