"""Commands that change campaigns: ``pause``, ``resume``, ``cancel``, ``retry``, ``recover``,
``cleanup``.

Pause and cancel take effect before the next message: leaving ``running`` clears the run token,
and the running task's next claim (or heartbeat) sees the mismatch and stops."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from campaigns import inputs
from campaigns.cli import options
from campaigns.cli.app import app
from campaigns.cli.common import (
    JSON_HELP,
    console,
    emit_json,
    open_store,
    plural,
    snapshot_data,
)
from campaigns.domain import RecipientStatus
from campaigns.errors import InvalidArgument
from campaigns.gateway_pool import gateway_for
from campaigns.processor import CampaignBatchProcessor
from campaigns.recovery import CampaignRecoveryManager, Recovery

RETRYABLE = (RecipientStatus.FAILED.value, RecipientStatus.UNKNOWN.value)

ID = typer.Argument(..., metavar="ID", help="Campaign id.", callback=options.campaign_id)


def _changed(campaign_id: int, status: str, text: str, as_json: bool, **extra: Any) -> None:
    if as_json:
        emit_json({"id": campaign_id, "status": status, **extra})
    else:
        console.print(text, markup=False)


@app.command()
def pause(
    campaign_id: int = ID,
    reason: str = typer.Option(
        "paused by operator", help="Reason stored with the campaign.", callback=options.reason
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Pause a campaign: its running task stops before its next message."""
    with open_store() as store:
        store.pause(campaign_id, reason)
    _changed(
        campaign_id,
        "paused",
        f"campaign {campaign_id} paused; resume it with `campaigns resume {campaign_id}`",
        as_json,
    )


