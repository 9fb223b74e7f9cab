"""Chaos: a campaign with variants, spintax and a fallback whose worker dies by SIGKILL, twice,
while it sends; recovery resumes it. Every text the sandbox recorded, before and after the
kills, is the render of the label the ledger stored for that recipient (the same variant it
would have had without the kills), and a number opted out while the worker was dead is never
sent."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from campaigns import content
from campaigns.domain import RecipientStatus
from campaigns.processor import CampaignBatchProcessor
from tests.chaos.conftest import CHAOS_PACING, Chaos, numbers

pytestmark = pytest.mark.chaos

MESSAGE = "{Olá|Oi|Bom dia} {name|cliente}, temos novidades."
VARIANTS = ("Oi {name|cliente}! Veja a oferta.", "{name|cliente}, {sua oferta chegou|veja}.")


@pytest.mark.timeout(240)
def test_variants_campaign_killed_twice__same_variants_after_resume__late_opt_out_honoured(
    chaos: Chaos,
) -> None:
    session = chaos.add_session(typing="false")
    chaos.stack.start_beat()
    chaos.stack.start_worker(concurrency=4)  # the only one: each kill takes the chain down
    listed = numbers(160)
    entries = [
        {"phone": n, "name": "" if i % 5 == 0 else f"Pessoa{i}"} for i, n in enumerate(listed)
    ]
    processor = CampaignBatchProcessor(
        CHAOS_PACING.batch_size, CHAOS_PACING.min_interval, CHAOS_PACING.max_interval,
        CHAOS_PACING.batch_delay_min, CHAOS_PACING.batch_delay_max, enqueue=chaos.enqueuer,
    )  # fmt: skip
    processor.set_state_manager(chaos.store)
    cid = processor.process_large_campaign_array(entries, MESSAGE, session, variants=VARIANTS)

    late = listed[-12]
    chaos.wait_sent(30, timeout=60)
    first_kill = time.time()
    chaos.kill_a_worker(
        while_down=lambda: chaos.store.add_optout(late, detail="asked while the worker was down")
    )
    chaos.wait_sent(chaos.record.count() + 25, timeout=60)
    chaos.kill_a_worker()
    chaos.wait_finished(cid, 150)

    # the opted-out number is neither recorded nor counted as lost: it is skipped
    late_row = next(r for r in chaos.store.recipients(cid) if r["phone"] == late)
    assert (late_row["status"], late_row["error_code"]) == (RecipientStatus.SKIPPED, "opted_out")
    assert late not in {m.e164 for m in chaos.record.messages()}
    chaos.verify(cid)  # completed, none twice, none lost, unknowns <= crashes, invariants

    campaign = chaos.store.get_campaign(cid)
    plan = content.plan(MESSAGE, VARIANTS)
    labels = {r["position"]: r["variant"] for r in chaos.store.iter_recipients(cid)}
    rows = {r["phone"]: r for r in chaos.store.recipients(cid)}
    messages = chaos.record.messages()
    for m in messages:
        row = rows[m.e164]
        label = labels[row["position"]]
        # the label stored at creation is the campaign's deterministic choice...
        assert label == content.choose(plan, campaign.columns, cid, row["position"])
        # ...and the text that went out, before or after a kill, is its rendering
        expected = content.render(
            plan, campaign.columns, label, row["variables"],
            campaign_id=cid, position=row["position"],
        )  # fmt: skip
        assert m.text == expected, (m.e164, label)
        assert "{" not in m.text and "}" not in m.text
    resumed = [m for m in messages if m.received_at > first_kill]
    assert len(resumed) > 40  # a good part of the list went out after the first kill
    used = Counter(labels[rows[m.e164]["position"]].split(":")[0] for m in resumed)
    assert set(used) == {"1", "2", "3"}, used
    # everyone but the opted-out number, once (a claim cut off by a kill may not have reached
    # the gateway: unknown, never resent)
    unknown = {n for n, r in rows.items() if r["status"] == RecipientStatus.UNKNOWN}
    assert {m.e164 for m in messages} | unknown == set(listed) - {late}
    assert len(messages) == len({m.e164 for m in messages})
