"""What the dashboard's pages show, read from the store (blocking: run in the thread pool).

Cost is the point of this module. The pages poll every few seconds, possibly from 50 browsers,
while workers send; so:

- the campaigns list reads one page of campaigns (one indexed query) and, per campaign, its
  snapshot (the ledger's status counts: an index range over that campaign's rows) and its
  delivered/read counts, and only for campaigns still moving; a finished campaign's counters
  are the campaign row's own (exact once its batches are recorded);
- every per-campaign figure goes through :class:`~campaigns.web.dashboard.cache.TtlCache`,
  shared by every browser of the service: 50 dashboards polling every 2 s cost one
  computation per campaign and view per :data:`LIVE_TTL`, not 25 a second (cache.py says
  how). An action drops its campaign's entries, so its result shows at once;
- the recipients table is one keyset page (``recipients_after``), never the whole ledger.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from campaigns.domain import Campaign, CampaignStatus, Lane, RecipientStatus, StatusSnapshot
from campaigns.errors import CampaignError
from campaigns.receipts import DeliveryFigures
from campaigns.store import CampaignStateManager
from campaigns.views import campaign_data, pacing_data, protection_data, snapshot_data
from campaigns.web.dashboard.cache import TtlCache

LIVE_TTL = 2.0
"""Seconds a moving campaign's figures are reused: the polls' period, so a page is at most one
poll behind."""
SLOW_TTL = 10.0
"""Seconds a moving campaign's slower-moving figures are reused: the per-minute chart,
delivered/read counts (receipts trail the sends by seconds anyway), the lanes' counts and the
outcome reasons. Each reads the campaign's whole ledger; refreshing them every poll was most of
what 50 open dashboards cost a sending campaign (bench/dashboard.py)."""
SETTLED_TTL = 30.0
"""Seconds a finished campaign's figures are reused (only late receipts still move them)."""
CHART_MINUTES = 120
COUNTED = ("sent", "failed", "duplicate", "invalid", "unknown", "skipped")


@dataclass(frozen=True)
class Figures:
    """The ledger figures both pages show, refreshed every poll: the snapshot (None for a
    finished campaign: its list row reads the campaign's counters) and the current rate."""

    snapshot: StatusSnapshot | None
    rate: float | None


@dataclass(frozen=True)
class SlowFigures:
    """The figures refreshed every :data:`SLOW_TTL`: delivered/read counts, the lanes with
    their counts, the outcome reasons, the chart's points."""

    delivery: DeliveryFigures
    lanes: list[Lane]
    reasons: dict[RecipientStatus, dict[str, int]]
    chart: list[dict[str, Any]]


def _plain(value: Any) -> dict[str, Any]:
    """A store row (a dataclass or a mapping) as a dict for the templates."""
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return dict(value)


def current_rate(store: CampaignStateManager, campaign_id: int) -> float | None:
    """Messages per second over the last minute."""
    rate = store.current_rate(campaign_id, seconds=60)
    return None if rate is None else float(rate)


def ttl_of(campaign: Campaign) -> float:
    """How long a campaign's views are reused: a poll while it moves."""
    return SETTLED_TTL if campaign.status.finished else LIVE_TTL


def figures(store: CampaignStateManager, cache: TtlCache, campaign: Campaign) -> Figures:
    """A campaign's ledger figures, computed once for both pages that show them."""

    def compute() -> Figures:
        moving = not campaign.status.finished
        return Figures(
            snapshot=store.snapshot(campaign.id) if moving else None,
            rate=current_rate(store, campaign.id) if moving else None,
        )

    return cache.get(("figures", campaign.id), version_of(campaign), ttl_of(campaign), compute)


