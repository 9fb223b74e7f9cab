"""Opt-outs in people's own words: inbound messages that are an opt-out keyword, and Meta's
``user_preferences`` webhook. Pure parsing: webhook bodies in, :class:`OptOutEvent` values out;
the receiver (:mod:`campaigns.webhooks`) checks signatures and writes the store.

Payload shapes, by dialect:
- Cloud API ``messages`` (Meta, "messages webhook reference" and "Text messages webhook
  reference"): ``entry[].changes[]`` with ``field: "messages"``, ``value.metadata.phone_number_id``
  and ``value.messages[]`` of ``{from, id, timestamp, type: "text", text: {body}}``; ``from``
  is the user's wa_id (digits with the country code).
- Cloud API ``user_preferences`` (Meta, "user_preferences webhook reference",
  developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/
  user_preferences): ``field: "user_preferences"``, ``value.user_preferences[]`` of ``{wa_id,
  detail, category: "marketing_messages", value: "stop" | "resume", timestamp}`` (timestamp an
  integer of Unix seconds; detail "User requested to stop marketing messages" or "... resume
  ...").
- WAHA ``message`` (devlikeapro/waha-docs content/docs/how-to/events/index.md): envelope
  ``{event, session, payload: {id, timestamp, from, fromMe, to, body, hasMedia, ...}}``;
  ``from`` is ``<digits>@c.us`` (``@s.whatsapp.net`` on some engines), a group ``@g.us``,
  ``status@broadcast`` or a hidden user id ``@lid``.
- Evolution ``messages.upsert`` (EvolutionAPI/evolution-api v2.3.6,
  whatsapp.baileys.service.ts ``prepareMessage``): ``{event, instance, data: {key: {remoteJid,
  fromMe, id, remoteJidAlt?, addressingMode?}, message: {conversation} |
  {extendedTextMessage: {text}}, messageType, ...}}``. With ``addressingMode: "lid"`` the
  phone jid is in ``remoteJidAlt``.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from campaigns.consent import META_SOURCES, SOURCE_KEYWORD, SOURCE_META
from campaigns.errors import ConfigurationError
from campaigns.masking import mask_phone
from campaigns.numbers import normalize

log = logging.getLogger("campaigns.inbound")

DEFAULT_OPTOUT_KEYWORDS = "STOP,SAIR,PARAR,CANCELAR"
KEYWORDS_VARIABLE = "OPTOUT_KEYWORDS"
META_RESUME_SOURCES: tuple[str, ...] = META_SOURCES
"""What Meta's "resume" undoes: both come from the same Meta-side marketing preference (the
131050 answer is Meta refusing because that preference says stop). An operator's entry or a
person's own keyword is never undone by it."""
STOP, RESUME = "stop", "resume"

_PERSON_SUFFIXES = ("@c.us", "@s.whatsapp.net")
_SPACES = re.compile(r"\s+")
_MAX_TEXT = 200
"""A keyword is a word or two; a longer message is never one, so it is not folded at all."""


@dataclass(frozen=True, slots=True)
class OptOutEvent:
    """A person's word on receiving our messages, from one webhook delivery."""

    phone: str
    """E.164."""
    action: str
    """``stop`` or ``resume``."""
    source: str
    """``inbound_keyword`` or ``meta_preferences``."""
    detail: str
    """The keyword as received (``Sair``), or Meta's ``detail`` text."""
    gateway_session: str
    """The gateway's name for the session that received it: WAHA ``session``, Evolution
    ``instance``, Cloud API ``metadata.phone_number_id``."""
    at: datetime | None = None
    """When the person said it, by the gateway's clock (Meta's ``timestamp``): a "resume"
    lifts only opt-outs recorded before it, so a late delivery of an old "resume" (Meta
    retries for days) never undoes a newer "stop"."""


