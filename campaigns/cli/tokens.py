"""``campaigns tokens``: the operators' HTTP API tokens (``create``, ``list``, ``revoke``).

A token is printed once, by ``create``, on stdout alone (``TOKEN=$(campaigns tokens create
crm --scope operator)``); the store keeps only its SHA-256 hash, so a lost token is revoked and
a new one created, never shown again.
"""

from __future__ import annotations

from typing import Any

import typer

from campaigns.cli.common import JSON_HELP, console, emit_json, new_table, open_store, when
from campaigns.store.tokens import SCOPES, token_scope_name

tokens_app = typer.Typer(help="API tokens of the web service's operator API.", no_args_is_help=True)


def _scope(ctx: typer.Context, value: str) -> str:
    if ctx.resilient_parsing:
        return value
    return token_scope_name(value, "--scope")  # as the other options' checks: named, exit 1


@tokens_app.command()
def create(
    name: str = typer.Argument(..., help="A name for the token (who or what uses it)."),
    scope: str = typer.Option(
        ...,
        "--scope",
        help=f"{' or '.join(SCOPES)}: read sees campaigns and sessions; operator also creates, "
        "pauses, resumes, cancels and retries campaigns and checks sessions.",
        callback=_scope,
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Create an API token and print it, once: only its hash is stored."""
    with open_store() as store:
        token = store.create_token(name, scope)
    typer.echo(f"token {name!r} ({scope}) created; it is not shown again: keep it now", err=True)
    if as_json:
        emit_json({"name": name.strip(), "scope": scope, "token": token})
    else:
        typer.echo(token)


def token_data(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "scope": row["scope"],
        "created_at": row["created_at"],
        "last_used_at": row["last_used_at"],  # stamped at most once a minute
        "revoked_at": row["revoked_at"],
    }


@tokens_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List the API tokens: name, scope, created, last used (to the minute), revoked."""
    with open_store() as store:
        rows = [token_data(row) for row in store.list_tokens()]
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console.print("no API token: create one with `campaigns tokens create NAME --scope read`")
        return
    table = new_table("name", "scope", "created", "last used", "revoked")
    for r in rows:
        table.add_row(r["name"], r["scope"], when(r["created_at"]), when(r["last_used_at"]),
                      when(r["revoked_at"]))  # fmt: skip
    console.print(table)


@tokens_app.command()
def revoke(
    name: str = typer.Argument(..., help="The token's name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Revoke an API token: its next request is refused (401)."""
    with open_store() as store:
        changed = store.revoke_token(name)
    if as_json:
        emit_json({"name": name, "revoked": True, "already": not changed})
    else:
        said = "revoked" if changed else "was revoked already"
        console.print(f"token {name!r} {said}", markup=False)
