"""Large ledgers and the web service for the benchmarks that read them (bench/consent.py's
export, bench/dashboard.py's pages, bench/web_api.py's upload): one way to build a
1,000,000-recipient campaign as if it had been sending, and one way to run ``campaigns web``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import requests
from sqlalchemy import text

from bench.harness import ROOT, Bench, autocommit
from campaigns.local.processes import free_port
from campaigns.local.stack import wait_until
from campaigns.settings import Pacing, Settings
from campaigns.store import CampaignStateManager

FAILED_EVERY = 50
"""One recorded send in 50 failed, with Meta's "undeliverable" code and message."""
ZERO = Pacing(batch_size=2000, min_interval=0, max_interval=0, batch_delay_min=0,
              batch_delay_max=0)  # fmt: skip
FILL_LEDGER = text(f"""
UPDATE campaign_recipients
SET status = CAST(CASE WHEN position % {FAILED_EVERY} = 0 THEN 'failed' ELSE 'sent' END
                  AS recipient_status),
    session_name = :session, attempts = 1,
    gateway_message_id = 'wamid.bench' || position,
    error_code = CASE WHEN position % {FAILED_EVERY} = 0 THEN '131026' END,
    error_message = CASE WHEN position % {FAILED_EVERY} = 0
                         THEN 'Message undeliverable' END,
    claimed_at = now() - interval '1 day' + position * interval '50 ms',
    finished_at = now() - interval '1 day' + position * interval '50 ms' + interval '300 ms',
    variant = (ARRAY['a', 'b', 'c'])[position % 3 + 1]
WHERE campaign_id = :id AND position <= :upto
""")


def big_campaign(
    env: dict[str, str], size: int, session: str, *, sent_share: float = 1.0
) -> tuple[int, float, float]:
    """A campaign of ``size`` numbers created through the store's COPY path (``start_at``
    tomorrow: scheduled, no worker sends it), the first ``sent_share`` of its ledger then
    filled in one UPDATE as recorded sends of ``session`` (one in :data:`FAILED_EVERY`
    failed), and VACUUM ANALYZE; its id and the seconds of the load and of the fill."""
    store = CampaignStateManager(
        env["DATABASE_URL"], settings=Settings.from_env({**env, "DB_POOL_SIZE": "2"})
    )
    try:
        store.add_session(session, "console", "console://bench")
        started = time.monotonic()
        campaign = store.create_campaign(
            (f"+5511{900000000 + i}" for i in range(size)), "Hi", session, pacing=ZERO,
            start_at=datetime.now(UTC) + timedelta(days=1),
        )  # fmt: skip
        loaded = time.monotonic() - started
        started = time.monotonic()
        with store.engine.begin() as conn:
            conn.execute(FILL_LEDGER, {"id": campaign.id, "session": session,
                                       "upto": int(size * sent_share)})  # fmt: skip
        filled = time.monotonic() - started
    finally:
        store.dispose()
    autocommit(env["DATABASE_URL"], "VACUUM ANALYZE campaign_recipients")
    return campaign.id, loaded, filled


@contextlib.contextmanager
def web_service(
    bench: Bench, env: dict[str, str], label: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ``campaigns web`` process on ``env``'s database: its base URL, once /healthz is 200,
    and the process. Stopped with SIGTERM (then killed) on exit; its log in the work dir."""
    port = free_port()
    log = bench.work_dir / f"{label}.log"
    with log.open("wb") as errors:
        service = subprocess.Popen(
            [sys.executable, "-m", "campaigns.cli", "web", "--port", str(port)], cwd=ROOT,
            env={**os.environ, **env, "CAMPAIGNS_LOG_LEVEL": "WARNING"},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(base, service), 120, "the web service to answer /healthz")
        if service.poll() is not None:
            raise RuntimeError(f"the web service exited: {log.read_text()[-2000:]}")
        yield base, service
    finally:
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


def _answers(base: str, service: subprocess.Popen[bytes]) -> bool:
    if service.poll() is not None:
        return True  # exited: the caller says why
    try:
        return requests.get(f"{base}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False
