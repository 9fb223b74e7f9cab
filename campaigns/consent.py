"""Consent as values: the legal basis a campaign relies on, and entries of the opt-out list.

Pure: no store. Brazil's LGPD (art. 7, 8 and 18) asks a sender to name the basis it relies on
(consent, or legitimate interest) and to honour a revocation made "through a free and easy
procedure" at any time, and to be able to prove both; so a campaign stores its basis with a
note, and every opt-out entry keeps who asked, how and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from campaigns.errors import InvalidArgument

LEGAL_BASES = ("consent", "legitimate_interest")
MAX_NOTE_LENGTH = 2000

# Where an opt-out came from: the proof of how it was asked for.
SOURCE_OPERATOR = "operator"  # `campaigns optouts add`, the Python API
SOURCE_IMPORT = "import"  # `campaigns optouts import FILE`
SOURCE_KEYWORD = "inbound_keyword"  # the person wrote STOP (SAIR, PARAR, ...) to a session
SOURCE_META = "meta_preferences"  # Meta's user_preferences webhook: marketing stopped
SOURCE_131050 = "cloud_131050"  # the Cloud API answered 131050: the person stopped marketing
SOURCES = (SOURCE_OPERATOR, SOURCE_IMPORT, SOURCE_KEYWORD, SOURCE_META, SOURCE_131050)
META_SOURCES = (SOURCE_META, SOURCE_131050)
"""Both come from the person's preference held by Meta: Meta's "resume" lifts them, and nothing
else (an operator's entry or a keyword stays until an operator removes it)."""

GLOBAL_SCOPE = "global"
"""The scope of an opt-out entry of no session: the list every session honours (a name no
session may take)."""
OPTED_OUT_CODE = "opted_out"
"""``error_code`` of a recipient skipped at its claim because its number is on the list."""


@dataclass(frozen=True, slots=True)
class OptOutEntry:
    """One number on the opt-out list: global (``session`` None) or for one sender session."""

    phone: str
    session: str | None
    source: str
    detail: str | None
    via_session: str | None
    created_at: datetime

    @property
    def scope(self) -> str:
        return self.session or GLOBAL_SCOPE


def legal_basis(value: object, name: str = "legal_basis") -> str:
    """One of :data:`LEGAL_BASES`; anything else names the choices."""
    if not isinstance(value, str) or value.strip().lower().replace("-", "_") not in LEGAL_BASES:
        shown = value if isinstance(value, str) else type(value).__name__
        raise InvalidArgument(
            f"{name} must be one of {', '.join(LEGAL_BASES)} (the LGPD basis the campaign "
            f"relies on), got {shown!r}"
        )
    return value.strip().lower().replace("-", "_")


def legal_note(value: object, name: str = "legal_note") -> str | None:
    """The basis' free-text note (where the consent was collected, the interest weighed)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be text, got {type(value).__name__}")
    text = value.strip()
    if len(text) > MAX_NOTE_LENGTH:
        raise InvalidArgument(f"{name} is {len(text)} characters; at most {MAX_NOTE_LENGTH}")
    if "\x00" in text:
        raise InvalidArgument(f"{name} must not contain NUL characters")
    return text or None


def source_name(value: object, name: str = "source") -> str:
    if value not in SOURCES:
        raise InvalidArgument(f"{name} must be one of {', '.join(SOURCES)}, got {value!r}")
    return str(value)
