"""The sandbox speaks WAHA: shapes checked field by field against docs/gateways.md §2."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.sandbox import SandboxRecord, SandboxServer
from tests.integration.test_sandbox_helpers import WAHA_WAIT, Client, running_sandbox

KEY = {"X-Api-Key": "waha-key"}
NOT_WORKING = "Session status is not as expected. Try again later or restart the session"


def send(client: Client, chat_id: str = "5511999999999@c.us", session: str = "default",
         **kwargs: Any) -> Any:
    body = {"session": session, "chatId": chat_id, "text": "Hi"}
    return client.post("/api/sendText", json=body, headers=kwargs.pop("headers", KEY), **kwargs)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    with running_sandbox(tmp_path) as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[Client]:
    client = Client(sandbox.url)
    yield client
    client.close()


def test_send_text_answers_201_with_the_noweb_message_and_records_it(
        client: Client, sandbox: SandboxServer) -> None:
    answer = send(client, session="sales")

    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"key", "message", "messageTimestamp", "status"}
    assert body["key"]["remoteJid"] == "5511999999999@s.whatsapp.net"
    assert body["key"]["fromMe"] is True
    assert re.fullmatch(r"3EB0[0-9A-F]{18}", body["key"]["id"])
    assert body["message"] == {"extendedTextMessage": {"text": "Hi"}}
    assert body["messageTimestamp"].isdigit() and body["status"] == "PENDING"
    [message] = SandboxRecord(sandbox.record_path).messages(session="sales")
    assert (message.dialect, message.recipient, message.e164, message.text) == (
        "waha", "5511999999999@c.us", "+5511999999999", "Hi")
    assert message.gateway_message_id == body["key"]["id"] and message.deliverable


def test_a_chat_id_without_suffix_gets_c_us_like_ensure_suffix(client: Client) -> None:
    answer = send(client, chat_id="5511999999999")
    assert answer.status_code == 201
    assert answer.json()["key"]["remoteJid"] == "5511999999999@s.whatsapp.net"


def test_the_session_defaults_to_default(client: Client, sandbox: SandboxServer) -> None:
    answer = client.post("/api/sendText", json={"chatId": "5511999999999@c.us", "text": "Hi"},
                         headers=KEY)
    assert answer.status_code == 201
    assert SandboxRecord(sandbox.record_path).messages()[0].session == "default"


def test_the_webjs_shape_carries_the_serialized_id(client: Client,
                                                   sandbox: SandboxServer) -> None:
    client.control.config(waha_shape="webjs")
    answer = send(client)
    assert answer.status_code == 201
    ident = answer.json()["id"]
    assert ident["fromMe"] is True and ident["remote"] == "5511999999999@c.us"
    assert ident["_serialized"] == f"true_5511999999999@c.us_{ident['id']}"
    assert answer.json()["body"] == "Hi" and answer.json()["_data"]["id"] == ident
    assert SandboxRecord(sandbox.record_path).messages()[0].gateway_message_id == (
        ident["_serialized"])
    session = client.get("/api/sessions/default", headers=KEY).json()
    assert session["engine"] == {"engine": "WEBJS"}


def test_the_2025_6_5_shape_answers_201_with_an_empty_body(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.config(waha_shape="empty")
    answer = send(client)
    assert answer.status_code == 201 and answer.content == b""
    assert SandboxRecord(sandbox.record_path).count() == 1


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": ""}])
def test_a_missing_key_gets_nestjs_401(client: Client, headers: dict[str, str]) -> None:
    answer = send(client, headers=headers)
    assert answer.status_code == 401
    assert answer.json() == {"message": "Unauthorized", "statusCode": 401}


def test_the_key_may_come_as_a_query_parameter_and_must_match_when_configured(
        tmp_path: Path) -> None:
    with running_sandbox(tmp_path, api_key="exact") as server:
        client = Client(server.url)
        wrong = send(client, headers={"X-Api-Key": "other"})
        by_query = send(client, headers={}, params={"x-api-key": "exact"})
        client.close()
    assert wrong.status_code == 401
    assert by_query.status_code == 201


def test_a_working_session_reports_its_status_me_and_engine(client: Client) -> None:
    answer = client.get("/api/sessions/sales", headers=KEY)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"name", "status", "config", "me", "engine"}
    assert body["name"] == "sales" and body["status"] == "WORKING"
    assert re.fullmatch(r"\d+@c\.us", body["me"]["id"]) and body["me"]["pushName"]
    assert body["engine"] == {"engine": "NOWEB"} and isinstance(body["config"], dict)


def test_a_dropped_session_reports_the_chosen_status_and_no_me(client: Client) -> None:
    client.control.drop("sales", waha_status="SCAN_QR_CODE")
    body = client.get("/api/sessions/sales", headers=KEY).json()
    assert body["status"] == "SCAN_QR_CODE" and body["me"] is None


def test_an_unknown_session_is_404(client: Client) -> None:
    client.control.sessions(["default"])
    answer = client.get("/api/sessions/ghost", headers=KEY)
    assert answer.status_code == 404
    assert answer.json() == {"message": "Session not found", "error": "Not Found",
                             "statusCode": 404}
    refused = send(client, session="ghost")
    assert refused.status_code == 404
    assert refused.json()["message"].startswith("We didn't find a session with name 'ghost'")


@pytest.mark.parametrize("status", ["STOPPED", "SCAN_QR_CODE", "FAILED", "STARTING"])
def test_sending_on_a_session_not_working_waits_then_answers_the_exact_422(
        client: Client, sandbox: SandboxServer, status: str) -> None:
    client.control.drop("default", waha_status=status)

    started = time.monotonic()
    answer = send(client)
    waited = time.monotonic() - started

    assert answer.status_code == 422
    assert answer.json() == {"error": NOT_WORKING, "session": "default", "status": status,
                             "expected": ["WORKING"]}
    assert waited >= WAHA_WAIT * 0.9
    assert SandboxRecord(sandbox.record_path).count() == 0


def test_a_session_restored_during_the_wait_sends_normally(client: Client) -> None:
    client.control.config(waha_wait=10.0)
    client.control.drop("default", seconds=0.3)
    started = time.monotonic()
    answer = send(client)
    assert answer.status_code == 201
    assert time.monotonic() - started < 5.0  # woke on the restore, not at the wait's end


def test_check_exists_tells_numbers_on_whatsapp_from_the_others(client: Client) -> None:
    client.control.reject(["5511900000000"], session="default")
    yes = client.get("/api/contacts/check-exists",
                     params={"phone": "5511999999999", "session": "default"}, headers=KEY)
    no = client.get("/api/contacts/check-exists",
                    params={"phone": "5511900000000", "session": "default"}, headers=KEY)
    assert yes.status_code == no.status_code == 200
    assert yes.json() == {"numberExists": True, "chatId": "5511999999999@c.us"}
    assert no.json() == {"numberExists": False}


def test_check_exists_needs_a_working_session_too(client: Client) -> None:
    client.control.drop("default")
    answer = client.get("/api/contacts/check-exists", params={"phone": "5511999999999"},
                        headers=KEY)
    assert answer.status_code == 422 and answer.json()["status"] == "STOPPED"


def test_send_text_accepts_a_number_not_on_whatsapp_but_records_it_undeliverable(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.reject(["5511900000000"])
    answer = send(client, chat_id="5511900000000@c.us")
    assert answer.status_code == 201
    [message] = SandboxRecord(sandbox.record_path).messages()
    assert message.deliverable is False
    assert client.control.stats()["undeliverable"] == 1


def test_throttling_answers_429_with_the_nestjs_throttler_body(client: Client) -> None:
    client.control.throttle(count=1, retry_after=2)
    answer = send(client)
    assert answer.status_code == 429
    assert answer.json() == {"message": "ThrottlerException: Too Many Requests",
                             "statusCode": 429}
    assert answer.headers["Retry-After"] == "2"
    assert send(client).status_code == 201


def test_injected_failures_answer_the_all_exceptions_filter_500(client: Client) -> None:
    client.control.fail(1.0, count=1)
    answer = send(client)
    assert answer.status_code == 500
    body = answer.json()
    assert set(body) == {"statusCode", "timestamp", "exception", "request", "version"}
    assert body["statusCode"] == 500 and body["exception"]["message"]
    assert body["request"]["path"] == "/api/sendText" and body["request"]["method"] == "POST"
    assert body["request"]["body"]["chatId"] == "5511999999999@c.us"


@pytest.mark.parametrize("body", [{"session": "default", "text": "Hi"},
                                  {"chatId": "5511999999999@c.us"}, []])
def test_an_invalid_body_gets_the_nestjs_validation_400(client: Client, body: Any) -> None:
    answer = client.post("/api/sendText", json=body, headers=KEY)
    assert answer.status_code == 400
    assert answer.json()["error"] == "Bad Request" and answer.json()["statusCode"] == 400
    assert isinstance(answer.json()["message"], list)
