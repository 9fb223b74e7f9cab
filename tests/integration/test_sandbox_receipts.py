"""Delivery receipts: after an accepted send the sandbox posts the dialect's receipts to the
registered webhook target, signed as the real gateway signs them, in order by default, with
seeded failures, duplicates and reorderings, retried after a 5xx, and stops without a thread
left behind."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from campaigns.sandbox import SandboxServer
from campaigns.sandbox.core import Accepted
from campaigns.sandbox.receipts import ReceiptSettings, plan
from campaigns.sandbox.record import SandboxRecord
from tests.contracts import meta_document
from tests.integration.test_sandbox_helpers import Client, eventually, running_sandbox

SECRET = "app-secret"
KEY = "waha-hmac-key"
PHONE_ID = "106540352242922"
FAST: dict[str, Any] = {"enabled": True, "delivered_after": 0.05, "read_after": 0.05,
                        "retry_delay": 0.05}


@dataclass
class Post:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A loopback webhook endpoint; answers 503 to its first ``failures`` posts."""

    def __init__(self, failures: int = 0) -> None:
        self.posts: list[Post] = []
        self.failures = failures
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    failing = outer.failures > 0
                    outer.failures -= failing
                    if not failing:
                        outer.posts.append(Post(dict(self.headers.items()), body))
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def wait(self, count: int) -> list[Post]:
        eventually(lambda: len(self.posts) >= count, what=f"{count} receipts")
        return list(self.posts)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    with running_sandbox(tmp_path, webhook_timeout=1.0) as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[Client]:
    client = Client(sandbox.url)
    yield client
    client.close()


def cloud_send(client: Client, to: str = "+16505551234") -> str:
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
            "type": "text", "text": {"body": "Hello"}}
    answer = client.post(f"/v25.0/{PHONE_ID}/messages", json=body,
                         headers={"Authorization": "Bearer t"})
    assert answer.status_code == 200
    return str(answer.json()["messages"][0]["id"])


def cloud_statuses(posts: list[Post]) -> list[dict[str, Any]]:
    return [p.json["entry"][0]["changes"][0]["value"]["statuses"][0] for p in posts]


def meta_webhook_validator() -> jsonschema.Draft202012Validator:
    uri = "urn:test:meta"
    resource = Resource.from_contents(meta_document(), default_specification=DRAFT202012)
    return jsonschema.Draft202012Validator(
        {"$ref": uri + "#/components/schemas/WebhookPayload"},
        registry=Registry().with_resource(uri, resource))


