"""Receipts of the three dialects, parsed from their documented sample payloads (gateways.md
§1.7, §2.5; Evolution's renderStatus.ts and messages.update handler), names before numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from campaigns import receipts as rc

WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3QjZCMzlEQUE4OTJBMTE4RTUA"


def _cloud(*statuses: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
         "metadata": {"display_phone_number": "15550783881",
                      "phone_number_id": "106540352242922"},
         "statuses": list(statuses)}}]}]}  # fmt: skip


def test_cloud__the_documented_failed_status_carries_its_error() -> None:
    body = _cloud({"id": WAMID, "status": "failed", "timestamp": "1751142888",
                   "recipient_id": "16505551234",
                   "errors": [{"code": 131049, "title": "Message not delivered",
                               "message": "Message not delivered",
                               "error_data": {"details": "healthy ecosystem engagement"},
                               "href": "/documentation/..."}]})  # fmt: skip
    [receipt] = rc.cloud_receipts(body)
    assert receipt.message_id == receipt.key == WAMID
    assert receipt.status == rc.FAILED
    assert receipt.error_code == "131049"
    assert receipt.error_message == "Message not delivered: healthy ecosystem engagement"
    assert receipt.at == datetime.fromtimestamp(1751142888, UTC)
    assert receipt.recipient == "16505551234"


def test_cloud__sent_delivered_read_played_in_one_delivery_and_unknown_statuses_ignored() -> None:
    body = _cloud(*({"id": WAMID, "status": s, "timestamp": "1751142888"}
                    for s in ("sent", "delivered", "read", "played", "deleted")))  # fmt: skip
    found = rc.cloud_receipts(body)
    assert [r.status for r in found] == ["sent", "delivered", "read", "played"]
    assert all(r.error_code is None for r in found)


def test_cloud__inbound_messages_and_other_fields_give_no_receipt() -> None:
    body = {
        "entry": [
            {
                "changes": [
                    {
                        "field": "user_preferences",
                        "value": {"statuses": [{"id": WAMID, "status": "read"}]},
                    },
                    {"field": "messages", "value": {"messages": []}},
                ]
            }
        ]
    }
    assert rc.cloud_receipts(body) == []
    assert rc.cloud_receipts({"entry": "nonsense"}) == []


def _waha(ack: int | None, name: str | None, ident: Any = "true_5511999990000@c.us_3EB0AB12")\
        -> dict[str, Any]:  # fmt: skip
    payload: dict[str, Any] = {
        "id": ident,
        "from": "5511999990000@c.us",
        "to": "5511999990000@c.us",
        "participant": None,
        "fromMe": True,
    }
    if ack is not None:
        payload["ack"] = ack
    if name is not None:
        payload["ackName"] = name
    return {"id": "evt_01", "timestamp": 1751142888000, "event": "message.ack",
            "session": "default", "payload": payload, "engine": "WEBJS"}  # fmt: skip


@pytest.mark.parametrize(
    ("ack", "name", "status"),
    [(-1, "ERROR", "failed"), (1, "SERVER", "sent"), (2, "DEVICE", "delivered"),
     (3, "READ", "read"), (4, "PLAYED", "played")],
)  # fmt: skip
def test_waha__ack_names_and_numbers_agree(ack: int, name: str, status: str) -> None:
    by_name = rc.waha_receipts(_waha(None, name))
    by_number = rc.waha_receipts(_waha(ack, None))
    assert [r.status for r in by_name] == [r.status for r in by_number] == [status]


def test_waha__the_name_wins_over_the_number_and_pending_gives_nothing() -> None:
    assert [r.status for r in rc.waha_receipts(_waha(1, "READ"))] == ["read"]
    assert rc.waha_receipts(_waha(0, "PENDING")) == []
    assert rc.waha_receipts(_waha(0, None)) == []


def test_waha__serialized_id_keyed_by_its_bare_key_and_envelope_time_in_ms() -> None:
    [receipt] = rc.waha_receipts(_waha(2, "DEVICE"))
    assert receipt.message_id == "true_5511999990000@c.us_3EB0AB12"
    assert receipt.key == "3EB0AB12"
    assert receipt.at == datetime.fromtimestamp(1751142888, UTC)
    [error] = rc.waha_receipts(_waha(-1, "ERROR"))
    assert (error.status, error.error_code) == ("failed", rc.ACK_ERROR)


def test_waha__id_object_others_messages_and_other_events_ignored() -> None:
    [receipt] = rc.waha_receipts(_waha(3, "READ", {"_serialized": "true_1@c.us_ABC", "id": "ABC"}))
    assert receipt.key == "ABC"
    theirs = _waha(3, "READ")
    theirs["payload"]["fromMe"] = False
    assert rc.waha_receipts(theirs) == []
    assert rc.waha_receipts({**_waha(3, "READ"), "event": "message"}) == []


def test_message_key__group_participant_suffix_and_ids_of_other_forms() -> None:
    assert rc.message_key("false_120363@g.us_3EB0FF_5511999990000@c.us") == "3EB0FF"
    assert rc.message_key("BAE594145F4C59B4") == "BAE594145F4C59B4"
    assert rc.message_key(WAMID) == WAMID


def _evolution(status: Any, **data: Any) -> dict[str, Any]:
    item = {"messageId": "cm0evolutiondbid", "keyId": "BAE594145F4C59B4",
            "remoteJid": "553198296801@s.whatsapp.net", "fromMe": True,
            "participant": "553198296801@s.whatsapp.net", "status": status,
            "instanceId": "inst-uuid", **data}  # fmt: skip
    return {"event": "messages.update", "instance": "my-inst", "data": item,
            "date_time": "2025-06-28T20:34:48.000Z"}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "number", "status"),
    [("ERROR", 0, "failed"), ("SERVER_ACK", 2, "sent"), ("DELIVERY_ACK", 3, "delivered"),
     ("READ", 4, "read"), ("PLAYED", 5, "played")],
)  # fmt: skip
def test_evolution__names_and_its_own_numbers_agree(name: str, number: int, status: str) -> None:
    by_name = rc.evolution_receipts(_evolution(name))
    by_number = rc.evolution_receipts(_evolution(number))
    assert [r.status for r in by_name] == [r.status for r in by_number] == [status]


def test_evolution__numbers_are_shifted_by_one_from_wahas() -> None:
    # the same number means one step less in Evolution: 2 is DEVICE (delivered) in WAHA and
    # SERVER_ACK (sent) in Evolution; 3 is READ in WAHA and DELIVERY_ACK in Evolution
    assert rc.waha_receipts(_waha(2, None))[0].status == "delivered"
    assert rc.evolution_receipts(_evolution(2))[0].status == "sent"
    assert rc.waha_receipts(_waha(3, None))[0].status == "read"
    assert rc.evolution_receipts(_evolution(3))[0].status == "delivered"


def test_evolution__keyed_by_keyId_never_its_database_messageId() -> None:
    [receipt] = rc.evolution_receipts(_evolution("READ"))
    assert receipt.message_id == "BAE594145F4C59B4"
    assert receipt.at == datetime(2025, 6, 28, 20, 34, 48, tzinfo=UTC)
    assert receipt.recipient == "553198296801@s.whatsapp.net"


def test_evolution__v1_spread_key_upper_case_event_pending_deleted_and_theirs() -> None:
    v1 = {"event": "MESSAGES_UPDATE", "instance": "i", "data": {
        "id": "3EB0C0FFEE", "remoteJid": "5511@s.whatsapp.net", "fromMe": True,
        "status": "DELIVERY_ACK", "datetime": 1751142888000, "owner": "i"}}  # fmt: skip
    [receipt] = rc.evolution_receipts(v1)
    assert (receipt.message_id, receipt.status) == ("3EB0C0FFEE", "delivered")
    assert receipt.at == datetime.fromtimestamp(1751142888, UTC)
    assert rc.evolution_receipts(_evolution("PENDING")) == []
    assert rc.evolution_receipts(_evolution("DELETED")) == []
    assert rc.evolution_receipts(_evolution("READ", fromMe=False)) == []
    assert rc.evolution_receipts({**_evolution("READ"), "event": "messages.upsert"}) == []


def test_ranks__forward_order_and_failed_has_none() -> None:
    ranks = [rc.rank(s) for s in ("sent", "delivered", "read", "played")]
    assert ranks == sorted(ranks) and len(set(ranks)) == 4
    assert rc.rank(None) == rc.rank("failed") == 0
    with pytest.raises(ValueError, match="status"):
        rc.Receipt("x", "seen")


def test_delivery_counts__rates_over_sent_and_zero_without_sends() -> None:
    counts = rc.DeliveryCounts(sent=4, delivered=3, read=1)
    assert (counts.delivered_rate, counts.read_rate) == (0.75, 0.25)
    assert rc.DeliveryCounts(0, 0, 0).delivered_rate == 0.0
    figures = rc.DeliveryFigures(counts, {"s1": counts})
    assert figures.as_dict()["sessions"]["s1"]["delivered"] == 3
