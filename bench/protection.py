"""Sender protection (issue 11).

Row 1, the cost of the checks: one Cloud API session at ``rate`` 1,000 and no latency, a
campaign sent with caps (per day, per hour, the portfolio's unique recipients) and a send
window (open all day) on, against the same campaign with none of them, same run, same stack.
Messages/s of each, and the ratio (target ≥ 0.95).

Row 2, an honest ETA: the issue's 16,000-number campaign on a pool of 6 WAHA sessions, each
capped at 1,000 a day with a 08:00–20:00 window, at the original design's pacing (4–10 s, 300
per batch, 15–30 s between batches), every time divided by 500 — CAPACITY_DAY_SECONDS
makes a day 172.8 s, so caps, windows and warm-up run on the same fast clock. The ETA that
``status`` computes right after creation against the completion the engine then takes
(target: within 10%). The sandbox's record checks the caps: no session sent more than 1,000 in
any rolling (virtual) day, and nothing arrived outside the window.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bench.harness import SANDBOX_TOKEN, Bench, Client, Row, numbers, rate
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.settings import Pacing
from campaigns.timescale import virtual_now
from campaigns.windows import parse_window

NAME = "protection"
FAST_RATE = 1000
IN_FLIGHT = 32
CHECKS_TOTAL, CHECKS_QUICK = 6000, 300
ZERO = Pacing(batch_size=2000, min_interval=0, max_interval=0, batch_delay_min=0,
              batch_delay_max=0)  # fmt: skip

SCALE, SCALE_QUICK = 500.0, 10_000.0
"""Time ÷ 500: the pool's 6 lanes at 8–20 ms between messages ask for about 430 messages/s
while they send, near what this machine's worker, sandbox and PostgreSQL serve together; a
faster clock would measure the machine's ceiling, not the ETA."""
SESSIONS = 6
CAP_DAY = 1000
TOTAL, TOTAL_QUICK = 16_000, 120
CAP_QUICK = 10
WINDOW = "08:00-20:00"
ARRIVAL_SLACK_S = 0.05


def run(bench: Bench) -> list[Row]:
    return [_checks_row(bench), *_eta_rows(bench)]


def _checks_row(bench: Bench) -> Row:
    total = CHECKS_QUICK if bench.quick else CHECKS_TOTAL
    database_url = bench.database(f"{NAME}_checks")
    env = bench.env(database_url)
    with bench.stack(f"{NAME}-checks", env) as local:
        sandbox_url = local.start_sandbox(
            bench.work_dir / "protection-checks.sqlite", api_key=SANDBOX_TOKEN, waha_wait=0.5
        )
        with SandboxControl(sandbox_url) as control:
            control.throughput(None)  # no limit: what is measured is the engine, not Meta's
        client = Client(env)
        try:
            local.start_worker("w0", concurrency=IN_FLIGHT + 8)
            rates = {}
            # off first, then on, then off again: the mean of the two offs is the baseline
            for label, checks, offset in (("off", False, 0), ("on", True, 1), ("off2", False, 2)):
                rates[label] = _send(client, sandbox_url, f"{label}-{bench.run_id}", checks,
                                     total, offset)  # fmt: skip
        finally:
            client.close()
    baseline = (rates["off"] + rates["off2"]) / 2
    bench.notes.append(
        f"protection, cost of the checks: one cloud-api session at rate {FAST_RATE}, "
        f"{IN_FLIGHT} in flight, no latency; {total:,} messages per campaign, sent without "
        "caps, with caps (cap_day and cap_hour at 10,000,000, tier 100000: every send takes "
        "its place in the Redis counts) and a window open all week, then without again; "
        f"{rates['off']:.0f} / {rates['on']:.0f} / {rates['off2']:.0f} messages/s."
    )
    return Row(
        "sender protection",
        "messages/s with caps and a window on (rate 1,000, no latency)",
        f"{rates['on']:.0f}/s",
        f"same campaign, checks off: {baseline:.0f}/s",
        rates["on"] / baseline,
        "≥ 0.95",
        rates["on"] / baseline >= 0.95,
    )


def _send(
    client: Client, sandbox_url: str, name: str, checks: bool, total: int, offset: int
) -> float:
    options = {"phone_number_id": name, "pacing": "rate", "rate": str(FAST_RATE),
               "in_flight": str(IN_FLIGHT)}  # fmt: skip
    if checks:
        options |= {"cap_day": "10000000", "cap_hour": "10000000", "tier": "100000",
                    "window_hours": "00:00-24:00", "window_days": "all"}  # fmt: skip
    else:
        options["tier"] = "unlimited"
    client.store.add_session(name, "cloud-api", sandbox_url, token_env="SANDBOX_TOKEN", **options)
    campaign = client.store.create_campaign(
        numbers(total, 10**7 * (offset + 1)), "Hi", name, pacing=ZERO
    )
    assert campaign.run_token is not None
    started = time.monotonic()
    client.enqueuer(campaign.id, 1, campaign.run_token, 0.0)
    finished = client.wait_finished([campaign.id], 900)
    if client.sent([campaign.id]) != total:
        raise RuntimeError(f"campaign {name} did not send every message")
    return rate(total, finished - started)


