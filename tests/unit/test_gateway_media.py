"""Media sends of the three adapters over real HTTP against a loopback stub: each request is
checked against the gateway's OpenAPI document (Cloud API, Evolution) or field by field against
WAHA's docs, and answers are classified exactly like text sends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from campaigns.domain import StopKind
from campaigns.gateways.base import GatewayConfig, OutcomeKind, OutgoingMessage, SendOutcome
from campaigns.gateways.cloud_api import CloudApiGateway
from campaigns.gateways.evolution import EvolutionGateway
from campaigns.gateways.waha import WahaGateway
from campaigns.media import MediaSpec, media_spec
from tests.contracts import (
    validate_cloud_request,
    validate_evolution_request,
    validate_evolution_response,
)
from tests.gateway_stub import GatewayStub

NUMBER = "+5511999991234"
DIGITS = NUMBER[1:]
PHONE_ID = "106540352242922"
CLOUD_ROUTE = f"/v25.0/{PHONE_ID}/messages"
MEDIA_TEMPLATE = "/message/sendMedia/{instance}"
WAMID = "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA"


def spec(kind: str, url: str, **fields: str) -> MediaSpec:
    checked = media_spec({"kind": kind, "url": url, **fields}, ["cloud-api", "evolution"])
    assert checked is not None
    return checked


IMAGE = spec("image", "https://cdn.example.com/promo.jpg")
DOCUMENT = spec("document", "https://cdn.example.com/d/1.pdf", filename="Tabela 2026.pdf")
AUDIO = spec("audio", "https://cdn.example.com/voice.ogg")
MP3 = spec("audio", "https://cdn.example.com/jingle.mp3")
VIDEO = spec("video", "https://cdn.example.com/clip.mp4")


@pytest.fixture
def stub() -> Iterator[GatewayStub]:
    with GatewayStub() as running:
        yield running


def config(stub: GatewayStub, name: str, **options: str) -> GatewayConfig:
    return GatewayConfig(
        name, stub.url, token="k-123", options=options, connect_timeout=1.0, read_timeout=3.0
    )


# --------------------------------------------------------------------------- Cloud API


def cloud_send(stub: GatewayStub, message: OutgoingMessage) -> tuple[SendOutcome, Any]:
    gateway = CloudApiGateway(config(stub, "main", phone_number_id=PHONE_ID))
    try:
        outcome = gateway.send(message)
    finally:
        gateway.close()
    body = stub.requests[-1].json
    validate_cloud_request(body)
    return outcome, body


@pytest.mark.parametrize(
    ("media", "text", "expected"),
    [
        (IMAGE, "Olá!", {"link": IMAGE.url, "caption": "Olá!"}),
        (IMAGE, "", {"link": IMAGE.url}),
        (IMAGE, None, {"link": IMAGE.url}),
        (
            DOCUMENT,
            "Nossa tabela",
            {"link": DOCUMENT.url, "caption": "Nossa tabela", "filename": "Tabela 2026.pdf"},
        ),
        (AUDIO, "never a caption", {"link": AUDIO.url}),
        (VIDEO, "Veja", {"link": VIDEO.url, "caption": "Veja"}),
    ],
)
def test_cloud__media_by_link_validates_against_metas_document(
    stub: GatewayStub, media: MediaSpec, text: str | None, expected: dict[str, Any]
) -> None:
    ok = {"messaging_product": "whatsapp", "contacts": [], "messages": [{"id": WAMID}]}
    stub.answer("POST", CLOUD_ROUTE, 200, ok)
    outcome, body = cloud_send(stub, OutgoingMessage(to=NUMBER, text=text, media=media))

    assert outcome.kind is OutcomeKind.SENT and outcome.message_id == WAMID
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": NUMBER,
        "type": media.kind,
        media.kind: expected,
    }


def test_cloud__media_answers_are_classified_like_texts(stub: GatewayStub) -> None:
    error = {"error": {"message": "(#131026) Undeliverable", "type": "OAuthException",
                       "code": 131026, "fbtrace_id": "A"}}  # fmt: skip
    stub.answer("POST", CLOUD_ROUTE, 400, error)
    outcome, _ = cloud_send(stub, OutgoingMessage(to=NUMBER, media=IMAGE))
    assert (outcome.kind, outcome.error_code) == (OutcomeKind.RECIPIENT_FAILED, "131026")


# --------------------------------------------------------------------------- WAHA

NOWEB = {"key": {"remoteJid": f"{DIGITS}@s.whatsapp.net", "fromMe": True, "id": "3EB0AA"}}


def waha(stub: GatewayStub, **options: str) -> WahaGateway:
    return WahaGateway(config(stub, "default", **options))


@pytest.mark.parametrize(
    ("media", "text", "path", "expected"),
    [
        (
            IMAGE,
            "Olá!",
            "/api/sendImage",
            {"file": {"mimetype": "image/jpeg", "url": IMAGE.url, "filename": "promo.jpg"},
             "caption": "Olá!"},
        ),
        (
            DOCUMENT,
            None,
            "/api/sendFile",
            {"file": {"mimetype": "application/pdf", "url": DOCUMENT.url,
                      "filename": "Tabela 2026.pdf"}},
        ),
        (
            VIDEO,
            "Veja",
            "/api/sendVideo",
            {"file": {"mimetype": "video/mp4", "url": VIDEO.url, "filename": "clip.mp4"},
             "caption": "Veja", "asNote": False, "convert": False},
        ),
        (
            AUDIO,
            "",
            "/api/sendVoice",
            {"file": {"mimetype": "audio/ogg; codecs=opus", "url": AUDIO.url}, "convert": False},
        ),
        (
            MP3,
            None,
            "/api/sendVoice",
            {"file": {"mimetype": "audio/mpeg", "url": MP3.url}, "convert": True},
        ),
    ],
)  # fmt: skip
def test_waha__media_goes_to_the_documented_endpoint_of_its_kind(
    stub: GatewayStub, media: MediaSpec, text: str | None, path: str, expected: dict[str, Any]
) -> None:
    stub.answer("POST", path, 201, NOWEB)
    gateway = waha(stub)
    outcome = gateway.send(OutgoingMessage(to=NUMBER, text=text, media=media))
    gateway.close()

    assert outcome == SendOutcome(OutcomeKind.SENT, message_id="3EB0AA", http_status=201)
    (request,) = stub.requests
    assert request.route == path
    assert request.headers["x-api-key"] == "k-123"
    assert request.json == {"session": "default", "chatId": f"{DIGITS}@c.us", **expected}


def test_waha__typing_still_comes_before_the_media(stub: GatewayStub) -> None:
    for path in ("/api/sendSeen", "/api/startTyping", "/api/stopTyping"):
        stub.answer("POST", path, 201, {"result": True})
    stub.answer("POST", "/api/sendImage", 201, NOWEB)
    gateway = waha(stub)
    outcome = gateway.send(OutgoingMessage(to=NUMBER, text="Oi", media=IMAGE, typing_s=0.05))
    gateway.close()

    assert outcome.kind is OutcomeKind.SENT
    assert [r.route for r in stub.requests] == [
        "/api/sendSeen", "/api/startTyping", "/api/stopTyping", "/api/sendImage"
    ]  # fmt: skip


@pytest.mark.parametrize("status", [422, 500])
def test_waha__core_refusing_media_as_a_plus_feature_stops_the_campaign(
    stub: GatewayStub, status: int
) -> None:
    text = "The feature is available only in Plus version for 'WEBJS' engine."
    body = (
        {"message": text, "error": "Unprocessable Entity", "statusCode": 422}
        if status == 422
        else {"statusCode": 500, "exception": {"message": text, "name": "Error"}}
    )
    stub.answer("POST", "/api/sendImage", status, body)
    gateway = waha(stub)
    outcome = gateway.send(OutgoingMessage(to=NUMBER, media=IMAGE))
    gateway.close()

    assert outcome.kind is OutcomeKind.SESSION_DOWN
    assert outcome.stop is StopKind.BLOCKED
    assert "media needs WAHA Plus" in (outcome.error_message or "")


def test_waha__media_answers_are_classified_like_texts(stub: GatewayStub) -> None:
    not_working = {"error": "Session status is not as expected", "session": "default",
                   "status": "SCAN_QR_CODE", "expected": ["WORKING"]}  # fmt: skip
    stub.answer("POST", "/api/sendFile", 422, not_working)
    gateway = waha(stub)
    outcome = gateway.send(OutgoingMessage(to=NUMBER, media=DOCUMENT))
    gateway.close()
    assert (outcome.kind, outcome.stop) == (OutcomeKind.SESSION_DOWN, StopKind.DISCONNECTED)


# --------------------------------------------------------------------------- Evolution

EVOLUTION_201 = {
    "key": {"remoteJid": f"{DIGITS}@s.whatsapp.net", "fromMe": True, "id": "BAE5F5A632EAE722"},
    "message": {"imageMessage": {"url": "https://mmg.whatsapp.net/x", "mimetype": "image/jpeg",
                                 "caption": "Olá!"}},
    "messageTimestamp": "1717781848",
    "status": "PENDING",
}  # fmt: skip


def evolution_send(
    stub: GatewayStub, message: OutgoingMessage, **options: str
) -> tuple[SendOutcome, Any]:
    stub.answer("POST", "/message/sendMedia/sales", 201, EVOLUTION_201)
    validate_evolution_response(MEDIA_TEMPLATE, 201, EVOLUTION_201)
    gateway = EvolutionGateway(config(stub, "sales", **options))
    try:
        outcome = gateway.send(message)
    finally:
        gateway.close()
    body = stub.requests[-1].json
    validate_evolution_request(MEDIA_TEMPLATE, body)
    return outcome, body


@pytest.mark.parametrize(
    ("media", "text", "caption", "filename"),
    [
        (IMAGE, "Olá!", "Olá!", "promo.jpg"),
        (DOCUMENT, None, "", "Tabela 2026.pdf"),
        (VIDEO, "Veja", "Veja", "clip.mp4"),
        (MP3, "dropped: audio has no caption", "", "jingle.mp3"),
    ],
)
def test_evolution__send_media_validates_against_the_openapi_document(
    stub: GatewayStub, media: MediaSpec, text: str | None, caption: str, filename: str
) -> None:
    outcome, body = evolution_send(stub, OutgoingMessage(to=NUMBER, text=text, media=media))

    assert outcome == SendOutcome(OutcomeKind.SENT, message_id="BAE5F5A632EAE722", http_status=201)
    assert stub.requests[-1].headers["apikey"] == "k-123"
    assert body == {
        "number": DIGITS,
        "mediatype": media.kind,
        "mimetype": media.mime,
        "caption": caption,
        "media": media.url,
        "fileName": filename,
    }


def test_evolution__typing_delay_rides_on_the_media_request(stub: GatewayStub) -> None:
    message = OutgoingMessage(to=NUMBER, text="Oi", media=IMAGE, typing_s=1.5)
    _, body = evolution_send(stub, message, typing="true")
    assert body["delay"] == 1500


def test_evolution__media_answers_are_classified_like_texts(stub: GatewayStub) -> None:
    closed = {"status": 500, "error": "Internal Server Error",
              "response": {"message": "Connection Closed"}}  # fmt: skip
    stub.answer("POST", "/message/sendMedia/sales", 500, closed)
    gateway = EvolutionGateway(config(stub, "sales"))
    outcome = gateway.send(OutgoingMessage(to=NUMBER, media=VIDEO))
    gateway.close()
    assert (outcome.kind, outcome.stop) == (OutcomeKind.SESSION_DOWN, StopKind.DISCONNECTED)
