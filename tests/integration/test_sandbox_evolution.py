"""The sandbox speaks Evolution API v2: answers checked against Evolution's OpenAPI document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.sandbox import SandboxRecord, SandboxServer
from tests.contracts import validate_evolution_request, validate_evolution_response
from tests.integration.test_sandbox_helpers import Client, running_sandbox

KEY = {"apikey": "evo-key"}
SEND = "/message/sendText/{instance}"
STATE = "/instance/connectionState/{instance}"
NUMBERS = "/chat/whatsappNumbers/{instance}"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    with running_sandbox(tmp_path) as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[Client]:
    client = Client(sandbox.url)
    yield client
    client.close()


def send(client: Client, number: str = "5511999999999", instance: str = "inst",
         headers: dict[str, str] | None = None) -> Any:
    body = {"number": number, "text": "Olá!"}
    validate_evolution_request(SEND, body)
    answer = client.post(f"/message/sendText/{instance}", json=body,
                         headers=KEY if headers is None else headers)
    validate_evolution_response(SEND, answer.status_code, answer.json())
    return answer


def test_send_text_answers_201_with_the_documented_body_and_records_it(
        client: Client, sandbox: SandboxServer) -> None:
    answer = send(client, number="+55 (11) 99999-9999")

    assert answer.status_code == 201
    body = answer.json()
    assert body["key"]["remoteJid"] == "5511999999999@s.whatsapp.net"
    assert body["key"]["fromMe"] is True and body["key"]["id"]
    assert body["message"] == {"extendedTextMessage": {"text": "Olá!"}}
    assert isinstance(body["messageTimestamp"], str) and body["status"] == "PENDING"
    [message] = SandboxRecord(sandbox.record_path).messages(session="inst")
    assert (message.dialect, message.recipient, message.e164, message.text) == (
        "evolution", "+55 (11) 99999-9999", "+5511999999999", "Olá!")
    assert message.gateway_message_id == body["key"]["id"]


def test_a_missing_or_wrong_key_gets_evolution_401(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, api_key=["a", "b"]) as server:
        client = Client(server.url)
        missing = send(client, headers={})
        wrong = send(client, headers={"apikey": "c"})
        second = send(client, headers={"apikey": "b"})
        client.close()
    expected = {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}
    assert missing.status_code == wrong.status_code == 401
    assert missing.json() == wrong.json() == expected
    assert second.status_code == 201


def test_connection_state_is_open_then_what_the_drop_chose(client: Client) -> None:
    def state() -> str:
        answer = client.get("/instance/connectionState/inst", headers=KEY)
        validate_evolution_response(STATE, answer.status_code, answer.json())
        assert answer.json()["instance"]["instanceName"] == "inst"
        return str(answer.json()["instance"]["state"])

    assert state() == "open"
    client.control.drop("inst", evolution_state="connecting")
    assert state() == "connecting"
    client.control.drop("inst", evolution_state="close")
    assert state() == "close"
    client.control.restore("inst")
    assert state() == "open"


def test_an_unknown_instance_is_404(client: Client) -> None:
    client.control.sessions(["inst"])
    answer = client.get("/instance/connectionState/ghost", headers=KEY)
    validate_evolution_response(STATE, 404, answer.json())
    assert answer.json() == {"status": 404, "error": "Not Found",
                             "response": {"message": ['The "ghost" instance does not exist']}}
    assert send(client, instance="ghost").status_code == 404


def test_sending_on_a_dropped_instance_answers_connection_closed_500_by_default(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.drop("inst")
    answer = send(client)
    assert answer.status_code == 500
    assert answer.json() == {"status": 500, "error": "Internal Server Error",
                             "response": {"message": "Connection Closed"}}
    assert SandboxRecord(sandbox.record_path).count() == 0


@pytest.mark.parametrize(("form", "status"), [("400-list", 400), ("500-list", 500)])
def test_the_connection_closed_list_forms_can_be_chosen(
        client: Client, form: str, status: int) -> None:
    client.control.config(evolution_closed_form=form)
    client.control.drop("inst")
    answer = send(client)
    assert answer.status_code == status
    assert answer.json()["response"]["message"] == ["Error: Connection Closed"]


def test_a_number_not_on_whatsapp_is_refused_with_the_exists_false_list(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.reject(["5511900000000"], session="inst")
    answer = send(client, number="5511900000000")
    assert answer.status_code == 400
    assert answer.json() == {"status": 400, "error": "Bad Request", "response": {"message": [
        {"jid": "5511900000000@s.whatsapp.net", "exists": False, "number": "5511900000000"}]}}
    assert SandboxRecord(sandbox.record_path).count() == 0
    assert send(client, number="5511900000000", instance="other").status_code == 201


def test_whatsapp_numbers_tells_which_numbers_exist(client: Client) -> None:
    client.control.reject(["5511900000000"])
    body = {"numbers": ["5511999999999", "+55 11 90000-0000"]}
    validate_evolution_request(NUMBERS, body)
    answer = client.post("/chat/whatsappNumbers/inst", json=body, headers=KEY)
    validate_evolution_response(NUMBERS, answer.status_code, answer.json())
    assert answer.json() == [
        {"exists": True, "jid": "5511999999999@s.whatsapp.net", "number": "5511999999999"},
        {"exists": False, "jid": "5511900000000@s.whatsapp.net", "number": "5511900000000"},
    ]


def test_throttling_answers_429_in_the_evolution_envelope(client: Client) -> None:
    client.control.throttle(seconds=30, session="inst")
    answer = send(client)
    assert answer.status_code == 429
    assert answer.json() == {"status": 429, "error": "Too Many Requests",
                             "response": {"message": "rate-overlimit"}}
    assert send(client, instance="other").status_code == 201


def test_injected_failures_answer_500_in_the_evolution_envelope(client: Client) -> None:
    client.control.fail(1.0, count=1, http_status=502)
    answer = send(client)
    assert answer.status_code == 502 and answer.json()["error"] == "Bad Gateway"
    assert send(client).status_code == 201


def test_a_v1_body_is_rejected_with_400(client: Client) -> None:
    body = {"number": "5511999999999", "textMessage": {"text": "Hi"}}
    answer = client.post("/message/sendText/inst", json=body, headers=KEY)
    validate_evolution_response(SEND, answer.status_code, answer.json())
    assert answer.status_code == 400
    assert answer.json()["response"]["message"] == [['instance requires property "text"']]


def test_an_empty_text_is_rejected_with_text_is_required(client: Client) -> None:
    answer = client.post("/message/sendText/inst", json={"number": "5511", "text": ""},
                         headers=KEY)
    assert answer.status_code == 400
    assert answer.json()["response"]["message"] == ["Text is required"]
