"""The sandbox speaks Meta's Cloud API: answers checked against Meta's OpenAPI document."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from campaigns.sandbox import SandboxRecord, SandboxServer
from tests.contracts import validate_cloud_request, validate_cloud_response
from tests.integration.test_sandbox_helpers import Client, running_sandbox

AUTH = {"Authorization": "Bearer sandbox-token"}
SEND = "/v25.0/106540352242922/messages"


def text_body(to: str = "+16505551234", body: str = "Hello") -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
            "type": "text", "text": {"preview_url": False, "body": body}}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    with running_sandbox(tmp_path) as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[Client]:
    client = Client(sandbox.url)
    yield client
    client.close()


def error_of(answer: Any) -> dict[str, Any]:
    validate_cloud_response(answer.status_code, answer.json())
    error: dict[str, Any] = answer.json()["error"]
    assert error["message"].startswith(f"(#{error['code']}) ")
    assert error["type"] in ("OAuthException", "GraphMethodException")
    assert isinstance(error["fbtrace_id"], str) and error["fbtrace_id"]
    assert error["error_data"]["messaging_product"] == "whatsapp"
    return error


def test_a_text_message_is_accepted_answered_like_meta_and_recorded(
        client: Client, sandbox: SandboxServer) -> None:
    body = text_body()
    validate_cloud_request(body)

    answer = client.post(SEND, json=body, headers=AUTH)

    assert answer.status_code == 200
    validate_cloud_response(200, answer.json())
    payload = answer.json()
    assert payload["contacts"] == [{"input": "+16505551234", "wa_id": "16505551234"}]
    wamid = payload["messages"][0]["id"]
    assert wamid.startswith("wamid.")
    [message] = SandboxRecord(sandbox.record_path).messages()
    assert (message.dialect, message.session, message.recipient, message.e164) == (
        "cloud", "106540352242922", "+16505551234", "+16505551234")
    assert message.text == "Hello" and message.template is None
    assert message.gateway_message_id == wamid and message.deliverable
    assert message.answered_at is not None and message.received_at <= message.answered_at


def test_the_version_segment_is_optional_as_on_graph(client: Client) -> None:
    answer = client.post("/106540352242922/messages", json=text_body(), headers=AUTH)
    assert answer.status_code == 200


def test_a_template_message_is_accepted_and_recorded_as_json(
        client: Client, sandbox: SandboxServer) -> None:
    template = {"name": "order_update", "language": {"policy": "deterministic", "code": "pt_BR"},
                "components": [{"type": "body",
                                "parameters": [{"type": "text", "text": "Maria"}]}]}
    body = {"messaging_product": "whatsapp", "recipient_type": "individual",
            "to": "5511999999999", "type": "template", "template": template}
    validate_cloud_request(body)

    answer = client.post(SEND, json=body, headers=AUTH)

    assert answer.status_code == 200
    validate_cloud_response(200, answer.json())
    assert answer.json()["messages"][0]["message_status"] == "accepted"
    [message] = SandboxRecord(sandbox.record_path).messages()
    assert message.template == template and message.text is None
    assert message.e164 == "+5511999999999"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "x"}])
def test_a_missing_token_is_refused_with_code_190_and_http_401(
        client: Client, headers: dict[str, str]) -> None:
    answer = client.post(SEND, json=text_body(), headers=headers)
    assert answer.status_code == 401
    assert error_of(answer)["code"] == 190


def test_with_an_exact_key_configured_other_tokens_are_refused(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, api_key="right", cloud_auth_status=400) as server:
        client = Client(server.url)
        wrong = client.post(SEND, json=text_body(), headers={"Authorization": "Bearer wrong"})
        right = client.post(SEND, json=text_body(), headers={"Authorization": "Bearer right"})
        client.close()
    assert wrong.status_code == 400 and error_of(wrong)["code"] == 190
    assert right.status_code == 200


BAD_BODIES = [
    ("unknown field", text_body() | {"messaging_prodcut": "whatsapp"}, 100),
    ("messaging_product missing",
     {k: v for k, v in text_body().items() if k != "messaging_product"}, 131008),
    ("messaging_product wrong", text_body() | {"messaging_product": "sms"}, 131009),
    ("recipient_type wrong", text_body() | {"recipient_type": "everyone"}, 131009),
    ("to missing", {k: v for k, v in text_body().items() if k != "to"}, 131008),
    ("to not a number", text_body(to="maria"), 131009),
    ("text missing", {k: v for k, v in text_body().items() if k != "text"}, 131008),
    ("text body empty", text_body(body=""), 131009),
    ("text body too long", text_body(body="x" * 4097), 131009),
    ("text has unknown field", text_body() | {"text": {"body": "a", "previewurl": True}}, 100),
    ("template without language",
     text_body() | {"type": "template", "template": {"name": "t"}}, 131008),
    ("template with a bad component",
     text_body() | {"type": "template", "template": {
         "name": "t", "language": {"code": "en"}, "components": [{"type": "sidebar"}]}},
     131009),
    ("button without index",
     text_body() | {"type": "template", "template": {
         "name": "t", "language": {"code": "en"},
         "components": [{"type": "button", "sub_type": "url"}]}}, 131008),
    ("unsupported type", text_body() | {"type": "sticker"}, 131009),
    ("not an object", ["whatsapp"], 100),
]


@pytest.mark.parametrize(("case", "body", "code"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_a_bad_request_body_gets_the_graph_error_code_and_is_not_recorded(
        client: Client, sandbox: SandboxServer, case: str, body: Any, code: int) -> None:
    answer = client.post(SEND, json=body, headers=AUTH)
    assert answer.status_code == 400, case
    assert error_of(answer)["code"] == code
    assert SandboxRecord(sandbox.record_path).count() == 0


def test_a_body_that_is_not_json_gets_code_100(client: Client) -> None:
    answer = client.post(SEND, data=b"{not json", headers=AUTH)
    assert answer.status_code == 400 and error_of(answer)["code"] == 100


def test_a_dropped_phone_number_answers_190_until_restored(client: Client) -> None:
    client.control.drop("106540352242922")

    refused = client.post(SEND, json=text_body(), headers=AUTH)
    lookup = client.get("/v25.0/106540352242922", params={"fields": "id"}, headers=AUTH)
    other = client.post("/v25.0/999/messages", json=text_body(), headers=AUTH)

    assert refused.status_code == 401 and error_of(refused)["code"] == 190
    assert lookup.status_code == 401 and error_of(lookup)["code"] == 190
    assert other.status_code == 200
    client.control.restore("106540352242922")
    assert client.post(SEND, json=text_body(), headers=AUTH).status_code == 200


def test_the_phone_number_lookup_returns_its_id_and_the_requested_fields(client: Client) -> None:
    answer = client.get("/v25.0/106540352242922", params={"fields": "throughput,id"},
                        headers=AUTH)
    assert answer.status_code == 200
    assert answer.json() == {"id": "106540352242922", "throughput": {"level": "STANDARD"}}
    assert client.get("/v25.0/106540352242922").status_code == 401


def test_throttling_answers_130429_for_the_next_k_sends_then_recovers(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.throttle(count=2)

    answers = [client.post(SEND, json=text_body(), headers=AUTH) for _ in range(3)]

    assert [a.status_code for a in answers] == [400, 400, 200]
    error = error_of(answers[0])
    assert error["code"] == 130429 and error["message"] == "(#130429) Rate limit hit"
    assert error["error_subcode"] == 2494055
    assert "Retry-After" not in answers[0].headers
    assert SandboxRecord(sandbox.record_path).count() == 1


def test_pair_rate_throttling_can_be_chosen_with_a_retry_after_header(client: Client) -> None:
    client.control.throttle(count=1, code=131056, retry_after=6)
    answer = client.post(SEND, json=text_body(), headers=AUTH)
    assert error_of(answer)["code"] == 131056
    assert answer.headers["Retry-After"] == "6"


def test_injected_failures_answer_5xx_with_code_131000(client: Client) -> None:
    client.control.fail(1.0, count=1, http_status=503)
    failed = client.post(SEND, json=text_body(), headers=AUTH)
    assert failed.status_code == 503 and error_of(failed)["code"] == 131000
    assert client.post(SEND, json=text_body(), headers=AUTH).status_code == 200


def test_a_number_not_on_whatsapp_gets_131026_and_is_not_recorded(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.reject(["+55 11 98888-7777"])
    refused = client.post(SEND, json=text_body(to="+5511988887777"), headers=AUTH)
    assert refused.status_code == 400 and error_of(refused)["code"] == 131026
    assert SandboxRecord(sandbox.record_path).count() == 0


def test_an_unknown_phone_number_id_is_refused_when_the_names_are_restricted(
        client: Client) -> None:
    client.control.sessions(["106540352242922"])
    answer = client.post("/v25.0/404404/messages", json=text_body(), headers=AUTH)
    error = error_of(answer)
    assert answer.status_code == 400 and error["code"] == 100 and error["error_subcode"] == 33
    assert client.post(SEND, json=text_body(), headers=AUTH).status_code == 200


# --------------------------------------------------------------------------- throughput, latency


def send_until_refused(client: Client, session: str, *, limit: int = 20_000) -> list[Any]:
    """Send distinct numbers to ``session`` from four keep-alive threads until the sandbox
    refuses one; returns every answer. (How fast the machine sends does not matter: the test
    needs one refusal, and checks the window rule on the record's arrival times.)"""
    answers: list[Any] = []
    lock = threading.Lock()
    refused = threading.Event()
    numbers = itertools.count()

    def sender() -> None:
        http = requests.Session()
        try:
            while not refused.is_set():
                with lock:
                    n = next(numbers)
                if n >= limit:
                    return
                answer = http.post(client.url + f"/v25.0/{session}/messages",
                                   json=text_body(to=f"+5511{n:09d}"), headers=AUTH, timeout=10)
                with lock:
                    answers.append(answer)
                if answer.status_code != 200:
                    refused.set()
        finally:
            http.close()

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def held_in_second_before(times: list[float], moment: float) -> int:
    return sum(1 for t in times if moment - 1.0 < t <= moment)


def fullest_second_around(times: list[float], moment: float) -> int:
    """The most accepted sends a one-second interval holding ``moment`` holds (threads may
    check arrivals a little out of order, so the full window may end after it)."""
    ends = [moment, *(t for t in times if moment < t < moment + 1.0)]
    return max(held_in_second_before(times, end) for end in ends)


def test_past_80_sends_in_a_second_a_number_gets_metas_130429_and_nothing_refused_is_sent(
        client: Client, sandbox: SandboxServer) -> None:
    answers = send_until_refused(client, "106540352242922")

    refused = [a for a in answers if a.status_code != 200]
    assert refused and {a.status_code for a in refused} == {400}
    error = error_of(refused[0])  # the body is valid against Meta's GraphAPIError schema
    assert error["code"] == 130429 and error["message"] == "(#130429) Rate limit hit"
    assert error["error_data"]["details"] == "Cloud API message throughput has been reached."
    assert error["error_subcode"] == 2494055
    record = SandboxRecord(sandbox.record_path)
    accepted = [m.received_at for m in record.messages()]
    refusals = record.refusals()
    assert len(accepted) >= 80 and len(refusals) == len(refused)
    assert {r.fault for r in refusals} == {"throughput"} and {r.code for r in refusals} == {
        "130429"}
    # the window rule, on arrival times: no second holds more than 80 accepted sends, and each
    # refused send fell in a second that already held 80 (it was the 81st)
    assert max(held_in_second_before(accepted, t) for t in accepted) == 80
    assert all(fullest_second_around(accepted, r.received_at) == 80 for r in refusals)
    assert not {r.e164 for r in refusals} & {m.e164 for m in record.messages()}
    assert client.control.stats()["requests"]["cloud.send.400"] == len(refused)


def test_a_numbers_own_throughput_is_set_through_the_control_api_and_none_lifts_it(
        client: Client, sandbox: SandboxServer) -> None:
    assert client.control.state()["throughput"] == {"default": 80, "sessions": {}}
    client.control.throughput(5, session="small")
    client.control.throughput(None, session="free")

    answers = send_until_refused(client, "small")
    record = SandboxRecord(sandbox.record_path)
    accepted = [m.received_at for m in record.messages(session="small")]
    assert max(held_in_second_before(accepted, t) for t in accepted) == 5
    assert all(fullest_second_around(accepted, r.received_at) == 5
               for r in record.refusals(session="small"))
    assert {error_of(a)["code"] for a in answers if a.status_code != 200} == {130429}
    # an unlimited number takes 300 sends as fast as they come
    assert all(client.post("/v25.0/free/messages", json=text_body(to=f"+5511{n:09d}"),
                           headers=AUTH).status_code == 200 for n in range(300))
    assert client.control.state()["throughput"] == {
        "default": 80, "sessions": {"free": None, "small": 5}}
    client.control.reset()
    assert client.control.state()["throughput"] == {"default": 80, "sessions": {}}


def test_a_sandbox_started_without_a_throughput_limit_never_answers_130429(
        tmp_path: Path) -> None:
    with running_sandbox(tmp_path, cloud_throughput=None) as server:
        client = Client(server.url)
        assert all(client.post(SEND, json=text_body(to=f"+5511{n:09d}"),
                               headers=AUTH).status_code == 200 for n in range(300))
        client.close()


def elapsed(call: Any) -> tuple[float, Any]:
    started = time.monotonic()
    answer = call()
    return time.monotonic() - started, answer


def test_a_latency_delays_every_cloud_answer_set_per_dialect_or_per_number(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.latency(0.25, dialect="cloud")
    client.control.latency(0.5, session="slow-number")

    took, sent = elapsed(lambda: client.post(SEND, json=text_body(), headers=AUTH))
    assert sent.status_code == 200 and took >= 0.25
    [message] = SandboxRecord(sandbox.record_path).messages()
    assert message.answered_at is not None and message.answered_at - message.received_at >= 0.25
    took, refused = elapsed(lambda: client.post(SEND, json={"bad": 1}, headers=AUTH))
    assert refused.status_code == 400 and took >= 0.25, "error answers wait too"
    took, node = elapsed(lambda: client.get("/v25.0/106540352242922", headers=AUTH))
    assert node.status_code == 200 and took >= 0.25
    took, slow = elapsed(
        lambda: client.post("/v25.0/slow-number/messages", json=text_body(), headers=AUTH))
    assert slow.status_code == 200 and took >= 0.5
    assert client.control.state()["latency"] == [
        {"dialect": "cloud", "session": None, "seconds": 0.25},
        {"dialect": None, "session": "slow-number", "seconds": 0.5},
    ]
    assert client.control.reset() and client.control.state()["latency"] == []


def test_a_sandbox_started_with_a_latency_delays_answers_from_the_first(tmp_path: Path) -> None:
    with running_sandbox(tmp_path, latency=0.25) as server:
        client = Client(server.url)
        took, answer = elapsed(lambda: client.post(SEND, json=text_body(), headers=AUTH))
        client.close()
    assert answer.status_code == 200 and took >= 0.25
