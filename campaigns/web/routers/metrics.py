"""``GET /metrics``: Prometheus text exposition of the service (and, with
PROMETHEUS_MULTIPROC_DIR, of every worker sharing that directory), plus what the store knows,
read at scrape time.

No authentication, as Prometheus expects of a scrape target: the figures carry no phone number,
message or campaign id. Where the service faces the internet, keep ``/metrics`` off the public
proxy (or allow only the Prometheus server's address there).

The store gauges are computed by :class:`StoreCollector` with one GROUP BY per table on every
scrape (campaigns by status, down lanes by session): cheap at a scrape every 15 s or more, and
always true, unlike a gauge that workers would have to keep up to date and that a dead worker
would leave wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from starlette.concurrency import run_in_threadpool

from campaigns.metrics import CONTENT_TYPE, exposition
from campaigns.store import CampaignStateManager
from campaigns.store.gauges import scrape_figures
from campaigns.web.deps import StoreDep

log = logging.getLogger("campaigns.web")
router = APIRouter(tags=["metrics"])


class StoreCollector:
    """Gauges read from PostgreSQL at scrape time; ``campaigns_store_up`` 0 when it fails
    (the rest of the scrape still answers)."""

    def __init__(self, store: CampaignStateManager) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "campaigns_store_up", "1 when the scrape could read the store, else 0."
        )
        try:
            campaigns, lanes = scrape_figures(self.store.engine)
        except Exception as exc:  # an outage is a 0, not a failed scrape
            log.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_status = GaugeMetricFamily(
            "campaigns_campaigns",
            "Campaigns by status; stop_kind is the kind of an interrupted one's stop "
            "(disconnected, limited, blocked), waiting whether a running one waits for a "
            "window or capacity.",
            labels=["status", "stop_kind", "waiting"],
        )
        age = GaugeMetricFamily(
            "campaigns_heartbeat_age_seconds",
            "Seconds since the stalest heartbeat among the campaigns of each status (a running "
            "campaign's chain stamps it while it sends or waits).",
            labels=["status"],
        )
        oldest: dict[str, float] = {}
        for group in campaigns:
            waiting = "true" if group.waiting else "false"
            by_status.add_metric([group.status, group.stop_kind, waiting], group.count)
            if group.stalest_heartbeat_s is not None:
                seen = oldest.get(group.status, 0.0)
                oldest[group.status] = max(seen, group.stalest_heartbeat_s)
        for status, seconds in sorted(oldest.items()):
            age.add_metric([status], seconds)
        down = GaugeMetricFamily(
            "campaigns_lanes_down",
            "Lanes of unfinished campaigns out of the rotation, by session and kind of stop.",
            labels=["session", "stop_kind"],
        )
        for lane in lanes:
            down.add_metric([lane.session, lane.stop_kind], lane.count)
        yield from (by_status, age, down)


@router.get("/metrics", summary="Prometheus metrics (text exposition)")
async def metrics(store: StoreDep) -> Response:
    body = await run_in_threadpool(exposition, [StoreCollector(store)])
    return Response(body, media_type=CONTENT_TYPE)