def slow_figures(store: CampaignStateManager, cache: TtlCache, campaign: Campaign) -> SlowFigures:
    """The slower-moving figures, versioned by status only: a batch done does not make them
    stale, their time does (or a status change)."""

    def compute() -> SlowFigures:
        return SlowFigures(
            delivery=store.delivery_counts(campaign.id),
            lanes=store.list_lanes(campaign.id, counts=True),
            reasons=store.outcome_reasons(campaign.id),
            chart=chart_points(store, campaign.id),
        )

    ttl = SETTLED_TTL if campaign.status.finished else SLOW_TTL
    return cache.get(("slow", campaign.id), (campaign.status.value,), ttl, compute)


def row_view(store: CampaignStateManager, cache: TtlCache, campaign: Campaign) -> dict[str, Any]:
    """One line of the campaigns list: status, progress, counts, rate, ETA and waiting."""
    data = campaign_data(campaign)
    shared = figures(store, cache, campaign)
    slow = slow_figures(store, cache, campaign)
    snapshot = shared.snapshot
    if snapshot is None:  # finished: the campaign row's counters are exact
        counts = {name: data[name] for name in COUNTED}
        remaining, eta = 0, 0.0
    else:
        counts = {name: snapshot.counts.get(RecipientStatus(name), 0) for name in COUNTED}
        remaining, eta = snapshot.remaining, snapshot.eta_seconds()
    delivery = slow.delivery.total
    total = campaign.total_numbers
    done = total - remaining
    return {
        **data,
        "counts": {**counts, "delivered": delivery.delivered, "read": delivery.read},
        "done": done,
        "progress": done / total if total else 1.0,
        "remaining": remaining,
        "eta_seconds": eta,
        "rate": shared.rate,
        "actions": actions_for(campaign.status),
    }


def actions_for(status: CampaignStatus) -> list[str]:
    """The actions that make sense from a status (the store still checks each transition)."""
    found = []
    if status in (CampaignStatus.RUNNING, CampaignStatus.SCHEDULED, CampaignStatus.INTERRUPTED):
        found.append("pause")
    if status in (CampaignStatus.PAUSED, CampaignStatus.INTERRUPTED, CampaignStatus.SCHEDULED):
        found.append("resume")
    if not status.finished:
        found.append("cancel")
    if status.finished or status is CampaignStatus.PAUSED:
        found.append("retry")
    return found


def campaign_rows(
    store: CampaignStateManager, cache: TtlCache, campaigns: list[Campaign]
) -> list[dict[str, Any]]:
    rows = []
    for campaign in campaigns:
        # versioned with the status: a campaign that changed status since is computed afresh
        rows.append(cache.get(("row", campaign.id), version_of(campaign), ttl_of(campaign),
                              lambda c=campaign: row_view(store, cache, c)))  # type: ignore[misc]  # fmt: skip
    return rows


