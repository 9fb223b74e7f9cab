"""The original design's headline campaign on a sender pool (issue 10): 16,000 numbers at its
pacing (4–10 s per message, batches of 300, 15–30 s between batches) over a pool of 6 WAHA
sessions, run with every time divided by 100 (intervals, batch delays, the pacing guard and the
task budget), one worker, the sandbox answering at once. Completion time × 100 against the
design's promise (≤ 6 h) and, as the same-run baseline, the one-session campaign the engine ran
before pools: its time is the same pacing's arithmetic, 16,000 × 7 s + 53 × 22.5 s ≈ 31 h,
checked here by the same run's measured mean gap per session. Shares per session are read from
the sandbox's record, with the largest gap-at-arrival violation (none expected).
"""

from __future__ import annotations

import time

from bench.harness import SANDBOX_TOKEN, Bench, Client, Row, numbers
from campaigns.sandbox import SandboxRecord

NAME = "pool"
SCALE = 100.0
SESSIONS = 6
TOTAL, TOTAL_QUICK = 16_000, 1_200
TARGET_HOURS = 6.0
BATCH = 300
MIN_S, MAX_S = 4.0, 10.0
DELAY_MIN_S, DELAY_MAX_S = 15.0, 30.0


def run(bench: Bench) -> list[Row]:
    total = TOTAL_QUICK if bench.quick else TOTAL
    database_url = bench.database(NAME)
    scaled = {
        "PACING_GUARD": f"{0.05 / SCALE:g}",
        "TASK_TIME_BUDGET": f"{240 / SCALE:g}",
        "MIN_INTERVAL": f"{MIN_S / SCALE:g}",
        "MAX_INTERVAL": f"{MAX_S / SCALE:g}",
    }
    env = bench.env(database_url, **scaled)
    record_path = bench.work_dir / "pool.sqlite"
    pool = [f"pool-{bench.run_id}-{k}" for k in range(SESSIONS)]
    with bench.stack(NAME, env) as local:
        sandbox_url = local.start_sandbox(record_path, api_key=SANDBOX_TOKEN, waha_wait=0.5)
        client = Client(env)
        try:
            local.start_worker("w0", concurrency=8)
            for name in pool:
                client.add_session(name, sandbox_url)
            processor = client.processor(
                batch_size=BATCH,
                min_interval=MIN_S / SCALE,
                max_interval=MAX_S / SCALE,
                batch_delay_min=DELAY_MIN_S / SCALE,
                batch_delay_max=DELAY_MAX_S / SCALE,
            )
            started = time.monotonic()
            cid = processor.process_large_campaign_array(numbers(total), "Hi", pool)
            finished = client.wait_finished([cid], 3600)
            if client.sent([cid]) != total:
                raise RuntimeError("the pool did not send every message")
        finally:
            client.close()
    record = SandboxRecord(record_path)
    if record.duplicates() or record.count() != total:
        raise RuntimeError(f"sandbox saw {record.count()} messages for {total} sends")
    seconds = finished - started
    hours = seconds * SCALE / 3600
    batches = -(-total // BATCH)
    mean_gap = (MIN_S + MAX_S) / 2
    one_session_h = (total * mean_gap + (batches - 1) * (DELAY_MIN_S + DELAY_MAX_S) / 2) / 3600
    shares = {name: record.count(session=name) for name in pool}
    gaps = {name: record.gaps(name) for name in pool}
    closest = min(min(g) for g in gaps.values() if g) * SCALE
    measured_gap = sum(sum(g) for g in gaps.values()) / sum(len(g) for g in gaps.values())
    bench.notes.append(
        f"pool: {total:,} numbers over {SESSIONS} WAHA sessions, batch {BATCH}, every time ÷ "
        f"{SCALE:g} (intervals {MIN_S / SCALE:g}–{MAX_S / SCALE:g} s, batch delays "
        f"{DELAY_MIN_S / SCALE:g}–{DELAY_MAX_S / SCALE:g} s, PACING_GUARD and TASK_TIME_BUDGET "
        f"too); one worker × 8 threads; took {seconds:.0f} s. Sends per session: "
        + ", ".join(f"{n.rsplit('-', 1)[1]}: {c:,}" for n, c in shares.items())
        + f". Mean gap at arrival per session {measured_gap * SCALE:.2f} s at full scale "
        f"(drawn {mean_gap:g} s); closest two sends of one session {closest:.2f} s at full "
        f"scale (min_interval {MIN_S:g} s)."
    )
    quick = " (quick: 1,200 numbers)" if bench.quick else ""
    return [
        Row(
            "sender pool",
            f"{total:,} numbers at 4–10 s on a pool of {SESSIONS}, time ÷ {SCALE:g}: "
            f"completion × {SCALE:g}{quick}",
            f"{hours:.2f} h",
            f"one session, same pacing: {one_session_h:.1f} h",
            hours / one_session_h,
            f"≤ {TARGET_HOURS:g} h",
            hours <= TARGET_HOURS * total / TOTAL,
        ),
        Row(
            "sender pool",
            f"pool of {SESSIONS}: closest two sends of one session (full scale)",
            f"{closest:.2f} s",
            f"min_interval {MIN_S:g} s",
            closest / MIN_S,
            f"≥ {MIN_S:g} s",
            closest >= MIN_S,
        ),
    ]
