"""Recovery latency (issue 4's measure, issue 6): seconds from a fault (or from the reconnect)
to the next message the sandbox accepts, for a worker kill -9, a full restart, a broker flush and
a session reconnect, with short timings (FAST_ENV) reported next to the figures.

Runs on a private Redis (broker and pacing): the benchmark flushes and restarts it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from sqlalchemy import text

from bench.harness import FAST_ENV, SANDBOX_TOKEN, Bench, Client, Row, numbers, poll
from campaigns.domain import CampaignStatus
from campaigns.local.stack import LocalStack
from campaigns.sandbox import SandboxControl, SandboxRecord

NAME = "recovery"
RECONNECT_TARGET_S = 10.0
STALL_S = float(FAST_ENV["STALL_TIMEOUT"])
SWEEP_S = float(FAST_ENV["SWEEP_INTERVAL"])
CRASH_TARGET_S = STALL_S + SWEEP_S
TIMEOUT_S = 120.0


class Scenario:
    """One running campaign, and the stack around it, put through faults one after another."""

    def __init__(self, bench: Bench, local: LocalStack, client: Client, record: SandboxRecord,
                 campaign_id: int) -> None:  # fmt: skip
        self.bench = bench
        self.local = local
        self.client = client
        self.record = record
        self.campaign_id = campaign_id
        self.generation = 0

    def last_received(self) -> float:
        return _scalar(self.record.path, "SELECT max(received_at) FROM messages")

    def next_message_after(self, moment: float) -> float:
        """Seconds from ``moment`` to the first message accepted after it."""
        poll(lambda: self.last_received() > moment, TIMEOUT_S, "the next accepted message")
        first = _scalar(
            self.record.path, "SELECT min(received_at) FROM messages WHERE received_at > ?", moment
        )
        return first - moment

    def flowing(self) -> None:
        """Wait until messages flow again, then a little more (a steady campaign)."""
        self.next_message_after(time.time())
        time.sleep(1.0)

    def start_engine(self) -> None:
        self.generation += 1
        self.local.start_worker(f"worker{self.generation}", concurrency=4, wait_ready=False)
        self.local.start_beat(f"beat{self.generation}")

    def kill_engine(self, *, beat: bool) -> None:
        self.local.kill(f"worker{self.generation}")
        if beat:
            self.local.kill(f"beat{self.generation}")

    def batches_done(self) -> int:
        with self.client.store.engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM campaign_batch_details WHERE campaign_id = :id"),
                    {"id": self.campaign_id},
                ).scalar_one()
            )


def _scalar(path: Path, sql: str, *params: float) -> float:
    """One number from the sandbox's record (read-only; 0.0 before the first message)."""
    if not path.exists():
        return 0.0
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    try:
        value = conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()
    return float(value or 0.0)


def run(bench: Bench) -> list[Row]:
    redis_server = bench.private_redis()
    redis_server.flushall()
    database_url = bench.database(NAME)
    env = bench.env(database_url, redis_url=redis_server.url(), **FAST_ENV)
    record_path = bench.work_dir / "recovery.sqlite"
    session = f"rec-{bench.run_id}"
    figures: dict[str, float] = {}
    with bench.stack(NAME, env) as local:
        sandbox_url = local.start_sandbox(record_path, api_key=SANDBOX_TOKEN, waha_wait=0.5)
        client = Client(env)
        control = SandboxControl(sandbox_url)
        try:
            client.add_session(session, sandbox_url)
            processor = client.processor(batch_size=20, min_interval=0.2, max_interval=0.3,
                                         batch_delay_min=0.5, batch_delay_max=1.0)  # fmt: skip
            campaign_id = processor.process_large_campaign_array(numbers(5000), "Hi", session)
            s = Scenario(bench, local, client, SandboxRecord(record_path), campaign_id)
            s.start_engine()
            s.flowing()

            # a worker killed -9 (its supervisor starts it again at once)
            local.kill(f"worker{s.generation}")
            moment = time.time()
            local.start_worker(f"worker{s.generation}b", concurrency=4, wait_ready=False)
            figures["kill"] = s.next_message_after(moment)
            s.flowing()

            # the whole server: workers and beat killed, Redis restarted without persistence
            local.kill(f"worker{s.generation}b")
            local.kill(f"beat{s.generation}")
            moment = time.time()
            redis_server.restart()
            s.start_engine()
            figures["restart"] = s.next_message_after(moment)
            s.flowing()

            # the broker forgets everything right after a batch ended (its successor is queued)
            done = s.batches_done()
            poll(lambda: s.batches_done() > done, TIMEOUT_S, "a batch to end", every=0.01)
            redis_server.flushall()
            moment = time.time()
            figures["flush"] = s.next_message_after(moment)
            s.flowing()

            # the session drops; measured from the moment it reconnects
            control.drop(session)
            poll(
                lambda: client.store.get_campaign(campaign_id).status is CampaignStatus.INTERRUPTED,
                TIMEOUT_S,
                "the campaign to be interrupted",
            )
            time.sleep(2.0)
            moment = time.time()
            control.restore(session)
            figures["reconnect"] = s.next_message_after(moment)
        finally:
            control.close()
            client.close()
    record = SandboxRecord(record_path)
    if record.duplicates():
        raise RuntimeError(f"recovery sent duplicates: {record.duplicates()[:3]}")
    settings = ", ".join(f"{k}={v}" for k, v in FAST_ENV.items())
    bench.notes.append(
        f"recovery: {settings}; interval 0.2–0.3 s, batch 20, batch delay 0.5–1 s; one worker "
        "(4 threads) and beat; kill: the worker's process group gets SIGKILL and a new worker "
        "is started at once; restart: worker and beat SIGKILL, Redis restarted empty, both "
        "started again; flush: FLUSHALL right after a batch ended; reconnect: the sandbox "
        "drops the session, the campaign goes interrupted, then the session is restored. "
        f"No duplicate in the sandbox's record ({record.count():,} messages)."
    )
    crash = f"≤ {CRASH_TARGET_S:g} s (stall {STALL_S:g} + sweep {SWEEP_S:g})"
    rows = [
        Row("recovery latency", f"{label}: seconds to the next accepted message",
            f"{figures[key]:.2f} s", f"stall timeout {STALL_S:g} s + sweep {SWEEP_S:g} s",
            figures[key] / CRASH_TARGET_S, crash, figures[key] <= CRASH_TARGET_S)
        for key, label in (("kill", "worker kill -9"), ("restart", "full restart"),
                           ("flush", "broker flush"))
    ]  # fmt: skip
    rows.append(
        Row(
            "recovery latency",
            "session reconnect: seconds to the next accepted message",
            f"{figures['reconnect']:.2f} s",
            f"{RECONNECT_TARGET_S:g} s",
            figures["reconnect"] / RECONNECT_TARGET_S,
            f"≤ {RECONNECT_TARGET_S:g} s",
            figures["reconnect"] <= RECONNECT_TARGET_S,
        )
    )
    return rows
