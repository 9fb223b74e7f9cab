"""``campaigns sessions``: the WhatsApp sender sessions (name, gateway, base URL, options and the
*name* of the environment variable holding the token, never the token)."""

from __future__ import annotations

from typing import Annotated

import typer

from campaigns.cli.app import EXIT_ERROR
from campaigns.cli.common import JSON_HELP, console, emit_json, new_table, open_store, when
from campaigns.domain import SenderSession
from campaigns.errors import InvalidInput
from campaigns.gateway_pool import gateway_for
from campaigns.gateways import GATEWAY_KINDS
from campaigns.views import pacing_data, protection_data, session_data


def _gateway_kind(value: str) -> str:
    """The choice of ``--gateway``, from the one catalogue of kinds (campaigns.gateways), so
    the command line cannot drift from what the store and the workers accept."""
    if value not in GATEWAY_KINDS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(GATEWAY_KINDS)}")
    return value


sessions_app = typer.Typer(help="WhatsApp sender sessions.", no_args_is_help=True)


def _pace_and_limits(session: SenderSession) -> str:
    """``human; 1000/day, 100/h; 08:00–20:00 Mon–Sat UTC`` for the list's pacing column."""
    said = [pacing_data(session)["description"], *protection_data(session).values()]
    return "; ".join(v for v in said if v and v != "no caps")


def parse_options(pairs: list[str]) -> dict[str, str]:
    """``["phone_number_id=123"]`` → ``{"phone_number_id": "123"}``."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        options[key.strip()] = value.strip()
    return options


@sessions_app.command("add")
def add(
    gateway: Annotated[
        str,
        typer.Option(
            "--gateway",
            help=f"Gateway kind: {', '.join(GATEWAY_KINDS)}.",
            callback=_gateway_kind,
        ),
    ],
    name: str = typer.Argument(..., help="Session name, e.g. sales."),
    base_url: str = typer.Option(..., "--base-url", help="Base URL of the gateway's HTTP API."),
    token_env: str | None = typer.Option(
        None, "--token-env", help="NAME of the environment variable holding the token."
    ),
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Gateway option KEY=VALUE (repeatable), e.g. "
            "phone_number_id=123 for cloud-api, instance=NAME for evolution; for every kind "
            "pacing=human|rate, rate=MESSAGES_PER_SECOND, in_flight=N (rate pacing only).",
        ),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Register a sender session."""
    options = parse_options(option or [])
    with open_store() as store:
        session = store.add_session(name, gateway, base_url, token_env, **options)
    if as_json:
        emit_json(session_data(session))
    else:
        console.print(
            f"session {session.name} added: {session.gateway} at {session.base_url}"
            + (f", token from ${session.token_env}" if session.token_env else "")
            + f", pacing {pacing_data(session)['description']}",
            markup=False,
        )


@sessions_app.command("list")
def list_sessions(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List the sessions with their last known connection state."""
    with open_store() as store:
        sessions = store.list_sessions()
    if as_json:
        emit_json([session_data(s) for s in sessions])
        return
    if not sessions:
        console.print("no session yet: add one with `campaigns sessions add`")
        return
    table = new_table(
        "name", "gateway", "base URL", "token env", "pacing", "options", "status", "checked"
    )
    for column in table.columns[:2]:
        column.no_wrap = True  # eight columns fold at 80: keep what identifies a row whole
    for s in sessions:
        table.add_row(
            s.name,
            s.gateway,
            s.base_url,
            s.token_env or "-",
            _pace_and_limits(s),
            ", ".join(f"{k}={v}" for k, v in sorted(s.options.items())) or "-",
            s.connection_status,
            when(s.last_checked_at),
        )
    console.print(table)


@sessions_app.command("remove")
def remove(
    name: str = typer.Argument(..., help="Session name."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Remove a session that has no unfinished campaign."""
    with open_store() as store:
        store.remove_session(name)
    if as_json:
        emit_json({"removed": name})
    else:
        console.print(f"session {name} removed")


@sessions_app.command("check")
def check(
    name: str | None = typer.Argument(None, help="Session name (default: every session)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Ask each session's gateway whether it is connected, and store the answer.

    Exits 1 when a checked session is not connected."""
    with open_store() as store:
        sessions = [store.get_session(name)] if name else store.list_sessions()
        if not sessions:
            raise InvalidInput("no session to check: add one with `campaigns sessions add`")
        results = []
        for session in sessions:
            gateway = gateway_for(session, store.settings)
            try:
                health = gateway.health()
            finally:
                gateway.close()
            status = "connected" if health.connected else health.state
            store.record_session_check(
                session.name, status, None if health.connected else (health.detail or health.state)
            )
            results.append(
                {
                    "name": session.name,
                    "connected": health.connected,
                    "state": health.state,
                    "detail": health.detail,
                }
            )
    if as_json:
        emit_json(results)
    else:
        for r in results:
            mark = "connected" if r["connected"] else f"NOT connected ({r['state']})"
            detail = f": {r['detail']}" if r["detail"] and not r["connected"] else ""
            console.print(f"{r['name']}: {mark}{detail}", markup=False)
    if not all(r["connected"] for r in results):
        raise typer.Exit(EXIT_ERROR)
