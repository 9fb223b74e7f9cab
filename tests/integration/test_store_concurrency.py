"""Invariant 2 under concurrency: many threads and several processes claiming one campaign
never claim one recipient twice."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter

from campaigns.settings import Pacing, Settings
from campaigns.state import CampaignStateManager

NUMBERS = [f"+5511{900000000 + i}" for i in range(200)]


def _claim_all(url: str, campaign_id: int, token: str, batches: int) -> list[int]:
    manager = CampaignStateManager(url, settings=Settings(legal_basis="consent", db_pool_size=2))
    got = []
    try:
        for batch in range(1, batches + 1):
            while claim := manager.claim_recipient(campaign_id, batch, token):
                got.append(claim.position)
    finally:
        manager.dispose()
    return got


def test_claims_from_eight_threads__each_recipient_claimed_exactly_once(
    store: CampaignStateManager, console_session: str, database_url: str
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=Pacing(batch_size=50))
    assert campaign.run_token
    results: list[list[int]] = []
    lock = threading.Lock()

    def worker() -> None:
        got = _claim_all(database_url, campaign.id, campaign.run_token or "", 4)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = Counter(p for got in results for p in got)
    assert sorted(claimed) == list(range(1, 201))
    assert max(claimed.values()) == 1
    assert sum(1 for got in results if got) > 1, "claims were not spread across threads"


def test_claims_from_four_processes__each_recipient_claimed_exactly_once(
    store: CampaignStateManager, console_session: str, database_url: str
) -> None:
    campaign = store.create_campaign(NUMBERS, "Hi", console_session, pacing=Pacing(batch_size=50))
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.starmap(_claim_all, [(database_url, campaign.id, campaign.run_token, 4)] * 4)
    claimed = Counter(p for got in results for p in got)
    assert sorted(claimed) == list(range(1, 201))
    assert max(claimed.values()) == 1
