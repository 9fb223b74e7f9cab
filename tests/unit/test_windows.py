"""Send windows: parsing with specific messages, and open time computed on real instants
across midnight and DST changes, for one window and for several at once."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from campaigns.errors import InvalidArgument
from campaigns.windows import (
    Period,
    SendWindow,
    all_open,
    finish_after_all,
    finish_after_any,
    next_open_all,
    open_seconds_all,
    parse_days,
    parse_periods,
    parse_window,
    wait_seconds,
    window_from_options,
)

SP = ZoneInfo("America/Sao_Paulo")
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0


def sp(*args: int) -> datetime:
    return datetime(*args, tzinfo=SP)  # type: ignore[misc]


@pytest.fixture
def shop() -> SendWindow:
    return parse_window("08:00-12:00,14:00-20:00", "mon-sat", "America/Sao_Paulo")


@pytest.mark.parametrize(
    ("hours", "days", "tz", "words"),
    [
        ("8-12", None, None, 'window_hours: "8-12" is not HH:MM-HH:MM'),
        ("", None, None, "window_hours: no period given"),
        ("08:00-12:00,", None, None, 'window_hours: "" is not HH:MM-HH:MM'),
        ("25:00-26:00", None, None, "is not a time of day"),
        ("08:00-24:30", None, None, "is not a time of day"),
        ("08:00-08:00", None, None, "starts and ends at the same time"),
        ("08:00-12:00", "funday", None, 'window_days: "funday" is not a week day'),
        ("08:00-12:00", "0-5", None, 'window_days: "0" is not a week day'),
        ("08:00-12:00", "mon,,fri", None, "has an empty day"),
        ("08:00-12:00", None, "Mars/Base", 'window_tz: unknown time zone "Mars/Base"'),
        ("08:00-12:00", None, "../etc/passwd", "unknown time zone"),
    ],
)
def test_parse__bad_input_names_the_bad_part(
    hours: str, days: str | None, tz: str | None, words: str
) -> None:
    with pytest.raises(InvalidArgument, match=words.replace("(", r"\(")):
        parse_window(hours, days, tz)


def test_parse__days_in_every_form() -> None:
    assert parse_days("mon-sat") == frozenset(range(6))
    assert parse_days("Mon,Wed,FRI") == frozenset({0, 2, 4})
    assert parse_days("1-6") == parse_days("monday-saturday") == frozenset(range(6))
    assert parse_days("7") == frozenset({6})
    assert parse_days("sat-mon") == frozenset({5, 6, 0})  # a range may wrap
    assert parse_days("all") == parse_days(None) == parse_days("") == frozenset(range(7))


def test_parse__periods_sorted_midnight_crossing_and_whole_day() -> None:
    assert parse_periods("14:00-20:00, 08:00–12:00") == (
        Period(time(14), time(20)),
        Period(time(8), time(12)),
    )
    window = parse_window("14:00-20:00,08:00-12:00")
    assert window.periods == (Period(time(8), time(12)), Period(time(14), time(20)))
    assert window.tz == "UTC" and window.days == frozenset(range(7))
    assert parse_periods("00:00-24:00") == (Period(time(0), time(0)),)
    assert parse_periods("22:00-02:00") == (Period(time(22), time(2)),)


def test_naive_datetimes_are_refused(shop: SendWindow) -> None:
    with pytest.raises(ValueError, match="aware"):
        shop.is_open(datetime(2025, 6, 9, 9))


def test_open_and_closed_by_period_and_day(shop: SendWindow) -> None:
    monday = sp(2025, 6, 9, 9)
    assert shop.is_open(monday)
    assert not shop.is_open(sp(2025, 6, 9, 13))  # lunch
    assert not shop.is_open(sp(2025, 6, 9, 20))  # the end is excluded
    assert shop.is_open(sp(2025, 6, 14, 15))  # Saturday
    assert not shop.is_open(sp(2025, 6, 15, 10))  # Sunday
    assert shop.next_open(monday) == monday
    assert shop.next_open(sp(2025, 6, 9, 13)) == sp(2025, 6, 9, 14)
    assert shop.next_open(sp(2025, 6, 14, 21)) == sp(2025, 6, 16, 8)  # Sat night -> Monday
    assert shop.open_until(monday) == sp(2025, 6, 9, 12)
    assert shop.open_until(sp(2025, 6, 9, 13)) == sp(2025, 6, 9, 13)  # closed: empty stretch
    assert shop.open_seconds(sp(2025, 6, 9), sp(2025, 6, 16)) == 6 * 10 * HOUR
    assert shop.finish_after(sp(2025, 6, 9, 11), 3 * HOUR) == sp(2025, 6, 9, 16)
    assert shop.finish_after(sp(2025, 6, 14, 19), 2 * HOUR) == sp(2025, 6, 16, 9)


def test_a_period_crossing_midnight_belongs_to_the_day_it_starts_on() -> None:
    night = parse_window("22:00-02:00", "sat", "America/Sao_Paulo")
    assert night.is_open(sp(2025, 6, 14, 23))
    assert night.is_open(sp(2025, 6, 15, 1, 59))  # Sunday morning: still Saturday's period
    assert not night.is_open(sp(2025, 6, 15, 22, 30))  # Sunday night: not a day
    assert night.open_until(sp(2025, 6, 14, 23)) == sp(2025, 6, 15, 2)
    assert night.next_open(sp(2025, 6, 15, 3)) == sp(2025, 6, 21, 22)


def test_whole_days_run_into_each_other() -> None:
    weekend = parse_window("00:00-24:00", "sat,sun", "America/Sao_Paulo")
    assert weekend.open_until(sp(2025, 6, 14, 10)) == sp(2025, 6, 16)
    always = parse_window("00:00-24:00")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert always.open_until(start) == start + timedelta(days=400)  # the horizon
    assert always.finish_after(start, 10 * 86400) == start + timedelta(days=10)


def test_dst_spring_forward_new_york() -> None:
    # 2024-03-10: 02:00 EST jumps to 03:00 EDT
    early = parse_window("00:00-03:00", None, "America/New_York")
    day = datetime(2024, 3, 10, tzinfo=NY)
    assert early.open_seconds(day, day + timedelta(days=1)) == 2 * HOUR
    gap = parse_window("02:30-04:00", None, "America/New_York")
    opened = gap.next_open(day)
    assert opened == datetime(2024, 3, 10, 7, tzinfo=UTC)  # the jump: 03:00 EDT
    assert opened.astimezone(NY).hour == 3
    assert gap.open_seconds(day, day + timedelta(days=1)) == HOUR
    inside = parse_window("02:10-02:50", None, "America/New_York")
    assert inside.open_seconds(day, day + timedelta(days=1)) == 0.0  # never happened
    assert inside.next_open(day).astimezone(NY) == datetime(2024, 3, 11, 2, 10, tzinfo=NY)
    office = parse_window("08:00-20:00", None, "America/New_York")
    assert office.next_open(day) == datetime(2024, 3, 10, 12, tzinfo=UTC)  # 08:00 EDT


def test_dst_fall_back_new_york() -> None:
    # 2024-11-03: 02:00 EDT goes back to 01:00 EST, so 01:xx happens twice
    early = parse_window("00:00-03:00", None, "America/New_York")
    day = datetime(2024, 11, 3, tzinfo=NY)
    assert early.open_seconds(day, day + timedelta(days=1)) == 4 * HOUR
    repeated = parse_window("01:30-02:30", None, "America/New_York")
    assert repeated.next_open(day) == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)  # first 01:30
    assert repeated.open_seconds(day, day + timedelta(days=1)) == 2 * HOUR
    office = parse_window("08:00-20:00", None, "America/New_York")
    assert office.next_open(day) == datetime(2024, 11, 3, 13, tzinfo=UTC)  # 08:00 EST


def test_dst_europe_berlin_both_ways() -> None:
    night = parse_window("22:00-06:00", None, "Europe/Berlin")
    spring = datetime(2025, 3, 29, 12, tzinfo=BERLIN)  # 02:00 -> 03:00 on the 30th
    assert night.open_until(datetime(2025, 3, 29, 23, tzinfo=BERLIN)) == datetime(
        2025, 3, 30, 6, tzinfo=BERLIN
    )
    assert night.open_seconds(spring, spring + timedelta(days=1)) == 7 * HOUR
    autumn = datetime(2025, 10, 25, 12, tzinfo=BERLIN)  # 03:00 -> 02:00 on the 26th
    assert night.open_seconds(autumn, autumn + timedelta(days=1)) == 9 * HOUR


def test_several_windows__the_intersection() -> None:
    campaign = parse_window("08:00-20:00", "mon-fri", "America/Sao_Paulo")
    session = parse_window("09:00-18:00", None, "America/New_York")  # 10:00-19:00 in June SP
    both = (campaign, session)
    monday = sp(2025, 6, 9, 9)
    assert campaign.is_open(monday) and not all_open(both, monday)
    assert next_open_all(both, monday) == sp(2025, 6, 9, 10)
    assert wait_seconds(both, monday) == HOUR
    assert wait_seconds(both, sp(2025, 6, 9, 11)) == 0.0
    assert wait_seconds((), monday) == 0.0
    assert open_seconds_all(both, sp(2025, 6, 9), sp(2025, 6, 10)) == 9 * HOUR
    assert finish_after_all(both, sp(2025, 6, 13, 18), 2 * HOUR) == sp(2025, 6, 16, 11)
    disjoint = (parse_window("08:00-12:00"), parse_window("14:00-20:00"))
    with pytest.raises(InvalidArgument, match="never open"):
        next_open_all(disjoint, monday)
    assert open_seconds_all(disjoint, monday, monday + timedelta(days=3)) == 0.0


def test_finish_after_any__a_pool_works_while_any_lane_is_open() -> None:
    morning, afternoon = parse_window("08:00-12:00"), parse_window("14:00-20:00")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    done = finish_after_any(((morning,), (afternoon,)), start, 12 * HOUR)
    assert done == datetime(2025, 1, 2, 10, tzinfo=UTC)  # 4 h + 6 h on day one, 2 h more
    touching = finish_after_any(
        ((parse_window("08:00-12:00"),), (parse_window("10:00-16:00"),)), start, 8 * HOUR
    )
    assert touching == datetime(2025, 1, 1, 16, tzinfo=UTC)  # 08:00-16:00 without a break
    assert finish_after_any(((morning,), ()), start, HOUR) == start + timedelta(hours=1)


def test_json_round_trip_and_description(shop: SendWindow) -> None:
    data = shop.to_json()
    assert data == {
        "tz": "America/Sao_Paulo",
        "days": [0, 1, 2, 3, 4, 5],
        "periods": [["08:00", "12:00"], ["14:00", "20:00"]],
    }
    assert SendWindow.from_json(data) == shop
    night = parse_window("22:00-24:00,00:00-02:00", "mon,wed,fri")
    assert SendWindow.from_json(night.to_json()) == night
    assert shop.describe() == "08:00–12:00, 14:00–20:00 Mon–Sat America/Sao_Paulo"
    assert night.describe() == "00:00–02:00, 22:00–24:00 Mon, Wed, Fri UTC"
    assert parse_window("09:00-17:00", "sat-mon").describe() == "09:00–17:00 Sat–Mon UTC"
    with pytest.raises(InvalidArgument, match="not a window"):
        SendWindow.from_json({"tz": "UTC"})


def test_window_from_options() -> None:
    assert window_from_options({"pacing": "human"}) is None
    window = window_from_options(
        {"window_hours": "08:00-20:00", "window_days": "1-5", "window_tz": "America/Sao_Paulo"}
    )
    assert window == parse_window("08:00-20:00", "mon-fri", "America/Sao_Paulo")
    with pytest.raises(InvalidArgument, match="window_tz needs window_hours"):
        window_from_options({"window_tz": "UTC"})
    with pytest.raises(InvalidArgument, match="window_days needs window_hours"):
        window_from_options({"window_days": "mon"})
    with pytest.raises(InvalidArgument, match="window_hours"):
        window_from_options({"window_hours": "soon"})
