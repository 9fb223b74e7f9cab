"""The bodies of the delivery receipts the sandbox sends, one builder per dialect.

Sources (gateways.md and the gateways' own code):
- Cloud API ``statuses`` (gateways.md §1.7; Meta's webhooks reference, messages/status; schema
  ``WebhookPayload`` → ``StatusMessageValue`` → ``Statuses`` of Meta's OpenAPI document
  ``meta-whatsapp-business-messaging-v23.0.yaml``): ``{object: "whatsapp_business_account",
  entry [{id, changes [{field: "messages", value {messaging_product, metadata
  {display_phone_number, phone_number_id}, statuses [{id, status, timestamp, recipient_id,
  pricing?, errors?}]}}]}]}``; ``timestamp`` is a string of seconds, ``pricing`` only on
  ``sent`` and ``delivered``, ``errors`` only on ``failed``. Compact JSON, as Meta sends it.
- WAHA ``message.ack`` (gateways.md §2.5; devlikeapro/waha ``src/structures/enums.dto.ts``
  ``WAMessageAck`` and the NOWEB engine's ``convertMessageUpdateToMessageAck``): the envelope of
  every WAHA event with ``payload {id, from, to, participant, fromMe, ack, ackName, _data}``.
  ``id`` is the serialized ``true_<chat>@c.us_<id>`` (``buildMessageId``), ``from`` the chat
  (NOWEB's ``getFromToParticipant``: ``key.remoteJid``), ``to`` and ``participant`` null in a
  1:1 chat. ERROR=-1, PENDING=0, SERVER=1, DEVICE=2, READ=3, PLAYED=4.
- Evolution ``messages.update`` (EvolutionAPI/evolution-api v2.3.6,
  ``src/api/integrations/channel/whatsapp/whatsapp.baileys.service.ts`` handler
  ``'messages.update'`` and ``src/utils/renderStatus.ts``; envelope from
  ``src/api/integrations/event/webhook/webhook.controller.ts``): ``{event: "messages.update",
  instance, data {keyId, remoteJid, fromMe, status, instanceId, messageId}, destination,
  date_time, sender, server_url, apikey}``. ``status`` by name: ERROR, PENDING, SERVER_ACK,
  DELIVERY_ACK, READ, PLAYED (Baileys' numbers 0..5, one above WAHA's). ``messageId`` is
  Evolution's database row id (present when it saves messages, the default); ``keyId`` is the
  id the send answered at ``key.id``. Evolution's OpenAPI document
  (``evolution-api-v2.json``) lists the event name MESSAGES_UPDATE but defines no webhook body.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from campaigns.sandbox.core import own_number
from campaigns.sandbox.people import WABA_ID

WAHA_ACKS = {"ERROR": -1, "PENDING": 0, "SERVER": 1, "DEVICE": 2, "READ": 3, "PLAYED": 4}
"""WAHA's ``WAMessageAck``."""

# The three steps of a receipt (sent, delivered, read, or failed instead of delivered) in each
# dialect's own words.
STATUS_NAMES = {
    "cloud": {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"},
    "waha": {"sent": "SERVER", "delivered": "DEVICE", "read": "READ", "failed": "ERROR"},
    "evolution": {"sent": "SERVER_ACK", "delivered": "DELIVERY_ACK", "read": "READ",
                  "failed": "ERROR"},
}

CLOUD_FAILURES = {
    131026: ("Message undeliverable",
             "Unable to deliver message. Reasons can include: the recipient phone number is not"
             " a WhatsApp phone number; the recipient has not accepted the new Terms of Service"
             " and Privacy Policy; the recipient is using an old WhatsApp version."),
    131049: ("This message was not delivered to maintain healthy ecosystem engagement.",
             "In order to maintain a healthy ecosystem engagement, the message failed to be"
             " delivered."),
}
"""The asynchronous failures the sandbox reports (gateways.md §1.5, §1.8)."""

_ENVIRONMENT = {"version": "2024.10.1", "engine": "NOWEB", "tier": "CORE", "browser": None}


def receipt_id(dialect: str, gateway_message_id: str, digits: str) -> str:
    """The message id as the dialect's receipts carry it: the send's answer id, except for
    WAHA, whose webhooks always use the serialized ``true_<chat>_<id>`` form (a WEBJS answer
    already gave that form, a NOWEB one gave the bare ``key.id``)."""
    if dialect != "waha" or gateway_message_id.startswith(("true_", "false_")):
        return gateway_message_id
    return f"true_{digits}@c.us_{gateway_message_id}"


def cloud_status(session: str, message_id: str, digits: str, status: str, *,
                 template: bool, error_code: int | None = None) -> bytes:
    """Meta's ``statuses`` webhook of one status of ``message_id``."""
    item: dict[str, Any] = {"id": message_id, "status": status,
                            "timestamp": str(int(time.time())), "recipient_id": digits}
    if status in ("sent", "delivered"):
        # A template opens a paid marketing message; a free-form text is only allowed inside
        # the customer service window, which Meta does not bill.
        item["pricing"] = ({"billable": True, "pricing_model": "PMP", "type": "regular",
                            "category": "marketing"} if template else
                           {"billable": False, "pricing_model": "PMP",
                            "type": "free_customer_service", "category": "service"})
    if status == "failed":
        code = error_code or 131026
        title, details = CLOUD_FAILURES.get(code, ("Unknown error", "Unknown error"))
        item["errors"] = [{"code": code, "title": title, "message": title,
                           "error_data": {"details": details},
                           "href": "/documentation/business-messaging/whatsapp/support/"
                                   "error-codes"}]
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": own_number(session),
                          "phone_number_id": session},
             "statuses": [item]}
    body = {"object": "whatsapp_business_account",
            "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}]}
    return json.dumps(body, separators=(",", ":")).encode()


def waha_ack(session: str, message_id: str, digits: str, ack_name: str,
             event_id: str) -> dict[str, Any]:
    """WAHA's ``message.ack`` envelope (to be signed by the caller)."""
    chat = f"{digits}@c.us"
    ack = WAHA_ACKS[ack_name]
    bare = message_id.rsplit("_", 1)[-1]
    return {
        "id": event_id,
        "timestamp": int(time.time() * 1000),
        "event": "message.ack",
        "session": session,
        "metadata": {},
        "me": {"id": f"{own_number(session)}@c.us", "pushName": "Sandbox"},
        "payload": {
            "id": message_id, "from": chat, "to": None, "participant": None, "fromMe": True,
            "ack": ack, "ackName": ack_name,
            # NOWEB's _data is Baileys' update; its status is WAHA's ack plus one
            "_data": {"key": {"remoteJid": f"{digits}@s.whatsapp.net", "fromMe": True,
                              "id": bare},
                      "update": {"status": ack + 1}},
        },
        "engine": "NOWEB",
        "environment": _ENVIRONMENT,
    }


def evolution_update(session: str, message_id: str, digits: str, status: str,
                     destination: str, server_url: str) -> bytes:
    """Evolution's ``messages.update`` event (Evolution signs nothing)."""
    data = {
        "keyId": message_id,
        "remoteJid": f"{digits}@s.whatsapp.net",
        "fromMe": True,
        "status": status,
        "instanceId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:{session}")),
        "messageId": "cm" + uuid.uuid5(uuid.NAMESPACE_URL, message_id).hex[:23],
    }
    envelope = {
        "event": "messages.update",
        "instance": session,
        "data": data,
        "destination": destination,
        "date_time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "sender": f"{own_number(session)}@s.whatsapp.net",
        "server_url": server_url,
        "apikey": None,
    }
    return json.dumps(envelope).encode()