@app.command()
def cancel(
    campaign_id: int = ID,
    reason: str = typer.Option(
        "cancelled by operator", help="Reason stored with the campaign.", callback=options.reason
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Cancel a campaign for good: nothing more is sent, from the next message on."""
    with open_store() as store:
        store.cancel(campaign_id, reason)
    _changed(campaign_id, "cancelled", f"campaign {campaign_id} cancelled", as_json)


@app.command()
def resume(
    campaign_id: int = ID,
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Resume a paused, interrupted or scheduled campaign (or restart the chain of a running
    one) from the first recipient still to send."""
    with open_store() as store:
        processor = CampaignBatchProcessor()
        processor.set_state_manager(store)
        batch = processor.resume_campaign(campaign_id)
        position = store.first_pending_position(campaign_id)
    _changed(
        campaign_id,
        "running",
        f"campaign {campaign_id} resumed from batch {batch}, recipient #{position}",
        as_json,
        batch=batch,
        position=position,
    )


def _retry_statuses(
    ctx: typer.Context, param: typer.CallbackParam, value: list[str] | None
) -> list[RecipientStatus] | None:
    """``--status`` given once or more: failed and/or unknown, each once."""
    if not value or ctx.resilient_parsing:
        return None
    name = options.option_name(param)
    chosen: list[RecipientStatus] = []
    for given in value:
        status = given.strip().lower()
        if status not in RETRYABLE:
            raise InvalidArgument(
                f"{name} must be {' or '.join(RETRYABLE)} (the recipients a retry sends "
                f"again), got {given!r}"
            )
        if RecipientStatus(status) not in chosen:
            chosen.append(RecipientStatus(status))
    return chosen


def _error_code(ctx: typer.Context, param: typer.CallbackParam, value: str | None) -> Any:
    if value is None or ctx.resilient_parsing:
        return value
    return inputs.optional_name(value, options.option_name(param), max_length=40)


@app.command()
def retry(
    campaign_id: int = ID,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help="Retry the recipients that ended so: failed (default) or unknown (cut off: "
            "they may have received it); repeat for both.",
            callback=_retry_statuses,
        ),
    ] = None,
    error: str | None = typer.Option(
        None,
        "--error",
        metavar="CODE",
        help="Only those whose error code was this (e.g. 131026, timeout).",
        callback=_error_code,
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Send again to a campaign's failed (or unknown) recipients: a follow-up campaign with
    exactly them, their variables and variants, the same texts, media and pool; prints its
    id. Opted-out numbers and numbers an earlier follow-up holds are left out.

    A follow-up rather than a new run of the same campaign: the original's ledger stays the
    record of what happened to its list."""
    # the callback made them statuses (typer types the option by what the operator types)
    statuses = [RecipientStatus(s) for s in status or [RecipientStatus.FAILED]]
    with open_store() as store:
        processor = CampaignBatchProcessor()
        processor.set_state_manager(store)
        follow_up = processor.retry_campaign(campaign_id, statuses=statuses, error_code=error)
        snapshot = store.snapshot(follow_up.campaign_id)
    if as_json:
        emit_json({
            **snapshot_data(snapshot), "recipients": follow_up.recipients,
            "left_out": {"opted_out": follow_up.opted_out,
                         "already_retried": follow_up.already_retried},
        })  # fmt: skip
        return
    which = "/".join(s.value for s in statuses) + (f" with error {error}" if error else "")
    typer.echo(
        f"campaign {follow_up.campaign_id} retries {plural(follow_up.recipients, 'recipient')} "
        f"of campaign {campaign_id} ({which}); left out {follow_up.opted_out} opted out and "
        f"{follow_up.already_retried} already retried; first batch queued",
        err=True,
    )
    # the id alone on stdout, as `send` prints it: NEW=$(campaigns retry 12)
    typer.echo(str(follow_up.campaign_id))


def recovery_data(r: Recovery) -> dict[str, Any]:
    """A recovery for JSON output."""
    return {
        "id": r.campaign_id,
        "session": r.session,
        "batch": r.batch_number,
        "position": r.position,
        "reason": r.reason,
        "unknown_positions": r.unknown_positions,
    }


def recovery_line(r: Recovery) -> str:
    """What was resumed, from where, and why."""
    unknown = (
        f"; {len(r.unknown_positions)} cut-off sends marked unknown" if r.unknown_positions else ""
    )
    return (
        f"campaign {r.campaign_id} on {r.session}: resumed from batch {r.batch_number}, "
        f"recipient #{r.position}, because {r.reason}{unknown}"
    )


@app.command()
def recover(
    campaign_id: int | None = typer.Argument(
        None,
        metavar="[ID]",
        help="Campaign id (default: sweep every campaign).",
        callback=options.campaign_id,
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Resume one campaign now; without ID, do what beat and the session watcher do: take
    over stalled campaigns, start due scheduled ones, and resume interrupted campaigns whose
    session is connected again."""
    waiting: list[dict[str, str]] = []
    with open_store() as store:
        manager = CampaignRecoveryManager(store, settle_delay=store.settings.reconnect_settle)
        if campaign_id is not None:
            one = manager.recover_campaign(campaign_id, reason="an operator asked for it")
            recovered = [one] if one else []
        else:
            recovered = manager.sweep()

            def is_connected(session: str) -> tuple[bool, str]:
                gateway = gateway_for(store.get_session(session), store.settings)
                try:
                    health = gateway.health()
                finally:
                    gateway.close()
                # connected but capped or timelocked is not connected for a resume
                connected, state = health.watch_answer()
                if not connected:
                    waiting.append({"session": session, "state": state, "detail": health.detail})
                return connected, state

            recovered += manager.watch_sessions(is_connected)
    if as_json:
        emit_json({"resumed": [recovery_data(r) for r in recovered], "waiting": waiting})
        return
    for r in recovered:
        console.print(recovery_line(r), markup=False)
    for w in waiting:
        console.print(
            f"session {w['session']} is not connected ({w['state']}): its "
            "interrupted campaigns wait for it",
            markup=False,
        )
    if not recovered and not waiting:
        console.print("nothing to recover")


@app.command()
def cleanup(
    days: float = typer.Option(
        30.0, help="Completed more than this many days ago.", callback=options.days
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Delete completed campaigns older than N days, with their batch details and ledger."""
    with open_store() as store:
        count = store.cleanup_finished(days, dry_run=True)
        if count and not yes:
            typer.confirm(
                f"delete {count} completed campaigns older than {days:g} days, with their ledgers?",
                abort=True,
                err=True,
            )
        deleted = store.cleanup_finished(days) if count else 0
    if as_json:
        emit_json({"deleted": deleted, "days": days})
    else:
        console.print(f"deleted {deleted} completed campaigns older than {days:g} days")
