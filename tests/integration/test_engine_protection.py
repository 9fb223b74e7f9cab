"""Sender protection in the batch runner, in-process: caps per session (and their rebuild from
the ledger when Redis lost them), warm-up, Meta's portfolio limit, and the recipient-level
answers 131049 (deferred a day, then failed), 131056 (deferred seconds) and 131050 (skipped).
Real PostgreSQL and Redis; the gateway is a double answering from a script."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis

from campaigns.capacity import SessionCapacity
from campaigns.caps import Caps
from campaigns.domain import CampaignStatus, LaneState, RecipientStatus, send_id
from campaigns.engine import RunEnd
from campaigns.gateways.base import OutcomeKind, OutgoingMessage, SendOutcome
from campaigns.settings import Settings
from campaigns.state import CampaignStateManager
from tests.integration.engine_doubles import (
    FAST,
    NUMBERS,
    ScriptedGateway,
    pacer_for,
    redis_url,
    runner_for,
)

__all__ = ["redis_url"]  # the module's fixture


def _wait_until(done: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``done()`` became true within ``timeout`` seconds (polled)."""
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def drive(runner: object, store: CampaignStateManager, cid: int, runs: int = 20) -> list[RunEnd]:
    """Run the campaign's chain the way the task does (next batch, continuation) for at most
    ``runs`` runs, without waiting out the delays; the ends seen."""
    ends: list[RunEnd] = []
    for _ in range(runs):
        c = store.get_campaign(cid)
        if c.status is not CampaignStatus.RUNNING or c.run_token is None:
            break
        result = runner.run(cid, max(c.current_batch, 1), c.run_token)  # type: ignore[attr-defined]
        ends.append(result.end)
        if result.end in (RunEnd.COMPLETED, RunEnd.STOPPED, RunEnd.INTERRUPTED):
            break
        if result.end is RunEnd.CONTINUE and result.delay > 5:
            break  # a wait for capacity or a deferral: the test decides what happens next
    return ends


def test_a_cap_per_hour_makes_the_lane_wait__the_campaign_says_why_and_nothing_fails(
    store: CampaignStateManager, redis_url: str
) -> None:
    store.add_session("sales", "console", "console://local", cap_hour="4")
    gateway = ScriptedGateway()
    pacer = pacer_for(redis_url)
    runner = runner_for(store, pacer, gateway)
    campaign = store.create_campaign(NUMBERS, "Hi", "sales", pacing=FAST)

    ends = drive(runner, store, campaign.id)

    assert ends[-1] is RunEnd.CONTINUE
    assert gateway.sent == NUMBERS[:4]
    waiting = store.get_campaign(campaign.id)
    assert waiting.status is CampaignStatus.RUNNING  # a wait interrupts nothing
    said = waiting.waiting_reason or ""
    assert "waiting for capacity on sales until" in said
    assert "cap per hour" in said
    statuses = [r["status"] for r in store.recipients(campaign.id)]
    assert statuses.count(RecipientStatus.SENT) == 4
    assert RecipientStatus.FAILED not in statuses

    # Redis loses the counts (a flush): they are rebuilt from the ledger, the cap still holds
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{pacer.key_prefix}cap:*"):
        client.delete(key)
    drive(runner_for(store, pacer, gateway), store, campaign.id)
    assert gateway.sent == NUMBERS[:4]


def test_a_pool_session_at_its_cap_leaves_the_rotation_and_the_other_lane_sends_the_rest(
    store: CampaignStateManager, redis_url: str
) -> None:
    store.add_session("capped", "console", "console://local", cap_day="2")
    store.add_session("free", "console", "console://local")
    sent_by: dict[str, list[str]] = {"capped": [], "free": []}
    capped_sends = 0
    cid = 0

    def capped_is_parked() -> bool:
        lanes = {lane.session_name: lane for lane in store.list_lanes(cid)}
        return lanes["capped"].state is not LaneState.ACTIVE

    def in_lane_order(message: OutgoingMessage) -> SendOutcome:
        """The free lane's sends wait for the capped one to reach its cap (its first send)
        and then to leave the rotation (the others): without that, on a busy machine the free
        lane can drain a batch before the capped lane asks for more, which never parks it."""
        nonlocal capped_sends
        if threading.current_thread().name == "lane-capped":
            capped_sends += 1
        elif not _wait_until(lambda: capped_sends >= 2) or (
            len(gateway.sent) > 3 and not _wait_until(capped_is_parked)
        ):
            raise AssertionError("the capped lane never reached its cap or never parked")
        return SendOutcome(OutcomeKind.SENT, message_id=f"id-{len(gateway.sent)}")

    gateway = ScriptedGateway(in_lane_order)
    runner = runner_for(store, pacer_for(redis_url), gateway)
    campaign = store.create_campaign(NUMBERS * 2, "Hi", ["capped", "free"], pacing=FAST)
    cid = campaign.id

    ends = drive(runner, store, campaign.id, runs=40)

    assert ends[-1] is RunEnd.COMPLETED
    for row in store.recipients(campaign.id):
        if row["status"] == RecipientStatus.SENT:
            sent_by[row["session_name"]].append(row["phone"])
    assert len(sent_by["capped"]) == 2
    assert len(sent_by["capped"]) + len(sent_by["free"]) == len(NUMBERS)  # the rest duplicates
    lanes = {lane.session_name: lane for lane in store.list_lanes(campaign.id)}
    assert lanes["capped"].reason and "waiting for capacity on capped" in lanes["capped"].reason
    assert store.check_invariants(campaign.id) == []


