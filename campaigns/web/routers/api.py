"""The operators' HTTP API, under ``/api/v1``: campaigns (create, list, status, pause, resume,
cancel, retry, recipients, export) and sessions (list, check).

Every route needs a token (:mod:`campaigns.web.auth`): ``read`` for the GETs, ``operator`` for
the rest. Every answer is the command line's ``--json`` view of the same thing
(:mod:`campaigns.views`), and every error is ``{"error": {"code", "message"}}``
(:mod:`campaigns.web.routers.api_errors`). The store's calls block, so they run in the thread
pool and never stall the event loop.

Numbers are masked everywhere unless an operator token asks for ``full_numbers=true`` (a read
token asking is 403, not silently masked: the caller would take masked numbers for real ones).
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from campaigns import inputs
from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.processor import CampaignBatchProcessor
from campaigns.store.pages import MAX_PAGE, MIN_SEARCH_DIGITS
from campaigns.views import campaign_data, snapshot_data
from campaigns.web.auth import OPERATOR, OperatorScope, ReadScope
from campaigns.web.deps import StoreDep, views_changed
from campaigns.web.routers import api_create, api_rows
from campaigns.web.routers.api_errors import ERRORS, ApiError
from campaigns.web.routers.api_models import (
    CampaignOut,
    ChangedOut,
    CheckOut,
    ControlIn,
    FollowUpOut,
    RecipientsOut,
    RetryIn,
    SessionOut,
    StatusOut,
)

router = APIRouter(prefix="/api/v1", responses=ERRORS)
CAMPAIGNS: list[str | Enum] = ["campaigns"]
SESSIONS: list[str | Enum] = ["sessions"]

CampaignId = Annotated[int, "the campaign's id"]
StatusFilter = Annotated[
    str | None, Query(description="Only recipients in this status: " + ", ".join(RecipientStatus))
]
FullNumbers = Annotated[
    bool, Query(description="Unmasked numbers (an operator token only; masked by default).")
]


def _full_numbers(asked: bool, scope: str) -> bool:
    if asked and scope != OPERATOR:
        raise ApiError(403, "forbidden", "full_numbers needs a token with the operator scope")
    return asked


@router.post(
    "/campaigns", status_code=201, response_model=StatusOut, tags=CAMPAIGNS,
    summary="Create a campaign from an uploaded number file or a JSON list",
    description="multipart/form-data: `file` (one number per line, or a CSV with a phone "
    "column) and the settings as form fields (`session` repeatable); or application/json with "
    "`numbers`. The same checks as the Python API: nothing is created on bad input. The first "
    "batch is queued for the workers.",
    openapi_extra={"requestBody": api_create.REQUEST_BODY},
)  # fmt: skip
async def create_campaign(request: Request, store: StoreDep, _: OperatorScope) -> Any:
    created = await api_create.create_campaign(request, store)
    views_changed(request, int(created["id"]))  # the campaigns list shows it at once
    return created


@router.get(
    "/campaigns", response_model=list[CampaignOut], tags=CAMPAIGNS,
    summary="List campaigns, newest first",
)  # fmt: skip
async def list_campaigns(
    store: StoreDep,
    _: ReadScope,
    status: Annotated[str | None, Query(description="Only campaigns in this status.")] = None,
    session: Annotated[str | None, Query(description="Only campaigns of this session.")] = None,
    limit: Annotated[int, Query(description="At most this many (1 to 1000).")] = 100,
) -> Any:
    if not 1 <= limit <= MAX_PAGE:
        raise ApiError(422, "invalid_input", f"limit must be 1 to {MAX_PAGE}, got {limit}")
    chosen = inputs.optional_member(status, "status", CampaignStatus)
    campaigns = await run_in_threadpool(store.list_campaigns, chosen, session, limit)
    return [campaign_data(c) for c in campaigns]


def status_view(store: Any, campaign_id: int) -> dict[str, Any]:
    """What ``campaigns status --json`` shows: the snapshot, lanes and skip reasons.
    With the receipts' delivered and read figures, per sending session."""
    snapshot = store.snapshot(campaign_id)
    lanes = store.list_lanes(campaign_id, counts=True)
    return snapshot_data(
        snapshot, lanes, reasons=store.outcome_reasons(campaign_id),
        delivery=store.delivery_counts(campaign_id),
    )  # fmt: skip


