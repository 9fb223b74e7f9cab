"""Store verbs for session pacing: what PostgreSQL knows about a session's sends, read when
the pacing state in Redis has to be rebuilt (lost, or older than the truth; see pacing.lua)."""

from __future__ import annotations

from campaigns import inputs
from campaigns.store import queries
from campaigns.store.base import StoreBase
from campaigns.store.db import translate_errors

LAST_SEND_WINDOW_S = 3600.0
"""How far back the last send is looked for. The pacer takes the later of it and now, so an
older send can never matter; the window keeps the query on the session's live campaigns."""


class PacingStateVerbs(StoreBase):
    """The session's last recorded send, for the pacer's rebuild."""

    def session_last_send(self, session: str) -> float | None:
        """When the session's last recorded send finished (seconds since the epoch, on
        PostgreSQL's clock), or None when it sent nothing within the window. A send in flight
        is not recorded yet: the pacer counts from now as well."""
        session = inputs.session_name(session)
        with translate_errors(), self.engine.connect() as conn:
            value = conn.execute(
                queries.SESSION_LAST_SEND, {"session": session, "window": LAST_SEND_WINDOW_S}
            ).scalar()
        return None if value is None else float(value)
