"""Opt-outs parsed from people's own words: keyword texts in the three dialects' inbound
message webhooks and Meta's user_preferences. The samples follow the documents each parser
cites (Meta's messages and user_preferences references, WAHA's events page, Evolution's
prepareMessage)."""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from campaigns.errors import ConfigurationError
from campaigns.inbound import (
    OptOutEvent,
    cloud_events,
    evolution_events,
    fold,
    is_optout_text,
    keywords_from,
    phone_from_wa_id,
    waha_events,
)
from campaigns.settings import Settings

KEYWORDS = keywords_from(None)
PERSON = "+5511987654321"


# --- samples ---------------------------------------------------------------------------------


def cloud_text(body: str, wa_id: str = "5511987654321", kind: str = "text") -> dict[str, Any]:
    """Meta's own sample of a text message (messages webhook reference), with our text."""
    message: dict[str, Any] = {
        "from": wa_id,
        "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
        "timestamp": "1749416383",
        "type": kind,
    }
    if kind == "text":
        message["text"] = {"body": body}
    elif kind == "button":
        message["button"] = {"payload": "stop-promotions", "text": body}
    else:
        message[kind] = {"id": "1234", "mime_type": "image/jpeg", "caption": body}
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": wa_id}],
                            "messages": [message],
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }


def cloud_preference(
    value: str, wa_id: str = "16505551234", timestamp: int = 1731705721
) -> dict[str, Any]:
    """Meta's sample of the user_preferences webhook (user_preferences webhook reference);
    ``timestamp`` when the person chose (the sample's by default)."""
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            "contacts": [{"wa_id": wa_id}],
                            "user_preferences": [
                                {
                                    "wa_id": wa_id,
                                    "detail": f"User requested to {value} marketing messages",
                                    "category": "marketing_messages",
                                    "value": value,
                                    "timestamp": timestamp,
                                }
                            ],
                        },
                        "field": "user_preferences",
                    }
                ],
            }
        ],
    }


def waha_message(
    body: str, sender: str = "5511987654321@c.us", *, from_me: bool = False, media: bool = False
) -> dict[str, Any]:
    """WAHA's ``message`` event (waha-docs, how-to/events), a person writing to us."""
    return {
        "id": "evt_01jnhq3x0e0f5gwn4kx8e3ja6s",
        "timestamp": 1741249702485,
        "event": "message",
        "session": "default",
        "metadata": {},
        "me": {"id": "15550001111@c.us", "pushName": "~"},
        "payload": {
            "id": f"{str(from_me).lower()}_{sender}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "timestamp": 1667561485,
            "from": sender,
            "fromMe": from_me,
            "source": "app",
            "to": "15550001111@c.us",
            "body": body,
            "hasMedia": media,
            "ack": 1,
            "vCards": [],
            "_data": {},
        },
        "engine": "NOWEB",
        "environment": {"version": "2024.10.1", "engine": "NOWEB", "tier": "CORE"},
    }


def evolution_upsert(
    text: str,
    jid: str = "5511987654321@s.whatsapp.net",
    *,
    from_me: bool = False,
    extended: bool = False,
) -> dict[str, Any]:
    """Evolution's ``messages.upsert`` (v2.3.6 prepareMessage, webhook.controller envelope)."""
    message: dict[str, Any] = (
        {"extendedTextMessage": {"text": text}} if extended else {"conversation": text}
    )
    return {
        "event": "messages.upsert",
        "instance": "evo-sales",
        "data": {
            "key": {"remoteJid": jid, "fromMe": from_me, "id": "3EB0C4B5E0A1F2D3"},
            "pushName": "Maria",
            "status": "DELIVERY_ACK",
            "message": message,
            "messageType": "extendedTextMessage" if extended else "conversation",
            "messageTimestamp": 1733000000,
            "instanceId": "0b6f3c1e-6f0e-4a5b-9f57-1f1c2d3e4f50",
            "source": "android",
        },
        "destination": "http://webhooks:8090/webhooks/evolution",
        "date_time": "2025-12-01T12:00:00.000Z",
        "sender": "5511900000000@s.whatsapp.net",
        "server_url": "http://evolution:8080",
        "apikey": None,
    }


# --- keywords --------------------------------------------------------------------------------


def test_default_keywords__are_stop_sair_parar_cancelar_folded() -> None:
    assert KEYWORDS == {"stop", "sair", "parar", "cancelar"}


@pytest.mark.parametrize(
    ("text", "received"),
    [
        ("STOP", "STOP"),
        ("stop", "stop"),
        ("Sair!", "Sair"),
        (" parar ", "parar"),
        ("*CANCELAR*", "CANCELAR"),
        ("Sair 🙏", "Sair"),
        ("¡¡Parar!!", "Parar"),
        ("\n\tStop.\n", "Stop"),
    ],
)
def test_a_message_that_is_only_a_keyword__matches_and_keeps_the_text_as_received(
    text: str, received: str
) -> None:
    assert is_optout_text(text, KEYWORDS) == received


