"""The JSON views of campaigns, status snapshots, lanes and sessions: one shape for the command
line's ``--json`` and the HTTP API, so a script can move from one to the other unchanged.

"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from campaigns.caps import caps_from_options
from campaigns.domain import Campaign, Lane, RecipientStatus, SenderSession, StatusSnapshot
from campaigns.errors import ConfigurationError, InvalidInput
from campaigns.profiles import profile_from_options
from campaigns.receipts import DeliveryFigures
from campaigns.windows import window_from_options


def campaign_data(campaign: Campaign) -> dict[str, Any]:
    """A campaign for JSON output. The message text is left out (it may be personal); its
    length says enough to recognise it."""
    return {
        "id": campaign.id,
        "session": campaign.session_name,
        # the sender pool in lane order (its first is "session")
        "sessions": list(campaign.sessions),
        "status": campaign.status.value,
        "total_numbers": campaign.total_numbers,
        "total_batches": campaign.total_batches,
        "current_batch": campaign.current_batch,
        "processed_numbers": campaign.processed_numbers,
        "sent": campaign.success_count,
        "failed": campaign.failed_count,
        "duplicates": campaign.duplicate_count,
        "invalid": campaign.invalid_count,
        "unknown": campaign.unknown_count,
        "skipped": campaign.skipped_count,
        "batch_size": campaign.batch_size,
        "min_interval": campaign.min_interval,
        "max_interval": campaign.max_interval,
        "batch_delay_min": campaign.batch_delay_min,
        "batch_delay_max": campaign.batch_delay_max,
        "message_length": len(campaign.message),
        # consent and content: the basis relied on (LGPD), how many texts (the message and its
        # variants, left out like it), the list's variables, media, the duplicate window, and
        # the campaign a follow-up retries
        "legal_basis": campaign.legal_basis,
        "legal_note": campaign.legal_note,
        "texts": 1 + len(campaign.variants),
        "columns": list(campaign.columns),
        "media": dict(campaign.media) if campaign.media else None,
        "dedupe_days": campaign.dedupe_days,
        "retry_of": campaign.retry_of,
        "interrupt_reason": campaign.interrupt_reason,
        # who resumes an interrupted campaign: the watcher (disconnected), the sweep at
        # resume_at (limited), or only an operator (blocked)
        "interrupt_kind": campaign.interrupt_kind.value if campaign.interrupt_kind else None,
        "resume_at": campaign.resume_at,
        # what a running campaign waits for (capacity, a window, deferred recipients): a wait
        # interrupts nothing and ends by itself
        "waiting_reason": campaign.waiting_reason,
        "waiting_until": campaign.waiting_until,
        "heartbeat_at": campaign.heartbeat_at,
        "next_batch_at": campaign.next_batch_at,
        "created_at": campaign.created_at,
        "updated_at": campaign.updated_at,
    }


def snapshot_data(
    snapshot: StatusSnapshot,
    lanes: Sequence[Lane] | None = None,
    *,
    reasons: Mapping[RecipientStatus, Mapping[str, int]] | None = None,
    delivery: DeliveryFigures | None = None,
) -> dict[str, Any]:
    """A status snapshot for JSON output: the campaign, live ledger counts and the ETA; with
    ``lanes`` (read with their counts), each lane's state and share of the sends; with
    ``reasons`` (:meth:`~campaigns.store.CampaignStateManager.outcome_reasons`), the skipped
    and duplicate counts by reason; with ``delivery`` (``delivery_counts``), the receipts'
    delivered (read ones included) and read counts and rates over sent, per sending session."""
    data = {
        **campaign_data(snapshot.campaign),
        "ledger": {status.value: snapshot.counts.get(status, 0) for status in RecipientStatus},
        "remaining": snapshot.remaining,
        "batches_done": snapshot.batches_done,
        "eta_seconds": round(snapshot.eta_seconds(), 1),
        "last_error": snapshot.last_error,
    }
    if lanes is not None:
        data["lanes"] = [lane_data(lane, lanes) for lane in lanes]
    if reasons is not None:
        data["skipped_reasons"] = dict(reasons.get(RecipientStatus.SKIPPED, {}))
        data["duplicate_reasons"] = dict(reasons.get(RecipientStatus.DUPLICATE, {}))
    if delivery is not None:
        data["delivery"] = delivery.as_dict()
    return data


def lane_data(lane: Lane, lanes: Sequence[Lane]) -> dict[str, Any]:
    """One lane for JSON output: its state, the kind of its stop, and its share of what the
    pool has sent so far."""
    return {
        "session": lane.session_name,
        "position": lane.position,
        "state": lane.state.value,
        "stop_kind": lane.stop_kind.value if lane.stop_kind else None,
        "reason": lane.reason,
        "resume_at": lane.resume_at,
        "heartbeat_at": lane.heartbeat_at,
        "claimed": lane.claimed,
        "sent": lane.sent,
        "share": round(share(lane, lanes), 4),
    }


def share(lane: Lane, lanes: Sequence[Lane]) -> float:
    """The lane's part of the pool's sends, 0 to 1 (0 before anything is sent)."""
    total = sum(other.sent for other in lanes)
    return lane.sent / total if total else 0.0


def pacing_data(session: SenderSession) -> dict[str, Any]:
    """The session's pacing profile (its options, or its gateway kind's default)."""
    try:
        profile = profile_from_options(session.gateway, session.options)
    except ConfigurationError as exc:
        # stored before its options were checked: say so rather than fail the whole list
        return {"kind": None, "rate": None, "in_flight": None, "description": f"invalid: {exc}"}
    return {
        "kind": profile.kind.value,
        "rate": profile.rate if profile.is_rate else None,
        "in_flight": profile.in_flight,
        "description": profile.describe(),
    }


def protection_data(session: SenderSession) -> dict[str, Any]:
    """The session's caps and send window, as a person reads them."""
    try:
        caps = caps_from_options(session.gateway, session.name, session.options)
        window = window_from_options(session.options)
    except (ConfigurationError, InvalidInput) as exc:
        return {"caps": f"invalid: {exc}", "window": None}
    return {"caps": caps.describe(), "window": window.describe() if window else None}


def session_data(session: SenderSession) -> dict[str, Any]:
    """A session for JSON output (it holds no secret: only the variable's name)."""
    return {
        "name": session.name,
        "gateway": session.gateway,
        "base_url": session.base_url,
        "token_env": session.token_env,
        "options": dict(session.options),
        "pacing": pacing_data(session),
        **protection_data(session),
        "connection_status": session.connection_status,
        "last_checked_at": session.last_checked_at,
        "last_error": session.last_error,
        "created_at": session.created_at,
    }
