"""Chaos: worker processes die by SIGKILL — one at a time, all at once with beat, many
restarting together under two beats, and right between the gateway's accept and our record."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.local.stack import wait_until
from campaigns.settings import Pacing
from tests.chaos.conftest import CHAOS_PACING, Chaos

pytestmark = pytest.mark.chaos


def _takeovers(log_dir: Path, campaign_id: int) -> int:
    """How many times recovery resumed the campaign, from every worker's log."""
    needle = f"campaign {campaign_id} on "
    return sum(
        line.count("resuming from batch")
        for path in log_dir.glob("worker*.log")
        for line in path.read_text(errors="replace").splitlines()
        if needle in line
    )


@pytest.mark.timeout(480)
def test_twenty_random_worker_kills__every_number_delivered_once(chaos: Chaos) -> None:
    session = chaos.add_session()
    chaos.stack.start_beat()
    for _ in range(2):
        chaos.stack.start_worker(concurrency=4)
    cid = chaos.start_campaign(700, session)

    while chaos.result.crashes < 20:
        # kill after a random amount of progress, so kills land mid-batch, between batches
        # and during a recovery alike
        chaos.wait_sent(chaos.record.count() + chaos.rng.randint(12, 28), timeout=60)
        chaos.kill_a_worker()

    chaos.wait_finished(cid, 240)
    chaos.verify(cid)
    # the chain stalls only when its own worker dies: at most stall timeout + one sweep
    # (+ a worker's start and the first pacing wait)
    assert max(chaos.result.latencies["worker kill"]) < 6 + 2 + 4


@pytest.mark.timeout(240)
def test_kill_everything_then_restart__the_campaign_resumes_by_itself(chaos: Chaos) -> None:
    session = chaos.add_session()
    chaos.stack.start_beat()
    workers = [chaos.stack.start_worker(concurrency=4).name for _ in range(2)]
    cid = chaos.start_campaign(200, session)
    chaos.wait_sent(60)

    killed_at = time.time()
    for name in [*workers, *chaos.beats()]:
        chaos.stack.kill(name)
        chaos.stack.children.pop(name)
    chaos.result.faults = chaos.result.crashes = 1
    assert chaos.store.get_campaign(cid).status is CampaignStatus.RUNNING

    chaos.restart_workers(workers)
    chaos.stack.start_beat()
    chaos.wait_finished(cid, 120)

    chaos.result.add_latency("full restart", chaos.first_message_after(killed_at))
    chaos.verify(cid)
    assert _takeovers(chaos.stack.log_dir, cid) == 1


@pytest.mark.timeout(240)
def test_two_beats_and_three_workers_restarting_at_once__one_chain_and_pacing_holds(
    chaos: Chaos,
) -> None:
    session = chaos.add_session()
    chaos.stack.start_beat("beat-a")
    chaos.stack.start_beat("beat-b")
    workers = [chaos.stack.start_worker(concurrency=4).name for _ in range(3)]
    pacing = Pacing(
        batch_size=10,
        min_interval=0.15,
        max_interval=0.25,
        batch_delay_min=0.1,
        batch_delay_max=0.3,
    )
    cid = chaos.start_campaign(120, session, pacing)
    chaos.wait_sent(40)

    killed_at = time.time()
    for name in workers:
        chaos.stack.kill(name)
        chaos.stack.children.pop(name)
    chaos.result.faults = chaos.result.crashes = 1
    chaos.restart_workers(workers)
    chaos.wait_finished(cid, 150)

    chaos.result.add_latency("full restart", chaos.first_message_after(killed_at))
    chaos.verify(cid)
    gaps = chaos.record.gaps(session)
    assert min(gaps) >= pacing.min_interval, sorted(gaps)[:5]
    # six worker_ready sweeps and two beats raced for one dead chain: one takeover won
    assert _takeovers(chaos.stack.log_dir, cid) == 1


@pytest.mark.timeout(180)
@pytest.mark.parametrize("resend_unknown", [False, True], ids=["default", "resend-unknown"])
def test_worker_killed_after_the_gateway_accepted_but_before_the_record(
    chaos_factory: object, database_url: str, resend_unknown: bool
) -> None:
    chaos: Chaos = chaos_factory(  # type: ignore[operator]
        database_url, RESEND_UNKNOWN="true" if resend_unknown else "false"
    )
    session = chaos.add_session()
    chaos.stack.start_beat()
    worker = chaos.stack.start_worker(concurrency=2).name
    cid = chaos.start_campaign(40, session, CHAOS_PACING)
    chaos.wait_sent(10)

    # the next send is accepted and recorded by the gateway, whose answer then hangs longer
    # than it takes to kill the worker waiting for it
    chaos.sandbox.hang(30, count=1, session=session)
    wait_until(
        lambda: any(m.answered_at is None for m in chaos.record.messages()),
        30,
        "the gateway to accept a message and hold its answer",
    )
    killed_at = time.time()
    chaos.stack.kill(worker)
    chaos.stack.children.pop(worker)
    chaos.result.faults = chaos.result.crashes = 1
    [hung] = [m.e164 for m in chaos.record.messages() if m.answered_at is None]
    chaos.stack.start_worker(concurrency=2)
    chaos.wait_finished(cid, 120)

    chaos.result.add_latency("worker kill", chaos.first_message_after(killed_at))
    [row] = [r for r in chaos.store.recipients(cid) if r["phone"] == hung]
    deliveries = [m.e164 for m in chaos.record.messages()].count(hung)
    if resend_unknown:
        # at-least-once: the cut-off claim went back to pending and was sent again
        assert (row["status"], deliveries) == (RecipientStatus.SENT, 2)
        chaos.verify(cid, allow_resent=frozenset({hung}))
        assert chaos.result.unknowns == 0
    else:
        # at-most-once: counted and listed as unknown, never resent
        assert (row["status"], deliveries) == (RecipientStatus.UNKNOWN, 1)
        assert row["error_code"] == "cut_off"
        chaos.verify(cid)
        assert [r["phone"] for r in chaos.store.recipients(cid, RecipientStatus.UNKNOWN)] == [hung]
