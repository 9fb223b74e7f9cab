"""Delivery receipts in the gateways' three dialects. Pure parsing: webhook bodies in,
:class:`Receipt` values out; the receiver (:mod:`campaigns.webhooks`) checks signatures and the
store (:mod:`campaigns.store.receipts`) matches them to the ledger.

Payload shapes, by dialect:
- Cloud API ``statuses`` (gateways.md §1.7; Meta, "messages webhook reference, status"):
  ``entry[].changes[]`` with ``field: "messages"`` and ``value.statuses[]`` of ``{id: wamid,
  status: sent|delivered|read|played|failed, timestamp: "<unix seconds>", recipient_id,
  errors?: [{code, title, message, error_data: {details}}]}``; ``errors`` only on failed
  (131026 not on WhatsApp, 131049 the per-user marketing cap, ... arrive this way).
- WAHA ``message.ack`` (gateways.md §2.5; devlikeapro/waha src/structures/enums.dto.ts
  ``WAMessageAck``): envelope ``{event, session, timestamp: <ms>, payload: {id, from, to,
  participant, fromMe, ack, ackName}}`` with ERROR=-1, PENDING=0, SERVER=1, DEVICE=2, READ=3,
  PLAYED=4. ``ackName`` is read first, the number only without it.
- Evolution ``messages.update`` (``MESSAGES_UPDATE`` in its OpenAPI's webhook event enum,
  /work/shared/reference/openapi/evolution-api-v2.json; payload from EvolutionAPI/evolution-api
  whatsapp.baileys.service.ts ``messageHandle['messages.update']`` and src/utils/renderStatus.ts):
  ``{event, instance, date_time, data: {keyId, remoteJid, fromMe, participant, status,
  messageId, instanceId}}`` in v2 (``messageId`` is Evolution's own database id, never the
  WhatsApp one: the key is ``keyId``); v1 spreads the key: ``{id, remoteJid, fromMe, status,
  datetime}``. Status names ERROR, PENDING, SERVER_ACK, DELIVERY_ACK, READ, PLAYED are Baileys'
  numbers 0..5: one above WAHA's for the same meaning (WAHA's DEVICE=2 is Evolution's
  SERVER_ACK=2), so both are mapped by name and a bare number goes through its own dialect's
  table.

PENDING (not yet at WhatsApp's server) says nothing the ledger does not know: it gives no
receipt. Events of messages that are not ours (``fromMe`` false) give none either.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SENT, DELIVERED, READ, PLAYED, FAILED = "sent", "delivered", "read", "played", "failed"
STATUSES = (SENT, DELIVERED, READ, PLAYED, FAILED)

RANKS = {SENT: 1, DELIVERED: 2, READ: 3, PLAYED: 4}
"""The forward-only order of a sent message's progress: a receipt moves a recipient only to a
higher rank. A voice note is played after it is read, so PLAYED outranks READ (and counts as
read). ``failed`` has no rank: it is applied only to a recipient still at ``sent`` (the gateway
accepted the message, then gave up); once delivered or read, a failure report contradicts
what the person's phone already confirmed, and is ignored."""

WAHA_ACKS = {-1: FAILED, 0: None, 1: SENT, 2: DELIVERED, 3: READ, 4: PLAYED}
WAHA_ACK_NAMES = {"ERROR": FAILED, "PENDING": None, "SERVER": SENT, "DEVICE": DELIVERED,
                  "READ": READ, "PLAYED": PLAYED}  # fmt: skip
EVOLUTION_STATUSES = {"ERROR": FAILED, "PENDING": None, "SERVER_ACK": SENT,
                      "DELIVERY_ACK": DELIVERED, "READ": READ, "PLAYED": PLAYED}  # fmt: skip
EVOLUTION_CODES = {0: "ERROR", 1: "PENDING", 2: "SERVER_ACK", 3: "DELIVERY_ACK", 4: "READ",
                   5: "PLAYED"}  # fmt: skip
