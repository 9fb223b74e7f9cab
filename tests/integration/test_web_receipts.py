"""Delivery receipts through the running web service (FastAPI under uvicorn, real loopback HTTP,
real PostgreSQL): the three dialects, signatures right, wrong and missing, duplicates, out of
order, receipts before the send is recorded, and a store outage answered 503."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from campaigns.domain import RecipientStatus
from campaigns.settings import Pacing, Settings
from campaigns.state import CampaignStateManager
from campaigns.webhooks import cloud_signature
from tests.integration.test_webhooks_optouts import APP_SECRET, KEY, Receiver, _serve
from tests.unit.test_receipts import _cloud, _evolution, _waha

NUMBERS = [f"+55119999{i:05d}" for i in range(4)]


@pytest.fixture
def receiver(store: CampaignStateManager) -> Iterator[Receiver]:
    yield from _serve(store, hmac_key=KEY, app_secret=APP_SECRET)


def _campaign(store: CampaignStateManager, session: str, ids: list[str]) -> tuple[int, str]:
    """A campaign whose first len(ids) recipients are sent with these gateway ids."""
    campaign = store.create_campaign(NUMBERS, "Hi", session, pacing=Pacing(batch_size=4))
    assert campaign.run_token
    for ident in ids:
        claim = store.claim_recipient(campaign.id, 1, campaign.run_token)
        assert claim and store.record_outcome(claim, RecipientStatus.SENT, message_id=ident)
    return campaign.id, campaign.run_token


def _statuses(store: CampaignStateManager, cid: int) -> list[tuple[str, str | None]]:
    return [(str(r["status"]), r["delivery_status"]) for r in store.recipients(cid)]


def _cloud_status(wamid: str, status: str, **extra: Any) -> dict[str, Any]:
    return _cloud({"id": wamid, "status": status, "timestamp": "1751142888",
                   "recipient_id": "5511999900000", **extra})  # fmt: skip


def test_cloud_statuses_signed__stored_duplicates_and_out_of_order_change_nothing(
    receiver: Receiver, store: CampaignStateManager, console_session: str
) -> None:
    cid, _ = _campaign(store, console_session, ["wamid.A", "wamid.B"])
    answer = receiver.cloud(_cloud_status("wamid.A", "read"))
    assert answer.status_code == 200 and answer.json()["receipts_applied"] == 1
    for status in ("read", "delivered", "sent"):  # a duplicate, then two late ones
        answer = receiver.cloud(_cloud_status("wamid.A", status))
        assert answer.status_code == 200 and answer.json()["receipts_applied"] == 0
    failed = _cloud_status("wamid.B", "failed",
                           errors=[{"code": 131026, "title": "Message undeliverable"}])  # fmt: skip
    assert receiver.cloud(failed).json()["receipts_applied"] == 1
    assert _statuses(store, cid)[:2] == [("sent", "read"), ("failed", "failed")]
    assert store.recipients(cid)[1]["error_code"] == "131026"


def test_cloud_statuses_wrong_missing_or_tampered_signature__401_and_nothing_stored(
    receiver: Receiver, store: CampaignStateManager, console_session: str
) -> None:
    cid, _ = _campaign(store, console_session, ["wamid.A"])
    payload = _cloud_status("wamid.A", "read")
    assert receiver.cloud(payload, secret=None).status_code == 401
    assert receiver.cloud(payload, secret="not-the-secret").status_code == 401
    body = json.dumps(payload).encode()
    tampered = body.replace(b'"read"', b'"sent"')
    sig = {"X-Hub-Signature-256": cloud_signature(APP_SECRET, body)}
    assert receiver.post("/webhooks/cloud", tampered, sig).status_code == 401
    assert _statuses(store, cid)[0] == ("sent", None)


def test_waha_ack_signed_with_serialized_id__meets_the_bare_key_in_the_ledger(
    receiver: Receiver, store: CampaignStateManager, console_session: str
) -> None:
    cid, _ = _campaign(store, console_session, ["3EB0AB12"])  # NOWEB stores key.id
    assert receiver.waha(_waha(3, "READ"), key=None).status_code == 401
    assert receiver.waha(_waha(3, "READ"), key="wrong").status_code == 401
    assert _statuses(store, cid)[0] == ("sent", None)
    answer = receiver.waha(_waha(2, "DEVICE"))
    assert answer.status_code == 200 and answer.json()["receipts_applied"] == 1
    assert receiver.waha(_waha(3, "READ")).json()["receipts_applied"] == 1
    assert _statuses(store, cid)[0] == ("sent", "read")


def test_evolution_update__by_name_unsigned_as_evolution_sends(
    receiver: Receiver, store: CampaignStateManager, console_session: str
) -> None:
    cid, _ = _campaign(store, console_session, ["BAE594145F4C59B4"])
    body = json.dumps(_evolution("DELIVERY_ACK")).encode()
    answer = receiver.post("/webhooks/evolution/messages-update", body)
    assert answer.status_code == 200 and answer.json()["receipts_applied"] == 1
    pending = json.dumps(_evolution("PENDING")).encode()  # says nothing: nothing stored
    assert receiver.post("/webhooks/evolution", pending).json()["receipts_applied"] == 0
    assert _statuses(store, cid)[0] == ("sent", "delivered")


def test_receipts_before_the_send_is_recorded__parked_then_applied_on_record(
    receiver: Receiver, store: CampaignStateManager, console_session: str
) -> None:
    cid, token = _campaign(store, console_session, [])
    for status in ("delivered", "read", "delivered"):
        answer = receiver.cloud(_cloud_status("wamid.EARLY", status))
        assert answer.status_code == 200 and answer.json()["receipts_pending"] == 1
    claim = store.claim_recipient(cid, 1, token)
    assert claim and store.record_outcome(claim, RecipientStatus.SENT, message_id="wamid.EARLY")
    row = store.recipients(cid)[0]
    assert (row["delivery_status"], row["read_at"] is not None) == ("read", True)


def test_a_store_outage__answers_503_for_receipts(settings: Settings) -> None:
    down = CampaignStateManager(
        "postgresql+psycopg2://postgres@127.0.0.1:1/none", settings=settings
    )
    try:
        for receiver in _serve(down, hmac_key=KEY, app_secret=APP_SECRET):
            assert receiver.cloud(_cloud_status("wamid.A", "read")).status_code == 503
            assert receiver.waha(_waha(2, "DEVICE")).status_code == 503
            body = json.dumps(_evolution("READ")).encode()
            assert receiver.post("/webhooks/evolution", body).status_code == 503
    finally:
        down.dispose()