def test_cloud_statuses_arrive_sent_delivered_read_signed_with_the_app_secret(
        client: Client, sandbox: SandboxServer, receiver: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("META_APP_SECRET", SECRET)  # a target without a key: the env secret
    client.control.add_webhook(receiver.url, "cloud")
    client.control.receipts(**FAST)
    wamid = cloud_send(client)

    posts = receiver.wait(3)
    validator = meta_webhook_validator()
    for post in posts:
        digest = hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
        assert post.headers["X-Hub-Signature-256"] == f"sha256={digest}"
        validator.validate(post.json)
    statuses = cloud_statuses(posts)
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    assert {s["id"] for s in statuses} == {wamid}
    assert all(s["recipient_id"] == "16505551234" and s["timestamp"].isdigit()
               for s in statuses)
    assert "pricing" in statuses[0] and "pricing" not in statuses[2]
    value = posts[0].json["entry"][0]["changes"][0]["value"]
    assert value["metadata"]["phone_number_id"] == PHONE_ID

    record = SandboxRecord(sandbox.record_path)
    rows = eventually(lambda: [r for r in record.receipts(wamid) if r.step == "read"])
    assert rows[0].outcome == "delivered" and rows[0].http_status == 200
    assert rows[0].attempt == 1 and rows[0].dialect == "cloud"
    expected = {"delivered": 3, "step.delivered": 1, "step.read": 1, "step.sent": 1}
    eventually(lambda: record.receipt_counts() == expected, what="three receipts recorded")


def test_waha_acks_carry_the_serialized_id_and_an_hmac_sha512(
        client: Client, receiver: Receiver) -> None:
    client.control.add_webhook(receiver.url, "waha", hmac_key=KEY)
    client.control.receipts(**FAST)
    answer = client.post("/api/sendText", json={"session": "default",
                                                "chatId": "5511999999999@c.us", "text": "Hi"},
                         headers={"X-Api-Key": "k"})
    assert answer.status_code == 201
    key_id = answer.json()["key"]["id"]

    posts = receiver.wait(3)
    for post in posts:
        digest = hmac.new(KEY.encode(), post.body, hashlib.sha512).hexdigest()
        assert hmac.compare_digest(post.headers["X-Webhook-Hmac"], digest)
        assert post.headers["X-Webhook-Hmac-Algorithm"] == "sha512"
    events = [p.json for p in posts]
    assert {e["event"] for e in events} == {"message.ack"}
    assert [(e["payload"]["ack"], e["payload"]["ackName"]) for e in events] == [
        (1, "SERVER"), (2, "DEVICE"), (3, "READ")]
    payload = events[0]["payload"]
    assert payload["id"] == f"true_5511999999999@c.us_{key_id}"
    assert payload["fromMe"] is True and payload["from"] == "5511999999999@c.us"
    assert set(payload) >= {"id", "from", "to", "participant", "fromMe", "ack", "ackName"}


def test_waha_webjs_answers_and_acks_use_the_same_serialized_id(
        client: Client, receiver: Receiver) -> None:
    client.control.config(waha_shape="webjs")
    client.control.add_webhook(receiver.url, "waha")
    client.control.receipts(**FAST, read_share=0.0)
    answer = client.post("/api/sendText", json={"session": "default",
                                                "chatId": "5511999999999@c.us", "text": "Hi"},
                         headers={"X-Api-Key": "k"})
    serialized = answer.json()["id"]["_serialized"]
    posts = receiver.wait(2)
    assert [p.json["payload"]["id"] for p in posts] == [serialized, serialized]
    assert "X-Webhook-Hmac" not in posts[0].headers  # no key, no signature


def test_evolution_updates_name_the_statuses_and_the_key_id(
        client: Client, receiver: Receiver) -> None:
    client.control.add_webhook(receiver.url, "evolution")
    client.control.receipts(**FAST)
    answer = client.post("/message/sendText/inst", json={"number": "5511999999999",
                                                         "text": "Olá"},
                         headers={"apikey": "k"})
    key_id = answer.json()["key"]["id"]
    events = [p.json for p in receiver.wait(3)]
    assert [e["data"]["status"] for e in events] == ["SERVER_ACK", "DELIVERY_ACK", "READ"]
    for event in events:
        assert event["event"] == "messages.update" and event["instance"] == "inst"
        assert event["data"]["keyId"] == key_id and event["data"]["fromMe"] is True
        assert event["data"]["remoteJid"] == "5511999999999@s.whatsapp.net"
        assert set(event) >= {"destination", "date_time", "sender", "server_url", "apikey"}


def test_seeded_shares_fail_duplicate_and_reorder(
        client: Client, sandbox: SandboxServer, receiver: Receiver) -> None:
    client.control.add_webhook(receiver.url, "cloud", hmac_key=SECRET)
    client.control.receipts(**FAST, fail_share=0.3, duplicate_share=0.2, reorder_share=0.5,
                            seed=11)
    ids = [cloud_send(client, f"+1650555{n:04d}") for n in range(30)]
    settings = ReceiptSettings(**FAST, fail_share=0.3, duplicate_share=0.2, reorder_share=0.5,
                               seed=11)
    plans = {i: plan(Accepted("cloud", PHONE_ID, "1", i, True, False), settings) for i in ids}
    expected = sum(len(p) + sum(s.duplicate for s in p) for p in plans.values())
    posts = receiver.wait(expected)
    eventually(lambda: SandboxRecord(sandbox.record_path).receipt_counts().get("delivered")
               == expected, what="every receipt recorded")

    by_id: dict[str, list[dict[str, Any]]] = {}
    for status in cloud_statuses(posts):
        by_id.setdefault(status["id"], []).append(status)
    failed = [i for i, s in by_id.items() if any(x["status"] == "failed" for x in s)]
    assert failed and all(not any(x["status"] in ("delivered", "read") for x in by_id[i])
                          for i in failed)
    codes = {x["errors"][0]["code"] for i in failed for x in by_id[i] if x["status"] == "failed"}
    assert codes <= {131026, 131049}
    reordered = [i for i, s in by_id.items() if [x["status"] for x in s if x["status"] in
                                                 ("delivered", "read")][:1] == ["read"]]
    assert reordered
    assert len(posts) > len({(s["id"], s["status"]) for s in cloud_statuses(posts)})
    # the choices are the plan's, message by message
    for i, steps in plans.items():
        assert {x["status"] for x in by_id[i]} == {s.step for s in steps}
    copies = [r for r in SandboxRecord(sandbox.record_path).receipts() if r.duplicate]
    assert len(copies) == sum(s.duplicate for p in plans.values() for s in p)


def test_a_503_is_retried_with_backoff_until_accepted(
        client: Client, sandbox: SandboxServer) -> None:
    receiver = Receiver(failures=2)
    try:
        client.control.add_webhook(receiver.url, "cloud", hmac_key=SECRET)
        client.control.receipts(**dict(FAST, read_share=0.0, delivered_after=5.0))
        wamid = cloud_send(client)
        [post] = receiver.wait(1)
        assert cloud_statuses([post])[0]["status"] == "sent"
        record = SandboxRecord(sandbox.record_path)
        rows = eventually(lambda: (lambda r: r if len(r) == 3 else None)(record.receipts(wamid)))
        assert [(r.attempt, r.http_status, r.outcome) for r in rows] == [
            (1, 503, "retrying"), (2, 503, "retrying"), (3, 200, "delivered")]
        assert rows[2].at - rows[1].at >= 0.09  # the second wait doubled the first
    finally:
        receiver.close()


def test_receipts_are_off_by_default_and_capped(
        client: Client, sandbox: SandboxServer, receiver: Receiver) -> None:
    client.control.add_webhook(receiver.url, "cloud", hmac_key=SECRET)
    cloud_send(client)
    assert client.control.receipts()["settings"]["enabled"] is False

    client.control.receipts(enabled=True, delivered_after=30.0, max_pending=2)
    cloud_send(client)
    counts = eventually(lambda: client.control.receipts()["counts"].get("dropped"))
    assert counts == 1  # sent went out (or waits), delivered and read: one over the cap
    assert receiver.wait(1)[0].json["entry"][0]["changes"][0]["value"]["statuses"][0][
        "status"] == "sent"
    client.control.reset()
    assert client.control.receipts()["settings"]["enabled"] is False
    assert client.control.receipts()["pending"] == 0


def test_stop_leaves_no_receipt_thread(tmp_path: Path, receiver: Receiver) -> None:
    with running_sandbox(tmp_path, receipts=dict(FAST, delivered_after=60.0)) as server:
        client = Client(server.url)
        client.control.add_webhook(receiver.url, "cloud", hmac_key=SECRET)
        cloud_send(client)
        receiver.wait(1)
        assert client.control.receipts()["pending"] == 2
        client.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("sandbox-receipts")]
