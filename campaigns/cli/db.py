"""``campaigns db``: apply or revert the Alembic migrations on the configured database (the
embedded one when DATABASE_URL is unset)."""

from __future__ import annotations

import typer

from campaigns.cli.common import JSON_HELP, console, emit_json
from campaigns.local import DATABASE, resolve_settings
from campaigns.store import db as migrations

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


def _database_url() -> str:
    # the database only (no broker), and not migrated on the way: these commands migrate it
    url = resolve_settings(need=DATABASE, migrate=False).database_url
    assert url is not None  # resolve_settings fills every needed URL in
    return url


@db_app.command("upgrade")
def upgrade(
    revision: str = typer.Argument("head", help="Target revision."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    url = _database_url()
    before = migrations.current_revision(url)
    migrations.upgrade(url, revision)
    after = migrations.current_revision(url)
    if as_json:
        emit_json({"from": before, "to": after})
    else:
        console.print(f"database at revision {after} (was {before or 'empty'})")


@db_app.command("downgrade")
def downgrade(
    revision: str = typer.Argument(..., help="Target revision ('base' removes every table)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Revert migrations down to REVISION."""
    url = _database_url()
    before = migrations.current_revision(url)
    migrations.downgrade(url, revision)
    after = migrations.current_revision(url)
    if as_json:
        emit_json({"from": before, "to": after})
    else:
        console.print(f"database at revision {after or 'base (empty)'} (was {before or 'empty'})")
