"""The application factory: one FastAPI app, its routers, and what they share.

``create_app`` builds nothing heavy; the lifespan opens the store (one connection pool) and the
broker client at start and closes what it opened at shutdown, so an app can be created, served,
stopped and thrown away without leaking a pool. Given a store or a resume callable, the app uses
it and leaves closing it to the caller (tests hand in their own).

New concerns (receipts, the operators' API, metrics, the dashboard) are routers in
:mod:`campaigns.web.routers`, added in :data:`ROUTERS`; they reach the store through
:mod:`campaigns.web.deps`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import ExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI

from campaigns.dispatch import Enqueue, TaskSender, configured_enqueue, queue_name
from campaigns.settings import Settings
from campaigns.store import CampaignStateManager
from campaigns.web import dashboard
from campaigns.web.routers import api, api_errors, health, metrics, webhooks
from campaigns.webhooks import Resume, WebhookReceiver

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    webhooks.router,
    metrics.router,
    api.router,
    *dashboard.ROUTERS,
)


def _settings(given: Settings | None) -> Settings:
    if given is not None:
        return given
    from campaigns.local import resolve_settings

    # the database and the broker (resumes); no pacing Redis: the service sends nothing
    return resolve_settings(need=("database", "broker"))


def create_app(
    store: CampaignStateManager | None = None,
    *,
    settings: Settings | None = None,
    resume: Resume | None = None,
    env: Mapping[str, str] | None = None,
    enqueue: Enqueue | None = None,
) -> FastAPI:
    """The web service. ``store``: built from ``settings`` (else the environment) when None and
    disposed at shutdown. ``resume``: enqueues ``campaigns.resume_session`` on the settings'
    broker when None. ``env``: where the webhook secrets are read (default ``os.environ``).
    ``enqueue``: how the operators' API queues a campaign's batches (created, resumed,
    retried): the broker's sender when the app built one, else the configured broker on first
    use (so an app given ``resume`` alone starts no broker client until it sends)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as owned:
            used = store
            if used is None:
                used = CampaignStateManager(settings=_settings(settings))
                owned.callback(used.dispose)
            answer, sends = resume, enqueue
            if answer is None:
                # a store handed in may come with settings that name no broker: find one
                broker = (settings or used.settings).broker_url or _settings(None).broker_url
                assert broker is not None  # resolve_settings fills every URL it was asked for
                sender = TaskSender.for_broker(broker, queue_name(), "campaigns-web")
                owned.callback(sender.close)
                answer = sender.resume_session
                sends = sends or sender
            app.state.store = used
            app.state.enqueue = sends or configured_enqueue
            app.state.receiver = WebhookReceiver.from_env(
                used, answer, os.environ if env is None else env,
                keywords=(settings or used.settings).optout_keywords,
            )  # fmt: skip
            yield

    app = FastAPI(
        title="Campaign Continuity",
        summary="The operators' API (/api/v1, bearer tokens from `campaigns tokens create`); "
        "the dashboard (/, the same tokens); webhooks of the WhatsApp gateways; health.",
        lifespan=lifespan,
    )
    for router in ROUTERS:
        app.include_router(router)
    api_errors.install(app)  # the API's errors as JSON; the other paths keep their answers
    dashboard.install(app)  # its static files, and its refusals as pages (login, 403)
    return app
