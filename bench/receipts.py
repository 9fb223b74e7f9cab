"""Delivery receipts stored by the web service (issue 13).

A campaign of ``MESSAGES`` recipients is made sent in the ledger (each with a Cloud wamid, as a
finished campaign's rows are; no worker runs), then ``campaigns web`` is started as the
operator starts it, with ``META_APP_SECRET`` set, and ``THREADS`` threads post Meta's three
statuses per message (sent, delivered, read: one status per webhook delivery, as Meta sends
them), each body signed with ``X-Hub-Signature-256`` over its raw bytes, over keep-alive
connections. The bodies are built and signed before the clock starts: what is measured is the
service (signature check, parsing, deliveries arriving together stored in one transaction:
group commit, campaigns/groupcommit.py), though the posting threads share the machine's cores
with it.

Row 1: receipts stored per second, over the wall time from the first post to the last answer
(every answer must be 200, and at the end every recipient must be ``read`` with its delivered
and read times: nothing acknowledged that was not stored). Target about 1,000/s (Meta's three
statuses per message of four numbers at 80 messages/s). Row 2: the p99 latency of one post.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text

from bench.harness import Bench, Row, numbers, percentile, rate
from campaigns.settings import Pacing, Settings
from campaigns.store import CampaignStateManager
from campaigns.webhooks import APP_SECRET_ENV, cloud_signature

NAME = "receipts"
SECRET = "bench-meta-app-secret"
MESSAGES, MESSAGES_QUICK = 6_000, 100
THREADS = 8
TARGET = 1000.0
STATUSES = ("sent", "delivered", "read")
PHONE_NUMBER_ID = "106540352242922"


def run(bench: Bench) -> list[Row]:
    count = MESSAGES_QUICK if bench.quick else MESSAGES
    database_url = bench.database(NAME)
    env = bench.env(database_url, **{APP_SECRET_ENV: SECRET})
    campaign_id = _sent_campaign(database_url, env, count)
    bodies = _bodies(count)
    latencies: list[list[float]] = [[] for _ in range(THREADS)]
    failures: list[str] = []
    with bench.stack(NAME, env) as local:
        url = local.start_web() + "/webhooks/cloud"
        threads = [
            threading.Thread(target=_post, args=(url, bodies[k::THREADS], latencies[k], failures))
            for k in range(THREADS)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.monotonic() - started
    if failures:
        raise RuntimeError(f"{len(failures)} posts not answered 200, e.g. {failures[:3]}")
    stored = _read_rows(database_url, campaign_id)
    if stored != count:
        raise RuntimeError(f"{stored} of {count} recipients read after {3 * count} receipts")
    every = [value for group in latencies for value in group]
    receipts_per_s = rate(len(every), seconds)
    p99_ms = percentile(every, 0.99) * 1000
    bench.notes.append(
        f"receipts: `campaigns web` (uvicorn, one process) with {APP_SECRET_ENV} set; "
        f"{count:,} sent recipients, {len(every):,} Cloud status webhooks (sent, delivered, "
        f"read per message, one status per body, signed with X-Hub-Signature-256) posted by "
        f"{THREADS} threads over keep-alive connections from the same machine in "
        f"{seconds:.1f} s; every answer 200 and every recipient read at the end. Median post "
        f"{percentile(every, 0.5) * 1000:.1f} ms."
    )
    return [
        Row(
            "delivery receipts",
            f"receipts/s stored by the web service (Cloud statuses, signed, {THREADS} threads)",
            f"{receipts_per_s:.0f}/s",
            ratio=receipts_per_s / TARGET,
            target=f"≈ {TARGET:,.0f}/s",
            met=receipts_per_s >= TARGET,
        ),
        Row("delivery receipts", "p99 latency of one receipt post", f"{p99_ms:.1f} ms"),
    ]


def _sent_campaign(database_url: str, env: dict[str, str], count: int) -> int:
    """A campaign of ``count`` recipients, all sent with wamids ``wamid.bench.<position>``."""
    store = CampaignStateManager(database_url, settings=Settings.from_env(env))
    try:
        store.add_session("receipts", "cloud-api", "http://127.0.0.1:1",
                          phone_number_id=PHONE_NUMBER_ID)  # fmt: skip
        campaign = store.create_campaign(
            numbers(count, 10**7 * 7), "Hi", "receipts", pacing=Pacing(batch_size=1000),
            start_at=datetime.now(UTC) + timedelta(days=1),
        )  # fmt: skip
    finally:
        store.dispose()
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:  # as a finished campaign's rows are: sent, with an id
            conn.execute(
                text(
                    "UPDATE campaign_recipients SET status = 'sent', session_name = 'receipts', "
                    "gateway_message_id = 'wamid.bench.' || position, finished_at = now() "
                    "WHERE campaign_id = :id"
                ),
                {"id": campaign.id},
            )
            conn.execute(text("ANALYZE campaign_recipients"))
    finally:
        engine.dispose()
    return campaign.id


def _bodies(count: int) -> list[tuple[bytes, dict[str, str]]]:
    """Signed bodies in posting order: per message, its three statuses in order."""
    found = []
    stamp = int(time.time())
    for position in range(1, count + 1):
        for offset, status in enumerate(STATUSES):
            payload: dict[str, Any] = {"object": "whatsapp_business_account", "entry": [
                {"id": "WABA", "changes": [{"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881",
                                 "phone_number_id": PHONE_NUMBER_ID},
                    "statuses": [{"id": f"wamid.bench.{position}", "status": status,
                                  "timestamp": str(stamp + offset),
                                  "recipient_id": "5511999999999"}]}}]}]}  # fmt: skip
            body = json.dumps(payload, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json",
                       "X-Hub-Signature-256": cloud_signature(SECRET, body)}  # fmt: skip
            found.append((body, headers))
    return found


def _post(
    url: str, bodies: list[tuple[bytes, dict[str, str]]], latencies: list[float],
    failures: list[str],
) -> None:  # fmt: skip
    """One keep-alive connection posting its share (http.client: the client's own cost, on
    the same two cores as the service, stays small next to what is measured)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        for body, headers in bodies:
            began = time.monotonic()
            connection.request("POST", parts.path, body=body, headers=headers)
            answer = connection.getresponse()
            text = answer.read()
            latencies.append(time.monotonic() - began)
            if answer.status != 200:
                failures.append(f"{answer.status} {text[:200]!r}")
    finally:
        connection.close()


def _read_rows(database_url: str, campaign_id: int) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM campaign_recipients WHERE campaign_id = :id "
                "AND delivery_status = 'read' AND delivered_at IS NOT NULL "
                "AND read_at IS NOT NULL"), {"id": campaign_id}).scalar_one())  # fmt: skip
    finally:
        engine.dispose()
