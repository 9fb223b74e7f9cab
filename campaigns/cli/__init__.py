"""The ``campaigns`` command line for operators.

One module per command group: ``db``, ``sessions``, ``send``, the reading commands
(``inspect``), the commands that change campaigns (``control``), ``watch``, the local servers
(``servers``) and the ``demo``. Exit codes: 0 ok, 1 error (its causes printed one line each),
2 usage, 130 interrupted.
"""

from __future__ import annotations

import sys

from campaigns.cli import control, demo, export, inspect, optouts, send, servers, tokens, watch
from campaigns.cli.app import app
from campaigns.cli.db import db_app
from campaigns.cli.sessions import sessions_app

app.add_typer(db_app, name="db")
app.add_typer(sessions_app, name="sessions")
app.add_typer(servers.services_app, name="services")
app.add_typer(tokens.tokens_app, name="tokens")

# the command modules register themselves on `app` when imported
_COMMAND_MODULES = (control, demo, export, inspect, optouts, send, servers, watch)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    try:
        app(args=argv, prog_name="campaigns")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    return 0


__all__ = ["app", "main"]