def list_page(
    store: CampaignStateManager,
    cache: TtlCache,
    status: CampaignStatus | None,
    session: str | None,
    before: int | None,
    size: int,
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of the campaigns list, newest first, and the id the next page starts below.
    ``list_campaigns`` has no keyset argument, so a later page reads the ids above it too
    (campaign rows: a few per day, not a ledger)."""
    wanted = size + 1
    found: list[Campaign] = []
    limit = wanted
    while True:
        got = store.list_campaigns(status, session, limit)
        found = [c for c in got if before is None or c.id < before][:wanted]
        if len(found) >= wanted or len(got) < limit:
            break
        limit *= 4
    page, more = found[:size], len(found) > size
    return campaign_rows(store, cache, page), (page[-1].id if more and page else None)


RISK_LABELS = {4: "blocked", 3: "limited", 2: "disconnected", 1: "near a cap", 0: "healthy"}


def session_views(store: CampaignStateManager) -> list[dict[str, Any]]:
    """Every sender session with its pacing, caps and window, the ones at risk first: the
    store's overview (caps used and left today, warm-up day, limited until, blocked) once it
    offers one, else what the sessions themselves say."""
    overview = getattr(store, "sessions_overview", None)
    if overview is not None:
        views = []
        for item in overview():  # already ordered, most at risk first
            view = _plain(item)
            view.update(left_day=item.left_day, left_hour=item.left_hour, risk=4 - int(item.risk))
            views.append(view)
        return views
    views = []
    for session in store.list_sessions():
        view = {
            "name": session.name, "gateway": session.gateway,
            "connection_status": session.connection_status,
            "last_checked_at": session.last_checked_at, "last_error": session.last_error,
            "pacing": pacing_data(session)["description"], **protection_data(session),
        }  # fmt: skip
        view["risk"] = 2 if session.connection_status not in ("connected", "working") else 0
        views.append(view)
    views.sort(key=lambda v: (-v["risk"], v["name"]))
    return views


def chart_points(store: CampaignStateManager, campaign_id: int) -> list[dict[str, Any]]:
    """Per minute of the last two hours (zeros where nothing happened), for the chart."""
    verb = store.activity
    found = {row.minute.astimezone(UTC).replace(second=0, microsecond=0): row
             for row in verb(campaign_id, minutes=CHART_MINUTES)}  # fmt: skip
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    points = []
    for back in range(CHART_MINUTES - 1, -1, -1):
        minute = now - timedelta(minutes=back)
        row = found.get(minute)
        points.append({
            "label": minute.strftime("%H:%M"),
            "sent": row.sent if row else 0, "failed": row.failed if row else 0,
            "delivered": row.delivered if row else 0, "read": row.read if row else 0,
        })  # fmt: skip
    return points


def campaign_live(store: CampaignStateManager, cache: TtlCache, campaign_id: int) -> dict[str, Any]:
    """The campaign page's live part: summary, lanes with pace and share, timeline, chart."""
    return live_view(store, cache, store.get_campaign(campaign_id))


def live_view(store: CampaignStateManager, cache: TtlCache, campaign: Campaign) -> dict[str, Any]:
    """:func:`campaign_live` of a campaign row just read."""
    return cache.get(("live", campaign.id), version_of(campaign), ttl_of(campaign),
                     lambda: _live(store, cache, campaign))  # fmt: skip


def version_of(campaign: Campaign) -> tuple[str, datetime]:
    """What a campaign's views are computed for: its status, and ``updated_at`` (a batch
    done, an action, a recovery moves it)."""
    return (campaign.status.value, campaign.updated_at)


def _live(store: CampaignStateManager, cache: TtlCache, campaign: Campaign) -> dict[str, Any]:
    shared = figures(store, cache, campaign)
    slow = slow_figures(store, cache, campaign)
    # a finished campaign's list row needs no snapshot; its page does (reasons, lanes, batches)
    snapshot = shared.snapshot or store.snapshot(campaign.id)
    # the lanes' states fresh every poll (the lanes table: a few rows), their counts from the
    # slower figures
    counted = {lane.session_name: lane for lane in slow.lanes}
    lanes = [
        replace(lane, sent=counted[lane.session_name].sent,
                claimed=counted[lane.session_name].claimed)
        if lane.session_name in counted else lane
        for lane in store.list_lanes(campaign.id)
    ]  # fmt: skip
    view = snapshot_data(snapshot, lanes, reasons=slow.reasons, delivery=slow.delivery)
    paces = {}
    for lane in lanes:
        try:
            paces[lane.session_name] = pacing_data(store.get_session(lane.session_name))
        except CampaignError:
            paces[lane.session_name] = {"description": "unknown session"}
    view["paces"] = paces
    view["eta_seconds"] = snapshot.eta_seconds()
    total = snapshot.campaign.total_numbers
    view["progress"] = (total - snapshot.remaining) / total if total else 1.0
    view["done"] = total - snapshot.remaining
    view["rate"] = shared.rate if shared.snapshot is not None else current_rate(store, campaign.id)
    view["actions"] = actions_for(snapshot.campaign.status)
    view["events"] = cache.timeline.newest(store, campaign.id)
    view["chart"] = slow.chart
    return view