@router.get(
    "/campaigns/{campaign_id}", response_model=StatusOut, tags=CAMPAIGNS,
    summary="A campaign's status: live counts, ETA, lanes",
)  # fmt: skip
async def campaign_status(campaign_id: CampaignId, store: StoreDep, _: ReadScope) -> Any:
    return await run_in_threadpool(status_view, store, campaign_id)


def _reason(body: ControlIn | None, default: str) -> str:
    return body.reason if body is not None and body.reason is not None else default


@router.post(
    "/campaigns/{campaign_id}/pause", response_model=ChangedOut, tags=CAMPAIGNS,
    summary="Pause a campaign: its running task stops before its next message",
)  # fmt: skip
async def pause(
    campaign_id: CampaignId, request: Request, store: StoreDep, _: OperatorScope,
    body: Annotated[ControlIn | None, Body()] = None,
) -> Any:  # fmt: skip
    await run_in_threadpool(store.pause, campaign_id, _reason(body, "paused by operator (API)"))
    views_changed(request, campaign_id)
    return {"id": campaign_id, "status": "paused"}


@router.post(
    "/campaigns/{campaign_id}/cancel", response_model=ChangedOut, tags=CAMPAIGNS,
    summary="Cancel a campaign for good",
)  # fmt: skip
async def cancel(
    campaign_id: CampaignId, request: Request, store: StoreDep, _: OperatorScope,
    body: Annotated[ControlIn | None, Body()] = None,
) -> Any:  # fmt: skip
    reason = _reason(body, "cancelled by operator (API)")
    await run_in_threadpool(store.cancel, campaign_id, reason)
    views_changed(request, campaign_id)
    return {"id": campaign_id, "status": "cancelled"}


@router.post(
    "/campaigns/{campaign_id}/resume", response_model=ChangedOut, tags=CAMPAIGNS,
    summary="Resume a paused, interrupted or scheduled campaign from its first unsent recipient",
)  # fmt: skip
async def resume(
    campaign_id: CampaignId, request: Request, store: StoreDep, _: OperatorScope
) -> Any:
    def run() -> dict[str, Any]:
        processor = CampaignBatchProcessor(enqueue=api_create.enqueue_of(request))
        processor.set_state_manager(store)
        batch = processor.resume_campaign(campaign_id)
        position = store.first_pending_position(campaign_id)
        return {"id": campaign_id, "status": "running", "batch": batch, "position": position}

    answer = await run_in_threadpool(run)
    views_changed(request, campaign_id)
    return answer


@router.post(
    "/campaigns/{campaign_id}/retry", response_model=FollowUpOut, status_code=201,
    tags=CAMPAIGNS,
    summary="Send again to the failed (or unknown) recipients: a follow-up campaign",
)  # fmt: skip
async def retry(
    campaign_id: CampaignId, request: Request, store: StoreDep, _: OperatorScope,
    body: Annotated[RetryIn | None, Body()] = None,
) -> Any:  # fmt: skip
    wanted = body or RetryIn.model_validate({})
    for given in wanted.statuses:
        if given not in (RecipientStatus.FAILED, RecipientStatus.UNKNOWN):
            raise ApiError(422, "invalid_input",
                           f"statuses: failed and/or unknown, got {given!r}")  # fmt: skip

    def run() -> dict[str, Any]:
        processor = CampaignBatchProcessor(enqueue=api_create.enqueue_of(request))
        processor.set_state_manager(store)
        follow_up = processor.retry_campaign(
            campaign_id, statuses=wanted.statuses, error_code=wanted.error_code
        )
        return {
            **snapshot_data(store.snapshot(follow_up.campaign_id)),
            "recipients": follow_up.recipients,
            "left_out": {"opted_out": follow_up.opted_out,
                         "already_retried": follow_up.already_retried},
        }  # fmt: skip

    answer = await run_in_threadpool(run)
    views_changed(request, campaign_id)  # the list shows the follow-up at once too
    return answer