def test_capacity__day_and_hour_caps_warm_up_and_the_portfolio_limit_hold_together(
    store: CampaignStateManager, redis_url: str
) -> None:
    pacer = pacer_for(redis_url)
    capacity = SessionCapacity(
        pacer.redis_client, store.sends_since, store.portfolio_sessions,
        key_prefix=pacer.key_prefix,
    )  # fmt: skip
    store.add_session("s", "console", "console://local")

    def take(caps: Caps, ids: range, day: int | None = None, phone: str = "") -> int:
        sends = [(send_id(1, i), phone or f"+55119000{i:05d}") for i in ids]
        return capacity.take("s", caps, sends, day).granted

    warm = Caps(per_day=100, warmup=(3, 5))
    assert take(warm, range(0, 10), day=1) == 3  # day 1 of the warm-up: 3
    assert take(warm, range(10, 20), day=2) == 2  # day 2: 5 in all, within the rolling day
    assert take(warm, range(20, 30), day=9) == 10  # the warm-up is over: cap_day alone
    refused = capacity.take("s", warm, [(send_id(1, 99), "+551190")], 1)
    assert refused.granted == 0 and refused.why == "day"
    assert 86_400 < refused.wait <= 86_400 + 86.4  # the oldest send leaves the day (+ margin)

    portfolio = Caps(portfolio="acme", tier=2)
    assert take(portfolio, range(100, 103)) == 2  # two unique recipients a day
    assert take(portfolio, range(103, 110), phone="+5511900000100") == 7  # seen: not new


def test_131049_defers_the_recipient_to_the_retry_batch_then_fails_it_after_max_deferrals(
    store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    capped = NUMBERS[1]

    def answer(message: OutgoingMessage) -> SendOutcome:
        if message.to == capped:
            return SendOutcome(
                OutcomeKind.DEFERRED, error_code="131049", error_message="per-user limit"
            )
        return SendOutcome(OutcomeKind.SENT, message_id=f"id-{message.to}")

    gateway = ScriptedGateway(answer)
    # a day made fast
    settings = Settings(legal_basis="consent", pacing=FAST, day_seconds=1.0, max_deferrals=2)
    runner = runner_for(store, pacer_for(redis_url), gateway, settings)
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)
    assert campaign.total_batches == 2

    drive(runner, store, campaign.id)
    grown = store.get_campaign(campaign.id)
    assert (grown.total_batches, grown.retry_batch) == (3, 3)  # batches 1 and 2 went on
    row = next(r for r in store.recipients(campaign.id) if r["phone"] == capped)
    assert (row["status"], row["batch_number"]) == ("pending", 3)
    for _ in range(2):  # a "day" later, and again
        time.sleep(1.1)
        drive(runner, store, campaign.id)

    done = store.get_campaign(campaign.id)
    assert done.status is CampaignStatus.COMPLETED
    assert gateway.sent.count(capped) == 3  # the first try and two deferrals
    row = next(r for r in store.recipients(campaign.id) if r["phone"] == capped)
    assert row["status"] == RecipientStatus.FAILED
    assert "deferred 2 times" in (row["error_message"] or "")
    assert done.success_count == len(NUMBERS) - 1
    assert store.check_invariants(campaign.id) == []


