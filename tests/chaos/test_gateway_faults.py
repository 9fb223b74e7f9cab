"""Chaos on the gateway side: the WhatsApp session drops in each dialect and comes back (the
campaign goes interrupted with the reason, then resumes by itself from the exact recipient), and
storms of throttling and 5xx answers."""

from __future__ import annotations

import time

import pytest

from campaigns.domain import CampaignStatus
from campaigns.local.stack import wait_until
from tests.chaos.conftest import Chaos

pytestmark = pytest.mark.chaos

DROP_S = 5.0


@pytest.mark.timeout(180)
# not cloud-api: the sandbox drops a Cloud API session as its token expiring (190), a blocked
# stop that only an operator resumes (tests/integration/test_stop_kinds.py)
@pytest.mark.parametrize("gateway", ["waha", "evolution"])
def test_session_drop__interrupted_with_the_reason_then_resumed_from_the_exact_recipient(
    chaos: Chaos, gateway: str
) -> None:
    session = chaos.add_session(f"s-{gateway}", gateway)
    chaos.stack.start_beat()  # the session watcher asks the gateway every second
    chaos.stack.start_worker(concurrency=4)
    cid = chaos.start_campaign(120, session)
    chaos.wait_sent(30)

    asked_at = time.time()
    chaos.sandbox.drop(session, seconds=DROP_S)
    # A send already on the wire when we asked can still be accepted before the sandbox applies
    # the drop; only what arrives after the drop call returned is "after the drop".
    dropped_at = time.time()
    reconnected_at = asked_at + DROP_S
    chaos.result.faults = 1
    wait_until(
        lambda: chaos.store.get_campaign(cid).status is CampaignStatus.INTERRUPTED,
        DROP_S,
        "the campaign to be interrupted while the session is down",
    )
    interrupted = chaos.store.get_campaign(cid)
    assert interrupted.interrupt_reason, interrupted
    resume_from = chaos.store.first_pending_position(cid)
    [next_phone] = [r["phone"] for r in chaos.store.recipients(cid) if r["position"] == resume_from]
    sent_before = {m.e164 for m in chaos.record.messages()}

    chaos.wait_finished(cid, 120)

    after = [m for m in chaos.record.messages() if m.received_at > dropped_at]
    assert after and after[0].e164 == next_phone  # resumed from the exact recipient
    assert next_phone not in sent_before
    assert after[0].received_at >= reconnected_at  # nothing sent while the session was down
    chaos.result.add_latency("session reconnect", after[0].received_at - reconnected_at)
    chaos.verify(cid)
    assert chaos.result.latencies["session reconnect"][0] < 10


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("gateway", "storm"),
    [("cloud-api", "throttle 130429"), ("waha", "throttle http 429"), ("evolution", "5xx")],
)
def test_storm_of_throttling_or_5xx_answers__delays_the_campaign_and_fails_nobody(
    chaos: Chaos, gateway: str, storm: str
) -> None:
    session = chaos.add_session(f"s-{gateway}", gateway)
    chaos.stack.start_beat()
    chaos.stack.start_worker(concurrency=4)
    cid = chaos.start_campaign(120, session)
    chaos.wait_sent(30)

    started_at = time.time()
    seconds = 3.0
    if storm.startswith("throttle"):
        chaos.sandbox.throttle(session=session, seconds=seconds)
    else:
        # every send fails for 2.5 s: the backoff (2 s, then 4 s) spans it within MAX_ATTEMPTS
        seconds = 2.5
        chaos.sandbox.fail(1.0, session=session, seconds=seconds)
    chaos.result.faults = 1

    chaos.wait_finished(cid, 150)
    chaos.result.add_latency("storm end", chaos.first_message_after(started_at + seconds))
    chaos.verify(cid)
