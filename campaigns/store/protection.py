"""Store verbs of sender protection: what the capacity counts are rebuilt from, warm-up days,
recipient-level answers that defer or skip one recipient, and what a campaign waits for.

A deferred recipient goes back to ``pending`` with ``not_before`` (claims skip it until then)
and its attempt given back: the answer was about the recipient's limits, not a failed send.
A short wait (131056, the pair rate) keeps it in its batch, which finishes once it is sent. A
day's wait (131049, Meta's per-user marketing cap) moves it to the campaign's *retry batch*,
one trailing batch added on the first such deferral (``total_batches`` grows by one), so the
list's other batches go on and finish; ``deferrals`` bounds how often, then it fails with the
reason. Both keep counters = ledger = details: a batch is counted once nothing in it is open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from campaigns import inputs
from campaigns.caps import caps_from_options
from campaigns.consent import SOURCE_131050
from campaigns.domain import Campaign, ClaimedRecipient, RecipientStatus, send_id
from campaigns.errors import ConfigurationError, UnknownSession
from campaigns.eta import LanePlan
from campaigns.profiles import profile_from_options
from campaigns.store import queries
from campaigns.store.db import translate_errors
from campaigns.store.events import write_waiting
from campaigns.store.sessions import SessionVerbs
from campaigns.windows import SendWindow


class ProtectionVerbs(SessionVerbs):
    """Capacity rebuilds, warm-up, deferrals and waits."""

    def sends_since(self, sessions: Sequence[str], seconds: float) -> list[tuple[float, str, str]]:
        """The recorded sends of ``sessions`` in the last ``seconds``: ``(epoch seconds, send
        id, phone)`` rows, for the capacity counts rebuilt after Redis lost them."""
        names = [inputs.session_name(s) for s in sessions]
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(
                queries.SENDS_SINCE, {"sessions": names, "seconds": float(seconds)}
            ).all()
        return [(float(r.at), send_id(r.campaign_id, r.position), str(r.phone)) for r in rows]

    def portfolio_sessions(self, portfolio: str) -> list[str]:
        """The Cloud API sessions sharing ``portfolio``'s messaging limit."""
        with translate_errors(), self.engine.connect() as conn:
            return list(
                conn.execute(queries.PORTFOLIO_SESSIONS, {"portfolio": portfolio}).scalars()
            )

    def warmup_age(self, session: str) -> float | None:
        """Seconds since the session's first send (its warm-up's day 0), set to now by the
        first caller; None for an unknown session."""
        with translate_errors(), self.engine.begin() as conn:
            age = conn.execute(
                queries.WARMUP_START, {"session": inputs.session_name(session)}
            ).scalar()
        return None if age is None else float(age)

    def defer_claim(
        self,
        claim: ClaimedRecipient,
        wait: float,
        *,
        max_deferrals: int,
        to_retry_batch: bool,
        error_code: str | None,
        error_message: str,
        final_message: str,
    ) -> RecipientStatus | None:
        """Send ``claim``'s recipient again ``wait`` seconds from now (``pending``; in the
        retry batch when ``to_retry_batch``), or, after ``max_deferrals`` deferrals, fail it
        with ``final_message``. None if the claim is no longer held."""
        params = {
            "campaign_id": claim.campaign_id,
            "position": claim.position,
            "attempt": claim.attempt,
        }
        with translate_errors(), self.engine.begin() as conn:
            state = conn.execute(
                queries.LOCK_RETRY_BATCH, {"campaign_id": claim.campaign_id}
            ).first()
            deferrals = conn.execute(queries.CLAIM_DEFERRALS, params).scalar()
            if state is None or deferrals is None:
                return None
            if deferrals >= max_deferrals:
                conn.execute(
                    queries.RECORD_OUTCOME,
                    {
                        **params,
                        "status": RecipientStatus.FAILED.value,
                        "message_id": None,
                        "error_code": error_code,
                        "error_message": final_message,
                    },
                )
                return RecipientStatus.FAILED
            batch = claim.batch_number
            if to_retry_batch:
                if state.retry_batch is not None and state.retry_batch >= state.current_batch:
                    batch = state.retry_batch
                else:
                    batch = conn.execute(
                        queries.ADD_RETRY_BATCH, {"campaign_id": claim.campaign_id}
                    ).scalar_one()
            conn.execute(
                queries.DEFER_CLAIM,
                {
                    **params,
                    "wait": float(wait),
                    "batch_number": batch,
                    "error_code": error_code,
                    "error_message": error_message,
                },
            )
        return RecipientStatus.PENDING

    def skip_claim(
        self,
        claim: ClaimedRecipient,
        error_code: str,
        error_message: str,
        *,
        opt_out: bool = False,
    ) -> bool:
        """End ``claim`` skipped (never sent, never retried). With ``opt_out`` (the person
        stopped marketing messages: Cloud API 131050) the number also goes on the opt-out list
        in the same transaction, globally, with the session that was told: no later campaign
        claims it until Meta's "resume" or an operator lifts it. False if no longer held."""
        with translate_errors(), self.engine.begin() as conn:
            conn.execute(queries.LOCK_CAMPAIGN_KEY_SHARE, {"campaign_id": claim.campaign_id})
            row = conn.execute(
                queries.SKIP_CLAIM,
                {
                    "campaign_id": claim.campaign_id,
                    "position": claim.position,
                    "attempt": claim.attempt,
                    "error_code": error_code,
                    "error_message": error_message,
                },
            ).first()
            if row is not None and opt_out:
                conn.execute(
                    queries.ADD_OPTOUT,
                    {"phone": row.phone, "session": None, "source": SOURCE_131050,
                     "detail": error_message[:2000], "via_session": row.session_name},
                )  # fmt: skip
        return row is not None

    def next_not_before(self, campaign_id: int, batch_number: int) -> float | None:
        """Seconds until the batch's first deferred recipient may be claimed; None if none
        waits."""
        with translate_errors(), self.engine.connect() as conn:
            value = conn.execute(
                queries.NEXT_NOT_BEFORE,
                {"campaign_id": campaign_id, "batch_number": batch_number},
            ).scalar()
        return None if value is None else float(value)

    def set_waiting(self, campaign_id: int, run_token: str, reason: str, wait: float) -> bool:
        """Say what the running campaign waits for and for how long (shown by ``status``)."""
        with translate_errors(), self.engine.begin() as conn:
            count = conn.execute(
                queries.SET_WAITING,
                {
                    "campaign_id": campaign_id,
                    "run_token": run_token,
                    "reason": reason,
                    "wait": float(wait),
                },
            ).rowcount
            if count:
                write_waiting(conn, campaign_id, reason)  # once per wait, not per poll
        return bool(count)

    def park_lane(
        self, campaign_id: int, session: str, reason: str, resume_at: datetime, run_token: str
    ) -> bool:
        """Take the lane of ``session`` out of the rotation until ``resume_at`` (a closed
        window, no capacity), but only while another lane of the pool stays active: True when
        it was parked. False means it is the last active one (or the fence is lost), and the
        campaign itself waits instead, running — a wait is never an interruption. One
        transaction under the campaign's and the lanes' locks, so lanes parking at once
        cannot all leave."""
        with translate_errors(), self.engine.begin() as conn:
            fenced = conn.execute(
                queries.LOCK_FENCED, {"campaign_id": campaign_id, "run_token": run_token}
            ).first()
            if fenced is None:
                return False
            lanes = conn.execute(queries.LOCK_LANES, {"campaign_id": campaign_id}).all()
            if not any(lane.state == "active" and lane.session_name != session for lane in lanes):
                return False
            conn.execute(
                queries.SET_LANE_DOWN,
                {
                    "campaign_id": campaign_id,
                    "session": session,
                    "kind": "limited",
                    "reason": reason,
                    "resume_at": resume_at,
                },
            )
            # a parked lane waits (it comes back by itself): the timeline says so once
            write_waiting(conn, campaign_id, reason, session)
        return True

    def clear_waiting(self, campaign_id: int) -> None:
        """The campaign sends again: it waits for nothing."""
        with translate_errors(), self.engine.begin() as conn:
            conn.execute(queries.CLEAR_WAITING, {"campaign_id": campaign_id})

    def lane_plans(
        self, campaign: Campaign, lane_windows: Sequence[tuple[SendWindow, ...]]
    ) -> tuple[LanePlan, ...]:
        """What the ETA simulation needs of each lane (:mod:`campaigns.eta`), or ``()`` for
        one session without caps (the plain ETA is exact then; a pool's lanes send side by
        side, which only the simulation counts). Each lane's sends of the last day and hour
        are counted from the ledger."""
        day = self.settings.day_seconds
        sessions, caps = [], []
        for name in campaign.sessions:
            try:
                found = self.get_session(name)
                caps.append(caps_from_options(found.gateway, found.name, found.options))
                sessions.append(found)
            except (ConfigurationError, UnknownSession):
                return ()  # the runner will say what is wrong; the plain ETA meanwhile
        if len(caps) == 1 and not caps[0].limited:
            return ()  # one uncapped lane: the plain ETA is exact
        portfolios = [c.portfolio for c in caps if c.tier is not None]
        plans = []
        for found, cap, windows in zip(sessions, caps, lane_windows, strict=True):
            sends = self.sends_since([found.name], day) if cap.limited else []
            last_hour = datetime.now(UTC).timestamp() - day / 24
            warm = None
            if cap.warmup:
                first = found.first_sent_at
                age = 0.0 if first is None else (datetime.now(UTC) - first).total_seconds()
                warm = int(age // day) + 1
            plans.append(
                LanePlan(
                    found.name,
                    _pace(campaign, found.gateway, found.options),
                    cap,
                    windows,
                    warm,
                    sent_day=len(sends),
                    sent_hour=sum(1 for at, _, _ in sends if at >= last_hour),
                    portfolio_share=1 / max(portfolios.count(cap.portfolio), 1),
                )
            )
        return tuple(plans)


ASSUMED_ROUND_TRIP_S = 0.25
"""A lane without campaign intervals sends one message per gateway round trip (human) or at
its rate; the round trip is not known ahead, so the ETA assumes a realistic 250 ms."""


def _pace(campaign: Campaign, gateway: str, options: Mapping[str, str]) -> float:
    """A lane's messages per second: the campaign's mean gap, else its session's rate."""
    mean_gap = (campaign.min_interval + campaign.max_interval) / 2
    if mean_gap > 0:
        return 1 / mean_gap
    profile = profile_from_options(gateway, options)
    return profile.rate if profile.is_rate else 1 / ASSUMED_ROUND_TRIP_S

