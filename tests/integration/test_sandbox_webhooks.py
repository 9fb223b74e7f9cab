"""Drops and restores reach the operator's webhook endpoints as WAHA and Evolution events."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.sandbox import SandboxServer
from tests.integration.test_sandbox_helpers import (
    Client,
    Received,
    WebhookReceiver,
    eventually,
    running_sandbox,
)

SECRET = "hmac-secret"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    with running_sandbox(tmp_path, webhook_timeout=0.5) as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[Client]:
    client = Client(sandbox.url)
    yield client
    client.close()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def events(receiver: WebhookReceiver, count: int) -> list[Received]:
    eventually(lambda: len(receiver.received) >= count, what=f"{count} webhook deliveries")
    return list(receiver.received)


def verified(delivery: Received, key: str) -> dict[str, Any]:
    """What a WAHA receiver does: HMAC-SHA512 over the raw bytes, then parse."""
    expected = hmac.new(key.encode(), delivery.body, hashlib.sha512).hexdigest()
    assert hmac.compare_digest(delivery.headers["X-Webhook-Hmac"], expected)
    assert delivery.headers["X-Webhook-Hmac-Algorithm"] == "sha512"
    payload: dict[str, Any] = json.loads(delivery.body)
    return payload


def test_waha_session_status_events_are_signed_and_carry_the_documented_envelope(
        client: Client, receiver: WebhookReceiver) -> None:
    client.control.add_webhook(receiver.url, "waha", hmac_key=SECRET, session="sales")

    client.control.drop("sales", waha_status="SCAN_QR_CODE")
    client.control.restore("sales")

    dropped, restored = (verified(d, SECRET) for d in events(receiver, 2))
    for event, delivery in zip((dropped, restored), receiver.received, strict=True):
        assert set(event) >= {"id", "timestamp", "event", "session", "me", "payload", "engine",
                              "environment"}
        assert re.fullmatch(r"evt_[0-9A-HJKMNP-TV-Z]{26}", event["id"])
        assert event["event"] == "session.status" and event["session"] == "sales"
        assert abs(event["timestamp"] - time.time() * 1000) < 60_000
        assert event["me"]["id"].endswith("@c.us")
        assert delivery.headers["X-Webhook-Request-Id"]
        assert delivery.headers["X-Webhook-Timestamp"].isdigit()
    assert dropped["payload"]["name"] == "sales" and dropped["payload"]["data"] is None
    assert dropped["payload"]["status"] == "SCAN_QR_CODE"
    assert restored["payload"]["status"] == "WORKING"
    assert [s["status"] for s in restored["payload"]["statuses"]][-2:] == [
        "SCAN_QR_CODE", "WORKING"]


def test_a_waha_target_without_a_key_gets_unsigned_events(
        client: Client, receiver: WebhookReceiver) -> None:
    client.control.add_webhook(receiver.url, "waha")
    client.control.drop("default")
    [delivery] = events(receiver, 1)
    assert "X-Webhook-Hmac" not in delivery.headers
    assert json.loads(delivery.body)["payload"]["status"] == "STOPPED"


def test_a_forged_signature_would_not_verify(client: Client, receiver: WebhookReceiver) -> None:
    client.control.add_webhook(receiver.url, "waha", hmac_key=SECRET)
    client.control.drop("default")
    [delivery] = events(receiver, 1)
    with pytest.raises(AssertionError):
        verified(delivery, "another-secret")


def test_evolution_connection_update_events_follow_drop_and_restore(
        client: Client, sandbox: SandboxServer, receiver: WebhookReceiver) -> None:
    client.control.add_webhook(receiver.url, "evolution")

    client.control.drop("inst", evolution_state="connecting")
    client.control.drop("inst", evolution_state="close")
    client.control.restore("inst")

    connecting, closed, opened = (json.loads(d.body) for d in events(receiver, 3))
    for event in (connecting, closed, opened):
        assert event["event"] == "connection.update" and event["instance"] == "inst"
        assert event["destination"] == receiver.url and event["server_url"] == sandbox.url
        assert event["sender"].endswith("@s.whatsapp.net") and "date_time" in event
        assert "apikey" in event
    assert connecting["data"] == {"instance": "inst", "state": "connecting", "statusReason": 200}
    assert closed["data"] == {"instance": "inst", "state": "close", "statusReason": 401}
    assert opened["data"]["state"] == "open" and opened["data"]["statusReason"] == 200
    assert opened["data"]["wuid"] == opened["sender"] and opened["data"]["profileName"]


def test_a_session_scoped_target_only_hears_its_session(
        client: Client, receiver: WebhookReceiver) -> None:
    client.control.add_webhook(receiver.url, "evolution", session="mine")
    client.control.drop("theirs")
    client.control.drop("mine")
    [delivery] = events(receiver, 1)
    assert json.loads(delivery.body)["instance"] == "mine"


def test_an_automatic_restore_is_announced_too(client: Client,
                                               receiver: WebhookReceiver) -> None:
    client.control.add_webhook(receiver.url, "waha")
    client.control.drop("default", seconds=0.2)
    dropped, restored = events(receiver, 2)
    assert json.loads(dropped.body)["payload"]["status"] == "STOPPED"
    assert json.loads(restored.body)["payload"]["status"] == "WORKING"


def test_a_dead_receiver_neither_blocks_control_calls_nor_other_receivers(
        client: Client, receiver: WebhookReceiver) -> None:
    # Port 9 (discard) on loopback refuses connections: a dead operator endpoint.
    dead = client.control.add_webhook("http://127.0.0.1:9/hook", "waha")
    client.control.add_webhook(receiver.url, "waha")

    started = time.monotonic()
    client.control.drop("default")
    assert time.monotonic() - started < 0.5

    events(receiver, 1)
    log = eventually(lambda: [d for d in client.control.webhooks()["deliveries"]
                              if d["target"] == dead["id"]], what="the failed delivery log")
    assert "error" in log[0]
    assert client.control.remove_webhook(dead["id"])["removed"] is True
    assert dead["id"] not in [t["id"] for t in client.control.webhooks()["targets"]]
