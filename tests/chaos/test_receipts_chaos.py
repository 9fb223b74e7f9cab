"""A PostgreSQL restart during a receipt storm loses nothing: the web service on a private
PostgreSQL takes a few thousand signed Cloud statuses from posting threads that retry every
answer other than 200 (as Meta does), PostgreSQL is restarted mid-storm, and at the end every
receipt was eventually answered 200 and every one is in the ledger (each recipient read, with
its delivered and read times, and the campaign's counters still agree with its ledger)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests
from sqlalchemy import create_engine, text

from campaigns.local.postgres import EmbeddedPostgres
from campaigns.settings import Pacing, Settings
from campaigns.state import CampaignStateManager
from campaigns.store import db
from campaigns.web.app import create_app
from campaigns.web.server import running
from campaigns.webhooks import APP_SECRET_ENV
from tests.integration.test_web_receipts import _cloud_status
from tests.integration.test_webhooks_optouts import APP_SECRET, Receiver

pytestmark = pytest.mark.chaos

MESSAGES = 1000
THREADS = 4
STATUSES = ("sent", "delivered", "read")
DEADLINE = 180.0


class Storm:
    """Posting threads: each posts its share in order, retrying a post until it is 200."""

    def __init__(self, receiver: Receiver, payloads: list[dict[str, object]]) -> None:
        self.receiver = receiver
        self.payloads = payloads
        self.acknowledged = 0
        self.retries = 0
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._post, args=(payloads[k::THREADS],), daemon=True)
            for k in range(THREADS)
        ]

    def _post(self, share: list[dict[str, object]]) -> None:
        deadline = time.monotonic() + DEADLINE
        for payload in share:
            while time.monotonic() < deadline:
                try:
                    if self.receiver.cloud(payload).status_code == 200:
                        break
                except requests.RequestException:
                    pass  # the service itself is up; a timeout is retried like a 5xx
                with self.lock:
                    self.retries += 1
                time.sleep(0.05)
            else:
                return  # out of time: the final count says how many were left
            with self.lock:
                self.acknowledged += 1


def test_postgres_restart_during_a_receipt_storm__every_acknowledged_receipt_is_stored(
    private_postgres: EmbeddedPostgres, settings: Settings
) -> None:
    url = private_postgres.create_database(f"chaos_{uuid.uuid4().hex[:8]}")
    db.upgrade(url)
    store = CampaignStateManager(url, settings=settings)
    store.add_session("meta", "console", "console://local")
    campaign = store.create_campaign(
        [f"+5511{960000000 + i}" for i in range(MESSAGES)], "Hi", "meta",
        pacing=Pacing(batch_size=500),
    )  # fmt: skip
    engine = create_engine(url)
    with engine.begin() as conn:  # a finished send: every recipient sent with its wamid
        conn.execute(text(
            "UPDATE campaign_recipients SET status = 'sent', session_name = 'meta', "
            "gateway_message_id = 'wamid.c.' || position WHERE campaign_id = :id"),
            {"id": campaign.id})  # fmt: skip
    engine.dispose()
    payloads = [_cloud_status(f"wamid.c.{p}", s) for p in range(1, MESSAGES + 1) for s in STATUSES]
    app = create_app(store, resume=lambda s, r: None, env={APP_SECRET_ENV: APP_SECRET})
    try:
        with running(app) as service:
            storm = Storm(Receiver(service), payloads)
            for thread in storm.threads:
                thread.start()
            while storm.acknowledged < len(payloads) // 3:
                time.sleep(0.01)
            private_postgres.restart()  # mid-storm: answers are 503 until it is back
            for thread in storm.threads:
                thread.join(DEADLINE + 10)
        assert storm.acknowledged == len(payloads), f"{storm.acknowledged} answered 200"
        assert storm.retries > 0, "the restart never reached a receipt: nothing was tested"
        rows = store.recipients(campaign.id)
        assert [r["delivery_status"] for r in rows] == ["read"] * MESSAGES
        assert all(r["delivered_at"] and r["read_at"] for r in rows)
        assert store.check_invariants(campaign.id) == []
    finally:
        store.dispose()
