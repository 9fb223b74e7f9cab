"""The operators' API's errors: every one is JSON, ``{"error": {"code": ..., "message": ...}}``.

The code is stable and meant for programs (``campaign_not_found``, ``invalid_input``...); the
message is the engine's own sentence, meant for people, naming the field at fault. The statuses:

- 401 ``unauthorized``: no token, a wrong one, a revoked one (with ``WWW-Authenticate``);
- 403 ``forbidden``: a read token on an operator endpoint, or asking for full numbers;
- 404 ``campaign_not_found``, ``unknown_session`` (in the path), ``not_found`` (no such route);
- 409 ``invalid_transition`` (pausing a finished campaign), ``session_exists``...;
- 422 ``invalid_input`` and its kinds (``no_valid_number``, ``invalid_message``...), and an
  unknown session named in a campaign's body (``unknown_session``): the request was wrong;
- 503 ``store_unavailable``: PostgreSQL cannot be reached; retry later (``Retry-After``);
- 500 ``configuration_error``: the deployment's configuration is wrong, not the request; the
  operator of the service has to fix it. Anything else is a 500 ``internal_error`` whose
  message says nothing of the cause (it is logged).

Only paths under :data:`PREFIX` are answered so: the webhooks keep their own answers.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from campaigns.errors import (
    CampaignError,
    CampaignNotFound,
    ConfigurationError,
    InvalidInput,
    InvalidTransition,
    SessionExists,
    SessionInUse,
    StoreUnavailable,
    UnknownSession,
)

PREFIX = "/api/"
log = logging.getLogger("campaigns.web.api")

RETRY_AFTER_S = "5"
"""How long a client should wait before retrying after a 503 (a database restart's order)."""


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    """Every error of the API."""

    error: ErrorBody


class ApiError(Exception):
    """An answer other than success, raised by the API's code."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def code_of(exc: BaseException) -> str:
    """``NoValidNumber`` → ``no_valid_number``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def status_of(exc: CampaignError) -> int:
    if isinstance(exc, InvalidInput):
        return 422
    if isinstance(exc, CampaignNotFound | UnknownSession):
        return 404
    if isinstance(exc, InvalidTransition | SessionExists | SessionInUse):
        return 409
    if isinstance(exc, StoreUnavailable):
        return 503
    if isinstance(exc, ConfigurationError):
        return 500
    return 409 if type(exc).__name__.endswith("Exists") else 400


def campaign_error(exc: CampaignError) -> JSONResponse:
    status = status_of(exc)
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return error_response(status, code_of(exc), str(exc), headers)


def _field(loc: tuple[Any, ...]) -> str:
    """``("body", "numbers", 3)`` → ``numbers[3]``; ``("query", "limit")`` → ``limit``."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header", "form")]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def validation_message(errors: list[Any]) -> str:
    """The first problem, naming its field (``limit: Input should be a valid integer``)."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{_field(tuple(first.get('loc', ())))}: {first.get('msg', 'invalid')}{more}"


def install(app: FastAPI) -> None:
    """Answer the API's errors as JSON; other paths keep FastAPI's answers."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(CampaignError)
    async def _campaign(request: Request, exc: CampaignError) -> Response:
        return campaign_error(exc)

    @app.exception_handler(ValidationError)
    async def _model(request: Request, exc: ValidationError) -> Response:
        # a body checked by hand (the upload's form fields): the same answer as FastAPI's own
        return error_response(422, "invalid_input", validation_message(list(exc.errors())))

    @app.exception_handler(RequestValidationError)
    async def _request(request: Request, exc: RequestValidationError) -> Response:
        if not request.url.path.startswith(PREFIX):
            return await request_validation_exception_handler(request, exc)
        return error_response(422, "invalid_input", validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith(PREFIX):
            return await http_exception_handler(request, exc)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(PREFIX):  # Starlette's own answer elsewhere
            return PlainTextResponse("Internal Server Error", status_code=500)
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "internal_error", "the service failed; see its log")


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (401, "No valid token"),
        (403, "The token's scope does not allow it"),
        (404, "No such campaign or session"),
        (422, "Invalid input: the message names the field; nothing was created or changed"),
        (503, "The database cannot be reached: retry later"),
    )
}
"""The error answers every API route documents."""
