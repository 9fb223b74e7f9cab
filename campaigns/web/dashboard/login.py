"""The dashboard's login: the operators' API tokens (``campaigns tokens create``), kept in a
cookie after one is typed into the login page.

The cookie is HttpOnly (no script reads it), SameSite=Strict (another site's form cannot post
with it: the actions' CSRF defence, with the Origin check below) and Secure over https. Each
request checks it with the store's ``token_scope``, exactly as the API checks its bearer
header, so revoking a token logs its pages out at the next poll. The token is never written
into a page, a URL or a log line.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from campaigns.store import CampaignStateManager
from campaigns.web.auth import OPERATOR
from campaigns.web.dashboard.render import render
from campaigns.web.deps import StoreDep

COOKIE = "cc_dashboard"
COOKIE_MAX_AGE = 12 * 3600
"""A working day: a laptop left open overnight asks for the token again."""

router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """No valid token in the cookie: pages go to the login page, partials tell htmx to."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class Forbidden(Exception):
    """A read token asking for an operator's action or full numbers."""


def safe_next(value: str | None) -> str:
    """Where to go after login: a path of this site only (never ``//evil`` or a URL)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def requested(request: Request) -> str:
    """The path and query asked for: where the login page sends the browser back to."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def check_scope(store: CampaignStateManager, token: str | None, where: str) -> str:
    """The scope of ``token`` (blocking: run in the thread pool); :class:`LoginRequired`,
    back to ``where``, without a valid one."""
    scope = store.token_scope(token) if token else None
    if scope is None:
        raise LoginRequired(where)
    return scope


async def page_scope(request: Request, store: StoreDep) -> str:
    """The scope of the cookie's token; :class:`LoginRequired` without a valid one."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise LoginRequired(requested(request))
    return await run_in_threadpool(check_scope, store, token, requested(request))


def same_origin(request: Request) -> None:
    """Refuse a POST whose Origin names another host (SameSite=Strict already keeps the cookie
    off cross-site requests; this also covers a browser that ignores SameSite)."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("cross-origin request refused")


async def operator_page_scope(request: Request, scope: Annotated[str, Depends(page_scope)]) -> str:
    """An action: the operator scope, from this site."""
    same_origin(request)
    if scope != OPERATOR:
        raise Forbidden("this needs a token with the operator scope")
    return scope


PageScope = Annotated[str, Depends(page_scope)]
OperatorPageScope = Annotated[str, Depends(operator_page_scope)]


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login", response_model=None)
async def login(
    request: Request,
    store: StoreDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    same_origin(request)
    token = token.strip()
    scope = await run_in_threadpool(store.token_scope, token) if token else None
    if scope is None:
        context = {"next": safe_next(next), "error": "That token is not valid or was revoked."}
        return render(request, "login.html", context, status_code=401)
    answer = RedirectResponse(safe_next(next), status_code=303)
    answer.set_cookie(
        COOKIE, token, max_age=COOKIE_MAX_AGE, httponly=True, samesite="strict",
        secure=request.url.scheme == "https", path="/",
    )  # fmt: skip
    return answer


@router.post("/logout", response_model=None)
async def logout(request: Request) -> Response:
    same_origin(request)
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return answer


def login_required_response(request: Request, exc: LoginRequired) -> Response:
    if request.headers.get("hx-request"):
        # htmx follows HX-Redirect whatever the status: a poll after logout or a revocation
        # takes the whole page to the login form instead of swapping an error into a table
        return Response(status_code=401, headers={"HX-Redirect": "/login"})
    return RedirectResponse(f"/login?next={quote(exc.path, safe='/')}", status_code=303)


def forbidden_response(request: Request, exc: Forbidden) -> Response:
    return render(request, "error.html", {"message": str(exc), "scope": None}, status_code=403)
