"""Pacing fidelity (issue 6): the gaps between consecutive sends of one session, as the sandbox
received them, with 4 worker processes and 3 campaigns on that session, against the session's
[min, max] interval: share of gaps below min (target 0) and p99 overshoot above max."""

from __future__ import annotations

from bench.harness import SANDBOX_TOKEN, Bench, Client, Row, numbers, percentile
from campaigns.sandbox import SandboxRecord
from campaigns.settings import Pacing

NAME = "fidelity"
WORKERS = 4
CAMPAIGNS = 3
MIN_S = 0.5
MAX_S = 1.0
PACING = Pacing(
    batch_size=10, min_interval=MIN_S, max_interval=MAX_S, batch_delay_min=0.5, batch_delay_max=1
)


def run(bench: Bench) -> list[Row]:
    per_campaign = 4 if bench.quick else 30
    database_url = bench.database(NAME)
    env = bench.env(database_url)
    record_path = bench.work_dir / "fidelity.sqlite"
    session = f"pace-{bench.run_id}"
    with bench.stack(NAME, env) as local:
        sandbox_url = local.start_sandbox(record_path, api_key=SANDBOX_TOKEN, waha_wait=0.5)
        client = Client(env)
        try:
            for i in range(WORKERS):
                local.start_worker(f"w{i}", concurrency=4)
            client.add_session(session, sandbox_url)
            processor = client.processor(**_fields(PACING))
            ids = [
                processor.process_large_campaign_array(
                    numbers(per_campaign, 10**6 * (k + 1)), "Hi", session
                )
                for k in range(CAMPAIGNS)
            ]
            client.wait_finished(ids, 60 + 3 * per_campaign * MAX_S * CAMPAIGNS)
        finally:
            client.close()
    record = SandboxRecord(record_path)
    gaps = record.gaps(session)
    if len(gaps) != CAMPAIGNS * per_campaign - 1 or record.duplicates():
        raise RuntimeError(f"expected {CAMPAIGNS * per_campaign - 1} gaps, got {len(gaps)}")
    below = [g for g in gaps if g < MIN_S]
    overshoot = [max(0.0, g - MAX_S) for g in gaps]
    bench.notes.append(
        f"fidelity: interval [{MIN_S}, {MAX_S}] s, {CAMPAIGNS} campaigns of {per_campaign} on one "
        f"session, batch 10 with 0.5–1 s batch delays, {WORKERS} workers × 4 threads; "
        f"{len(gaps)} gaps, smallest {min(gaps):.3f} s, median {percentile(gaps, 0.5):.3f} s, "
        f"largest {max(gaps):.3f} s."
    )
    return [
        Row(
            "pacing fidelity",
            f"share of gaps below min ({MIN_S} s), {len(gaps)} gaps",
            f"{100 * len(below) / len(gaps):.1f}% (smallest {min(gaps):.3f} s)",
            f"min interval {MIN_S} s",
            min(gaps) / MIN_S,
            "0%",
            not below,
        ),
        Row(
            "pacing fidelity",
            f"p99 overshoot above max ({MAX_S} s)",
            f"{percentile(overshoot, 0.99):.3f} s",
            f"max interval {MAX_S} s",
            percentile(overshoot, 0.99) / MAX_S,
        ),
    ]


def _fields(pacing: Pacing) -> dict[str, float]:
    return {
        "batch_size": pacing.batch_size,
        "min_interval": pacing.min_interval,
        "max_interval": pacing.max_interval,
        "batch_delay_min": pacing.batch_delay_min,
        "batch_delay_max": pacing.batch_delay_max,
    }