def test_accents_are_ignored_on_both_sides() -> None:
    keywords = keywords_from("NÃO, descadastrar")
    assert keywords == {"nao", "descadastrar"}
    assert is_optout_text("nao", keywords) == "nao"
    assert is_optout_text("Não!", keywords) == "Não"
    assert is_optout_text("DESCADASTRÁR", keywords) == "DESCADASTRÁR"


def test_a_multi_word_keyword__matches_whatever_the_spacing() -> None:
    keywords = keywords_from("nao quero")
    assert is_optout_text("  Não   QUERO! ", keywords) == "Não QUERO"


@pytest.mark.parametrize(
    "text",
    [
        "não quero sair daqui",  # contains a keyword: a conversation, not a revocation
        "how do I stop the alarm?",
        "STOPPED",
        "sairei amanhã",
        "s a i r",
        "",
        "   ",
        "🙏",
        "stop " * 100,
    ],
)
def test_a_message_that_merely_contains_a_keyword__does_not_match(text: str) -> None:
    assert is_optout_text(text, KEYWORDS) is None


def test_fold__drops_accents_case_and_surrounding_symbols() -> None:
    assert fold("  «Cancelação»!! ") == "cancelacao"


@pytest.mark.parametrize("value", ["", " ", ",", " , ,", "!!!,🙏"])
def test_a_keyword_list_without_a_keyword__is_a_configuration_error_naming_the_variable(
    value: str,
) -> None:
    with pytest.raises(ConfigurationError, match="OPTOUT_KEYWORDS"):
        keywords_from(value)


def test_settings_read_optout_keywords_and_refuse_an_empty_list() -> None:
    assert Settings.from_env({}).optout_keywords == KEYWORDS
    assert Settings.from_env({"OPTOUT_KEYWORDS": "Basta, CHEGA"}).optout_keywords == {
        "basta",
        "chega",
    }
    with pytest.raises(ConfigurationError, match="OPTOUT_KEYWORDS"):
        Settings.from_env({"OPTOUT_KEYWORDS": " , "})


# --- phone numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wa_id", "phone"),
    [
        ("5511987654321", "+5511987654321"),
        ("16505551234", "+16505551234"),
        ("553188887777", "+5531988887777"),  # a Brazilian id without the ninth digit
        ("553133334444", "+553133334444"),  # a Brazilian landline keeps its eight digits
        ("5215512345678", "+525512345678"),  # a Mexican id with the old mobile 1
        ("+5511987654321", "+5511987654321"),
    ],
)
def test_a_wa_id__becomes_e164(wa_id: str, phone: str) -> None:
    assert phone_from_wa_id(wa_id) == phone


@pytest.mark.parametrize("wa_id", ["", "abc", "123", "120363025246125486"])
def test_a_wa_id_that_is_no_number__gives_none(wa_id: str) -> None:
    assert phone_from_wa_id(wa_id) is None


# --- Cloud API -------------------------------------------------------------------------------


def test_cloud_text_stop__is_a_keyword_opt_out_with_the_phone_number_id() -> None:
    assert cloud_events(cloud_text("Sair!"), KEYWORDS) == [
        OptOutEvent(PERSON, "stop", "inbound_keyword", "Sair", "106540352242922")
    ]


def test_cloud_quick_reply_button_labelled_with_a_keyword__is_an_opt_out() -> None:
    events = cloud_events(cloud_text("STOP", kind="button"), KEYWORDS)
    assert [(e.phone, e.detail) for e in events] == [(PERSON, "STOP")]


def test_cloud_other_texts_media_and_statuses__give_nothing() -> None:
    assert cloud_events(cloud_text("Does it come in another color?"), KEYWORDS) == []
    assert cloud_events(cloud_text("STOP", kind="image"), KEYWORDS) == []  # a caption
    statuses = cloud_text("STOP")
    value = statuses["entry"][0]["changes"][0]["value"]
    del value["messages"]
    value["statuses"] = [{"id": "wamid.x", "status": "read", "recipient_id": "5511987654321"}]
    assert cloud_events(statuses, KEYWORDS) == []


def test_cloud_several_messages_and_entries__each_counts() -> None:
    body = cloud_text("STOP")
    second = copy.deepcopy(body["entry"][0])
    second["changes"][0]["value"]["messages"][0].update(
        {"from": "16505551234", "text": {"body": "parar"}}
    )
    body["entry"].append(second)
    phones = [e.phone for e in cloud_events(body, KEYWORDS)]
    assert phones == [PERSON, "+16505551234"]


