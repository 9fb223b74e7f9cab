"""Creating campaigns: a list's ledger and state row in one transaction, and follow-up
campaigns that retry another's failed recipients.

Every argument is checked before the first write. The entries are checked one by one as COPY
consumes them (a list may hold millions), inside the transaction, which an error rolls back
whole: bad input leaves nothing behind. What the message needs of the list (its variables,
filled for every recipient) is checked in the same single pass (:class:`content.EntryChecker`),
and each recipient's variant is chosen as its row is written (:func:`content.choose`), so a
resumed or retried send uses the same text.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert

from campaigns import consent, content, inputs, media
from campaigns.domain import Campaign, CampaignStatus, RecipientStatus
from campaigns.errors import CampaignError, EmptyNumberList, InvalidArgument, NoValidNumber
from campaigns.numbers import Entry
from campaigns.settings import Pacing
from campaigns.store import queries
from campaigns.store.db import translate_errors
from campaigns.store.events import write_event
from campaigns.store.lanes import LaneVerbs
from campaigns.store.loading import LoadCounter, copy_entries
from campaigns.store.models import CampaignBatchState
from campaigns.store.sessions import SessionVerbs
from campaigns.timeline import EventKind
from campaigns.windows import SendWindow

log = logging.getLogger("campaigns.store")

MAX_VARIANTS = 50
MAX_DEDUPE_DAYS = 3650.0
RETRYABLE = (RecipientStatus.FAILED, RecipientStatus.UNKNOWN)
ANALYZE_AFTER = 10_000
"""A campaign of this many recipients or more refreshes the ledger's planner statistics once
it is created."""


class CreationVerbs(SessionVerbs, LaneVerbs):
    """Campaign creation."""

    def create_campaign(
        self,
        numbers: Any,
        message: str,
        session: str | Sequence[str],
        *,
        pacing: Pacing | None = None,
        region: str | None = None,
        template: Mapping[str, Any] | None = None,
        start_at: datetime | None = None,
        sticky: bool = True,
        window: SendWindow | None = None,
        legal_basis: str | None = None,
        legal_note: str | None = None,
        variants: Sequence[str] = (),
        media_spec: Mapping[str, Any] | media.MediaSpec | None = None,
        dedupe_days: float | None = None,
    ) -> Campaign:
        """Create a campaign and its whole ledger in one transaction.

        ``session`` is one session name or a sender pool (a list of distinct names, in lane
        order; see :mod:`campaigns.store.lanes`). With ``sticky`` (the default) and a pool,
        each recipient prefers the pool session that last sent to its phone successfully.
        ``window`` is the campaign's own send window, which its lanes obey on top of their
        sessions' windows.

        ``legal_basis`` (``consent`` or ``legitimate_interest``, LGPD art. 7) is required: given
        here or by the deployment's ``LEGAL_BASIS``. ``message`` and ``variants`` are the texts
        (:mod:`campaigns.content`: ``{name}``, ``{name|fallback}``, spintax); a text that uses a
        variable the list lacks, or leaves a recipient's value empty without a fallback, is
        refused before anything is kept. ``media_spec`` sends an image, document, audio or video
        by URL with ``message`` as its caption (may then be empty). ``dedupe_days``: numbers
        that a session of the pool messaged in that many days are counted duplicates, the
        earlier campaign named.

        Numbers are normalized to E.164; later repeats are marked duplicate and unparseable
        entries invalid, both kept in the ledger at their input position. The campaign starts
        ``running`` with a fresh run token (or ``scheduled`` when ``start_at`` is given): the
        caller enqueues its first batch. Bad input raises a specific
        :class:`campaigns.errors.InvalidInput` and leaves nothing behind.
        """
        if pacing is not None and not isinstance(pacing, Pacing):
            raise InvalidArgument(f"pacing must be a Pacing or None, got {type(pacing).__name__}")
        pacing = (pacing or self.settings.pacing).validate()
        region = inputs.region_code(region) or self.settings.default_region
        pool = self.check_pool(session)  # every session exists (named when one does not)
        spec = _media(media_spec, message, self._gateway_kinds(pool))
        message = _caption(message) if spec is not None else inputs.message_text(message)
        template = inputs.template_spec(template)
        if template is not None:
            content.template_check(template)
        plan = content.plan(message, _variant_texts(variants))
        start_at = inputs.start_time(start_at)
        sticky = inputs.flag(sticky, "sticky")
        basis = self._legal_basis(legal_basis)
        note = consent.legal_note(legal_note)
        days = _dedupe_days(dedupe_days)
        if window is not None and not isinstance(window, SendWindow):
            raise InvalidArgument(
                f"window must be a SendWindow or None, got {type(window).__name__}"
            )
        entries = inputs.number_entries(numbers)
        checker = content.EntryChecker(plan, template)
        self.check_pool(pool)  # again, as late as possible: a session may go meanwhile
        status = CampaignStatus.SCHEDULED if start_at else CampaignStatus.RUNNING
        token = None if start_at else str(uuid.uuid4())
        with translate_errors(), self.engine.begin() as conn:
            campaign_id = self._insert_state(conn, pool, message, pacing, status, token, {
                "template": dict(template) if template else None,
                "next_batch_at": start_at,
                "send_window": window.to_json() if window else None,
                "legal_basis": basis, "legal_note": note,
                "variants": list(plan.texts[1:]) or None,
                "media": spec.to_json() if spec else None,
                "dedupe_days": days,
            })  # fmt: skip
            self._insert_pool(conn, campaign_id, pool)
            counter = self._copy(
                conn, campaign_id, entries, pacing.batch_size, region,
                checker=checker.see,
                variant=lambda position: content.choose(plan, (), campaign_id, position),
            )  # fmt: skip
            if counter.total == 0:
                raise EmptyNumberList()
            if counter.valid == 0:
                raise NoValidNumber(
                    f"none of the {counter.total} entries is a valid phone number for region "
                    f"{region}; nothing was created"
                )
            columns = checker.finish()  # a missing variable or empty values: rolled back
            # The table's statistics know nothing of the rows just copied in: the planner
            # expects one row and picks a nested loop that re-reads the new campaign per row
            # (quadratic: 20k numbers took 87 s once other campaigns were analysed). Hash or
            # merge joins are right for a bulk load, so nested loops are off for these.
            conn.execute(queries.NESTLOOP_OFF)
            conn.execute(queries.MARK_DUPLICATES, {"campaign_id": campaign_id})
            recent = 0
            if days is not None:
                recent = conn.execute(queries.MARK_RECENTLY_MESSAGED, {
                    "campaign_id": campaign_id, "sessions": list(pool),
                    "seconds": days * self.settings.day_seconds, "sent": "sent",
                }).rowcount  # fmt: skip
            conn.execute(queries.NESTLOOP_ON)
            if sticky:
                self._prefer_sticky(conn, campaign_id, pool)
            total_batches = (counter.total + pacing.batch_size - 1) // pacing.batch_size
            conn.execute(
                queries.SET_TOTALS,
                {"total": counter.total, "batches": total_batches, "id": campaign_id},
            )
            conn.execute(queries.SET_COLUMNS, {"id": campaign_id, "columns": list(columns)})
            write_event(conn, campaign_id, EventKind.CREATED, detail=(
                f"{counter.total} numbers ({counter.valid} valid) in {total_batches} batches "
                f"on {', '.join(pool)}" + (f", starts {start_at.isoformat()}" if start_at else "")
            ))  # fmt: skip
        self._analyze_if_large(counter.total)
        log.info(
            "campaign %s created on session %s: %s numbers (%s valid, %s messaged recently) "
            "in %s batches; legal basis %s",
            campaign_id, ", ".join(pool), counter.total, counter.valid, recent, total_batches,
            basis,
        )  # fmt: skip
        return self.get_campaign(campaign_id)

    def create_followup(
        self,
        campaign_id: int,
        *,
        statuses: Collection[RecipientStatus | str] = (RecipientStatus.FAILED,),
        error_code: str | None = None,
    ) -> tuple[Campaign, dict[str, int]]:
        """A follow-up campaign with exactly the recipients of ``campaign_id`` in
        ``statuses`` (failed by default; unknown on request), optionally only those whose
        error was ``error_code``: their numbers, variables and chosen variants, the same
        texts, media, template, pool, pacing, window and legal basis. Numbers now on the
        opt-out list are left out, and so are numbers an earlier follow-up of this campaign
        already holds (retry that follow-up instead): a recipient is retried once per
        campaign. Returns the new campaign (running, its first batch for the caller to
        enqueue) and the counts ``matching``, ``opted_out``, ``already_retried``.

        A new campaign rather than a new run of the same one: the original's ledger stays the
        record of what happened to its list (a failed recipient stays failed there, and its
        counters keep adding up), while the follow-up has its own progress, ETA and export.
        """
        original = self.get_campaign(inputs.campaign_id(campaign_id))
        wanted = sorted({_retryable(s) for s in statuses}) if statuses else []
        if not wanted:
            raise InvalidArgument("statuses must name failed and/or unknown")
        code = inputs.optional_name(error_code, "error_code", max_length=40)
        params = {
            "old_id": original.id, "statuses": [s.value for s in wanted], "error_code": code,
            "sessions": list(original.sessions),
        }  # fmt: skip
        pacing = Pacing(
            batch_size=original.batch_size, min_interval=original.min_interval,
            max_interval=original.max_interval, batch_delay_min=original.batch_delay_min,
            batch_delay_max=original.batch_delay_max,
        )  # fmt: skip
        with translate_errors(), self.engine.begin() as conn:
            found = dict(conn.execute(queries.FOLLOWUP_CANDIDATES, params).one()._mapping)
            counts = {k: int(v or 0) for k, v in found.items()}
            if counts["matching"] - counts["opted_out"] - counts["already_retried"] <= 0:
                raise InvalidArgument(
                    f"nothing to retry in campaign {original.id}: "
                    f"{counts['matching']} recipients {'/'.join(s.value for s in wanted)}"
                    f"{' with error ' + code if code else ''}, {counts['opted_out']} of them "
                    f"opted out, {counts['already_retried']} already in a follow-up; "
                    "nothing was created"
                )
            self.check_pool(original.sessions)
            new_id = self._insert_state(
                conn, original.sessions, original.message, pacing, CampaignStatus.RUNNING,
                str(uuid.uuid4()), {
                    "template": dict(original.template) if original.template else None,
                    "send_window": dict(original.send_window) if original.send_window else None,
                    "legal_basis": original.legal_basis, "legal_note": original.legal_note,
                    "variants": list(original.variants) or None,
                    "columns": list(original.columns) or None,
                    "media": dict(original.media) if original.media else None,
                    "retry_of": original.id,
                },
            )  # fmt: skip
            self._insert_pool(conn, new_id, original.sessions)
            total = conn.execute(
                queries.INSERT_FOLLOWUP_RECIPIENTS,
                {**params, "new_id": new_id, "batch_size": original.batch_size},
            ).rowcount
            batches = (total + original.batch_size - 1) // original.batch_size
            conn.execute(queries.SET_TOTALS, {"total": total, "batches": batches, "id": new_id})
            write_event(conn, new_id, EventKind.CREATED, detail=(
                f"retries {total} recipients of campaign {original.id} in {batches} batches "
                f"on {', '.join(original.sessions)}"
            ))  # fmt: skip
        self._analyze_if_large(total)
        log.info(
            "campaign %s retries %s recipients of campaign %s (%s opted out, %s already "
            "retried, left out)",
            new_id, total, original.id, counts["opted_out"], counts["already_retried"],
        )  # fmt: skip
        return self.get_campaign(new_id), counts

    def _analyze_if_large(self, added: int) -> None:
        """Refresh the ledger's planner statistics after a load of :data:`ANALYZE_AFTER` rows
        or more (queries.ANALYZE_RECIPIENTS says why), after the commit: a concurrent creation
        is not held up by it, and a failure here leaves the campaign as created."""
        if added < ANALYZE_AFTER:
            return
        try:
            with translate_errors(), self.engine.begin() as conn:
                conn.execute(queries.ANALYZE_RECIPIENTS)
        except CampaignError as exc:  # statistics are an optimisation: the campaign stands
            log.warning("statistics of the ledger not refreshed after a load: %s", exc)

    def _legal_basis(self, value: object) -> str:
        if value is None:
            value = self.settings.legal_basis
            if value is None:
                raise InvalidArgument(
                    "legal_basis is required: the LGPD basis this campaign relies on, "
                    f"one of {', '.join(consent.LEGAL_BASES)} (per campaign, or LEGAL_BASIS "
                    "for a deployment's default); nothing was created"
                )
        return consent.legal_basis(value)

    def _gateway_kinds(self, pool: Sequence[str]) -> list[str]:
        return [self.get_session(name).gateway for name in pool]

    def _insert_state(
        self,
        conn: Connection,
        pool: Sequence[str],
        message: str,
        pacing: Pacing,
        status: CampaignStatus,
        token: str | None,
        extra: Mapping[str, Any],
    ) -> int:
        values: dict[str, Any] = {
            "session_name": pool[0],
            "sessions": list(pool),
            "message": message,
            "status": status,
            "run_token": token,
            "batch_size": pacing.batch_size,
            "min_interval": pacing.min_interval,
            "max_interval": pacing.max_interval,
            "batch_delay_min": pacing.batch_delay_min,
            "batch_delay_max": pacing.batch_delay_max,
            # a fresh heartbeat: if the first batch is never enqueued (broker down right after
            # the commit), the sweep sees a stalled campaign and starts it
            "heartbeat_at": func.now(),
            **extra,
        }
        statement = insert(CampaignBatchState).values(**values).returning(CampaignBatchState.id)
        return int(conn.execute(statement).scalar_one())

    @staticmethod
    def _copy(
        conn: Connection,
        campaign_id: int,
        entries: Iterable[Entry],
        batch_size: int,
        region: str,
        **hooks: Any,
    ) -> LoadCounter:
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        cursor = dbapi.cursor()
        try:
            return copy_entries(cursor, campaign_id, entries, batch_size, region, **hooks)
        finally:
            cursor.close()


def _variant_texts(value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidArgument(
            f"variants must be a list of message texts, got {type(value).__name__}"
        )
    if len(value) > MAX_VARIANTS - 1:
        raise InvalidArgument(f"at most {MAX_VARIANTS} texts per campaign, got {len(value) + 1}")
    return tuple(inputs.message_text(v, f"variants[{i}]") for i, v in enumerate(value))


def _media(value: object, caption: object, gateways: Sequence[str]) -> media.MediaSpec | None:
    text = caption if isinstance(caption, str) else ""
    return media.media_spec(value, gateways, caption=text)


def _caption(value: object) -> str:
    """With media, the message is the caption, and may be empty (no caption)."""
    if isinstance(value, str) and not value.strip():
        return ""
    return inputs.message_text(value, "message")


def _dedupe_days(value: object) -> float | None:
    if value is None:
        return None
    return inputs.finite_number(
        value, "dedupe_days", unit="days", maximum=MAX_DEDUPE_DAYS, above_minimum=True
    )


def _retryable(value: object) -> RecipientStatus:
    try:
        status = RecipientStatus(str(value))
    except ValueError:
        status = None
    if status not in RETRYABLE:
        raise InvalidArgument(
            f"a retry takes failed or unknown recipients, not {value!r}"
        )
    assert status is not None
    return status
