"""Store verbs of consent: the opt-out list (global and per session).

The list is read where it matters, at the claim (:mod:`campaigns.store.lanes`), so a number
added while a campaign runs is never claimed; these verbs maintain it. Numbers are stored in
E.164, as the ledger's, so the claim's check is one index probe. An entry keeps its first
source and time: one entry per number, scope and source, so adding it twice from the same
source changes nothing (the proof of when it was first asked for stays), while a second source
adds its own entry (a keyword STOP stays when Meta's "resume" lifts Meta's entry).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from campaigns import consent, inputs
from campaigns.consent import OptOutEntry
from campaigns.errors import InvalidArgument
from campaigns.numbers import Entry, normalize
from campaigns.store import queries
from campaigns.store.db import translate_errors
from campaigns.store.loading import StreamReader
from campaigns.store.sessions import SessionVerbs

_CHUNK = 5000
_ANALYZE_AFTER = 10_000
"""An import adding this many entries refreshes the list's planner statistics at once."""


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What ``import_optouts`` did with a list: entries read, new on the list, already on it
    (or repeated in the list), and entries that are not a valid number (nothing imported for
    them; their positions, the first few, say where)."""

    read: int
    added: int
    already: int
    invalid: int
    invalid_examples: tuple[int, ...] = ()


class ConsentVerbs(SessionVerbs):
    """The opt-out list."""

    def _phone(self, value: object, region: str | None = None) -> str:
        raw = inputs.any_text(value, "phone")
        phone = normalize(raw, region or self.settings.default_region)
        if phone is None:
            raise InvalidArgument(f"phone {raw!r} is not a valid phone number")
        return phone

    def _scope(self, session: str | None) -> str | None:
        if session is None:
            return None
        name = inputs.session_name(session)
        self.get_session(name)  # an unknown name says so
        return name

    def add_optout(
        self,
        phone: str,
        *,
        session: str | None = None,
        source: str = consent.SOURCE_OPERATOR,
        detail: str | None = None,
        via_session: str | None = None,
    ) -> bool:
        """Put ``phone`` on the list, globally or for ``session``; True when it was new.
        From then on no lane claims it (a claim already on its way still goes out)."""
        number = self._phone(phone)
        scope = self._scope(session)
        source = consent.source_name(source)
        detail = consent.legal_note(detail, "detail")
        via = inputs.optional_name(via_session, "via_session")
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(
                queries.ADD_OPTOUT,
                {"phone": number, "session": scope, "source": source, "detail": detail,
                 "via_session": via},
            ).first()  # fmt: skip
        return row is not None

    def remove_optout(
        self,
        phone: str,
        *,
        session: str | None = None,
        sources: Collection[str] | None = None,
        before: datetime | None = None,
    ) -> int:
        """Take ``phone``'s entries of that scope off the list: all of them, or only those
        from ``sources`` (Meta's "resume" lifts Meta's entries, never an operator's or a
        keyword's) recorded at or before ``before`` (the moment the person resumed: an old
        "resume" delivered late leaves a newer "stop" alone). Returns how many went."""
        number = self._phone(phone)
        scope = None if session is None else inputs.session_name(session)
        wanted = None if sources is None else [consent.source_name(s) for s in sources]
        if before is not None and (not isinstance(before, datetime) or before.tzinfo is None):
            raise InvalidArgument("before must be a datetime with a time zone")
        if before is not None:
            # Meta's timestamps are whole seconds: a "resume" stamped in the second of the
            # stop it answers must still lift it
            before += timedelta(seconds=1)
        params = {"phone": number, "session": scope, "sources": wanted, "before": before}
        with translate_errors(), self.engine.begin() as conn:
            return int(conn.execute(queries.REMOVE_OPTOUT, params).rowcount)

    def is_opted_out(self, phone: str, session: str | None = None) -> bool:
        """Whether ``phone`` may not be messaged (through ``session``, when given: its
        entries and the global ones)."""
        number = self._phone(phone)
        scope = None if session is None else inputs.session_name(session)
        with translate_errors(), self.engine.connect() as conn:
            return bool(
                conn.execute(queries.IS_OPTED_OUT, {"phone": number, "session": scope}).scalar()
            )

    def count_optouts(self) -> int:
        with translate_errors(), self.engine.connect() as conn:
            return int(conn.execute(queries.COUNT_OPTOUTS).scalar_one())

    def iter_optouts(
        self, session: str | None = None, *, only_global: bool = False, page: int = _CHUNK
    ) -> Iterator[OptOutEntry]:
        """The list in the order entries were added, read ``page`` at a time (an export of a
        million numbers stays in flat memory): every entry, only ``session``'s, or (with
        ``only_global``) only the global ones. A flag rather than a scope word, so that no
        session name can be read as the global list."""
        if session is not None and only_global:
            raise InvalidArgument("give a session or only_global, not both")
        wanted = "" if only_global else None if session is None else inputs.session_name(session)
        page = inputs.positive_int(page, "page")
        after = 0
        while True:
            with translate_errors(), self.engine.connect() as conn:
                rows = conn.execute(
                    queries.LIST_OPTOUTS_AFTER, {"after": after, "scope": wanted, "limit": page}
                ).all()
            for row in rows:
                yield OptOutEntry(
                    phone=row.phone,
                    session=row.session_name,
                    source=row.source,
                    detail=row.detail,
                    via_session=row.via_session,
                    created_at=row.created_at,
                )
            if len(rows) < page:
                return
            after = rows[-1].id

    def import_optouts(
        self,
        entries: Iterable[Entry],
        *,
        session: str | None = None,
        source: str = consent.SOURCE_IMPORT,
        detail: str | None = None,
        region: str | None = None,
    ) -> ImportResult:
        """Add every valid number of ``entries`` (a list file's entries) in one transaction,
        streamed through COPY: a million numbers import in flat memory, and an error (a file
        that is not UTF-8) leaves the list as it was. Invalid entries are counted, not
        imported."""
        scope = self._scope(session)
        source = consent.source_name(source)
        detail = consent.legal_note(detail, "detail")
        region = inputs.region_code(region) or self.settings.default_region
        tally = {"read": 0, "valid": 0, "invalid": 0}
        examples: list[int] = []

        def chunks() -> Iterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            for position, entry in enumerate(entries, start=1):
                tally["read"] = position
                phone = normalize(entry.raw, region)
                if phone is None:
                    tally["invalid"] += 1
                    if len(examples) < 5:
                        examples.append(position)
                    continue
                tally["valid"] += 1
                writer.writerow([phone])
                if tally["valid"] % _CHUNK == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue()

        with translate_errors(), self.engine.begin() as conn:
            conn.execute(queries.CREATE_OPTOUT_IMPORT)
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            cursor = dbapi.cursor()
            stream = StreamReader(chunks())
            try:
                cursor.copy_expert(queries.COPY_OPTOUT_IMPORT, stream, size=65536)
            except Exception:
                if stream.error is not None:
                    raise stream.error from None
                raise
            finally:
                cursor.close()
            added = conn.execute(
                queries.INSERT_OPTOUT_IMPORT,
                {"session": scope, "source": source, "detail": detail},
            ).rowcount
        if added >= _ANALYZE_AFTER:
            with translate_errors(), self.engine.begin() as conn:
                conn.execute(queries.ANALYZE_OPTOUTS)
        return ImportResult(
            read=tally["read"],
            added=int(added),
            already=tally["valid"] - int(added),
            invalid=tally["invalid"],
            invalid_examples=tuple(examples),
        )
