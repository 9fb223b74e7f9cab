"""The dashboard's pages and their live partials (htmx polls one partial per page).

Pages: ``/`` the campaigns, ``/campaigns/{id}`` one campaign (its live part, its recipients,
its CSV export), ``/sessions`` the sender sessions. Each page's live part is also served alone
(``/partials/campaigns``, ``/campaigns/{id}/live``, ``/partials/sessions``) for the polls.

A poll of the campaigns list, a campaign's live part or its recipients rows is answered in one
trip to the thread pool: the token checked, then HTML rendered once for every browser polling
the same thing, reused for a poll period (:func:`shared_html`). Changes made in this process
(the dashboard's and the API's actions) drop it at once; others (a worker's batch, the CLI)
show at most one period later. Measured: 1.6 ms of CPU a poll (service, PostgreSQL and the
client together) instead of 2.8-4.8 ms, the rest of it the token check and the framework.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from campaigns import inputs
from campaigns.domain import Campaign, CampaignStatus, RecipientStatus
from campaigns.errors import CampaignError
from campaigns.rows import ExportFormat
from campaigns.views import campaign_data
from campaigns.web.auth import OPERATOR
from campaigns.web.dashboard import data, recipients
from campaigns.web.dashboard.cache import ANY_CAMPAIGN, TtlCache
from campaigns.web.dashboard.login import COOKIE, Forbidden, PageScope, check_scope, requested
from campaigns.web.dashboard.render import render, render_text
from campaigns.web.deps import StoreDep
from campaigns.web.routers import api_rows
from campaigns.web.routers.api_errors import status_of

router = APIRouter(include_in_schema=False)
LIST_SIZE = 20
POLL = "every 2s"
"""How often a page's live part is asked for: the issue's "a few seconds behind at most"."""
RECIPIENTS_POLL = "every 5s"
"""The recipients table changes row by row as sends are recorded: polled while the campaign
moves, less often than the figures (one keyset page, shared by the browsers showing it)."""


def cache_of(request: Request) -> TtlCache:
    cache: TtlCache = request.app.state.dashboard_cache
    return cache


def error_page(request: Request, scope: str | None, exc: CampaignError) -> Response:
    context = {"message": str(exc), "scope": scope}
    return render(request, "error.html", context, status_code=status_of(exc))


async def polled(request: Request, store: Any, build: Callable[[str], str]) -> Response:
    """A live partial, in one trip to the thread pool: the cookie's token checked (as for
    every page: a revoked token is refused at its next poll), then ``build(scope)``, which
    answers from the shared cache. Each trip to the pool and each database call costs the
    service more CPU than the work itself; 50 browsers polling are 25 requests a second."""
    token = request.cookies.get(COOKIE)
    where = requested(request)

    def run() -> tuple[str, str | CampaignError]:
        scope = check_scope(store, token, where)
        try:
            return scope, build(scope)
        except CampaignError as exc:
            return scope, exc

    scope, answer = await run_in_threadpool(run)
    if isinstance(answer, CampaignError):
        return error_page(request, scope, answer)
    return HTMLResponse(answer)


def shared_html(
    cache: TtlCache, store: Any, key: tuple[str, int], render_once: Callable[[Campaign], str],
    ttl: Callable[[Campaign], float] = data.ttl_of,
) -> str:  # fmt: skip
    """A campaign's partial rendered once for every browser polling it: the one rendered less
    than a poll ago as it is (no database call), else the campaign row (its version) and the
    rendering cached for that version (``render_once(campaign)`` when there is none)."""
    fresh = cache.recent(key, data.LIVE_TTL)
    if fresh is not None:
        text: str = fresh
        return text
    campaign = store.get_campaign(key[1])
    return cache.get(key, data.version_of(campaign), ttl(campaign), lambda: render_once(campaign))


def _filters(status: str | None, session: str | None) -> tuple[CampaignStatus | None, str | None]:
    chosen = inputs.optional_member(status or None, "status", CampaignStatus)
    return chosen, (session or "").strip() or None


async def _list_context(
    request: Request, store: Any, scope: str, status: str | None, session: str | None,
    before: int | None,
) -> dict[str, Any]:  # fmt: skip
    chosen, named = _filters(status, session)
    rows, next_before = await run_in_threadpool(
        data.list_page, store, cache_of(request), chosen, named, before, LIST_SIZE
    )
    return _list_view(scope, request.url.query, rows, next_before, chosen, named, before)


def _list_view(
    scope: str, query: str, rows: list[dict[str, Any]], next_before: int | None,
    chosen: CampaignStatus | None, named: str | None, before: int | None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "scope": scope, "operator": scope == OPERATOR, "rows": rows, "next_before": next_before,
        "status": chosen.value if chosen else "", "session": named or "", "before": before,
        "statuses": [s.value for s in CampaignStatus], "query": query, "poll": POLL,
    }  # fmt: skip


@router.get("/", response_class=HTMLResponse)
async def campaigns_page(
    request: Request, store: StoreDep, scope: PageScope,
    status: str | None = None, session: str | None = None, before: int | None = None,
) -> Response:  # fmt: skip
    try:
        context = await _list_context(request, store, scope, status, session, before)
        context["sessions"] = [s.name for s in await run_in_threadpool(store.list_sessions)]
    except CampaignError as exc:
        return error_page(request, scope, exc)
    return render(request, "campaigns.html", context)


@router.get("/partials/campaigns", response_class=HTMLResponse)
async def campaigns_partial(
    request: Request, store: StoreDep,
    status: str | None = None, session: str | None = None, before: int | None = None,
) -> Response:  # fmt: skip
    cache, query = cache_of(request), request.url.query

    def build(scope: str) -> str:
        def render_once() -> str:
            chosen, named = _filters(status, session)
            rows, next_before = data.list_page(store, cache, chosen, named, before, LIST_SIZE)
            context = _list_view(scope, query, rows, next_before, chosen, named, before)
            return render_text("_campaign_rows.html", context)

        # rendered once a poll period: the campaigns in it are versioned in their rows
        key = (f"list-html:{scope}:{query}", ANY_CAMPAIGN)
        fresh: str | None = cache.recent(key, data.LIVE_TTL)
        return fresh if fresh is not None else cache.get(key, (), data.LIVE_TTL, render_once)

    return await polled(request, store, build)


def _full(asked: str | None, scope: str) -> bool:
    full = asked in ("1", "true", "yes")
    if full and scope != OPERATOR:
        raise Forbidden("full numbers need a token with the operator scope")
    return full


async def _live_context(request: Request, store: Any, scope: str, campaign_id: int) -> Any:
    live = await run_in_threadpool(data.campaign_live, store, cache_of(request), campaign_id)
    return {"scope": scope, "operator": scope == OPERATOR, "c": live, "poll": POLL}


@router.get("/campaigns/{campaign_id}", response_class=HTMLResponse)
async def campaign_page(
    request: Request, campaign_id: int, store: StoreDep, scope: PageScope,
    status: str | None = None, q: str | None = None,
    after: Annotated[int, Query(ge=0)] = 0, full_numbers: str | None = None,
) -> Response:  # fmt: skip
    full = _full(full_numbers, scope)
    try:
        context = await _live_context(request, store, scope, campaign_id)
        chosen = inputs.optional_member(status or None, "status", RecipientStatus)
    except CampaignError as exc:
        return error_page(request, scope, exc)
    context.update(await _recipients_context(store, campaign_id, chosen, q, after, full))
    return render(request, "campaign.html", context)


@router.get("/campaigns/{campaign_id}/recipients", response_class=HTMLResponse)
async def recipients_partial(
    request: Request, campaign_id: int, store: StoreDep,
    status: str | None = None, q: str | None = None,
    after: Annotated[int, Query(ge=0)] = 0, full_numbers: str | None = None,
) -> Response:  # fmt: skip
    """The recipients table's rows, polled while the campaign moves (one keyset page or one
    index range: the same query as the page's), rendered once a poll for every browser
    showing the same rows."""
    cache, query = cache_of(request), request.url.query

    def build(scope: str) -> str:
        full = _full(full_numbers, scope)
        chosen = inputs.optional_member(status or None, "status", RecipientStatus)

        def render_once(campaign: Campaign) -> str:
            context = {"scope": scope, "operator": scope == OPERATOR, "c": campaign_data(campaign),
                       "recipients_poll": RECIPIENTS_POLL}  # fmt: skip
            context.update(_recipients_rows(store, campaign_id, chosen, q, after, full))
            return render_text("_recipient_rows.html", context)

        # a poll period even for a finished campaign: its rows still take receipts
        return shared_html(cache, store, (f"recipients-html:{scope}:{query}", campaign_id),
                           render_once, ttl=lambda _: data.LIVE_TTL)  # fmt: skip

    return await polled(request, store, build)


async def _recipients_context(
    store: Any, campaign_id: int, chosen: RecipientStatus | None, q: str | None, after: int,
    full: bool,
) -> dict[str, Any]:  # fmt: skip
    return await run_in_threadpool(_recipients_rows, store, campaign_id, chosen, q, after, full)


def _recipients_rows(
    store: Any, campaign_id: int, chosen: RecipientStatus | None, q: str | None, after: int,
    full: bool,
) -> dict[str, Any]:  # fmt: skip
    context: dict[str, Any] = {
        "statuses": [s.value for s in RecipientStatus], "status": chosen.value if chosen else "",
        "q": q or "", "after": after, "full": full, "search_error": None, "searched": None,
        "next_after": None, "rows": [], "recipients_poll": RECIPIENTS_POLL,
    }  # fmt: skip
    try:
        query = recipients.parse_query(q)
    except ValueError as exc:
        context["search_error"] = str(exc)
        return context
    if query is not None:
        rows = recipients.search(store, campaign_id, chosen, query, full)
        context.update(rows=rows, searched=recipients.SEARCH_LIMIT)
    else:
        rows, next_after = recipients.page(store, campaign_id, chosen, after, full)
        context.update(rows=rows, next_after=next_after)
    return context


@router.get("/campaigns/{campaign_id}/live", response_class=HTMLResponse)
async def campaign_partial(request: Request, campaign_id: int, store: StoreDep) -> Response:
    cache = cache_of(request)

    def build(scope: str) -> str:
        def render_once(campaign: Campaign) -> str:
            live = data.live_view(store, cache, campaign)
            context = {"scope": scope, "operator": scope == OPERATOR, "c": live, "poll": POLL}
            return render_text("_campaign_live.html", context)

        return shared_html(cache, store, (f"live-html:{scope}", campaign_id), render_once)

    return await polled(request, store, build)


@router.get("/campaigns/{campaign_id}/export.csv")
async def export(
    request: Request, campaign_id: int, store: StoreDep, scope: PageScope,
    status: str | None = None, full_numbers: str | None = None,
) -> Response:  # fmt: skip
    """The API's streamed CSV export, behind the dashboard's cookie (a link cannot carry the
    API's bearer header)."""
    full = _full(full_numbers, scope)
    try:
        which = inputs.optional_member(status or None, "status", RecipientStatus)
        await run_in_threadpool(store.get_campaign, campaign_id)
    except CampaignError as exc:
        return error_page(request, scope, exc)
    chunks = api_rows.stream(store.iter_recipients(campaign_id, which), full, ExportFormat.CSV)
    return StreamingResponse(
        chunks, media_type=api_rows.MEDIA_TYPES[ExportFormat.CSV],
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )  # fmt: skip


@router.get("/sessions", response_class=HTMLResponse)
async def sessions_page(request: Request, store: StoreDep, scope: PageScope) -> Response:
    sessions = await run_in_threadpool(data.session_views, store)
    context = {"scope": scope, "operator": scope == OPERATOR, "sessions": sessions, "poll": POLL}
    return render(request, "sessions.html", context)


@router.get("/partials/sessions", response_class=HTMLResponse)
async def sessions_partial(request: Request, store: StoreDep, scope: PageScope) -> Response:
    sessions = await run_in_threadpool(data.session_views, store)
    context = {"scope": scope, "operator": scope == OPERATOR, "sessions": sessions, "poll": POLL}
    return render(request, "_sessions_rows.html", context)
