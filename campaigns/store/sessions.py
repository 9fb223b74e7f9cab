"""Store verbs for sender sessions. A session holds the *name* of the environment variable
with its token, never the token."""

from __future__ import annotations

import logging

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from campaigns import inputs
from campaigns.consent import GLOBAL_SCOPE
from campaigns.domain import SenderSession
from campaigns.errors import (
    InvalidInput,
    SessionExists,
    SessionInUse,
    UnknownSession,
)
from campaigns.gateways import session_options
from campaigns.store import queries
from campaigns.store.base import StoreBase
from campaigns.store.db import translate_errors
from campaigns.store.models import SessionRow

log = logging.getLogger(__name__)


class SessionVerbs(StoreBase):
    """Add, read, list and remove sender sessions; record their health checks."""

    def add_session(
        self,
        name: str,
        gateway: str,
        base_url: str,
        token_env: str | None = None,
        **options: str,
    ) -> SenderSession:
        """Register a sender session. ``token_env`` is the *name* of the environment variable
        holding the gateway token; the token itself is never stored."""
        name = inputs.session_name(name, "name").strip()
        if name.lower() == GLOBAL_SCOPE:
            # every opt-out entry, list and export names its scope by the session, or "global"
            # for the list all sessions share: a session of that name would read as that list
            raise InvalidInput(
                f"name: {name!r} is reserved (it names the opt-out list every session shares); "
                "choose another name"
            )
        gateway = inputs.name_text(gateway, "gateway")
        base_url = inputs.name_text(base_url, "base_url", max_length=2000)
        token_env = inputs.optional_name(token_env, "token_env", max_length=200)
        for key, value in options.items():
            inputs.name_text(value, f"option {key}", max_length=2000, blank_ok=True)
        options = session_options(gateway, name, base_url, options)
        if token_env is not None and not token_env.replace("_", "").isalnum():
            raise InvalidInput(
                f"--token-env takes the NAME of an environment variable, got {token_env!r}"
            )
        row = {
            "name": name,
            "gateway": gateway,
            "base_url": base_url.rstrip("/"),
            "token_env": token_env,
            "options": options,
        }
        try:
            with translate_errors(), self.engine.begin() as conn:
                conn.execute(insert(SessionRow).values(**row))
        except IntegrityError:
            raise SessionExists(name=name) from None
        return self.get_session(name)

    def get_session(self, name: str) -> SenderSession:
        """The session called ``name``; :class:`UnknownSession` if there is none."""
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(
                select(*SessionRow.__table__.columns).where(SessionRow.name == name)
            ).first()
        if row is None:
            raise UnknownSession(name=name)
        return SenderSession.from_row(row._mapping)

    def list_sessions(self) -> list[SenderSession]:
        """Every session, by name."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                select(*SessionRow.__table__.columns).order_by(SessionRow.name)
            ).all()
        return [SenderSession.from_row(r._mapping) for r in rows]

    def remove_session(self, name: str) -> None:
        """Remove a session that is in no unfinished campaign's pool. The lanes of finished
        campaigns go with it (their recipients keep its name)."""
        with translate_errors(), self.engine.begin() as conn:
            busy = conn.execute(
                queries.COUNT_UNFINISHED_OF_SESSION,
                {"name": name},
            ).scalar_one()
            if busy:
                raise SessionInUse(name=name, unfinished_campaigns=busy)
            conn.execute(queries.DELETE_FINISHED_LANES_OF_SESSION, {"name": name})
            try:
                deleted = conn.execute(delete(SessionRow).where(SessionRow.name == name)).rowcount
            except IntegrityError:
                # a campaign with it in its pool was created since the count: its lane refuses
                raise SessionInUse(name=name) from None
        if not deleted:
            raise UnknownSession(name=name)

    def record_session_check(self, name: str, status: str, error: str | None = None) -> None:
        """Store the result of a health check of the session."""
        with translate_errors(), self.engine.begin() as conn:
            conn.execute(
                queries.RECORD_SESSION_CHECK,
                {"name": name, "status": status, "error": error},
            )