def test_131056_retries_that_recipient_after_its_wait_and_131050_skips_its_recipient(
    store: CampaignStateManager, console_session: str, redis_url: str
) -> None:
    paired, stopped = NUMBERS[0], NUMBERS[2]
    answered: dict[str, int] = {}

    def answer(message: OutgoingMessage) -> SendOutcome:
        answered[message.to] = answered.get(message.to, 0) + 1
        if message.to == paired and answered[paired] == 1:
            return SendOutcome(OutcomeKind.DEFERRED, error_code="131056", retry_after=0.5)
        if message.to == stopped:
            return SendOutcome(OutcomeKind.OPTED_OUT, error_code="131050")
        return SendOutcome(OutcomeKind.SENT, message_id=f"id-{message.to}")

    gateway = ScriptedGateway(answer)
    runner = runner_for(store, pacer_for(redis_url), gateway)
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=FAST)

    for _ in range(10):
        if drive(runner, store, campaign.id)[-1:] == [RunEnd.COMPLETED]:
            break
        time.sleep(0.3)

    done = store.get_campaign(campaign.id)
    assert done.status is CampaignStatus.COMPLETED
    # the paired recipient waited without holding the session: the others went first
    assert gateway.sent[:2] == [paired, NUMBERS[1]] and gateway.sent.count(paired) == 2
    assert gateway.sent.count(stopped) == 1  # never retried
    rows = {r["phone"]: r for r in store.recipients(campaign.id)}
    assert rows[paired]["status"] == RecipientStatus.SENT
    assert rows[stopped]["status"] == RecipientStatus.SKIPPED
    assert (done.success_count, done.skipped_count, done.failed_count) == (5, 1, 0)
    assert store.check_invariants(campaign.id) == []


def test_a_pool_waiting_for_a_deferred_recipient__the_run_continues_and_no_lane_leaves(
    store: CampaignStateManager, redis_url: str
) -> None:
    store.add_session("a", "console", "console://local")
    store.add_session("b", "console", "console://local")
    capped = NUMBERS[4]
    tries: list[str] = []

    def answer(message: OutgoingMessage) -> SendOutcome:
        tries.append(message.to)
        if message.to == capped and tries.count(capped) == 1:
            return SendOutcome(OutcomeKind.DEFERRED, error_code="131049")
        return SendOutcome(OutcomeKind.SENT, message_id=f"id-{len(tries)}")

    settings = Settings(legal_basis="consent", pacing=FAST, day_seconds=8.0)
    runner = runner_for(store, pacer_for(redis_url), ScriptedGateway(answer), settings)
    campaign = store.create_campaign(NUMBERS, "Hi", ["a", "b"], pacing=FAST)

    ends = drive(runner, store, campaign.id)
    assert set(ends) <= {RunEnd.NEXT_BATCH, RunEnd.CONTINUE}  # never a lane's end as the run's
    waiting = store.get_campaign(campaign.id)
    assert "deferred" in (waiting.waiting_reason or "")
    assert all(lane.active for lane in store.list_lanes(campaign.id))
    time.sleep(8.2)
    assert drive(runner, store, campaign.id)[-1] is RunEnd.COMPLETED
    assert store.check_invariants(campaign.id) == []


def test_every_lane_of_a_pool_outside_its_window__the_campaign_waits_running_never_interrupted(
    store: CampaignStateManager, redis_url: str
) -> None:
    from datetime import UTC, datetime, timedelta

    from campaigns.windows import parse_window

    pool = ["a", "b", "c"]
    for name in pool:
        store.add_session(name, "console", "console://local")
    opens = datetime.now(UTC) + timedelta(hours=2)
    window = parse_window(f"{opens:%H}:00-{opens:%H}:59", "all", "UTC")
    gateway = ScriptedGateway()
    runner = runner_for(store, pacer_for(redis_url), gateway)
    campaign = store.create_campaign(NUMBERS, "Hi", pool, pacing=FAST, window=window)

    ends = drive(runner, store, campaign.id)

    assert ends == [RunEnd.CONTINUE] and gateway.sent == []
    waiting = store.get_campaign(campaign.id)
    assert waiting.status is CampaignStatus.RUNNING  # three lanes parking at once: one stays
    assert "outside the send window" in (waiting.waiting_reason or "")
    assert sum(lane.active for lane in store.list_lanes(campaign.id)) == 1


def test_the_eta_of_a_pool_counts_its_lanes_sending_side_by_side(
    store: CampaignStateManager,
) -> None:
    from campaigns.settings import Pacing as P

    pool = [f"s{i}" for i in range(6)]
    for name in pool:
        store.add_session(name, "console", "console://local")
    pacing = P(batch_size=300, min_interval=4, max_interval=10, batch_delay_min=15,
               batch_delay_max=30)  # fmt: skip
    numbers = [f"+5511{960000000 + i}" for i in range(1200)]
    pooled = store.create_campaign(numbers, "Hi", pool, pacing=pacing)
    alone = store.create_campaign(numbers, "Hi", "s0", pacing=pacing)

    one = store.snapshot(alone.id).eta_seconds()
    six = store.snapshot(pooled.id).eta_seconds()
    assert one == 1200 * 7 + 3 * 22.5  # one lane: the plain arithmetic
    assert six == pytest.approx(1200 * 7 / 6 + 3 * 22.5, rel=0.03)  # six lanes side by side
