"""Store verbs of the dashboard: a campaign's timeline (its events, written by the other verbs
with their state changes: :mod:`campaigns.store.events`), its activity per minute and current
rate, and the sessions overview. Reads only; each verb is one or two statements, cheap enough
for dashboards polling every few seconds while campaigns send."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from campaigns import inputs
from campaigns.caps import Caps, caps_from_options
from campaigns.domain import SenderSession
from campaigns.errors import ConfigurationError, InvalidInput
from campaigns.profiles import profile_from_options
from campaigns.store import queries
from campaigns.store.db import translate_errors
from campaigns.store.sessions import SessionVerbs
from campaigns.timeline import CampaignEvent, MinuteActivity, SessionOverview
from campaigns.windows import window_from_options

log = logging.getLogger(__name__)

MAX_EVENTS = 1000
MAX_EVENT_ID = 2**63 - 1  # bigserial
MAX_MINUTES = 7 * 24 * 60
MAX_RATE_SECONDS = 3600.0
# connection states that are no disconnection by themselves (a health check's or a stop's)
_NOT_DISCONNECTED = {"connected", "working", "open", "unknown", "limited", "blocked"}


class TimelineVerbs(SessionVerbs):
    """What the campaign and sessions pages read."""

    def events(
        self, campaign_id: int, *, after_id: int = 0, limit: int = 200
    ) -> list[CampaignEvent]:
        """The campaign's timeline, oldest first: the events after ``after_id`` (0: from the
        start; a page polling for news passes the last id it has), at most ``limit``."""
        campaign_id = inputs.campaign_id(campaign_id)
        after_id = inputs.whole_number(after_id, "after_id", minimum=0, maximum=MAX_EVENT_ID)
        limit = inputs.positive_int(limit, "limit", maximum=MAX_EVENTS)
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                queries.LIST_EVENTS,
                {"campaign_id": campaign_id, "after_id": after_id, "limit": limit},
            ).all()
        return [CampaignEvent.from_row(r._mapping) for r in rows]

    def activity(self, campaign_id: int, *, minutes: int = 120) -> list[MinuteActivity]:
        """Messages per minute over the last ``minutes`` (the current minute included), oldest
        first: sent and failed by when they were recorded, delivered and read by when their
        receipts said. Minutes without any are left out (the chart fills them with zeros)."""
        campaign_id = inputs.campaign_id(campaign_id)
        minutes = inputs.positive_int(minutes, "minutes", maximum=MAX_MINUTES)
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        since = now - timedelta(minutes=minutes - 1)
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                queries.ACTIVITY, {"campaign_id": campaign_id, "since": since}
            ).all()
        return [
            MinuteActivity(r.minute, int(r.sent), int(r.failed), int(r.delivered), int(r.read))
            for r in rows
        ]

    def current_rate(self, campaign_id: int, seconds: float = 60) -> float:
        """Messages per second over the last ``seconds``: gateway calls recorded (sent,
        failed or unknown) divided by the span."""
        campaign_id = inputs.campaign_id(campaign_id)
        seconds = inputs.finite_seconds(seconds, "seconds", maximum=MAX_RATE_SECONDS, positive=True)
        with translate_errors(), self.engine.connect() as conn:
            count = conn.execute(
                queries.RECENT_SENDS, {"campaign_id": campaign_id, "seconds": float(seconds)}
            ).scalar_one()
        return int(count) / seconds

    def sessions_overview(self) -> list[SessionOverview]:
        """Every session with what puts its numbers at risk, most at risk first: blocked,
        limited (until when), disconnected, near a cap; then by name. Caps used are the
        ledger's sent rows of the rolling day and hour."""
        sessions = self.list_sessions()
        day = self.settings.day_seconds
        with translate_errors(), self.engine.connect() as conn:
            sends = {
                r.session_name: r
                for r in conn.execute(
                    queries.SESSION_SENDS,
                    {"sessions": [s.name for s in sessions], "day": float(day)},
                )
            }
            stops = conn.execute(queries.SESSION_STOPS).all()
        now = datetime.now(UTC)
        caps = {s.name: _caps(s) for s in sessions}
        portfolio_unique: dict[str, int] = {}
        for s in sessions:
            cap = caps[s.name]
            if cap is not None and cap.portfolio is not None and s.name in sends:
                # a portfolio's limit counts unique recipients over all its numbers: summed
                # per number here, which errs on the safe side when two share a recipient
                portfolio_unique[cap.portfolio] = portfolio_unique.get(cap.portfolio, 0) + int(
                    sends[s.name].unique_day
                )
        overviews = [
            _overview(s, caps[s.name], sends.get(s.name), stops, portfolio_unique, now, day)
            for s in sessions
        ]
        return sorted(overviews, key=lambda o: (o.risk, o.name))


def _caps(session: SenderSession) -> Caps | None:
    try:
        return caps_from_options(session.gateway, session.name, session.options)
    except ConfigurationError:
        return None  # shown as invalid; the runner says what is wrong when it sends


def _overview(
    session: SenderSession,
    caps: Caps | None,
    sends: Any,
    stops: Sequence[Any],
    portfolio_unique: dict[str, int],
    now: datetime,
    day: float,
) -> SessionOverview:
    mine = [r for r in stops if r.session_name == session.name]
    kinds = {r.kind for r in mine if r.kind is not None}
    limited = [r.until for r in mine if r.kind == "limited" and r.until is not None]
    reason = next(
        (r.reason for kind in ("blocked", "limited", "disconnected") for r in mine
         if r.kind == kind and r.reason),
        None,
    )  # fmt: skip
    warmup_day = None
    if caps is not None and caps.warmup:
        first = session.first_sent_at
        warmup_day = 1 if first is None else int((now - first).total_seconds() // day) + 1
    cap_day = caps.day_cap(warmup_day) if caps is not None else None
    sent_day = int(sends.day) if sends is not None else 0
    if caps is not None and caps.portfolio is not None and caps.tier is not None:
        tightest = caps.tier if cap_day is None else min(cap_day, caps.tier)
        if tightest == caps.tier:
            sent_day = portfolio_unique.get(caps.portfolio, 0)
        cap_day = tightest
    try:
        pacing = profile_from_options(session.gateway, session.options).describe()
    except ConfigurationError as exc:
        pacing = f"invalid: {exc}"
    window_text, window_open, next_open = None, True, None
    try:
        window = window_from_options(session.options)
    except InvalidInput as exc:
        window, window_text = None, f"invalid: {exc}"
    if window is not None:
        window_text = window.describe()
        window_open = window.is_open(now)
        next_open = None if window_open else window.next_open(now)
    status = session.connection_status or "unknown"
    return SessionOverview(
        name=session.name,
        gateway=session.gateway,
        connection_status=status,
        last_checked_at=session.last_checked_at,
        last_error=session.last_error,
        pacing=pacing,
        caps=caps.describe() if caps is not None else "invalid caps options",
        cap_day=cap_day,
        sent_day=sent_day,
        cap_hour=caps.per_hour if caps is not None else None,
        sent_hour=int(sends.hour) if sends is not None else 0,
        warmup_day=warmup_day,
        window=window_text,
        window_open=window_open,
        next_open=next_open,
        disconnected="disconnected" in kinds or status.lower() not in _NOT_DISCONNECTED,
        limited_until=max(limited) if limited else None,
        blocked="blocked" in kinds,
        stop_reason=reason,
        campaigns=sum(int(r.campaigns) for r in mine),
    )
