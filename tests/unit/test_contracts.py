"""The contract helpers accept the documented bodies and reject near misses."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from tests.contracts import (
    validate_cloud_request,
    validate_cloud_response,
    validate_evolution_request,
    validate_evolution_response,
)

TEXT: dict[str, Any] = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": "+16505551234",
    "type": "text",
    "text": {"preview_url": False, "body": "Hello"},
}
TEMPLATE: dict[str, Any] = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": "5511999999999",
    "type": "template",
    "template": {
        "name": "order_update",
        "language": {"policy": "deterministic", "code": "pt_BR"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Maria"}]}],
    },
}


def test_cloud_request__documented_text_message_passes() -> None:
    validate_cloud_request(TEXT)


def test_cloud_request__documented_template_message_passes() -> None:
    validate_cloud_request(TEMPLATE)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({k: v for k, v in TEXT.items() if k != "recipient_type"}, id="no-recipient"),
        pytest.param({**TEXT, "recipient_typ": "individual"}, id="misspelled-top-level"),
        pytest.param({**TEMPLATE, "previewurl": False}, id="template-unknown-top-level"),
        pytest.param({**TEXT, "text": {"bdy": "Hello"}}, id="misspelled-in-text"),
        pytest.param({**TEXT, "type": "txt"}, id="unknown-type"),
        pytest.param({**TEXT, "text": "Hello"}, id="text-not-object"),
        pytest.param(
            {**TEMPLATE, "template": {"name": "x", "language": {"code": "en"}}},
            id="template-without-policy",
        ),
    ],
)
def test_cloud_request__near_miss_fails(body: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_cloud_request(body)


def test_cloud_response__documented_success_and_error_pass() -> None:
    validate_cloud_response(
        200,
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": "+16505551234", "wa_id": "16505551234"}],
            "messages": [{"id": "wamid.X", "message_status": "accepted"}],
        },
    )
    validate_cloud_response(
        400,
        {
            "error": {
                "message": "(#130429) Rate limit hit",
                "type": "OAuthException",
                "code": 130429,
                "error_data": {"messaging_product": "whatsapp", "details": "x"},
                "error_subcode": 2494055,
                "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
            }
        },
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(200, {"messages": [{"id": "x", "message_status": "sent"}]}, id="bad-status"),
        pytest.param(400, {"error": {"message": "x", "type": "OAuthException"}}, id="no-code"),
        pytest.param(400, {"error": {"message": "x", "type": "T", "code": "1"}}, id="str-code"),
    ],
)
def test_cloud_response__malformed_fails(status: int, body: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_cloud_response(status, body)


def test_evolution_request__documented_send_text_passes() -> None:
    validate_evolution_request("/message/sendText/{instance}", {"number": "5511", "text": "Hi"})


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"number": "5511"}, id="no-text"),
        pytest.param({"number": "5511", "textMessage": {"text": "Hi"}}, id="v1-body"),
        pytest.param({"number": "5511", "text": "Hi", "linkpreview": True}, id="misspelled"),
    ],
)
def test_evolution_request__near_miss_fails(body: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_evolution_request("/message/sendText/{instance}", body)


def test_evolution_response__documented_answers_pass() -> None:
    validate_evolution_response(
        "/message/sendText/{instance}",
        201,
        {"key": {"remoteJid": "5511@s.whatsapp.net", "fromMe": True, "id": "BAE5"}},
    )
    validate_evolution_response(
        "/instance/connectionState/{instance}",
        200,
        {"instance": {"instanceName": "x", "state": "open"}},
    )
    validate_evolution_response(
        "/instance/connectionState/{instance}",
        404,
        {"status": 404, "error": "Not Found", "response": {"message": ["no such instance"]}},
    )
    validate_evolution_response(
        "/message/sendText/{instance}",
        500,
        {
            "status": 500,
            "error": "Internal Server Error",
            "response": {"message": "Connection Closed"},
        },
    )


def test_evolution_response__malformed_fails() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate_evolution_response("/message/sendText/{instance}", 201, {"key": {"id": 12}})
    with pytest.raises(jsonschema.ValidationError):
        validate_evolution_response("/message/sendText/{instance}", 400, {"message": "x"})
