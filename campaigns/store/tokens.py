"""Store verbs for the operators' HTTP API tokens.

A token is shown once, when it is created; the store keeps only its SHA-256 hash and its scope.
A stolen database (or backup) then gives no working token: SHA-256 of a 256-bit random value
cannot be reversed or guessed, so unlike passwords it needs no salt or slow hash.

Looking a token up is a lookup of its hash in a unique index, not a comparison of secrets: a
timing difference could at most tell an attacker something about the *hash* of what they sent,
which gets them no closer to a token whose hash matches. A constant-time compare has nothing to
protect here.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from sqlalchemy.exc import IntegrityError

from campaigns import inputs
from campaigns.errors import CampaignError, InvalidArgument
from campaigns.store import queries
from campaigns.store.base import StoreBase
from campaigns.store.db import translate_errors

SCOPES = ("read", "operator")
"""``read``: every GET of the API. ``operator``: also creating and changing campaigns and
checking sessions."""
PREFIX = "cc_"
"""Marks a Campaign Continuity token, so a secret scanner (or a person) recognises a leaked one."""
MAX_TOKEN_LENGTH = 200
"""Longer than any token we issue: anything longer is refused before it is hashed."""


class TokenExists(CampaignError):
    """An API token with that name exists already (revoked ones keep their name)."""


class UnknownToken(CampaignError):
    """No API token has that name."""


def token_hash(token: str) -> str:
    """The SHA-256 hex the store keeps of ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_scope_name(value: object, name: str = "scope") -> str:
    """``read`` or ``operator``."""
    if not isinstance(value, str) or value.strip().lower() not in SCOPES:
        raise InvalidArgument(f"{name} must be one of {', '.join(SCOPES)}, got {value!r}")
    return value.strip().lower()


class TokenVerbs(StoreBase):
    """Create, list and revoke API tokens; find a presented token's scope."""

    def create_token(self, name: str, scope: str) -> str:
        """A new token called ``name`` with ``scope``; returns the token, the only time it is
        ever available (the store keeps its hash)."""
        name = inputs.name_text(name, "name", max_length=100).strip()
        scope = token_scope_name(scope)
        token = PREFIX + secrets.token_urlsafe(32)  # 256 random bits
        try:
            with translate_errors(), self.engine.begin() as conn:
                conn.execute(
                    queries.INSERT_TOKEN,
                    {"name": name, "token_hash": token_hash(token), "scope": scope},
                )
        except IntegrityError:
            raise TokenExists(name=name) from None
        return token

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token's name, scope, creation, last use (to the minute) and revocation; never
        a hash."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(queries.LIST_TOKENS).all()
        return [dict(r._mapping) for r in rows]

    def revoke_token(self, name: str) -> bool:
        """Revoke the token called ``name`` at once (its next request gets 401). False if it
        was revoked already; :class:`UnknownToken` if there is none."""
        name = inputs.name_text(name, "name", max_length=100).strip()
        with translate_errors(), self.engine.begin() as conn:
            if conn.execute(queries.REVOKE_TOKEN, {"name": name}).rowcount:
                return True
            known = conn.execute(queries.TOKEN_REVOKED_AT, {"name": name}).first()
        if known is None:
            raise UnknownToken(name=name)
        return False

    def token_scope(self, token: str) -> str | None:
        """The scope of a live token, None for one unknown or revoked. Stamps its last use, at
        most once a minute (a write per request would make every read a write)."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        with translate_errors(), self.engine.begin() as conn:
            scope = conn.execute(queries.USE_TOKEN, {"token_hash": token_hash(token)}).scalar()
        return None if scope is None else str(scope)
