"""Memory flatness (issue 6): the RSS of one worker process after a 10,000-recipient campaign
and after a much larger one (zero intervals, console gateway). The larger size is 1,000,000,
or the largest that fits the time budget at the rate measured on the first campaign (said so in
the table)."""

from __future__ import annotations

import os
import time

from bench.harness import Bench, Client, Row, numbers, rss_mb
from campaigns.local.stack import wait_until
from campaigns.settings import Pacing

NAME = "memory"
TARGET_GROWTH = 0.10
FULL_SIZE = 1_000_000
LARGE = 100_000
"""About 4 minutes of sending at this machine's rate for one chain."""
ZERO = Pacing(batch_size=300, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)


def run(bench: Bench) -> list[Row]:
    small = 1_000 if bench.quick else 10_000
    # BENCH_MEMORY_LARGE=1000000 runs the full-size campaign (about half an hour here)
    large = 3_000 if bench.quick else int(os.environ.get("BENCH_MEMORY_LARGE", LARGE))
    database_url = bench.database(NAME)
    # WARNING: the console gateway logs a line per message at INFO; a million lines of log
    # would measure the disk, not the engine
    env = bench.env(database_url, CAMPAIGNS_LOG_LEVEL="WARNING")
    with bench.stack(NAME, env) as local:
        client = Client(env)
        try:
            worker = local.start_worker("worker", concurrency=8)
            pid = worker.process.pid
            session = client.add_session(f"mem-{bench.run_id}", "console://bench", "console")
            # both ledgers are loaded before anything is sent: loading a campaign into a ledger
            # whose statistics were analyzed with other campaigns is another matter (see the
            # list-loading rows)
            big = client.store.create_campaign(numbers(large, 10**7), "Hi", session, pacing=ZERO)
            first = client.store.create_campaign(numbers(small), "Hi", session, pacing=ZERO)
            started_rss = rss_mb(pid)
            seconds = _send(client, first.id, first.run_token, small)
            after_small = _settled_rss(pid)
            measured_rate = small / seconds
            seconds_large = _send(client, big.id, big.run_token, large)
            after_large = _settled_rss(pid)
        finally:
            client.close()
    growth = after_large / after_small - 1
    if large < FULL_SIZE:
        bench.notes.append(
            f"memory: one campaign sends {measured_rate:,.0f} msg/s here (one chain, console "
            f"gateway), so 1,000,000 recipients would take about "
            f"{FULL_SIZE / measured_rate / 60:.0f} min; the run used {large:,} recipients "
            f"({seconds_large / 60:.1f} min) to fit the time budget."
        )
    bench.notes.append(
        f"memory: worker RSS {started_rss:.0f} MB when ready, {after_small:.0f} MB after "
        f"{small:,}, {after_large:.0f} MB after {large:,} more (8 threads, batch 300)."
    )
    return [
        Row(
            "memory flatness",
            f"worker RSS after a {large:,}-recipient campaign"
            + (" (1M does not fit the time budget)" if large < FULL_SIZE else ""),
            f"{after_large:.0f} MB (growth {100 * growth:+.1f}%)",
            f"after {small:,}: {after_small:.0f} MB",
            after_large / after_small,
            f"growth < {100 * TARGET_GROWTH:.0f}%",
            growth < TARGET_GROWTH,
        )
    ]


def _send(client: Client, campaign_id: int, token: str | None, size: int) -> float:
    assert token is not None
    started = time.monotonic()
    client.enqueuer(campaign_id, 1, token, 0.0)
    finished = client.wait_finished([campaign_id], 3600)
    if client.sent([campaign_id]) != size:
        raise RuntimeError("the memory campaign did not send every message")
    return finished - started


def _settled_rss(pid: int) -> float:
    """RSS once the worker is idle again (the last task run has returned)."""
    readings: list[float] = []

    def steady() -> bool:
        readings.append(rss_mb(pid))
        return len(readings) >= 3 and max(readings[-3:]) - min(readings[-3:]) < 1.0

    wait_until(steady, 30, "the worker's RSS to settle", interval=0.5)
    return readings[-1]