def test_cloud_user_preferences_stop_and_resume__are_meta_preference_events() -> None:
    stop = cloud_events(cloud_preference("stop"), KEYWORDS)
    resume = cloud_events(cloud_preference("resume"), KEYWORDS)
    assert stop == [
        OptOutEvent(
            "+16505551234",
            "stop",
            "meta_preferences",
            "User requested to stop marketing messages",
            "106540352242922",
            datetime(2024, 11, 15, 21, 22, 1, tzinfo=UTC),  # when the person chose
        )
    ]
    assert [(e.action, e.source, e.detail) for e in resume] == [
        ("resume", "meta_preferences", "User requested to resume marketing messages")
    ]


def test_cloud_user_preferences_of_another_category_or_value__are_ignored() -> None:
    other = cloud_preference("stop")
    item = other["entry"][0]["changes"][0]["value"]["user_preferences"][0]
    item["category"] = "utility_messages"
    assert cloud_events(other, KEYWORDS) == []
    item.update(category="marketing_messages", value="interested")
    assert cloud_events(other, KEYWORDS) == []


def test_cloud_malformed_bodies__give_nothing_and_raise_nothing() -> None:
    for body in ({}, {"entry": "x"}, {"entry": [{"changes": [None, {"field": "messages"}]}]}):
        assert cloud_events(body, KEYWORDS) == []


# --- WAHA ------------------------------------------------------------------------------------


def test_waha_message_stop__is_a_keyword_opt_out_with_the_session() -> None:
    assert waha_events(waha_message(" PARAR "), KEYWORDS) == [
        OptOutEvent(PERSON, "stop", "inbound_keyword", "PARAR", "default")
    ]


def test_waha_s_whatsapp_net_jids_and_message_any__are_understood() -> None:
    body = waha_message("stop", "5511987654321@s.whatsapp.net")
    body["event"] = "message.any"
    assert [e.phone for e in waha_events(body, KEYWORDS)] == [PERSON]


@pytest.mark.parametrize(
    "body",
    [
        waha_message("STOP", from_me=True),  # our own echo
        waha_message("STOP", "120363025246125486@g.us"),  # a group
        waha_message("STOP", "status@broadcast"),
        waha_message("STOP", media=True),  # a caption under a picture
        waha_message("Oi, tudo bem?"),
        {**waha_message("STOP"), "event": "message.ack"},
        {**waha_message("STOP"), "event": "session.status"},
    ],
)
def test_waha_echoes_groups_broadcasts_media_and_other_events__give_nothing(
    body: dict[str, Any],
) -> None:
    assert waha_events(body, KEYWORDS) == []


def test_waha_hidden_lid_sender__is_ignored_with_a_warning_only_when_it_said_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="campaigns.inbound"):
        assert waha_events(waha_message("STOP", "123456789012345@lid"), KEYWORDS) == []
        assert waha_events(waha_message("hello", "123456789012345@lid"), KEYWORDS) == []
    levels = [r.levelname for r in caplog.records]
    assert levels == ["WARNING", "DEBUG"]


# --- Evolution -------------------------------------------------------------------------------


def test_evolution_messages_upsert_stop__is_a_keyword_opt_out_with_the_instance() -> None:
    assert evolution_events(evolution_upsert("Cancelar."), KEYWORDS) == [
        OptOutEvent(PERSON, "stop", "inbound_keyword", "Cancelar", "evo-sales")
    ]


def test_evolution_extended_text_upper_case_event_and_a_list_of_data__are_understood() -> None:
    body = evolution_upsert("sair", extended=True)
    body["event"] = "MESSAGES_UPSERT"
    body["data"] = [body["data"], evolution_upsert("stop", "16505551234@s.whatsapp.net")["data"]]
    assert [e.phone for e in evolution_events(body, KEYWORDS)] == [PERSON, "+16505551234"]


def test_evolution_lid_with_its_phone_jid_beside_it__uses_the_phone() -> None:
    body = evolution_upsert("STOP", "123456789012345@lid")
    body["data"]["key"].update(addressingMode="lid", remoteJidAlt="553188887777@s.whatsapp.net")
    assert [e.phone for e in evolution_events(body, KEYWORDS)] == ["+5531988887777"]


@pytest.mark.parametrize(
    "body",
    [
        evolution_upsert("STOP", from_me=True),
        evolution_upsert("STOP", "120363025246125486@g.us"),
        evolution_upsert("STOP", "status@broadcast"),
        evolution_upsert("STOP", "123456789012345@lid"),  # no phone jid beside it
        evolution_upsert("quero parar de fumar"),
        {**evolution_upsert("STOP"), "event": "messages.update"},
        {**evolution_upsert("STOP"), "instance": None},
    ],
)
def test_evolution_echoes_groups_hidden_ids_and_other_events__give_nothing(
    body: dict[str, Any],
) -> None:
    assert evolution_events(body, KEYWORDS) == []


def test_evolution_image_with_a_keyword_caption__gives_nothing() -> None:
    body = evolution_upsert("STOP")
    body["data"]["messageType"] = "imageMessage"
    body["data"]["message"] = {"imageMessage": {"caption": "STOP", "mimetype": "image/jpeg"}}
    assert evolution_events(body, KEYWORDS) == []
