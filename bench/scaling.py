"""Horizontal scaling (issue 6): 1, 2 and 4 worker processes on zero-interval campaigns over
several sessions; throughput, and its ratio to 1 worker measured in the same run."""

from __future__ import annotations

import time

from bench.harness import SANDBOX_TOKEN, Bench, Client, MachineCpu, Row, numbers, rate
from campaigns.local.stack import LocalStack
from campaigns.settings import Pacing

NAME = "scaling"
WORKER_COUNTS = (1, 2, 4)
CONCURRENCY = 8
ZERO = Pacing(batch_size=100, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)


def run(bench: Bench) -> list[Row]:
    sessions = 4 if bench.quick else 8
    per_campaign = 25 if bench.quick else 500
    database_url = bench.database(NAME)
    env = bench.env(database_url)
    rates: dict[int, float] = {}
    busy: dict[int, float] = {}
    with bench.stack(NAME, env) as local:
        sandbox_url = local.start_sandbox(
            bench.work_dir / "scaling.sqlite", api_key=SANDBOX_TOKEN, waha_wait=0.5
        )
        client = Client(env)
        try:
            for count in WORKER_COUNTS:
                rates[count], busy[count] = _measure(
                    bench, client, local, sandbox_url, count, sessions, per_campaign
                )
        finally:
            client.close()
    bench.notes.append(
        f"scaling: {sessions} campaigns of {per_campaign:,} on {sessions} sessions per run "
        f"(batch 100, zero intervals and delays), {CONCURRENCY} threads per worker process; "
        "all processes (workers, sandbox, PostgreSQL, Redis) share the machine's cores."
    )
    base = rates[1]
    return [
        Row(
            "horizontal scaling",
            f"{count} worker process{'es' if count > 1 else ''}: messages/s",
            f"{rates[count]:,.0f} msg/s (machine CPU {busy[count]:.0f}% busy)",
            f"1 worker {base:,.0f} msg/s",
            rates[count] / base,
        )
        for count in WORKER_COUNTS
    ]


def _measure(
    bench: Bench,
    client: Client,
    local: LocalStack,
    sandbox_url: str,
    workers: int,
    sessions: int,
    per_campaign: int,
) -> tuple[float, float]:
    names = [
        local.start_worker(f"w{workers}-{i}", concurrency=CONCURRENCY).name for i in range(workers)
    ]
    created = []
    for k in range(sessions):
        session = client.add_session(f"scale-{bench.run_id}-{workers}-{k}", sandbox_url)
        first = 10**6 * (10 * workers + k)
        created.append(
            client.store.create_campaign(numbers(per_campaign, first), "Hi", session, pacing=ZERO)
        )
    machine = MachineCpu()
    started = time.monotonic()
    for campaign in created:
        assert campaign.run_token is not None
        client.enqueuer(campaign.id, 1, campaign.run_token, 0.0)
    ids = [c.id for c in created]
    finished = client.wait_finished(ids, 600)
    total = sessions * per_campaign
    if client.sent(ids) != total:
        raise RuntimeError(f"{workers} workers did not send every message")
    busy = machine.busy_percent()
    for name in names:
        local.stop(name)
    return rate(total, finished - started), busy