def _eta_rows(bench: Bench) -> list[Row]:
    total = TOTAL_QUICK if bench.quick else TOTAL
    cap = CAP_QUICK if bench.quick else CAP_DAY
    scale = SCALE_QUICK if bench.quick else SCALE
    day = 86_400 / scale
    database_url = bench.database(f"{NAME}_eta")
    env = bench.env(
        database_url,
        CAPACITY_DAY_SECONDS=f"{day:g}",
        PACING_GUARD=f"{0.05 / scale:g}",
        MIN_INTERVAL=f"{4 / scale:g}",
        MAX_INTERVAL=f"{10 / scale:g}",
    )
    record_path = bench.work_dir / "protection-eta.sqlite"
    pool = [f"capped-{bench.run_id}-{k}" for k in range(SESSIONS)]
    with bench.stack(f"{NAME}-eta", env) as local:
        sandbox_url = local.start_sandbox(record_path, api_key=SANDBOX_TOKEN, waha_wait=0.5)
        client = Client(env)
        try:
            local.start_worker("w0", concurrency=8)
            for name in pool:
                # typing off: its three calls per message would measure the machine, not pacing
                client.store.add_session(
                    name, "waha", sandbox_url, token_env="SANDBOX_TOKEN", cap_day=str(cap),
                    window_hours=WINDOW, window_tz="UTC", typing="false",
                )  # fmt: skip
            processor = client.processor(
                batch_size=300, min_interval=4 / scale, max_interval=10 / scale,
                batch_delay_min=15 / scale, batch_delay_max=30 / scale,
            )  # fmt: skip
            started = time.monotonic()
            virtual_start = virtual_now(day)
            cid = processor.process_large_campaign_array(numbers(total), "Hi", pool)
            eta = client.store.snapshot(cid).eta_seconds()
            finished = client.wait_finished([cid], max(eta * 3, 600 if not bench.quick else 60))
            if client.sent([cid]) != total:
                raise RuntimeError("the capped pool did not send every message")
        finally:
            client.close()
    took = finished - started
    record = SandboxRecord(record_path)
    worst = max(_most_in_a_day(record, name, day) for name in pool)
    window = parse_window(WINDOW, "all", "UTC")
    # a send leaves a few milliseconds after the lane checked the window: at time ÷ 500 that is
    # seconds of virtual time, so an arrival within ARRIVAL_SLACK_S (real) of an open moment
    # counts as inside
    outside = sum(
        1 for m in record.messages()
        if not window.is_open(virtual_now(day, datetime.fromtimestamp(m.received_at, UTC)))
        and not window.is_open(
            virtual_now(day, datetime.fromtimestamp(m.received_at - ARRIVAL_SLACK_S, UTC))
        )
    )  # fmt: skip
    bench.notes.append(
        f"protection, ETA: {total:,} numbers over {SESSIONS} WAHA sessions capped at {cap:,} a "
        f"day with a {WINDOW} UTC window, pacing 4–10 s, batches of 300, 15–30 s between "
        f"them, every time ÷ {scale:g} (a day is {day:g} s); started at virtual "
        f"{virtual_start:%H:%M}; status's ETA {eta:.0f} s, completion {took:.0f} s "
        f"({took * scale / 3600:.1f} h at full scale); most sends of one session in a rolling "
        f"day {worst:,}; sends outside the window {outside}."
    )
    quick = " (quick)" if bench.quick else ""
    return [
        Row(
            "sender protection",
            f"{total:,} numbers, pool of {SESSIONS} capped {cap:,}/day, {WINDOW}, time ÷ "
            f"{scale:g}: completion vs status's ETA{quick}",
            f"{took * scale / 3600:.1f} h",
            f"ETA {eta * scale / 3600:.1f} h",
            took / eta if eta else None,
            "within 10%",
            bool(eta) and abs(took / eta - 1) <= 0.10,
        ),
        Row(
            "sender protection",
            "most sends of one session in any rolling day; sends outside the window",
            f"{worst:,}; {outside}",
            f"cap {cap:,}; 0",
            worst / cap,
            f"≤ {cap:,}; 0",
            worst <= cap and outside == 0,
        ),
    ]


def _most_in_a_day(record: SandboxRecord, session: str, day: float) -> int:
    times = sorted(m.received_at for m in record.messages(session=session))
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= day:
            first += 1
        best = max(best, last - first + 1)
    return best
