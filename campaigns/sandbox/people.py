"""What a person does to a sandbox session, as each gateway reports it in a webhook: a text
written to the session, and (Cloud API only) a marketing preference changed in WhatsApp.

Shapes, as the receiver's parsers (:mod:`campaigns.inbound`) cite them:
- WAHA ``message``: the envelope of ``session.status`` with ``payload {id, timestamp, from,
  fromMe: false, source: "app", to, body, hasMedia: false, ack, vCards, _data}``
  (waha-docs how-to/events).
- Evolution ``messages.upsert``: ``{event, instance, data: {key {remoteJid, fromMe, id},
  pushName, status, message {conversation}, messageType: "conversation", messageTimestamp,
  instanceId, source}, destination, date_time, sender, server_url, apikey}`` (evolution-api
  v2.3.6 prepareMessage and webhook.controller).
- Cloud API ``messages`` and ``user_preferences``: ``{object: "whatsapp_business_account",
  entry [{id, changes [{field, value {messaging_product, metadata {display_phone_number,
  phone_number_id}, contacts, messages | user_preferences}}]}]}`` (Meta's messages and
  user_preferences webhook references). A Cloud session's name is its phone_number_id.

``person`` is the sender's WhatsApp id as the gateway shows it: its digits are used as given,
so a test can send from a Brazilian id without the ninth digit, as WhatsApp does.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from campaigns.sandbox.core import digits_of, own_number

PREFERENCES = ("stop", "resume")
_WAHA_ENVIRONMENT = {"version": "2024.10.1", "engine": "NOWEB", "tier": "CORE", "browser": None}
WABA_ID = "102290129340398"
"""The sandbox's WhatsApp Business Account id (any stable id: receivers do not check it)."""


def waha_message(session: str, person: str, text: str, event_id: str) -> dict[str, Any]:
    """The WAHA ``message`` event of ``person`` writing ``text`` to ``session``."""
    jid = f"{digits_of(person)}@c.us"
    return {
        "id": event_id,
        "timestamp": int(time.time() * 1000),
        "event": "message",
        "session": session,
        "metadata": {},
        "me": {"id": f"{own_number(session)}@c.us", "pushName": "Sandbox"},
        "payload": {
            "id": f"false_{jid}_{os.urandom(16).hex().upper()}",
            "timestamp": int(time.time()),
            "from": jid,
            "fromMe": False,
            "source": "app",
            "to": f"{own_number(session)}@c.us",
            "body": text,
            "hasMedia": False,
            "ack": 1,
            "vCards": [],
            "_data": {},
        },
        "engine": "NOWEB",
        "environment": _WAHA_ENVIRONMENT,
    }


def evolution_upsert(
    session: str, person: str, text: str, destination: str, server_url: str
) -> dict[str, Any]:
    """The Evolution ``messages.upsert`` event of ``person`` writing ``text`` to ``session``."""
    return {
        "event": "messages.upsert",
        "instance": session,
        "data": {
            "key": {
                "remoteJid": f"{digits_of(person)}@s.whatsapp.net",
                "fromMe": False,
                "id": f"3EB0{os.urandom(8).hex().upper()}",
            },
            "pushName": "Sandbox person",
            "status": "DELIVERY_ACK",
            "message": {"conversation": text},
            "messageType": "conversation",
            "messageTimestamp": int(time.time()),
            "instanceId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:{session}")),
            "source": "android",
        },
        "destination": destination,
        "date_time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "sender": f"{own_number(session)}@s.whatsapp.net",
        "server_url": server_url,
        "apikey": None,
    }


def _cloud_envelope(session: str, person: str, field: str, items: dict[str, Any]) -> bytes:
    wa_id = digits_of(person)
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": own_number(session), "phone_number_id": session},
        "contacts": [{"profile": {"name": "Sandbox person"}, "wa_id": wa_id}],
        **items,
    }
    body = {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": field}]}],
    }
    # Meta's bodies are compact JSON; the signature covers these exact bytes
    return json.dumps(body, separators=(",", ":")).encode()


def cloud_message(session: str, person: str, text: str) -> bytes:
    """The Cloud API ``messages`` webhook of ``person`` writing ``text`` to ``session``."""
    wamid = "wamid." + base64.b64encode(os.urandom(24)).decode()
    message = {
        "from": digits_of(person),
        "id": wamid,
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": text},
    }
    return _cloud_envelope(session, person, "messages", {"messages": [message]})


def cloud_preference(session: str, person: str, value: str) -> bytes:
    """The Cloud API ``user_preferences`` webhook of ``person`` stopping or resuming the
    marketing messages of the business."""
    if value not in PREFERENCES:
        raise ValueError(f"value must be one of {', '.join(PREFERENCES)}")
    preference = {
        "wa_id": digits_of(person),
        "detail": f"User requested to {value} marketing messages",
        "category": "marketing_messages",
        "value": value,
        "timestamp": int(time.time()),
    }
    return _cloud_envelope(session, person, "user_preferences", {"user_preferences": [preference]})
