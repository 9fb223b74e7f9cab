"""The campaign dashboard (issue 14): server-rendered pages (Jinja2) behind the API's tokens,
their live parts polled by htmx, a chart by Chart.js; both libraries vendored in ``static/``.

:func:`install` mounts the static files and answers the dashboard's own refusals (a missing
login redirects, a read token's action is a 403 page); the routers are in :data:`ROUTERS`.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from campaigns.web.dashboard import actions, login, pages
from campaigns.web.dashboard.cache import TtlCache
from campaigns.web.dashboard.render import STATIC

ROUTERS: tuple[APIRouter, ...] = (login.router, pages.router, actions.router)


def install(app: FastAPI) -> None:
    app.state.dashboard_cache = TtlCache()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(login.LoginRequired)
    async def _login(request: Request, exc: login.LoginRequired) -> Response:
        return login.login_required_response(request, exc)

    @app.exception_handler(login.Forbidden)
    async def _forbidden(request: Request, exc: login.Forbidden) -> Response:
        return login.forbidden_response(request, exc)


__all__ = ["ROUTERS", "install"]