@router.get(
    "/campaigns/{campaign_id}/recipients", response_model=RecipientsOut, tags=CAMPAIGNS,
    summary="A page of a campaign's recipients, in input order",
    description="Keyset paging: pass the answer's `next_after` as `after` for the next page. "
    "With `number`, only the rows of that number (full, in E.164) or of the numbers ending "
    f"with those digits ({MIN_SEARCH_DIGITS} or more): one index range, whatever the size.",
)  # fmt: skip
async def recipients(
    campaign_id: CampaignId,
    store: StoreDep,
    scope: ReadScope,
    status: StatusFilter = None,
    after: Annotated[int, Query(description="The position the page starts after.")] = 0,
    limit: Annotated[int, Query(description=f"Rows per page, 1 to {MAX_PAGE}.")] = 100,
    full_numbers: FullNumbers = False,
    number: Annotated[
        str | None,
        Query(description="A full number (+5511999991234) or its last digits.", max_length=16),
    ] = None,
) -> Any:
    full = _full_numbers(full_numbers, scope)
    chosen = inputs.optional_member(status, "status", RecipientStatus)
    if number is not None:
        rows = await run_in_threadpool(
            partial(store.recipients_by_number, after=after, limit=limit),
            campaign_id, number, chosen,
        )  # fmt: skip
    else:
        rows = await run_in_threadpool(
            store.recipients_after, campaign_id, chosen, after=after, limit=limit
        )
    page = api_rows.as_dicts(rows, full)
    last = page[-1]["position"] if len(page) == limit else None
    return {"recipients": page, "next_after": last}


@router.get(
    "/campaigns/{campaign_id}/export", tags=CAMPAIGNS,
    summary="A campaign's ledger as CSV or JSON Lines, streamed",
    description="The columns of `campaigns export`, one row per input entry in input order.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
)  # fmt: skip
async def export(
    campaign_id: CampaignId,
    store: StoreDep,
    scope: ReadScope,
    status: StatusFilter = None,
    format: Annotated[str, Query(description="csv or jsonl.")] = "csv",
    full_numbers: FullNumbers = False,
) -> StreamingResponse:
    full = _full_numbers(full_numbers, scope)
    chosen = api_rows.export_format(format)
    which = inputs.optional_member(status, "status", RecipientStatus)
    # checked before the first byte: once streaming has begun, the status is sent
    await run_in_threadpool(store.get_campaign, campaign_id)
    chunks: Iterator[bytes] = api_rows.stream(
        store.iter_recipients(campaign_id, which), full, chosen
    )
    return StreamingResponse(
        chunks, media_type=api_rows.MEDIA_TYPES[chosen],
        headers={"Content-Disposition":
                 f'attachment; filename="campaign-{campaign_id}.{chosen.value}"'},
    )  # fmt: skip


@router.get(
    "/sessions", response_model=list[SessionOut], tags=SESSIONS, summary="The sender sessions"
)
async def sessions(store: StoreDep, _: ReadScope) -> Any:
    return await run_in_threadpool(api_rows.sessions, store)


@router.post(
    "/sessions/{name}/check", response_model=CheckOut, tags=SESSIONS,
    summary="Ask a session's gateway whether it is connected, and store the answer",
)  # fmt: skip
async def check_session(name: str, store: StoreDep, _: OperatorScope) -> Any:
    return await run_in_threadpool(api_rows.check, store, name)
