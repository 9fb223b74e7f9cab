"""The ETA simulation of capped lanes (campaigns.eta): caps per rolling day, windows, warm-up,
a pool, batch delays, and days made fast."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaigns.caps import Caps
from campaigns.eta import LanePlan, finish_seconds
from campaigns.windows import parse_window

NOON_UTC = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # 09:00 in São Paulo
HOUR = 3600.0
DAY = 86400.0


def test_an_uncapped_pool_of_six_is_the_pace_over_six_plus_the_batch_delays() -> None:
    lanes = [LanePlan(f"s{i}", 1 / 7) for i in range(6)]
    eta = finish_seconds(16000, lanes, batch_size=300, batch_delay=22.5, now=NOON_UTC)
    expected = 16000 * 7 / 6 + 53 * 22.5
    assert eta == pytest.approx(expected, rel=0.01)


def test_a_cap_per_rolling_day_waits_for_the_first_sends_to_leave_the_day() -> None:
    lane = LanePlan("a", 1.0, Caps(per_day=1000))
    eta = finish_seconds(3000, [lane], batch_size=0, batch_delay=0, now=NOON_UTC)
    # 1000 now, 1000 a day later, the last 1000 two days later, 1000 s each
    assert eta == pytest.approx(2 * DAY + 1000, abs=120)


def test_a_window_and_a_day_cap_on_a_pool_of_six__the_issue_s_16000_numbers() -> None:
    window = parse_window("08:00-20:00", "all", "America/Sao_Paulo")
    lanes = [LanePlan(f"s{i}", 1 / 7, Caps(per_day=1000), (window,)) for i in range(6)]
    eta = finish_seconds(16000, lanes, batch_size=300, batch_delay=22.5, now=NOON_UTC)
    assert eta is not None
    # 6,000 a day: two full days, then 4,000 more (667 per lane at 7 s, plus batch delays)
    assert 2 * DAY + 1.2 * HOUR < eta < 2 * DAY + 1.6 * HOUR


def test_a_closed_window_counts_until_it_opens() -> None:
    window = parse_window("14:00-15:00", "all", "UTC")
    eta = finish_seconds(60, [LanePlan("a", 1.0, windows=(window,))], batch_size=0,
                         batch_delay=0, now=NOON_UTC)  # fmt: skip
    assert eta == pytest.approx(2 * HOUR + 60, abs=61)


def test_warm_up_grows_the_daily_cap_day_by_day() -> None:
    lane = LanePlan("a", 10.0, Caps(warmup=(10, 20, 40)), day=1)
    eta = finish_seconds(70, [lane], batch_size=0, batch_delay=0, now=NOON_UTC)
    assert eta is not None and 2 * DAY < eta < 3 * DAY  # 10 + 20 + 40 over three days


def test_days_made_fast_shrink_the_eta_by_the_same_factor() -> None:
    lane = LanePlan("a", 1.0 * 100, Caps(per_day=1000))  # the pace is made fast as well
    eta = finish_seconds(3000, [lane], batch_size=0, batch_delay=0, day_seconds=864.0,
                         now=NOON_UTC)  # fmt: skip
    assert eta == pytest.approx((2 * DAY + 1000) / 100, abs=2)


def test_lanes_that_never_send_have_no_eta() -> None:
    assert finish_seconds(10, [LanePlan("a", 0.0)], batch_size=0, batch_delay=0) is None
    assert finish_seconds(0, [], batch_size=0, batch_delay=0) == 0.0
