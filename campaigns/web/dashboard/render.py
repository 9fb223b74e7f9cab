"""Templates and the small formatting filters they share.

Jinja2 autoescapes every value (``.html`` templates), so a campaign's reason, an error message
or a session's last error from a gateway cannot inject markup into an operator's page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
STATIC = HERE / "static"


def duration(seconds: float | None) -> str:
    """``4380`` → ``1 h 13 min``: an ETA as a person reads it (no false precision)."""
    if seconds is None:
        return "-"
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h"


def clock(value: datetime | str | None) -> str:
    """A time as ``YYYY-MM-DD HH:MM UTC`` (the server's zone may not be the reader's: say it)."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.isoformat()


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def number(value: int | float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


TEMPLATES.env.filters.update(
    duration=duration, clock=clock, iso=iso, percent=percent, number=number
)


def render(
    request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
) -> Response:
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


def render_text(name: str, context: dict[str, Any]) -> str:
    """A template rendered to text, for a partial rendered once and served to every browser
    polling it (no template reads the request)."""
    return TEMPLATES.get_template(name).render(context)