def fold(text: str) -> str:
    """``text`` for comparison: accents removed (NFKD, combining marks dropped), case-folded,
    surrounding punctuation, symbols and emoji dropped, inner runs of spaces made one."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return _SPACES.sub(" ", _core(bare))


def _core(text: str) -> str:
    """``text`` without what surrounds its first and last letter or digit ("*Sair!* 🙏")."""
    start, end = 0, len(text)
    while start < end and not _is_word_char(text[start]):
        start += 1
    while end > start and not _is_word_char(text[end - 1]):
        end -= 1
    return text[start:end]


def _is_word_char(char: str) -> bool:
    return unicodedata.category(char)[0] in "LN"


def keywords_from(value: str | None, name: str = KEYWORDS_VARIABLE) -> frozenset[str]:
    """The opt-out keywords of a comma-separated setting, folded; None (unset) gives the
    defaults. A value with no keyword in it raises :class:`ConfigurationError` naming ``name``:
    an empty list would silently stop honouring every STOP."""
    raw = DEFAULT_OPTOUT_KEYWORDS if value is None else value
    keywords = frozenset(filter(None, (fold(part) for part in raw.split(","))))
    if not keywords:
        raise ConfigurationError(
            f"{name} must list at least one opt-out keyword (comma-separated, e.g. "
            f"{DEFAULT_OPTOUT_KEYWORDS}), got {value!r}"
        )
    return keywords


def is_optout_text(text: str, keywords: frozenset[str]) -> str | None:
    """The keyword as received (trimmed of what surrounds it: ``" Sair! "`` → ``"Sair"``) when
    the whole message is an opt-out keyword, else None.

    The whole message must be the keyword, never merely contain it: "não quero sair daqui" or
    "how do I stop the alarm?" are conversations, not revocations, and reading them as one
    would silently drop people who still want the messages. A person who opts out by keyword
    answers with the keyword alone (the convention of SMS STOP keywords), and one who writes a
    sentence reaches the operator, who can add the opt-out by hand."""
    if len(text) > _MAX_TEXT:
        return None
    if fold(text) not in keywords:
        return None
    return _SPACES.sub(" ", _core(text))


def phone_from_wa_id(wa_id: str, region: str = "BR") -> str | None:
    """E.164 of a WhatsApp user id (digits with the country code), None when it is no number.

    Brazilian mobiles registered before the ninth digit keep an id without it
    (``553188887777`` for +55 31 98888-7777; Evolution's ``createJid`` drops the 9 for the same
    reason), and Mexican ids may keep the old mobile ``1`` after 52: both are restored before
    giving up, or the STOP of such a person would be lost."""
    digits = wa_id.strip().lstrip("+")
    if not digits.isdigit():
        return None
    found = normalize(f"+{digits}", region)
    if found is not None:
        return found
    if digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":
        return normalize(f"+{digits[:4]}9{digits[4:]}", region)
    if digits.startswith("521") and len(digits) == 13:
        return normalize(f"+52{digits[3:]}", region)
    return None


def _phone_of_jid(jid: str, text: str, keywords: frozenset[str], where: str) -> str | None:
    """E.164 of a person's jid; None (with a log) for groups, broadcasts, channels and hidden
    ``@lid`` ids, which name no dialable number."""
    if jid.endswith(_PERSON_SUFFIXES):
        return phone_from_wa_id(jid.split("@", 1)[0].split(":", 1)[0])
    if jid.endswith("@lid") and is_optout_text(text, keywords):
        # a real opt-out we cannot record: the operator must map the id (WAHA has a lids API)
        log.warning("%s: opt-out keyword from hidden id %s (no number to record)", where, jid)
    else:
        log.debug("%s: message from %s ignored (not a person's number)", where, jid)
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _items(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, Mapping))


def _keyword_event(
    phone: str | None, text: str, keywords: frozenset[str], session: str
) -> OptOutEvent | None:
    matched = is_optout_text(text, keywords)
    if phone is None or matched is None:
        return None
    return OptOutEvent(phone, STOP, SOURCE_KEYWORD, matched, session)


def cloud_events(body: Mapping[str, Any], keywords: frozenset[str]) -> list[OptOutEvent]:
    """Opt-outs in a Cloud API webhook: keyword texts in ``messages`` and marketing
    stop/resume in ``user_preferences``. Statuses and every other field give none."""
    events: list[OptOutEvent] = []
    for entry in _items(body.get("entry")):
        for change in _items(entry.get("changes")):
            value = _mapping(change.get("value"))
            session = str(_mapping(value.get("metadata")).get("phone_number_id") or "")
            if change.get("field") == "messages":
                events += _cloud_messages(value, keywords, session)
            elif change.get("field") == "user_preferences":
                events += _cloud_preferences(value, session)
    return events


def _cloud_messages(
    value: Mapping[str, Any], keywords: frozenset[str], session: str
) -> Iterator[OptOutEvent]:
    for message in _items(value.get("messages")):
        kind = message.get("type")
        # a template's quick-reply button sends its label: tapping "STOP" is saying it
        holder = {"text": "text", "button": "button"}.get(str(kind))
        field = "body" if kind == "text" else "text"
        text = _mapping(message.get(holder)).get(field) if holder else None
        sender = message.get("from")
        if isinstance(text, str) and isinstance(sender, str):
            event = _keyword_event(phone_from_wa_id(sender), text, keywords, session)
            if event is not None:
                yield event


def _cloud_preferences(value: Mapping[str, Any], session: str) -> Iterator[OptOutEvent]:
    for item in _items(value.get("user_preferences")):
        action = item.get("value")
        wa_id = item.get("wa_id")
        if item.get("category") != "marketing_messages" or action not in (STOP, RESUME):
            continue
        phone = phone_from_wa_id(wa_id) if isinstance(wa_id, str) else None
        if phone is None:
            log.warning("user_preferences %s for an id that is no number: ignored", action)
            continue
        detail = item.get("detail")
        detail = detail if isinstance(detail, str) else f"marketing messages {action}"
        log.debug("user_preferences %s for %s", action, mask_phone(phone))
        yield OptOutEvent(phone, str(action), SOURCE_META, detail, session, _moment(item))


WAHA_MESSAGE_EVENTS = ("message", "message.any")
"""``message.any`` also carries our own messages; they are dropped by ``fromMe``."""


def waha_events(body: Mapping[str, Any], keywords: frozenset[str]) -> list[OptOutEvent]:
    """The opt-out in a WAHA ``message`` event (at most one)."""
    if body.get("event") not in WAHA_MESSAGE_EVENTS:
        return []
    payload = _mapping(body.get("payload"))
    session, sender, text = body.get("session"), payload.get("from"), payload.get("body")
    if payload.get("fromMe") is not False or payload.get("hasMedia") is True:
        return []  # our own echo (or a message of unknown direction), or a media caption
    if not (isinstance(session, str) and isinstance(sender, str) and isinstance(text, str)):
        return []
    phone = _phone_of_jid(sender, text, keywords, f"WAHA session {session}")
    event = _keyword_event(phone, text, keywords, session)
    return [] if event is None else [event]


_EVOLUTION_TEXT_TYPES = ("conversation", "extendedTextMessage")


def evolution_events(body: Mapping[str, Any], keywords: frozenset[str]) -> list[OptOutEvent]:
    """The opt-outs in an Evolution ``messages.upsert`` event (``MESSAGES_UPSERT`` too)."""
    if str(body.get("event", "")).lower().replace("_", ".") != "messages.upsert":
        return []
    instance = body.get("instance")
    data = body.get("data")
    if not isinstance(instance, str):
        return []
    events = []
    for item in _items(data if isinstance(data, list) else [data]):
        event = _evolution_message(item, keywords, instance)
        if event is not None:
            events.append(event)
    return events


def _evolution_message(
    data: Mapping[str, Any], keywords: frozenset[str], instance: str
) -> OptOutEvent | None:
    key = _mapping(data.get("key"))
    if key.get("fromMe") is not False or data.get("messageType") not in _EVOLUTION_TEXT_TYPES:
        return None
    message = _mapping(data.get("message"))
    text = message.get("conversation") or _mapping(message.get("extendedTextMessage")).get("text")
    jid = key.get("remoteJid")
    alternative = key.get("remoteJidAlt")
    if isinstance(jid, str) and jid.endswith("@lid") and isinstance(alternative, str):
        jid = alternative  # Evolution gives the phone jid of a hidden id beside it
    if not (isinstance(jid, str) and isinstance(text, str)):
        return None
    phone = _phone_of_jid(jid, text, keywords, f"Evolution instance {instance}")
    return _keyword_event(phone, text, keywords, instance)


def _moment(item: Mapping[str, Any]) -> datetime | None:
    """Meta's ``timestamp`` (epoch seconds, an integer or its text); None when absent."""
    value = item.get("timestamp")
    try:
        return datetime.fromtimestamp(int(value), UTC) if value is not None else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None
