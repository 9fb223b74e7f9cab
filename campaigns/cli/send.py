"""``campaigns send``: create a campaign from a number file and hand its first batch to the
workers (through the workers' Celery configuration, read from the environment)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import phonenumbers
import typer

from campaigns import inputs
from campaigns.cli import options, send_options
from campaigns.cli.app import app
from campaigns.cli.common import (
    JSON_HELP,
    RECENTLY_MESSAGED,
    emit_json,
    media_label,
    open_store,
    snapshot_data,
)
from campaigns.domain import RecipientStatus
from campaigns.errors import InvalidArgument, InvalidNumberFile
from campaigns.processor import CampaignBatchProcessor
from campaigns.windows import SendWindow, parse_window


def read_message(message: str | None, message_file: Path | None, *, media: bool = False) -> str:
    """The message from ``--message`` or ``--message-file`` (exactly one). With ``media`` it
    is the caption, and may be left out: no caption."""
    if message is not None and message_file is not None:
        raise typer.BadParameter("give exactly one of --message and --message-file")
    if message is None and message_file is None:
        if media:
            return ""
        raise typer.BadParameter(
            "give exactly one of --message and --message-file (or --media-url: the message "
            "is then its caption, and may be left out)"
        )
    if message is not None:
        return message
    assert message_file is not None
    return send_options.read_text_file(message_file, "message file")


def parse_start_at(value: str | None) -> datetime | None:
    """An ISO 8601 time; one without a zone is local time."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2025-06-01T09:00:00-03:00)",
            param_hint="--start-at",
        ) from None
    return moment.astimezone() if moment.tzinfo is None else moment


WINDOW_FLAGS = ("--window-tz", "--window-days", "--window-hours")


def read_window(hours: str | None, days: str | None, tz: str | None) -> SendWindow | None:
    """The campaign's send window from ``--window-*``; None without any. ``--window-days`` or
    ``--window-tz`` alone is an error: the operator meant a window and would get none."""
    if hours is None:
        given = [
            flag
            for flag, value in zip(WINDOW_FLAGS[:2], (tz, days), strict=True)
            if value is not None
        ]
        if given:
            raise InvalidArgument(
                f"{given[0]} needs --window-hours (e.g. 08:00-20:00); nothing was created"
            )
        return None
    return parse_window(hours, days, tz, names=WINDOW_FLAGS)


def _pool(ctx: typer.Context, param: typer.CallbackParam, value: list[str] | None) -> Any:
    """``--session`` given once or more: the sender pool, checked as the Python API checks it
    (no blank name, none twice), naming the option."""
    if value is None or ctx.resilient_parsing:
        return value
    option = options.option_name(param)
    # each value is "--session" to the operator, who typed it so (not "--session[1]")
    names = [inputs.session_name(name, option) for name in value]
    return list(inputs.session_names(names, option))


