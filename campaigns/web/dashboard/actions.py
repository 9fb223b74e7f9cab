"""The dashboard's actions: pause, resume, cancel, retry failed. Each is the operators' API's
own call (the same store transition: a paused campaign's running task stops before its next
message), behind the operator scope and a confirmation in the page.

From htmx the answer is a one-line message for the page's status region plus an
``HX-Trigger`` that makes the page's live part poll at once; without script, a redirect back.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from campaigns.errors import CampaignError
from campaigns.web.auth import OPERATOR
from campaigns.web.dashboard.login import OperatorPageScope, safe_next
from campaigns.web.dashboard.render import render
from campaigns.web.deps import StoreDep, views_changed
from campaigns.web.routers import api
from campaigns.web.routers.api_errors import ApiError
from campaigns.web.routers.api_models import ControlIn

router = APIRouter(include_in_schema=False)
REFRESH = "dashboard-refresh"
"""The event every live part also listens for (``hx-trigger="every 2s, dashboard-refresh from:
body"``)."""


async def _run(request: Request, store: Any, campaign_id: int, action: str) -> str:
    if action == "pause":
        await api.pause(campaign_id, request, store, OPERATOR,
                        ControlIn(reason="paused by operator (dashboard)"))  # fmt: skip
        return f"Campaign {campaign_id} paused: its running task stops before its next message."
    if action == "cancel":
        await api.cancel(campaign_id, request, store, OPERATOR,
                         ControlIn(reason="cancelled by operator (dashboard)"))  # fmt: skip
        return f"Campaign {campaign_id} cancelled."
    if action == "resume":
        done = await api.resume(campaign_id, request, store, OPERATOR)
        return f"Campaign {campaign_id} resumed from position {done['position']}."
    follow_up = await api.retry(campaign_id, request, store, OPERATOR, None)
    return (
        f"Campaign {follow_up['id']} created: it sends again to the "
        f"{follow_up['recipients']} failed recipient(s) of campaign {campaign_id}."
    )


@router.post("/campaigns/{campaign_id}/{action}", response_model=None)
async def act(
    request: Request, campaign_id: int, action: str, store: StoreDep, _: OperatorPageScope,
    next: Annotated[str, Form()] = "/",
) -> Response:  # fmt: skip
    if action not in ("pause", "resume", "cancel", "retry"):
        return Response("no such action", status_code=404)
    ok = True
    try:
        message = await _run(request, store, campaign_id, action)  # drops the shared views
    except (CampaignError, ApiError) as exc:  # not allowed from its status, unknown campaign...
        ok, message = False, str(exc)
        views_changed(request, campaign_id)  # the page was stale: show what the campaign is
    if not request.headers.get("hx-request"):
        return RedirectResponse(safe_next(next), status_code=303)
    answer = render(request, "_flash.html", {"ok": ok, "message": message})
    answer.headers["HX-Trigger"] = REFRESH
    return answer
