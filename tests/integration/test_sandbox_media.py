"""The sandbox accepts media sends in its three dialects, refuses malformed ones in each
dialect's error shape, counts them in its limits and faults like texts, and records them with
their file and caption (read back through SandboxRecord)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.gateways.base import Gateway, GatewayConfig, OutcomeKind, OutgoingMessage
from campaigns.gateways.cloud_api import CloudApiGateway
from campaigns.gateways.evolution import EvolutionGateway
from campaigns.gateways.waha import WahaGateway
from campaigns.media import media_spec
from campaigns.sandbox import SandboxRecord, SandboxServer
from tests.contracts import (
    validate_cloud_response,
    validate_evolution_request,
    validate_evolution_response,
)
from tests.integration.test_sandbox_helpers import Client, running_sandbox

PN = "106540352242922"
CLOUD = f"/v25.0/{PN}/messages"
BEARER = {"Authorization": "Bearer t"}
WAHA_KEY = {"X-Api-Key": "k"}
EVO_KEY = {"apikey": "k"}
MEDIA = "/message/sendMedia/{instance}"
IMG = "https://cdn.example.com/promo.jpg"
PDF = "https://cdn.example.com/d/tabela.pdf"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxServer]:
    with running_sandbox(tmp_path) as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[Client]:
    client = Client(sandbox.url)
    yield client
    client.close()


def record(sandbox: SandboxServer) -> SandboxRecord:
    return SandboxRecord(sandbox.record_path)


def cloud(client: Client, kind: str, obj: dict[str, Any], to: str = "+5511999990001") -> Any:
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
            "type": kind, kind: obj}  # fmt: skip
    answer = client.post(CLOUD, json=body, headers=BEARER)
    validate_cloud_response(answer.status_code, answer.json())
    return answer


def waha(client: Client, path: str, body: dict[str, Any], chat: str = "5511999990001") -> Any:
    return client.post(
        path, json={"session": "default", "chatId": f"{chat}@c.us", **body}, headers=WAHA_KEY
    )


def evolution(client: Client, body: dict[str, Any], number: str = "5511999990001") -> Any:
    answer = client.post("/message/sendMedia/inst", json={"number": number, **body},
                         headers=EVO_KEY)  # fmt: skip
    validate_evolution_response(MEDIA, answer.status_code, answer.json())
    return answer


# --------------------------------------------------------------------------- Cloud API


@pytest.mark.parametrize(
    ("kind", "obj", "caption", "media"),
    [
        ("image", {"link": IMG, "caption": "Olá!"}, "Olá!",
         {"kind": "image", "url": IMG, "mime": "image/jpeg", "filename": None}),
        ("document", {"link": PDF, "caption": "Tabela", "filename": "Tabela.pdf"}, "Tabela",
         {"kind": "document", "url": PDF, "mime": "application/pdf", "filename": "Tabela.pdf"}),
        ("audio", {"link": "https://cdn.example.com/v.ogg"}, None,
         {"kind": "audio", "url": "https://cdn.example.com/v.ogg", "mime": "audio/ogg",
          "filename": None}),
        ("video", {"link": "https://cdn.example.com/render?id=3"}, None,
         {"kind": "video", "url": "https://cdn.example.com/render?id=3", "mime": None,
          "filename": None}),
    ],
)  # fmt: skip
def test_cloud_media_is_accepted_and_recorded_with_its_caption(
    client: Client, sandbox: SandboxServer, kind: str, obj: dict[str, Any],
    caption: str | None, media: dict[str, Any],
) -> None:  # fmt: skip
    answer = cloud(client, kind, obj)

    assert answer.status_code == 200
    wamid = answer.json()["messages"][0]["id"]
    [message] = record(sandbox).messages(session=PN)
    assert (message.dialect, message.e164, message.gateway_message_id) == (
        "cloud", "+5511999990001", wamid)  # fmt: skip
    assert message.text == caption
    assert message.media == media
    assert message.template is None


@pytest.mark.parametrize(
    ("kind", "obj", "code", "details"),
    [
        ("image", {"caption": "no link"}, 131008, "image['link'] is required"),
        ("image", {"link": "ftp://cdn.example.com/a.jpg"}, 131009, "must be an http(s) URL"),
        ("image", {"link": "https://cdn.example.com/a.gif"}, 131009, "not a supported image"),
        ("video", {"link": "https://cdn.example.com/a.avi.pdf"}, 131009, "application/pdf"),
        ("audio", {"link": "https://cdn.example.com/a.mp3", "caption": "x"}, 100,
         "audio['caption'] is not a valid parameter"),
        ("image", {"link": IMG, "filename": "a.jpg"}, 100, "image['filename']"),
        ("document", {"id": "1479537139650973"}, 131009, "send a link"),
    ],
)  # fmt: skip
def test_cloud_refuses_malformed_media_in_metas_error_shape(
    client: Client, sandbox: SandboxServer, kind: str, obj: dict[str, Any], code: int,
    details: str,
) -> None:  # fmt: skip
    answer = cloud(client, kind, obj)

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == code and details in error["error_data"]["details"]
    assert record(sandbox).count() == 0


def test_cloud_media_counts_in_the_throughput_and_the_faults(
    client: Client, sandbox: SandboxServer
) -> None:
    client.control.throughput(1, session=PN)
    first = cloud(client, "image", {"link": IMG})
    second = cloud(client, "image", {"link": IMG}, to="+5511999990002")
    assert first.status_code == 200 and second.status_code == 400
    assert second.json()["error"]["code"] == 130429
    client.control.throughput(None, session=PN)
    client.control.reject(["+5511999990003"])
    rejected = cloud(client, "document", {"link": PDF}, to="+5511999990003")
    assert rejected.json()["error"]["code"] == 131026

    assert [m.e164 for m in record(sandbox).messages()] == ["+5511999990001"]
    refusals = [(r.fault, r.code) for r in record(sandbox).refusals()]
    assert refusals == [("throughput", "130429"), ("reject", "131026")]


# --------------------------------------------------------------------------- WAHA


@pytest.mark.parametrize(
    ("path", "body", "caption", "media", "key"),
    [
        ("/api/sendImage",
         {"file": {"mimetype": "image/jpeg", "url": IMG, "filename": "promo.jpg"},
          "caption": "Olá!"}, "Olá!",
         {"kind": "image", "url": IMG, "mime": "image/jpeg", "filename": "promo.jpg"},
         "imageMessage"),
        ("/api/sendFile",
         {"file": {"mimetype": "application/pdf", "url": PDF, "filename": "Tabela.pdf"}}, None,
         {"kind": "document", "url": PDF, "mime": "application/pdf", "filename": "Tabela.pdf"},
         "documentMessage"),
        ("/api/sendVideo",
         {"file": {"mimetype": "video/mp4", "url": "https://c.example/v.mp4"}, "caption": "Veja",
          "asNote": False, "convert": False}, "Veja",
         {"kind": "video", "url": "https://c.example/v.mp4", "mime": "video/mp4",
          "filename": None}, "videoMessage"),
        ("/api/sendVoice",
         {"file": {"mimetype": "audio/ogg; codecs=opus", "url": "https://c.example/v.ogg"},
          "convert": False}, None,
         {"kind": "audio", "url": "https://c.example/v.ogg", "mime": "audio/ogg",
          "filename": None}, "audioMessage"),
    ],
)  # fmt: skip
def test_waha_media_endpoints_answer_201_and_record_the_file_and_caption(
    client: Client, sandbox: SandboxServer, path: str, body: dict[str, Any],
    caption: str | None, media: dict[str, Any], key: str,
) -> None:  # fmt: skip
    answer = waha(client, path, body)

    assert answer.status_code == 201
    payload = answer.json()
    assert list(payload["message"]) == [key]
    assert payload["message"][key]["url"] == media["url"]
    [message] = record(sandbox).messages(dialect="waha")
    assert (message.session, message.recipient, message.gateway_message_id) == (
        "default", "5511999990001@c.us", payload["key"]["id"])  # fmt: skip
    assert (message.text, message.media) == (caption, media)


@pytest.mark.parametrize(
    ("path", "body", "problem"),
    [
        ("/api/sendImage", {"caption": "x"}, "file should not be empty"),
        ("/api/sendImage", {"file": {"mimetype": "image/jpeg"}}, "file.url must be a URL"),
        ("/api/sendImage", {"file": {"mimetype": "image/png", "url": IMG}}, "image/jpeg"),
        ("/api/sendFile", {"file": {"mimetype": "application/pdf", "data": "JVBE"}},
         "file.data is not accepted"),
        ("/api/sendVoice", {"file": {"mimetype": "audio/ogg", "url": IMG}, "caption": "x"},
         "property caption should not exist"),
    ],
)  # fmt: skip
def test_waha_refuses_malformed_media_with_nests_400(
    client: Client, sandbox: SandboxServer, path: str, body: dict[str, Any], problem: str
) -> None:
    answer = waha(client, path, body)

    assert answer.status_code == 400
    payload = answer.json()
    assert payload["statusCode"] == 400 and payload["error"] == "Bad Request"
    assert any(problem in text for text in payload["message"])
    assert record(sandbox).count() == 0


def test_waha_media_counts_in_the_faults_like_texts(client: Client, sandbox: SandboxServer) -> None:
    client.control.refuse(463, numbers=["+5511999990002"])
    image = {"file": {"mimetype": "image/jpeg", "url": IMG}}
    assert waha(client, "/api/sendImage", image).status_code == 201
    refused = waha(client, "/api/sendImage", image, chat="5511999990002")
    assert refused.status_code == 500 and "error 463" in refused.json()["exception"]["message"]
    assert [(r.fault, r.code) for r in record(sandbox).refusals()] == [("refuse", "463")]
    assert record(sandbox).count() == 1


# --------------------------------------------------------------------------- Evolution


def test_evolution_send_media_answers_the_documented_201_and_records_it(
    client: Client, sandbox: SandboxServer
) -> None:
    body = {"number": "5511999990001", "mediatype": "document", "mimetype": "application/pdf",
            "caption": "Tabela", "media": PDF, "fileName": "Tabela.pdf"}  # fmt: skip
    validate_evolution_request(MEDIA, body)
    answer = evolution(client, body)

    assert answer.status_code == 201
    payload = answer.json()
    assert payload["message"] == {
        "documentMessage": {
            "url": PDF,
            "mimetype": "application/pdf",
            "caption": "Tabela",
            "fileName": "Tabela.pdf",
        }
    }
    [message] = record(sandbox).messages(dialect="evolution")
    assert message.gateway_message_id == payload["key"]["id"]
    assert message.text == "Tabela"
    assert message.media == {"kind": "document", "url": PDF, "mime": "application/pdf",
                             "filename": "Tabela.pdf"}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"mediatype": "image", "caption": ""}, 'instance requires property "media"'),
        ({"mediatype": "sticker", "media": IMG}, "is not one of enum values"),
        ({"mediatype": "image", "media": "iVBORw0KGgo="}, "must be a url or base64"),
        ({"mediatype": "image", "media": IMG, "mimetype": "image/gif"}, "image/gif is not"),
        ({"mediatype": "video", "media": "https://c.example/v.avi"}, "video/x-msvideo is not"),
        ({"mediatype": "video", "media": "https://c.example/render?id=3"}, None),
    ],
)
def test_evolution_refuses_malformed_media_in_its_envelope(
    client: Client, sandbox: SandboxServer, body: dict[str, Any], problem: str | None
) -> None:
    answer = evolution(client, body)

    if problem is None:  # an extension the sandbox does not know: nothing to check it by
        assert answer.status_code == 201
        return
    assert answer.status_code == 400
    assert problem in str(answer.json()["response"]["message"])
    assert record(sandbox).count() == 0


def test_evolution_media_counts_in_the_faults_and_the_delay(
    client: Client, sandbox: SandboxServer
) -> None:
    client.control.throttle(count=1)
    image = {"mediatype": "image", "mimetype": "image/jpeg", "media": IMG, "delay": 50}
    assert evolution(client, image).status_code == 429
    assert evolution(client, image).status_code == 201
    assert [r.fault for r in record(sandbox).refusals()] == ["throttle"]
    [presence] = record(sandbox).presence(dialect="evolution")
    assert (presence.action, presence.duration_ms) == ("composing", 50)


# --------------------------------------------------------------------------- adapters end to end


def test_each_adapter_sends_media_the_sandbox_records_with_its_caption(
    sandbox: SandboxServer,
) -> None:
    image = media_spec({"kind": "image", "url": IMG}, ["cloud-api", "waha", "evolution"],
                       caption="Promoção {name}")  # fmt: skip
    assert image is not None
    gateways: list[Gateway] = [
        CloudApiGateway(GatewayConfig("c", sandbox.url, token="t",
                                      options={"phone_number_id": PN})),
        WahaGateway(GatewayConfig("default", sandbox.url, token="k")),
        EvolutionGateway(GatewayConfig("inst", sandbox.url, token="k")),
    ]  # fmt: skip
    for number, gateway in zip(("+5511999990001", "+5511999990002", "+5511999990003"),
                               gateways, strict=True):  # fmt: skip
        outcome = gateway.send(OutgoingMessage(to=number, text="Promoção Ana", media=image))
        gateway.close()
        assert outcome.kind is OutcomeKind.SENT and outcome.message_id

    messages = record(sandbox).messages()
    assert [(m.dialect, m.e164, m.text) for m in messages] == [
        ("cloud", "+5511999990001", "Promoção Ana"),
        ("waha", "+5511999990002", "Promoção Ana"),
        ("evolution", "+5511999990003", "Promoção Ana"),
    ]
    assert [m.media for m in messages] == [
        {"kind": "image", "url": IMG, "mime": "image/jpeg", "filename": None},
        {"kind": "image", "url": IMG, "mime": "image/jpeg", "filename": "promo.jpg"},
        {"kind": "image", "url": IMG, "mime": "image/jpeg", "filename": "promo.jpg"},
    ]
