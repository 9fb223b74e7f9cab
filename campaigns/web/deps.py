"""Dependencies the routers declare: what the application built in its lifespan.

Routers ask for these (``store: StoreDep``) instead of reaching for globals, so a test builds an
app around its own store and every router sees that one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from campaigns.store import CampaignStateManager
from campaigns.webhooks import WebhookReceiver


def get_store(request: Request) -> CampaignStateManager:
    """The application's store (one connection pool for the whole service)."""
    store: CampaignStateManager = request.app.state.store
    return store


def get_receiver(request: Request) -> WebhookReceiver:
    """The webhook receiver, built once with the secrets read at start."""
    receiver: WebhookReceiver = request.app.state.receiver
    return receiver


StoreDep = Annotated[CampaignStateManager, Depends(get_store)]
ReceiverDep = Annotated[WebhookReceiver, Depends(get_receiver)]


def views_changed(request: Request, campaign_id: int) -> None:
    """An action changed a campaign: the dashboard's shared views of it (and the campaigns
    list's) are dropped, so its pages show the change at their next poll, not a poll later."""
    cache = getattr(request.app.state, "dashboard_cache", None)
    if cache is not None:
        cache.drop(campaign_id)
