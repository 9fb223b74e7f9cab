"""Property test: random sequences of claim/record/release/finish/takeover keep invariant 4
(state counters = ledger counts = sums of batch details) and invariant 2 (one holder per claim)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.domain import ClaimedRecipient, RecipientStatus
from campaigns.errors import InvalidTransition
from campaigns.settings import Pacing
from campaigns.state import CampaignStateManager

NUMBERS = [f"+55119999{i:05d}" for i in range(7)] + ["+5511999900000", "bad"]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), st.integers(1, 3)),
        st.tuples(st.just("record"), st.sampled_from(["sent", "failed", "unknown"])),
        st.tuples(st.just("release"), st.none()),
        st.tuples(st.just("finish"), st.integers(1, 3)),
        st.tuples(st.just("takeover"), st.none()),
    ),
    max_size=40,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_random_operations_keep_counters_ledger_and_details_equal(
    store: CampaignStateManager, console_session: str, ops: list[tuple[str, object]]
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=Pacing(batch_size=3))
    token = campaign.run_token
    assert token
    held: list[ClaimedRecipient] = []
    for op, arg in ops:
        if op == "claim":
            claim = store.claim_recipient(campaign.id, int(arg), token)  # type: ignore[call-overload]
            if claim:
                assert all(h.position != claim.position for h in held), "claimed twice"
                held.append(claim)
        elif op == "record" and held:
            assert store.record_outcome(held.pop(0), RecipientStatus(str(arg)))
        elif op == "release" and held:
            assert store.release_claim(held.pop(0))
        elif op == "finish":
            batch = int(arg)  # type: ignore[call-overload]
            if _batch_closed(store, campaign.id, batch):
                store.finish_batch(campaign.id, batch, token)
            else:
                with pytest.raises(InvalidTransition):
                    store.finish_batch(campaign.id, batch, token)
        elif op == "takeover":
            stalled = store.find_stalled_campaigns(stall_timeout=0)
            for seen in stalled:
                if seen.id == campaign.id and (new := store.take_over_stalled(seen, 0)):
                    token = new
                    store.settle_cut_off_claims(campaign.id)
                    held.clear()
        assert store.check_invariants(campaign.id) == []


def _batch_closed(store: CampaignStateManager, campaign_id: int, batch: int) -> bool:
    return all(
        r["status"] not in (RecipientStatus.PENDING, RecipientStatus.SENDING)
        for r in store.recipients(campaign_id)
        if r["batch_number"] == batch
    )
