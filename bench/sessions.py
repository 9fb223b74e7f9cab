"""Many sessions at once (issue 6): N sessions (100, 500, 1000), each paced at 4–10 s, on one
worker process whose concurrency allows N batch tasks at once, against a fast sandbox.

Schedule lag = when the sandbox received a message minus the slot the engine reserved for it
(both on this machine's clock: the slot is on the Redis clock, which is the same clock here).
Slots come from the engine's DEBUG line "position P reserved slot S"; each session's first
message is left out (a fresh session waits one full interval by design, see pacing.py).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from bench.harness import (
    SANDBOX_TOKEN,
    Bench,
    Client,
    Row,
    cpu_seconds,
    numbers,
    percentile,
    rss_mb,
)
from campaigns.sandbox import SandboxRecord
from campaigns.settings import Pacing

NAME = "sessions"
TARGET_P99_S = 1.0
TARGET_SESSIONS = 1000
DB_POOL_SIZE = 20
_SLOT = re.compile(r"campaign (\d+) batch \d+: position (\d+) reserved slot ([0-9.]+)")
_FIRST = 900000000


def run(bench: Bench) -> list[Row]:
    if bench.quick:
        plan = [(5, 3.0, 4.0)]
        pacing = Pacing(batch_size=50, min_interval=0.5, max_interval=1.0)
    else:
        plan = [(100, 15.0, 30.0), (500, 15.0, 30.0), (1000, 15.0, 60.0)]
        pacing = Pacing(batch_size=50, min_interval=4.0, max_interval=10.0)
    rows: list[Row] = []
    for sessions, warmup, steady in plan:
        rows.extend(_measure(bench, sessions, warmup, steady, pacing))
    bench.notes.append(
        f"sessions: one worker process, WORKER_CONCURRENCY = N + 8 threads, DB_POOL_SIZE "
        f"{DB_POOL_SIZE}, interval {pacing.min_interval:g}–{pacing.max_interval:g} s, one campaign "
        "per session; lag measured over the steady window after a warm-up (each session's "
        "first message excluded); CPU is the worker's, in % of one core."
    )
    return rows


def _measure(
    bench: Bench, sessions: int, warmup: float, steady: float, pacing: Pacing
) -> list[Row]:
    database_url = bench.database(f"{NAME}{sessions}")
    concurrency = sessions + 8
    env = bench.env(
        database_url,
        WORKER_CONCURRENCY=str(concurrency),
        DB_POOL_SIZE=str(DB_POOL_SIZE),
        CAMPAIGNS_LOG_LEVEL="DEBUG",
    )
    record_path = bench.work_dir / f"sessions-{sessions}.sqlite"
    with bench.stack(f"{NAME}{sessions}", env) as local:
        sandbox_url = local.start_sandbox(record_path, api_key=SANDBOX_TOKEN, waha_wait=0.5)
        worker = local.start_worker("worker", concurrency=concurrency)
        pid = worker.process.pid
        client = Client(env)
        try:
            campaign_of: dict[str, int] = {}
            start_of: dict[int, int] = {}
            created = []
            for k in range(sessions):
                name = client.add_session(f"s{k}-{bench.run_id}", sandbox_url)
                first = k * 1000
                campaign = client.store.create_campaign(
                    numbers(pacing.batch_size, first), "Hi", name, pacing=pacing
                )
                campaign_of[name] = campaign.id
                start_of[campaign.id] = first
                created.append(campaign)
            started = time.time()
            for campaign in created:
                assert campaign.run_token is not None
                client.enqueuer(campaign.id, 1, campaign.run_token, 0.0)
            time.sleep(warmup)
            window_start = time.time()
            cpu_start = cpu_seconds(pid)
            peak = 0.0
            while time.time() < window_start + steady:
                peak = max(peak, rss_mb(pid))
                time.sleep(1.0)
            window_end = time.time()
            cpu = 100 * (cpu_seconds(pid) - cpu_start) / (window_end - window_start)
        finally:
            client.close()
        log_path = worker.log_path
    lags = _lags(log_path, SandboxRecord(record_path), campaign_of, start_of,
                 window_start, window_end)  # fmt: skip
    if not lags:
        raise RuntimeError(f"no message measured with {sessions} sessions")
    p50, p99 = percentile(lags, 0.5), percentile(lags, 0.99)
    expected = sessions * steady * 2 / (pacing.min_interval + pacing.max_interval)
    bench.notes.append(
        f"sessions {sessions}: {len(lags):,} messages in the {steady:.0f} s window (about "
        f"{expected:,.0f} expected at the mean interval), lag p50 {p50:.3f} s, p99 {p99:.3f} s, "
        f"max {max(lags):.3f} s; warm-up {warmup:.0f} s after {window_start - started:.0f} s"
        " of enqueueing and warm-up."
    )
    target = sessions == TARGET_SESSIONS
    return [
        Row(
            "many sessions",
            f"{sessions} sessions: schedule lag p50 / p99",
            f"{p50:.3f} s / {p99:.3f} s ({len(lags):,} msgs)",
            f"min interval {pacing.min_interval:g} s",
            p99 / pacing.min_interval,
            f"p99 ≤ {TARGET_P99_S:g} s" if target else "—",
            p99 <= TARGET_P99_S if target else None,
        ),
        Row(
            "many sessions",
            f"{sessions} sessions: worker CPU, peak RSS",
            f"{cpu:.0f}% of a core, {peak:.0f} MB",
            f"{len(lags) / steady:,.0f} msg/s sent",
        ),
    ]


def _lags(
    log_path: Path,
    record: SandboxRecord,
    campaign_of: dict[str, int],
    start_of: dict[int, int],
    window_start: float,
    window_end: float,
) -> list[float]:
    slots: dict[tuple[int, int], float] = {}
    with log_path.open(errors="replace") as log:
        for line in log:
            match = _SLOT.search(line)
            if match:
                slots[(int(match[1]), int(match[2]))] = float(match[3])
    lags = []
    for message in record.messages():
        campaign = campaign_of.get(message.session)
        if campaign is None:
            continue
        position = int(message.e164[5:]) - _FIRST - start_of[campaign] + 1
        slot = slots.get((campaign, position))
        if position == 1 or slot is None or not window_start <= slot <= window_end:
            continue
        lags.append(message.received_at - slot)
    return lags
