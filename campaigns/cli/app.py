"""The Typer application and its error handling: the one place where failures become exit
codes.

Exit codes scripts can trust: 0 ok; 1 an error, printed as its chain of causes, one line each,
without a traceback; 2 a usage error (click's); 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from campaigns.errors import CampaignError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def error_lines(exc: BaseException) -> list[str]:
    """``error: …`` then ``  caused by: …`` for each cause, one line each (a message spread
    over several lines, like a driver's, is joined)."""
    lines = [f"error: {_one_line(exc)}"]
    seen = {id(exc)}
    cause = _cause_of(exc)
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        lines.append(f"  caused by: {type(cause).__name__}: {_one_line(cause)}")
        cause = _cause_of(cause)
    return lines


def _cause_of(exc: BaseException) -> BaseException | None:
    if exc.__cause__ is not None:
        return exc.__cause__
    return None if exc.__suppress_context__ else exc.__context__


def _one_line(exc: BaseException) -> str:
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


def fail(exc: BaseException) -> typer.Exit:
    """Print the error chain on stderr; return the Exit(1) to raise."""
    for line in error_lines(exc):
        typer.echo(line, err=True)
    return typer.Exit(EXIT_ERROR)


class CampaignsGroup(TyperGroup):
    """Turns a :class:`CampaignError` raised anywhere below into its cause chain and exit 1.
    Other exceptions are bugs and keep their traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context is private
        try:
            return super().invoke(ctx)
        except (CampaignError, TimeoutError) as exc:
            raise fail(exc) from None

    def list_commands(self, ctx: Any) -> list[str]:
        """Commands in the order an operator meets them, not alphabetical."""
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: COMMAND_ORDER.index(n) if n in COMMAND_ORDER else 99)


COMMAND_ORDER = [
    "demo",
    "db",
    "sessions",
    "send",
    "list",
    "status",
    "watch",
    "pause",
    "resume",
    "cancel",
    "recover",
    "retry",
    "unknowns",
    "export",
    "optouts",
    "stuck",
    "cleanup",
    "sandbox",
    "web",
    "webhooks",
    "services",
]


app = typer.Typer(
    name="campaigns",
    cls=CampaignsGroup,
    help="Bulk WhatsApp campaigns in paced batches, never lost and never sent twice.",
    no_args_is_help=True,
    add_completion=False,
    # plain click messages: one "Error: …" line for bad usage, no boxes
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