"""Baileys' numbers (renderStatus.ts), should a version send one instead of its name."""

ACK_ERROR = "ack_error"
"""The error code of a WAHA or Evolution ERROR ack (they carry no code of their own)."""

# WAHA's serialized id: "<fromMe>_<chat jid>_<key id>", and "_<participant jid>" in groups.
_SERIALIZED = re.compile(r"^(?:true|false)_[^_]+_([^_]+)(?:_.*)?$")


@dataclass(frozen=True, slots=True)
class Receipt:
    """A gateway's word on one message it accepted from us."""

    message_id: str
    """The id as the gateway wrote it (a Cloud wamid, WAHA's serialized id, a Baileys key)."""
    status: str
    """sent, delivered, read, played or failed."""
    at: datetime | None = None
    """When it happened by the gateway's clock; None when the event has no time."""
    error_code: str | None = None
    error_message: str | None = None
    recipient: str | None = None
    """The gateway's id of the person (for logs only)."""
    key: str = field(init=False)
    """:func:`message_key` of the id: what the ledger is matched on."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"a receipt's status is one of {STATUSES}, not {self.status!r}")
        object.__setattr__(self, "key", message_key(self.message_id))


def message_key(message_id: str) -> str:
    """The bare WhatsApp key id of a message id: WAHA's serialized ``true_5511...@c.us_3EB0...``
    (WEBJS stores that, and every engine's ``message.ack`` uses it) becomes ``3EB0...``, the
    ``key.id`` that NOWEB and Evolution store; any other id (a Cloud wamid, a bare key) is its
    own key. Receipts are looked up under both the id and its key, and pending ones are kept by
    key, so a ledger holding either form meets a receipt in either form."""
    found = _SERIALIZED.match(message_id)
    return found.group(1) if found else message_id


def rank(status: str | None) -> int:
    """The forward-only rank of a delivery status (0 for none; failed has none)."""
    return RANKS.get(status or "", 0)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, Mapping))


def _epoch(value: Any, scale: float = 1.0) -> datetime | None:
    """Unix time (an int, a float or its text) divided by ``scale`` (1000 for ms)."""
    try:
        return None if value is None else datetime.fromtimestamp(float(value) / scale, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cloud_receipts(body: Mapping[str, Any]) -> list[Receipt]:
    """The receipts in a Cloud API webhook (``statuses`` of ``messages`` changes)."""
    found: list[Receipt] = []
    for entry in _items(body.get("entry")):
        for change in _items(entry.get("changes")):
            if change.get("field") != "messages":
                continue
            for item in _items(_mapping(change.get("value")).get("statuses")):
                receipt = _cloud_status(item)
                if receipt is not None:
                    found.append(receipt)
    return found


def _cloud_status(item: Mapping[str, Any]) -> Receipt | None:
    wamid, status = item.get("id"), item.get("status")
    if not isinstance(wamid, str) or not wamid or status not in STATUSES:
        return None  # "deleted", "warning" and the like say nothing of delivery
    code = message = None
    if status == FAILED:
        error = next(_items(item.get("errors")), {})
        code = str(error["code"]) if error.get("code") is not None else None
        parts = [error.get("title") or error.get("message"),
                 _mapping(error.get("error_data")).get("details")]  # fmt: skip
        message = ": ".join(str(p) for p in parts if p) or "failed (status webhook)"
    recipient = item.get("recipient_id")
    return Receipt(wamid, str(status), _epoch(item.get("timestamp")), code, message,
                   recipient if isinstance(recipient, str) else None)  # fmt: skip


def waha_receipts(body: Mapping[str, Any]) -> list[Receipt]:
    """The receipt in a WAHA ``message.ack`` event (at most one)."""
    if body.get("event") != "message.ack":
        return []
    payload = _mapping(body.get("payload"))
    ident = payload.get("id")
    if isinstance(ident, Mapping):  # some engines give the id object, not its serialization
        ident = ident.get("_serialized") or ident.get("id")
    if not isinstance(ident, str) or not ident or payload.get("fromMe") is False:
        return []
    name = payload.get("ackName")
    if isinstance(name, str) and name.upper() in WAHA_ACK_NAMES:
        status = WAHA_ACK_NAMES[name.upper()]
    else:
        ack = payload.get("ack")
        status = WAHA_ACKS.get(ack) if isinstance(ack, int) else None
    if status is None:
        return []
    at = _epoch(payload.get("timestamp")) or _epoch(body.get("timestamp"), 1000.0)
    failed = status == FAILED
    to = payload.get("to")
    return [Receipt(ident, status, at, ACK_ERROR if failed else None,
                    "WAHA reported ack ERROR" if failed else None,
                    to if isinstance(to, str) else None)]  # fmt: skip


def evolution_receipts(body: Mapping[str, Any]) -> list[Receipt]:
    """The receipts in an Evolution ``messages.update`` event (``MESSAGES_UPDATE`` too)."""
    if str(body.get("event", "")).lower().replace("_", ".") != "messages.update":
        return []
    data = body.get("data")
    found = []
    for item in _items(data if isinstance(data, list) else [data]):
        receipt = _evolution_update(item, _iso(body.get("date_time")))
        if receipt is not None:
            found.append(receipt)
    return found


def _evolution_update(item: Mapping[str, Any], sent_at: datetime | None) -> Receipt | None:
    key = _mapping(item.get("key"))
    ident = item.get("keyId") or key.get("id") or item.get("id")
    if not isinstance(ident, str) or not ident or (item.get("fromMe", key.get("fromMe")) is False):
        return None
    raw = item.get("status")
    name = EVOLUTION_CODES.get(raw) if isinstance(raw, int) else raw
    status = EVOLUTION_STATUSES.get(name.upper()) if isinstance(name, str) else None
    if status is None:
        return None  # PENDING, DELETED (a revoked message), or something new
    at = _iso(item.get("dateTime")) or _epoch(item.get("datetime"), 1000.0) or sent_at
    failed = status == FAILED
    jid = item.get("remoteJid") or key.get("remoteJid")
    return Receipt(ident, status, at, ACK_ERROR if failed else None,
                   "Evolution reported status ERROR" if failed else None,
                   jid if isinstance(jid, str) else None)  # fmt: skip


PARSERS = {"cloud": cloud_receipts, "waha": waha_receipts, "evolution": evolution_receipts}
"""Webhook dialect → its receipt parser."""

RECEIPT_EVENTS = {"waha": ("message.ack",), "evolution": ("messages.update",)}
"""The events of the two dialects that carry receipts (Cloud's are inside ``messages``)."""


@dataclass(frozen=True, slots=True)
class DeliveryCounts:
    """Delivered and read figures of recipients still counted sent: ``delivered`` includes the
    read ones (a read message was delivered, even when its ``delivered`` never came)."""

    sent: int
    delivered: int
    read: int

    @property
    def delivered_rate(self) -> float:
        return self.delivered / self.sent if self.sent else 0.0

    @property
    def read_rate(self) -> float:
        return self.read / self.sent if self.sent else 0.0

    def as_dict(self) -> dict[str, int | float]:
        return {"sent": self.sent, "delivered": self.delivered, "read": self.read,
                "delivered_rate": round(self.delivered_rate, 4),
                "read_rate": round(self.read_rate, 4)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeliveryFigures:
    """A campaign's delivery figures, in all and per sending session."""

    total: DeliveryCounts
    sessions: Mapping[str, DeliveryCounts]

    def as_dict(self) -> dict[str, Any]:
        """For JSON output (``status --json``, ``watch --json``)."""
        return {**self.total.as_dict(),
                "sessions": {name: c.as_dict() for name, c in self.sessions.items()}}  # fmt: skip