@app.command()
def send(
    file: Annotated[
        Path,
        typer.Argument(
            help="Numbers: one per line, or a CSV with a phone column (extra columns become "
            "{variables} of the message).",
            dir_okay=False,
        ),
    ],
    session: Annotated[
        list[str],
        typer.Option(
            "--session",
            "-s",
            help="Sender session name; repeat it for a pool of sessions sharing the campaign "
            "(each at its own pace; a session that goes down leaves its share to the others).",
            callback=_pool,
        ),
    ],
    sticky: bool = typer.Option(
        True,
        "--sticky/--no-sticky",
        help="With a pool: a number a pool session sent to before goes through that session "
        "while it is healthy.",
    ),
    message: str | None = typer.Option(None, "--message", "-m", help="Message text."),
    message_file: Annotated[
        Path | None,
        typer.Option(
            "--message-file", help="Read the message from this UTF-8 file.", dir_okay=False
        ),
    ] = None,
    batch_size: int | None = typer.Option(
        None, help="Recipients per batch [BATCH_SIZE].", callback=options.batch_size
    ),
    min_interval: float | None = typer.Option(
        None,
        help="Least seconds between two messages of the session [MIN_INTERVAL].",
        callback=options.interval,
    ),
    max_interval: float | None = typer.Option(
        None, help="Most seconds between two messages [MAX_INTERVAL].", callback=options.interval
    ),
    batch_delay_min: float | None = typer.Option(
        None,
        help="Least seconds between two batches [BATCH_DELAY_MIN].",
        callback=options.interval,
    ),
    batch_delay_max: float | None = typer.Option(
        None,
        help="Most seconds between two batches [BATCH_DELAY_MAX].",
        callback=options.interval,
    ),
    start_at: str | None = typer.Option(
        None, "--start-at", help="Scheduled start, ISO 8601 (local time without a zone)."
    ),
    region: str | None = typer.Option(
        None, help="Region of numbers written without a country code [DEFAULT_REGION]."
    ),
    window_hours: str | None = typer.Option(
        None,
        "--window-hours",
        help="Send only in these periods of the day, e.g. 08:00-12:00,14:00-20:00 (a period "
        "ending before it starts runs past midnight); the sessions' own windows apply too.",
    ),
    window_days: str | None = typer.Option(
        None, "--window-days", help="Week days of the window: mon-sat, mon,wed,fri, 1-5 or all."
    ),
    window_tz: str | None = typer.Option(
        None, "--window-tz", help="Time zone of the window (IANA, e.g. America/Sao_Paulo; UTC)."
    ),
    legal_basis: str | None = typer.Option(
        None,
        "--legal-basis",
        metavar="BASIS",
        help="The LGPD basis the campaign relies on: consent or legitimate_interest; required "
        "unless the deployment sets LEGAL_BASIS.",
        callback=send_options.legal_basis,
    ),
    legal_note: str | None = typer.Option(
        None,
        "--legal-note",
        metavar="TEXT",
        help="Where the consent was collected, or the interest weighed (stored with the basis).",
        callback=send_options.legal_note,
    ),
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            metavar="TEXT",
            help="Another text of the message (repeatable): each recipient gets one of the "
            "texts, chosen from the campaign and its position, so a resume sends the same one.",
            callback=send_options.variant_texts,
        ),
    ] = None,
    variant_file: Annotated[
        list[Path] | None,
        typer.Option(
            "--variant-file",
            metavar="FILE",
            help="Another text, read from this UTF-8 file (repeatable); numbered after the "
            "--variant texts.",
            dir_okay=False,
        ),
    ] = None,
    media_url: str | None = typer.Option(
        None,
        "--media-url",
        metavar="URL",
        help="Send this image, document, audio or video (http(s) URL the gateway downloads); "
        "the message is then its caption, and may be left out.",
    ),
    media_type: str | None = typer.Option(
        None,
        "--media-type",
        metavar="KIND",
        help="image, document, audio or video (default: from the media's type).",
        callback=send_options.media_kind,
    ),
    media_mime: str | None = typer.Option(
        None,
        "--media-mime",
        metavar="TYPE",
        help="The media's type, e.g. image/jpeg (default: from the URL).",
    ),
    media_filename: str | None = typer.Option(
        None, "--media-filename", metavar="NAME", help="A document's name as the person sees it."
    ),
    dedupe_days: float | None = typer.Option(
        None,
        "--dedupe-days",
        metavar="DAYS",
        help="Skip numbers a session of the pool messaged in the last N days (counted as "
        "duplicates, the earlier campaign named).",
        callback=send_options.dedupe_days,
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Create a campaign and queue its first batch; prints the campaign id.

    The message may use the list's columns, {name} or {name|fallback}, and spintax
    {Olá|Oi|Bom dia}; everything it needs of the list is checked before anything is created.
    Pacing options default to the environment's settings (in brackets)."""
    fields = send_options.media_fields(media_url, media_type, media_mime, media_filename)
    text = read_message(message, message_file, media=fields is not None)
    variants = send_options.read_variants(variant or (), variant_file or ())
    if region is not None and region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise typer.BadParameter(
            f"{region!r} is not a region phonenumbers knows (e.g. BR, US, IN)",
            param_hint="--region",
        )
    when = parse_start_at(start_at)
    window = read_window(window_hours, window_days, window_tz)
    if not file.is_file():
        raise InvalidNumberFile(f"number file {str(file)!r} does not exist; nothing was created")
    with open_store() as store:
        # checked before anything is created, naming the options
        basis = send_options.require_legal_basis(store, legal_basis)
        spec = send_options.check_media(store, fields, session, text)
        pacing = store.settings.pacing
        processor = CampaignBatchProcessor(
            batch_size=pacing.batch_size if batch_size is None else batch_size,
            min_interval=pacing.min_interval if min_interval is None else min_interval,
            max_interval=pacing.max_interval if max_interval is None else max_interval,
            batch_delay_min=pacing.batch_delay_min if batch_delay_min is None else batch_delay_min,
            batch_delay_max=pacing.batch_delay_max if batch_delay_max is None else batch_delay_max,
        )
        processor.set_state_manager(store)
        campaign_id = processor.process_large_campaign_array(
            file,
            text,
            session[0] if len(session) == 1 else session,
            start_at=when,
            region=region,
            sticky=sticky,
            window=window,
            legal_basis=basis,
            legal_note=legal_note,
            variants=variants,
            media=spec,
            dedupe_days=dedupe_days,
        )
        snapshot = store.snapshot(campaign_id)
        reasons = store.outcome_reasons(campaign_id) if dedupe_days is not None else None
    if as_json:
        emit_json(snapshot_data(snapshot, reasons=reasons))
        return
    c = snapshot.campaign
    counts = snapshot.counts
    start = f"starts at {when.isoformat()}" if when else "first batch queued"
    if window is not None:
        start += f"; sends {window.describe()}"
    duplicates = f"{counts.get(RecipientStatus.DUPLICATE, 0)} duplicates"
    if reasons is not None:
        recent = reasons[RecipientStatus.DUPLICATE].get(RECENTLY_MESSAGED, 0)
        duplicates += f" ({recent} messaged in the last {c.dedupe_days:g} days)"
    content = [f"legal basis {c.legal_basis}"]
    if c.variants:
        content.append(f"{1 + len(c.variants)} texts")
    if c.media:
        content.append(media_label(c.media))
    typer.echo(
        f"campaign {c.id} on {', '.join(c.sessions)}: {c.total_numbers} entries in "
        f"{c.total_batches} batches, {duplicates}, "
        f"{counts.get(RecipientStatus.INVALID, 0)} invalid; {', '.join(content)}; {start}",
        err=True,
    )
    # the id alone on stdout: CID=$(campaigns send ...)
    typer.echo(str(c.id))
