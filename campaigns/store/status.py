"""Store verbs that change a campaign's status: the transitions of ``domain.TRANSITIONS``,
pause, cancel, and starting a new run under a fresh token."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from campaigns import inputs
from campaigns.domain import RESUMABLE_BY_OPERATOR, CampaignStatus, StopKind, sources_of
from campaigns.errors import InvalidInput, InvalidTransition
from campaigns.store import queries
from campaigns.store.base import StoreBase
from campaigns.store.db import translate_errors
from campaigns.store.events import write_recovered, write_transition


class StatusVerbs(StoreBase):
    """Moving campaigns between statuses, always through the transition table."""

    def transition(
        self,
        campaign_id: int,
        target: CampaignStatus,
        *,
        reason: str | None = None,
        run_token: str | None = None,
        new_token: str | None = None,
        only_from: Iterable[CampaignStatus] | None = None,
        kind: StopKind | None = None,
        resume_at: datetime | None = None,
        if_kind: StopKind | None = None,
        trigger: str | None = None,
        detail: str | None = None,
    ) -> bool:
        """Move a campaign to ``target`` if the transition table allows it from its status
        (and, with ``run_token``, if the caller holds the fence; with ``only_from``, if its
        status is one of those; with ``if_kind``, if its stop is of that kind). False when the
        guard did not match. The guard is in the UPDATE itself, so a pause committed after the
        caller read the campaign still wins, and so does a stop that became blocked. The
        change's timeline event is written in the same transaction (``trigger``: who resumes,
        for a move to running; ``detail``: its text, ``reason`` by default)."""
        allowed = sources_of(target)
        if only_from is not None:
            allowed = allowed & frozenset(only_from)
        sources = sorted(s.value for s in allowed)
        with translate_errors(), self.engine.begin() as conn:
            previous = None
            if target is CampaignStatus.RUNNING:
                # the event tells a resume from a recovery or a start by the status left: read
                # under the row lock the UPDATE takes anyway (the campaign row first, as always)
                locked = conn.execute(queries.LOCK_CAMPAIGN, {"campaign_id": campaign_id}).first()
                previous = CampaignStatus(locked.status) if locked is not None else None
            row = conn.execute(
                queries.TRANSITION,
                {
                    "campaign_id": campaign_id,
                    "target": target.value,
                    "sources": "{" + ",".join(sources) + "}",
                    "set_reason": reason is not None or target is CampaignStatus.RUNNING,
                    "reason": reason,
                    "new_token": new_token,
                    "finished": target.finished,
                    "check_token": run_token is not None,
                    "run_token": run_token,
                    # only an interruption keeps them (the statement clears them otherwise)
                    "kind": (kind or StopKind.DISCONNECTED).value,
                    "resume_at": resume_at,
                    "if_kind": if_kind.value if if_kind else None,
                },
            ).first()
            if row is not None:
                write_transition(
                    conn, campaign_id, target, previous, reason=detail or reason, kind=kind,
                    resume_at=resume_at, trigger=trigger,
                )  # fmt: skip
        return row is not None

    def _transition_or_raise(
        self, campaign_id: int, target: CampaignStatus, reason: str | None = None
    ) -> None:
        if not self.transition(campaign_id, target, reason=reason):
            current = self.get_campaign(campaign_id).status
            raise InvalidTransition(
                f"campaign {campaign_id} is {current.value}; it cannot become {target.value}"
            )

    def mark_interrupted(
        self,
        campaign_id: int,
        reason: str,
        run_token: str | None = None,
        *,
        kind: StopKind = StopKind.DISCONNECTED,
        resume_at: datetime | None = None,
    ) -> bool:
        """Interrupt a running campaign with a reason and the kind of the stop, which decides
        who resumes it: the session watcher and webhooks (``disconnected``), the sweep at
        ``resume_at`` (``limited``: required), or only an operator (``blocked``)."""
        if kind is StopKind.LIMITED and resume_at is None:
            raise InvalidInput("a limited stop needs resume_at: nothing would ever resume it")
        return self.transition(
            campaign_id,
            CampaignStatus.INTERRUPTED,
            reason=reason,
            run_token=run_token,
            kind=kind,
            resume_at=resume_at if kind is StopKind.LIMITED else None,
        )

    def pause(self, campaign_id: int, reason: str = "paused by operator") -> None:
        """Pause: the running task stops before its next message."""
        campaign_id, reason = inputs.campaign_id(campaign_id), inputs.reason_text(reason)
        self._transition_or_raise(campaign_id, CampaignStatus.PAUSED, reason)

    def cancel(self, campaign_id: int, reason: str = "cancelled by operator") -> None:
        """Cancel for good: nothing more is sent."""
        campaign_id, reason = inputs.campaign_id(campaign_id), inputs.reason_text(reason)
        self._transition_or_raise(campaign_id, CampaignStatus.CANCELLED, reason)

    def start_run(
        self,
        campaign_id: int,
        *,
        only_from: Iterable[CampaignStatus] = RESUMABLE_BY_OPERATOR,
        if_kind: StopKind | None = None,
        trigger: str | None = None,
        reason: str | None = None,
    ) -> str:
        """Put a campaign back to running under a new run token, which fences off any task of
        an earlier chain. Returns the token. ``only_from`` narrows the statuses it may come
        from: the session watcher starts only interrupted campaigns, the scheduled sweep only
        scheduled ones, so neither can undo an operator's pause or cancel that lands between
        its read and this write. ``trigger`` and ``reason`` go into the timeline's event (a
        recovery's trigger: the operator's by default). :class:`InvalidTransition` when the
        guard did not match."""
        token = str(uuid.uuid4())
        allowed = frozenset(only_from)
        if not self._start(campaign_id, token, allowed, if_kind, trigger, reason):
            current = self.get_campaign(campaign_id).status
            names = ", ".join(sorted(s.value for s in allowed & RESUMABLE_BY_OPERATOR))
            raise InvalidTransition(
                f"campaign {campaign_id} is {current.value}; only a campaign that is {names} "
                "can be started here"
            )
        return token

    def _start(
        self,
        campaign_id: int,
        token: str,
        allowed: frozenset[CampaignStatus],
        if_kind: StopKind | None,
        trigger: str | None,
        reason: str | None,
    ) -> bool:
        # the resume's reason is the event's text only: as ``reason`` the statement would keep
        # it as the campaign's interruption reason, which a move to running clears
        return self.transition(
            campaign_id, CampaignStatus.RUNNING, new_token=token, only_from=allowed,
            if_kind=if_kind, trigger=trigger, detail=reason,
        )  # fmt: skip

    def restart_run(self, campaign_id: int, *, reason: str | None = None) -> str:
        """Give a running campaign a new run token whatever its heartbeat (operator resume):
        the old chain stops before its next message. Returns the token. The timeline records
        it as the operator's recovery, with ``reason``."""
        token = str(uuid.uuid4())
        with translate_errors(), self.engine.begin() as conn:
            row = conn.execute(
                queries.RESTART_RUN,
                {"id": campaign_id, "token": token},
            ).first()
            if row is not None:
                write_recovered(conn, campaign_id, "operator", reason)
        if row is None:
            raise InvalidTransition(f"campaign {campaign_id} is not running")
        return token
