"""Store verbs of sender pools: a campaign's lanes, one per session of its pool.

A campaign names one session or several (``create_campaign(numbers, message, ["s1", "s2"])``);
a one-session campaign is a pool of one. Each lane claims recipients of the current batch for
its session and stamps them with it (``campaign_recipients.session_name``). A recipient whose
phone a pool session sent to before (``preferred_session``, set at creation) is left to that
lane while it is active and its heartbeat is fresh (``stale_after``, default the stall
timeout). A lane whose session goes down leaves the rotation: the other lanes take its
unclaimed recipients. When every lane is down the campaign is interrupted with the kind of
:func:`pool_stop_of` and resumes the usual way.

How the engine calls these verbs (one run of one lane of batch ``b`` under token ``t``; a
lane is a task per session, or a thread of the batch task; the verbs do not care which):

1. Batch start: ``sessions = store.lanes_to_run(cid, t)``; start one lane run per session
   (it also brings back limited lanes whose limit ended, and stamps their heartbeats so that
   their sticky recipients wait for them). ``[]`` with the fence held means every lane is
   down: ``store.interrupt_if_all_lanes_down(cid, t)`` and end the run ``interrupted``.
2. Per message, in each lane run: wait for the turn of *that* session (pacing keys on the
   session), then ``claim = store.claim_for_lane(cid, b, t, session)`` (or
   ``claim_several_for_lane(..., limit=n)`` in ``rate`` mode, at most ``in_flight``); the
   gateway call; ``record_outcome`` / ``release_claim`` exactly as today (they key on the
   claim, not the lane).
3. While waiting for a turn: ``store.lane_heartbeat(cid, session, t)`` instead of
   ``heartbeat``; False means stop this lane's run (the fence is lost, or the lane is down).
4. The session is down for this campaign (after releasing the claim):
   ``stop = store.mark_lane_down(cid, session, reason, kind=..., resume_at=..., run_token=t)``.
   ``None``: the other lanes go on and take its recipients; this lane's run ends. A
   :class:`~campaigns.domain.PoolStop`: that was the last lane, the campaign is now
   interrupted with ``stop.kind`` (in the same transaction): end the run ``interrupted``.
5. A claim that comes back empty: ``lane_heartbeat`` False → stop; True → nothing this lane
   may take is pending now, so ``finish_batch`` as today. ``InvalidTransition`` (the batch is
   still open: other lanes' claims, or recipients kept for a live sticky lane) → do not end
   for good: try again after a short delay (the CONTINUE path). That retry is how a lane
   takes over the recipients of a lane that went down or stale meanwhile.
6. ``finish_batch`` is idempotent, so two lanes may both finish a batch, but only the call
   that wrote the details row may enqueue the next batch (``BatchResult.inserted``, which the
   run-lease work adds; without it every lane that finishes would fork the chain).

Recovery (``campaigns/recovery.py``) uses :meth:`activate_lanes` before it resumes a campaign
and :meth:`activate_running_lanes` when a session reconnects or a lane's limit ends in a
running campaign; its ``start_lane`` hook is where the engine starts that lane's run.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from campaigns import inputs
from campaigns.domain import (
    CampaignStatus,
    ClaimedRecipient,
    Lane,
    PoolStop,
    StopKind,
    sources_of,
)
from campaigns.errors import InvalidInput, UnknownSession
from campaigns.store import queries
from campaigns.store.base import StoreBase
from campaigns.store.db import translate_errors
from campaigns.store.events import stop_text, write_event, write_lanes_up
from campaigns.timeline import EventKind


def pool_stop_of(lanes: Sequence[Lane]) -> PoolStop | None:
    """The stop of a campaign whose lanes are ``lanes``: None while one is active (or there
    is none); else ``disconnected`` if any lane is (its reconnect resumes the campaign),
    ``limited`` until the earliest end of a limited lane, else ``blocked``."""
    if not lanes or any(lane.active for lane in lanes):
        return None
    kinds = {lane.stop_kind for lane in lanes}
    resume_at = None
    if StopKind.DISCONNECTED in kinds:
        kind = StopKind.DISCONNECTED
    elif StopKind.LIMITED in kinds:
        kind = StopKind.LIMITED
        resume_at = min(
            lane.resume_at for lane in lanes if lane.resume_at is not None
        )
    else:
        kind = StopKind.BLOCKED
    if len(lanes) == 1:  # a pool of one stops as a one-session campaign always did
        return PoolStop(kind, lanes[0].reason or "the session is down", resume_at)
    said = "; ".join(
        f"{lane.session_name} ({lane.stop_kind.value if lane.stop_kind else '?'}): "
        f"{lane.reason or 'down'}"
        for lane in lanes
    )
    return PoolStop(kind, f"every session of the pool is down: {said}", resume_at)


class LaneVerbs(StoreBase):
    """A campaign's pool: its lanes, their claims, their state, and the pool's stop."""

    # --- creation (create_campaign calls these inside its transaction) ---

    def check_pool(self, session: object) -> tuple[str, ...]:
        """``session`` as a pool: one name or a non-empty list of distinct names, every one a
        registered session. Raises before anything is written."""
        pool = inputs.session_names(session)
        with translate_errors(), self.engine.connect() as conn:
            known = set(
                conn.execute(queries.EXISTING_SESSIONS, {"names": list(pool)}).scalars()
            )
        for index, name in enumerate(pool):
            if name not in known:
                where = {"argument": f"session[{index}]"} if len(pool) > 1 else {}
                raise UnknownSession(name=name, **where)
        return pool

    @staticmethod
    def _insert_pool(conn: Connection, campaign_id: int, pool: Sequence[str]) -> None:
        try:
            conn.execute(
                queries.INSERT_LANES, {"campaign_id": campaign_id, "sessions": list(pool)}
            )
        except IntegrityError:
            # a session of the pool was removed since it was checked
            raise UnknownSession(sessions=list(pool)) from None

    @staticmethod
    def _prefer_sticky(conn: Connection, campaign_id: int, pool: Sequence[str]) -> int:
        """Set each pending recipient's preferred session from earlier campaigns' ledgers
        (a pool of one has nothing to prefer). Returns how many got one."""
        if len(pool) < 2:
            return 0
        return int(
            conn.execute(
                queries.PREFER_STICKY_SESSIONS,
                {"campaign_id": campaign_id, "sessions": list(pool)},
            ).rowcount
        )

    # --- reading ---

    def list_lanes(self, campaign_id: int, *, counts: bool = False) -> list[Lane]:
        """A campaign's lanes in pool order; with ``counts``, recipients claimed and sent per
        lane (one pass over the campaign's ledger)."""
        campaign_id = inputs.campaign_id(campaign_id)
        with translate_errors(), self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(
                queries.LIST_LANES, {"campaign_id": campaign_id}
            )]
            if counts:
                tally = {
                    r.session_name: r
                    for r in conn.execute(queries.LANE_COUNTS, {"campaign_id": campaign_id})
                }
                for row in rows:
                    found = tally.get(row["session_name"])
                    row["sent"] = int(found.sent) if found else 0
                    row["claimed"] = int(found.claimed) if found else 0
        return [Lane.from_row(row) for row in rows]

    def get_lane(self, campaign_id: int, session: str) -> Lane | None:
        """The lane of ``session`` in the campaign, or None if it is not in its pool."""
        lanes = self.list_lanes(campaign_id)
        return next((lane for lane in lanes if lane.session_name == session), None)

    def pool_stop(self, campaign_id: int) -> PoolStop | None:
        """The campaign's stop if every lane is down (see :func:`pool_stop_of`), else None."""
        return pool_stop_of(self.list_lanes(campaign_id))

    # --- the engine's verbs (see the module docstring for the order) ---

    def lanes_to_run(self, campaign_id: int, run_token: str) -> list[str]:
        """Sessions whose lanes should run now, in pool order: the active lanes and the
        limited ones whose limit has ended (made active again), heartbeats stamped. Empty
        when the fence is lost or every lane is down (:meth:`interrupt_if_all_lanes_down`
        tells which)."""
        with translate_errors(), self.engine.begin() as conn:
            rows = conn.execute(
                queries.LANES_TO_RUN, {"campaign_id": campaign_id, "run_token": run_token}
            ).all()
        return [r.session_name for r in sorted(rows, key=lambda r: r.position)]

    def claim_for_lane(
        self,
        campaign_id: int,
        batch_number: int,
        run_token: str,
        session: str,
        *,
        stale_after: float | None = None,
    ) -> ClaimedRecipient | None:
        """Claim the next recipient of a batch for the lane of ``session`` (pending →
        sending, stamped with the session), if the caller holds the fence and the lane is
        active. Recipients preferred by another lane that is active and fresher than
        ``stale_after`` seconds are left to it. None: nothing to claim for this lane, fence
        lost or lane down (:meth:`lane_heartbeat` tells which)."""
        claims = self.claim_several_for_lane(
            campaign_id, batch_number, run_token, session, limit=1, stale_after=stale_after
        )
        return claims[0] if claims else None

    def claim_several_for_lane(
        self,
        campaign_id: int,
        batch_number: int,
        run_token: str,
        session: str,
        *,
        limit: int,
        stale_after: float | None = None,
    ) -> list[ClaimedRecipient]:
        """Up to ``limit`` claims at once (``rate`` lanes), in input order; as
        :meth:`claim_for_lane` otherwise. A crash may leave all of them unknown, so
        ``limit`` is the lane's ``in_flight`` at most."""
        stale = self.settings.stall_timeout if stale_after is None else stale_after
        params = {
            "campaign_id": campaign_id,
            "batch_number": batch_number,
            "run_token": run_token,
            "session": session,
            "limit": inputs.positive_int(limit, "limit"),
            "stale_after": float(stale),
        }
        while True:
            with translate_errors(), self.engine.begin() as conn:
                # the opt-out list is read at the claim, in its transaction: a number added
                # while the campaign runs ends skipped instead of being claimed
                skipped = conn.execute(queries.SKIP_OPTED_OUT_FOR_LANE, params).rowcount
                rows = conn.execute(queries.CLAIM_FOR_LANE, params).all()
            if rows or not skipped:
                break  # a head of the batch that was all opted out: look again past it
        return [
            ClaimedRecipient(
                campaign_id=campaign_id,
                position=row.position,
                batch_number=row.batch_number,
                phone=row.phone,
                variables=row.variables,
                attempt=row.attempts,
                variant=row.variant,
            )
            for row in sorted(rows, key=lambda r: r.position)
        ]

    def lane_heartbeat(self, campaign_id: int, session: str, run_token: str) -> bool:
        """Stamp the campaign's and the lane's heartbeats. False: stop this lane's run (the
        fence is lost, or the lane is down; :meth:`heartbeat` tells which)."""
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(
                queries.LANE_HEARTBEAT,
                {"campaign_id": campaign_id, "session": session, "run_token": run_token},
            ).first()
        return row is not None

    def mark_lane_down(
        self,
        campaign_id: int,
        session: str,
        reason: str,
        *,
        kind: StopKind = StopKind.DISCONNECTED,
        resume_at: datetime | None = None,
        run_token: str | None = None,
    ) -> PoolStop | None:
        """Take the lane of ``session`` out of the rotation with the kind of its stop (with
        ``run_token``, only if the caller holds the fence). If it was the last active lane,
        the campaign is interrupted with the pool's stop, in the same transaction, and that
        stop is returned; None otherwise (the other lanes go on)."""
        if kind is StopKind.LIMITED and resume_at is None:
            raise InvalidInput("a limited lane needs resume_at: nothing would ever resume it")
        with translate_errors(), self.engine.begin() as conn:
            if not self._lock_campaign(conn, campaign_id, run_token):
                return None
            resume_at = resume_at if kind is StopKind.LIMITED else None
            conn.execute(
                queries.SET_LANE_DOWN,
                {
                    "campaign_id": campaign_id,
                    "session": session,
                    "kind": kind.value,
                    "reason": reason,
                    "resume_at": resume_at,
                },
            )
            write_event(conn, campaign_id, EventKind.LANE_DOWN, session=session,
                        detail=stop_text(kind, reason, resume_at))  # fmt: skip
            return self._interrupt_if_down(conn, campaign_id, run_token)

    def interrupt_if_all_lanes_down(
        self, campaign_id: int, run_token: str | None = None
    ) -> PoolStop | None:
        """Interrupt a running campaign whose every lane is down, with the pool's stop (with
        ``run_token``, only if the caller holds the fence). Returns the stop, or None when a
        lane is active or the campaign was not running (under that token)."""
        with translate_errors(), self.engine.begin() as conn:
            if not self._lock_campaign(conn, campaign_id, run_token):
                return None
            return self._interrupt_if_down(conn, campaign_id, run_token)

    # --- recovery's verbs ---

    def activate_lanes(
        self,
        campaign_id: int,
        *,
        session: str | None = None,
        kind: StopKind | None = None,
        due_only: bool = False,
    ) -> list[str]:
        """Put down lanes of a campaign back in the rotation: of ``session`` (or all), of
        ``kind`` (or any), with ``due_only`` only limited ones whose ``resume_at`` has come.
        Whatever the campaign's status: a resume calls it before it starts the campaign, so
        the run finds its lanes. Returns their sessions."""
        params = {
            "campaign_id": campaign_id,
            "session": session,
            "kind": kind.value if kind else None,
            "due_only": due_only,
        }
        with translate_errors(), self.engine.begin() as conn:
            self._lock_campaign(conn, campaign_id, None)
            up = [r.session_name for r in conn.execute(queries.ACTIVATE_LANES, params)]
            write_lanes_up(conn, [(campaign_id, s) for s in up], None, None)
            return up

    def activate_running_lanes(
        self, *, session: str | None = None, kind: StopKind | None = None, due_only: bool = False,
        trigger: str | None = None,
    ) -> list[tuple[int, str]]:
        """The same across *running* campaigns (a session reconnected, a lane's limit ended):
        (campaign id, session) of each lane put back. A campaign interrupted meanwhile is
        left alone: it is resumed as a whole."""
        params = {
            "session": session,
            "kind": kind.value if kind else None,
            "due_only": due_only,
        }
        with translate_errors(), self.engine.begin() as conn:
            rows = conn.execute(queries.ACTIVATE_RUNNING_LANES, params).all()
            up = sorted((r.campaign_id, r.session_name) for r in rows)
            write_lanes_up(conn, up, trigger, None)  # ``trigger``: who brought them back
        return up

    # --- inside a transaction ---

    @staticmethod
    def _lock_campaign(conn: Connection, campaign_id: int, run_token: str | None) -> bool:
        """Lock the campaign row (the fence, with ``run_token``); False if there is none."""
        if run_token is None:
            row = conn.execute(queries.LOCK_CAMPAIGN, {"campaign_id": campaign_id}).first()
        else:
            row = conn.execute(
                queries.LOCK_FENCED, {"campaign_id": campaign_id, "run_token": run_token}
            ).first()
        return row is not None

    @staticmethod
    def _interrupt_if_down(
        conn: Connection, campaign_id: int, run_token: str | None
    ) -> PoolStop | None:
        # the lanes are locked (after the campaign row), so a lane that a concurrent resume
        # puts back is either seen active here or waits and finds the campaign interrupted
        lanes = [
            Lane.from_row(r._mapping)
            for r in conn.execute(queries.LOCK_LANES, {"campaign_id": campaign_id})
        ]
        stop = pool_stop_of(lanes)
        if stop is None:
            return None
        # StatusVerbs.transition's statement, in this transaction: only a running campaign
        # is interrupted (a pause or cancel that came first stays)
        moved = conn.execute(queries.TRANSITION, _interruption(campaign_id, stop, run_token))
        if moved.first() is None:
            return None
        write_event(conn, campaign_id, EventKind.INTERRUPTED,
                    detail=stop_text(stop.kind, stop.reason, stop.resume_at))  # fmt: skip
        return stop


def _interruption(campaign_id: int, stop: PoolStop, run_token: str | None) -> dict[str, Any]:
    """Parameters of queries.TRANSITION for running → interrupted with the pool's stop."""
    sources = sources_of(CampaignStatus.INTERRUPTED) & {CampaignStatus.RUNNING}
    return {
        "campaign_id": campaign_id,
        "target": CampaignStatus.INTERRUPTED.value,
        "sources": "{" + ",".join(sorted(s.value for s in sources)) + "}",
        "set_reason": True,
        "reason": stop.reason,
        "new_token": None,
        "finished": False,
        "check_token": run_token is not None,
        "run_token": run_token,
        "kind": stop.kind.value,
        "resume_at": stop.resume_at,
        "if_kind": None,
    }
