"""``GET /healthz``: 200 when the store answers, 503 when it does not.

Orchestrators (docker compose's healthcheck, a load balancer) take a 503 as "not ready": a
service that cannot store what it receives should not be sent webhooks it would answer 503.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from campaigns.web.deps import StoreDep

log = logging.getLogger("campaigns.web")
router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness and the database's reachability")
async def healthz(store: StoreDep) -> JSONResponse:
    try:
        # the smallest read of the schema: proves the connection and the migrated tables
        await run_in_threadpool(store.list_sessions)
    except Exception as exc:  # any failure is "not ready": unreachable, or not migrated (the
        # store lets a missing table through as the driver's error), never a 500 with a trace
        log.warning("health check: the database does not answer: %s", exc)
        return JSONResponse(
            {"ok": False, "database": f"unavailable ({type(exc).__name__})"}, status_code=503
        )
    return JSONResponse({"ok": True, "database": "reachable"})


# The http.server receiver answered /health; scripts and healthchecks that probe it keep working.
router.add_api_route("/health", healthz, methods=["GET"], include_in_schema=False)
