"""Faults across dialects: scoping, lifetimes, seeded shares, slowness, accept-then-hang."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from campaigns.sandbox import SandboxRecord, SandboxServer
from tests.integration.test_sandbox_helpers import Client, eventually, running_sandbox

CLOUD = {"Authorization": "Bearer t"}


def cloud_text(to: str) -> dict[str, object]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
            "type": "text", "text": {"body": "Hello"}}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    with running_sandbox(tmp_path) as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[Client]:
    client = Client(sandbox.url)
    yield client
    client.close()


def cloud_send(client: Client, session: str = "pn1", to: str = "+5511999999999",
               timeout: float | tuple[float, float] = (2.0, 10.0)) -> requests.Response:
    return client.post(f"/v25.0/{session}/messages", json=cloud_text(to), headers=CLOUD,
                       timeout=timeout)


def failure_pattern(tmp_path: Path, seed: int) -> list[int]:
    with running_sandbox(tmp_path, seed=seed) as server:
        client = Client(server.url)
        client.control.fail(0.5)
        statuses = [cloud_send(client, to=f"+55119{n:08d}").status_code for n in range(40)]
        client.close()
    return statuses


def test_a_failure_share_is_reproducible_with_the_same_seed(tmp_path: Path) -> None:
    first = failure_pattern(tmp_path / "a", seed=42)
    again = failure_pattern(tmp_path / "b", seed=42)
    other = failure_pattern(tmp_path / "c", seed=43)

    assert first == again
    assert first != other
    assert 8 <= first.count(500) <= 32 and set(first) == {200, 500}


def test_a_fault_scoped_to_one_session_leaves_the_others_alone(client: Client) -> None:
    client.control.fail(1.0, session="pn1")
    assert cloud_send(client, "pn1").status_code == 500
    assert cloud_send(client, "pn2").status_code == 200


def test_a_session_scoped_fault_wins_over_a_global_one(client: Client) -> None:
    client.control.throttle(code=80007)
    client.control.throttle(code=131056, session="pn1")
    assert cloud_send(client, "pn1").json()["error"]["code"] == 131056
    assert cloud_send(client, "pn2").json()["error"]["code"] == 80007


def test_a_timed_throttle_ends_by_itself(client: Client) -> None:
    client.control.throttle(seconds=0.3)
    assert cloud_send(client).status_code == 400
    eventually(lambda: cloud_send(client).status_code == 200, what="the throttle to end")


def test_a_drop_for_n_seconds_restores_itself(client: Client) -> None:
    client.control.drop("pn1", seconds=0.3)
    assert "pn1" in client.control.state()["dropped"]
    eventually(lambda: "pn1" not in client.control.state()["dropped"], what="auto-restore")
    assert cloud_send(client).status_code == 200


def test_a_slow_gateway_makes_clients_time_out_yet_still_accepts_the_message(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.slow(1.0, count=1)
    with pytest.raises(requests.ReadTimeout):
        cloud_send(client, timeout=(2.0, 0.3))
    record = SandboxRecord(sandbox.record_path)
    eventually(lambda: record.count() == 1, what="the slow message to be recorded")
    started = time.monotonic()
    assert cloud_send(client, to="+5511988887777").status_code == 200
    assert time.monotonic() - started < 0.9  # the count-limited slowness is used up


def test_slowness_also_delays_health_checks(client: Client) -> None:
    client.control.slow(1.0, session="inst")
    with pytest.raises(requests.ReadTimeout):
        client.get("/instance/connectionState/inst", headers={"apikey": "k"},
                   timeout=(2.0, 0.3))


def test_accept_then_hang_records_the_message_before_holding_the_answer(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.hang(2.0, count=1, session="pn1")

    with pytest.raises(requests.ReadTimeout):
        cloud_send(client, timeout=(2.0, 0.5))

    # Recorded as accepted while the answer is still held: exactly the window in which a worker
    # that dies loses the gateway's acknowledgement.
    record = SandboxRecord(sandbox.record_path)
    [held] = record.messages()
    assert held.answered_at is None
    eventually(lambda: record.messages()[0].answered_at, what="the held answer to be sent")
    assert record.messages()[0].answered_at >= held.received_at + 1.9  # type: ignore[operator]
    assert cloud_send(client, to="+5511988887777").status_code == 200  # count used up


def test_accept_then_hang_holds_waha_and_evolution_answers_too(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.hang(0.3, count=2)
    started = time.monotonic()
    waha = client.post("/api/sendText", json={"chatId": "5511999999999", "text": "x"},
                       headers={"X-Api-Key": "k"})
    evolution = client.post("/message/sendText/inst", json={"number": "5511", "text": "x"},
                            headers={"apikey": "k"})
    assert waha.status_code == evolution.status_code == 201
    assert time.monotonic() - started >= 0.55
    # a held row is stamped right after its answer is written: a moment after the client has it
    record = SandboxRecord(sandbox.record_path)
    eventually(lambda: all(m.answered_at for m in record.messages()), what="both stamps")


def test_a_refusal_answers_each_dialect_with_the_gateways_own_error_and_records_nothing(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.refuse(132001, session="pn1")
    client.control.refuse(463, session="wa")
    client.control.refuse(463, session="inst")

    cloud = cloud_send(client, "pn1")
    waha = client.post("/api/sendText", json={"session": "wa", "chatId": "5511999999999",
                                              "text": "x"}, headers={"X-Api-Key": "k"})
    evolution = client.post("/message/sendText/inst", json={"number": "5511999999999",
                                                            "text": "x"},
                            headers={"apikey": "k"})

    assert cloud.status_code == 400 and cloud.json()["error"]["code"] == 132001
    assert cloud.json()["error"]["message"] == "(#132001) Template does not exist"
    assert waha.status_code == 500
    assert waha.json()["exception"]["message"] == "2 UNKNOWN: server returned error 463"
    assert evolution.status_code == 400
    assert evolution.json()["response"]["message"] == ["Error: server returned error 463"]
    assert SandboxRecord(sandbox.record_path).count() == 0
    assert cloud_send(client, "pn2").status_code == 200  # scoped to its session


def test_a_refusal_naming_numbers_refuses_only_those(client: Client) -> None:
    client.control.refuse(130497, numbers=["+5511999999999"])
    assert cloud_send(client).json()["error"]["code"] == 130497
    assert cloud_send(client, to="+5511988887777").status_code == 200


def test_refusals_naming_different_numbers_stack__one_per_person(client: Client) -> None:
    client.control.refuse(131049, numbers=["+5511999999999"], count=1)
    client.control.refuse(130497, numbers=["+5511988887777"])
    assert cloud_send(client).json()["error"]["code"] == 131049
    assert cloud_send(client).status_code == 200  # its one refusal is spent
    assert cloud_send(client, to="+5511988887777").json()["error"]["code"] == 130497
    client.control.refuse(131050, numbers=["+5511988887777"])  # the same people: replaced
    assert cloud_send(client, to="+5511988887777").json()["error"]["code"] == 131050


def test_reset_clears_faults_drops_and_counters_and_optionally_the_record(
        client: Client, sandbox: SandboxServer) -> None:
    assert cloud_send(client).status_code == 200
    client.control.fail(1.0)
    client.control.drop("pn9")
    client.control.sessions(["pn1"])

    assert client.control.reset()["restored"] == ["pn9"]
    state = client.control.state()
    assert state["rules"] == [] and state["dropped"] == {} and state["known_sessions"] is None
    assert client.control.stats()["requests"] == {}
    assert SandboxRecord(sandbox.record_path).count() == 1
    client.control.reset(record=True)
    assert SandboxRecord(sandbox.record_path).count() == 0
    assert cloud_send(client).status_code == 200


def test_messages_and_stats_are_served_as_json(client: Client) -> None:
    for to in ("+5511900000001", "+5511900000002", "+5511900000001"):
        assert cloud_send(client, to=to).status_code == 200
    cloud_send(client, session="pn2")

    messages = client.control.messages(session="pn1")
    assert messages["count"] == 3
    assert [m["e164"] for m in messages["messages"]] == [
        "+5511900000001", "+5511900000002", "+5511900000001"]
    assert client.control.messages(limit=1)["messages"][0]["session"] == "pn2"
    stats = client.control.stats()
    assert stats["messages"] == 4 and stats["by_session"] == {"pn1": 3, "pn2": 1}
    assert stats["duplicates"] == 1 and stats["requests"]["cloud.send.200"] == 4


@pytest.mark.parametrize(("verb", "body"), [
    ("fail", {"share": 1.5}),
    ("fail", {"share": 0.5, "http_status": 404}),
    ("hang", {"count": 1}),
    ("slow", {}),
    ("drop", {}),
    ("drop", {"session": "x", "waha_status": "WORKING"}),
    ("throttle", {"count": 0}),
    ("throttle", {"count": 1.5}),
    ("reject", {"numbers": "5511"}),
    ("refuse", {}),
    ("refuse", {"code": 463, "numbers": "5511"}),
    ("config", {"waha_shape": "xml"}),
    ("webhooks", {"url": "http://x", "dialect": "sms"}),
    ("throughput", {}),
    ("throughput", {"rate": 0}),
    ("throughput", {"rate": 2.5}),
    ("throughput", {"rate": "fast"}),
    ("latency", {}),
    ("latency", {"seconds": -1}),
    ("latency", {"seconds": "nan"}),
    ("latency", {"seconds": 0.25, "dialect": "sms"}),
])
def test_the_control_api_refuses_bad_requests_with_400(
        client: Client, verb: str, body: dict[str, object]) -> None:
    answer = client.post(f"/_sandbox/{verb}", json=body)
    assert answer.status_code == 400 and answer.json()["error"]


def test_an_unknown_control_verb_is_404(client: Client) -> None:
    assert client.post("/_sandbox/explode", json={}).status_code == 404
    assert client.control.health()["ok"] is True


def test_refused_sends_are_recorded_with_their_fault_and_never_as_messages(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.throttle(count=1, session="pn1")
    assert cloud_send(client, to="+5511900000001").status_code == 400
    client.control.refuse(131042, count=1, session="pn1")
    assert cloud_send(client, to="+5511900000002").status_code == 400
    client.control.fail(1.0, count=1, session="pn1")
    assert cloud_send(client, to="+5511900000003").status_code == 500
    client.control.reject(["+5511900000004"])
    assert cloud_send(client, to="+5511900000004").status_code == 400
    client.control.throttle(count=1, session="wa")
    waha = client.post("/api/sendText", json={"session": "wa", "chatId": "5511900000005",
                                              "text": "x"}, headers={"X-Api-Key": "k"})
    client.control.refuse(463, count=1, session="inst")
    evolution = client.post("/message/sendText/inst", json={"number": "5511900000006",
                                                            "text": "x"},
                            headers={"apikey": "k"})
    assert (waha.status_code, evolution.status_code) == (429, 400)
    assert cloud_send(client, to="+5511900000001").status_code == 200  # sent again later

    record = SandboxRecord(sandbox.record_path)
    assert [(r.dialect, r.session, r.e164, r.fault, r.status, r.code)
            for r in record.refusals()] == [
        ("cloud", "pn1", "+5511900000001", "throttle", 400, "130429"),
        ("cloud", "pn1", "+5511900000002", "refuse", 400, "131042"),
        ("cloud", "pn1", "+5511900000003", "fail", 500, "131000"),
        ("cloud", "pn1", "+5511900000004", "reject", 400, "131026"),
        ("waha", "wa", "+5511900000005", "throttle", 429, None),
        ("evolution", "inst", "+5511900000006", "refuse", 400, "463"),
    ]
    assert [m.e164 for m in record.messages()] == ["+5511900000001"]
    assert record.refusals(session="wa")[0].recipient == "5511900000005"
    assert client.control.stats()["refused"] == 6
    client.control.reset(record=True)
    assert record.refusals() == [] and client.control.stats()["refused"] == 0


def test_a_latency_per_dialect_delays_waha_and_evolution_answers_too(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.latency(0.25, dialect="waha")
    client.control.latency(0.25, session="inst")

    started = time.monotonic()
    waha = client.post("/api/sendText", json={"chatId": "5511999999999", "text": "x"},
                       headers={"X-Api-Key": "k"})
    waha_took = time.monotonic() - started
    started = time.monotonic()
    health = client.get("/instance/connectionState/inst", headers={"apikey": "k"})
    evolution_took = time.monotonic() - started

    assert waha.status_code == 201 and waha_took >= 0.25
    assert health.status_code == 200 and evolution_took >= 0.25
    [message] = SandboxRecord(sandbox.record_path).messages()
    assert message.answered_at is not None and message.answered_at - message.received_at >= 0.25


def test_a_latency_and_a_hang_add_up_and_the_held_row_is_stamped_after_both(
        client: Client, sandbox: SandboxServer) -> None:
    client.control.latency(0.25)
    client.control.hang(0.25, count=1)
    started = time.monotonic()
    assert cloud_send(client).status_code == 200
    assert time.monotonic() - started >= 0.5
    record = SandboxRecord(sandbox.record_path)
    stamped = eventually(lambda: record.messages()[0].answered_at, what="the held answer")
    assert stamped - record.messages()[0].received_at >= 0.5
