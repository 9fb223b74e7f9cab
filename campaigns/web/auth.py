"""The operators' API's authentication: ``Authorization: Bearer <token>``, a token made with
``campaigns tokens create`` and found by its hash (:mod:`campaigns.store.tokens`).

Two scopes: ``read`` for every GET, ``operator`` for everything (creating and changing
campaigns, checking sessions, full numbers). A missing, wrong or revoked token is 401 with
``WWW-Authenticate: Bearer``; a read token where operator is needed is 403. The webhooks and
/healthz are outside: the gateways sign their webhooks, and an orchestrator's probe carries no
token. Tokens are never logged (the access log shows no header).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from campaigns.web.deps import StoreDep
from campaigns.web.routers.api_errors import ApiError

READ, OPERATOR = "read", "operator"
CHALLENGE = {"WWW-Authenticate": "Bearer"}

# auto_error=False: FastAPI's own refusal is not our JSON error; the scheme still documents the
# API's authentication on its OpenAPI page (the Authorize button of /docs)
bearer = HTTPBearer(auto_error=False, description="A token from `campaigns tokens create`.")


async def token_scope(
    store: StoreDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The scope of the request's token; 401 without a valid one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>", CHALLENGE)
    scope = await run_in_threadpool(store.token_scope, credentials.credentials)
    if scope is None:
        raise ApiError(401, "unauthorized", "the token is not valid or was revoked", CHALLENGE)
    return scope


async def operator_scope(scope: Annotated[str, Depends(token_scope)]) -> str:
    """The request's scope, which must be operator (403 for a read token)."""
    if scope != OPERATOR:
        raise ApiError(403, "forbidden", "this needs a token with the operator scope")
    return scope


ReadScope = Annotated[str, Depends(token_scope)]
"""Any valid token (its scope: ``read`` or ``operator``)."""
OperatorScope = Annotated[str, Depends(operator_scope)]
"""A valid token with the operator scope."""
