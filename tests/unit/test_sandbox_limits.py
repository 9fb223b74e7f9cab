"""The sandbox's throughput window and latency settings, on synthetic arrival times."""

from __future__ import annotations

import itertools
import random

import pytest

from campaigns.sandbox.limits import Latency, Throughput, check_latency, check_rate


def busiest_second(times: list[float]) -> int:
    """The most arrivals any interval (end - 1 s, end] holds."""
    ordered = sorted(times)
    return max((sum(1 for t in ordered if end - 1.0 < t <= end) for end in ordered), default=0)


def test_throughput__the_81st_send_within_a_second_is_refused_then_room_returns() -> None:
    limiter = Throughput(80)
    start = 1_000_000.0
    admitted = [limiter.admit("pn", start + k * 0.01) for k in range(81)]

    assert admitted == [True] * 80 + [False]
    assert not limiter.admit("pn", start + 0.999)  # the window still holds 80
    assert limiter.admit("pn", start + 1.0)  # the first arrival left the window (t - 1, t]
    assert limiter.admit("other", start + 0.5), "the limit is per phone number"


def test_throughput__refused_sends_are_not_counted() -> None:
    limiter = Throughput(2)
    assert [limiter.admit("pn", t) for t in (0.0, 0.1, 0.2, 0.3, 0.4)] == [
        True, True, False, False, False,
    ]  # fmt: skip
    assert limiter.admit("pn", 1.05)  # only the two admitted ones counted: 0.0 has left


def test_throughput__arrivals_checked_out_of_order_never_overfill_a_window() -> None:
    rng = random.Random(5)
    limiter = Throughput(10)
    arrivals = sorted(rng.uniform(0, 5) for _ in range(400))
    # each arrival is checked up to 50 ms late, so checks come out of arrival order
    checks = sorted(arrivals, key=lambda t: t + rng.uniform(0, 0.05))
    kept = [t for t in checks if limiter.admit("pn", t)]

    assert busiest_second(kept) == 10
    refused = sorted(set(arrivals) - set(kept))
    assert refused, "the load is well past the limit"


def test_throughput__per_number_limits_none_lifts_and_reset_restores_the_start() -> None:
    limiter = Throughput(80)
    limiter.set(1, "slow")
    limiter.set(None, "free")
    assert [limiter.admit("slow", t) for t in (0.0, 0.5)] == [True, False]
    assert all(limiter.admit("free", t / 1000) for t in range(5000))
    assert limiter.snapshot() == {"default": 80, "sessions": {"free": None, "slow": 1}}
    limiter.set(None)
    assert limiter.limit("any") is None and limiter.limit("slow") == 1

    limiter.reset()
    assert limiter.snapshot() == {"default": 80, "sessions": {}}
    assert limiter.admit("slow", 0.6)


def test_throughput__keeps_a_bounded_history() -> None:
    limiter = Throughput(1000)
    for k in itertools.count():
        if k == 20_000:
            break
        limiter.admit("pn", k * 0.002)
    assert len(limiter._admitted["pn"]) <= 1000 * 6


@pytest.mark.parametrize("bad", [0, -1, 2.5, "x", float("nan"), float("inf"), True, 10**6])
def test_check_rate__refuses_what_is_not_a_whole_positive_rate(bad: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        check_rate(bad)


def test_check_rate__accepts_whole_numbers_and_none() -> None:
    assert check_rate("80") == 80 and check_rate(1000.0) == 1000 and check_rate(None) is None


@pytest.mark.parametrize("bad", [-0.1, "nan", float("inf"), "x", None, 601])
def test_check_latency__refuses_negative_infinite_or_huge(bad: object) -> None:
    with pytest.raises(ValueError, match="seconds"):
        check_latency(bad)


def test_latency__the_most_precise_setting_wins() -> None:
    latency = Latency()
    assert not latency.active and latency.of("cloud", "pn") == 0.0
    latency.set(0.1)
    latency.set(0.25, dialect="cloud")
    latency.set(0.5, session="pn")
    latency.set(0.75, dialect="waha", session="pn")

    assert latency.of("cloud", "other") == 0.25
    assert latency.of("evolution", "other") == 0.1
    assert latency.of("cloud", "pn") == 0.5
    assert latency.of("waha", "pn") == 0.75
    assert latency.of("waha", None) == 0.1
    with pytest.raises(ValueError, match="dialect"):
        latency.set(1.0, dialect="sms")


def test_latency__reset_goes_back_to_the_start_value() -> None:
    latency = Latency(0.25)
    latency.set(0.0)
    latency.set(1.0, session="pn")
    latency.reset()
    assert latency.of("cloud", "pn") == 0.25
    assert latency.snapshot() == [{"dialect": None, "session": None, "seconds": 0.25}]
