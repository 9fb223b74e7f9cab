"""Reading commands: ``list``, ``status``, ``unknowns``, ``stuck``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.text import Text

from campaigns.cli import options
from campaigns.cli.app import app
from campaigns.cli.common import (
    JSON_HELP,
    campaign_data,
    console,
    duration,
    emit_json,
    media_label,
    new_table,
    open_store,
    reasons_label,
    share,
    snapshot_data,
    texts_label,
    when,
)
from campaigns.domain import (
    Campaign,
    CampaignStatus,
    Lane,
    RecipientStatus,
    StatusSnapshot,
    StopKind,
)
from campaigns.masking import mask_phone
from campaigns.receipts import DeliveryCounts, DeliveryFigures
from campaigns.windows import SendWindow


def _clock(value: datetime) -> str:
    """A local time to the minute, with the date only when it is not today."""
    local = value.astimezone()
    same_day = local.date() == datetime.now().astimezone().date()
    return local.strftime("%H:%M" if same_day else "%Y-%m-%d %H:%M")


def status_label(c: Campaign) -> str:
    """The status with the kind of its stop: ``interrupted (blocked)``, ``interrupted (limited
    until 14:05)``; the bare status otherwise."""
    if c.status is not CampaignStatus.INTERRUPTED or c.interrupt_kind is None:
        return c.status.value
    if c.interrupt_kind is StopKind.LIMITED and c.resume_at is not None:
        return f"interrupted (limited until {_clock(c.resume_at)})"
    return f"interrupted ({c.interrupt_kind.value})"


def stop_line(c: Campaign, lanes: Sequence[Lane] = ()) -> str | None:
    """Why an interrupted campaign stopped and who resumes it (None when not interrupted):
    the operator must act only on a blocked one, and must be told so. A pool whose lanes are
    all down resumes when one of its disconnected sessions reconnects."""
    if c.status is not CampaignStatus.INTERRUPTED:
        return None
    said = f"{status_label(c)}: {c.interrupt_reason or 'no reason given'}"
    if c.interrupt_kind is StopKind.BLOCKED:
        return f"{said} — resume with `campaigns resume {c.id}` once fixed"
    if c.interrupt_kind is StopKind.LIMITED:
        return f"{said}; resumes by itself"
    waiting = [lane.session_name for lane in lanes if lane.stop_kind is StopKind.DISCONNECTED]
    if len(waiting) > 1:
        return f"{said}; resumes by itself when one of {', '.join(waiting)} reconnects"
    return f"{said}; resumes by itself when session {(waiting or [c.session_name])[0]} reconnects"


def session_windows(snapshot: StatusSnapshot) -> dict[str, SendWindow | None]:
    """Each pool session's own window (None: it has none), from the snapshot's lane windows
    (each lane's group is the campaign's window, if any, then its session's)."""
    own = 1 if snapshot.campaign.send_window else 0
    groups = snapshot.lane_windows or ((),) * len(snapshot.campaign.sessions)
    return {
        name: group[own] if len(group) > own else None
        for name, group in zip(snapshot.campaign.sessions, groups, strict=False)
    }


def window_line(snapshot: StatusSnapshot) -> str:
    """``08:00–20:00 Mon–Sat America/Sao_Paulo; session sales 09:00–18:00 every day UTC``, or
    ``always open``: when the campaign may send."""
    c = snapshot.campaign
    parts = [SendWindow.from_json(c.send_window).describe()] if c.send_window else []
    parts += [
        f"session {name} {window.describe()}"
        for name, window in session_windows(snapshot).items()
        if window is not None
    ]
    return "; ".join(parts) or "always open"


def lane_label(lane: Lane) -> str:
    """``active``, or ``down (blocked)``, ``down (limited until 14:05)``."""
    if lane.active or lane.stop_kind is None:
        return lane.state.value
    if lane.stop_kind is StopKind.LIMITED and lane.resume_at is not None:
        return f"down (limited until {_clock(lane.resume_at)})"
    return f"down ({lane.stop_kind.value})"


def _lane_table(lanes: Sequence[Lane]) -> None:
    table = new_table("session", "lane", "sent", "share", "claimed", "why", title="lanes")
    for lane in lanes:
        table.add_row(
            lane.session_name,
            lane_label(lane),
            str(lane.sent),
            f"{share(lane, lanes):.0%}",
            str(lane.claimed),
            Text(lane.reason or "-"),  # Text: a gateway's reason may hold [brackets]
        )
    console.print(table)


def _campaign_table(campaigns: list[Campaign], title: str | None = None) -> None:
    # eight narrow columns fit 80 characters; `status ID` has the rest
    table = new_table(
        "id",
        "session",
        "status",
        "sent/total",
        "failed",
        "unknown",
        "batch",
        "created",
        title=title,
    )
    if any(c.interrupt_kind for c in campaigns):
        # room for "(disconnected)" on its own line: folded mid-word it reads as nothing
        table.columns[2].min_width = len("(disconnected)")
    if any(c.retry_of for c in campaigns):
        table.caption = "id←N: a follow-up retrying recipients of campaign N"
    for c in campaigns:
        table.add_row(
            f"{c.id}←{c.retry_of}" if c.retry_of else str(c.id),
            ", ".join(c.sessions),  # the pool; rich folds a long one
            status_label(c),
            f"{c.success_count}/{c.total_numbers}",
            str(c.failed_count),
            str(c.unknown_count),
            f"{c.current_batch}/{c.total_batches}",
            when(c.created_at),
        )
    console.print(table)


@app.command("list")
def list_campaigns(
    status: Annotated[
        CampaignStatus | None, typer.Option("--status", help="Only this status.")
    ] = None,
    session: str | None = typer.Option(
        None, "--session", help="Only this session.", callback=options.name
    ),
    limit: int = typer.Option(
        100, help="At most this many, newest first.", callback=options.count()
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List campaigns, newest first."""
    with open_store() as store:
        campaigns = store.list_campaigns(status, session, limit)
    if as_json:
        emit_json([campaign_data(c) for c in campaigns])
    elif not campaigns:
        console.print("no campaign matches")
    else:
        _campaign_table(campaigns)


@app.command()
def status(
    campaign_id: int = typer.Argument(
        ..., metavar="ID", help="Campaign id.", callback=options.campaign_id
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Counters, current batch, ETA and last error of a campaign."""
    with open_store() as store:
        snapshot = store.snapshot(campaign_id)
        lanes = store.list_lanes(campaign_id, counts=True)
        reasons = store.outcome_reasons(campaign_id)
        delivery = store.delivery_counts(campaign_id)
    if as_json:
        data = snapshot_data(snapshot, lanes, reasons=reasons, delivery=delivery)
        # the campaign's own window as stored (None: none) and each session's
        data["send_window"] = snapshot.campaign.send_window
        data["session_windows"] = {
            name: window.to_json() if window else None
            for name, window in session_windows(snapshot).items()
        }
        emit_json(data)
        return
    c = snapshot.campaign
    counts = snapshot.counts
    pool = ", ".join(c.sessions)
    table = new_table("", "", title=f"campaign {c.id} on {pool}: {status_label(c)}")
    rows = [
        ("entries", str(c.total_numbers)),
        ("batch", f"{c.current_batch}/{c.total_batches} ({snapshot.batches_done} done)"),
        *((s.value, _count(s, counts.get(s, 0), reasons)) for s in RecipientStatus),
        *delivery_rows(delivery, pooled=len(c.sessions) > 1),
        *content_rows(c),
        (
            "pacing",
            f"{c.min_interval:g}–{c.max_interval:g}s between messages, "
            f"{c.batch_delay_min:g}–{c.batch_delay_max:g}s between batches of "
            f"{c.batch_size}",
        ),
        ("window", window_line(snapshot)),
        ("ETA", duration(snapshot.eta_seconds()) if not c.status.finished else "-"),
        ("next batch at", when(c.next_batch_at)),
        ("heartbeat", when(c.heartbeat_at)),
        ("last error", snapshot.last_error or "-"),
    ]
    for key, value in rows:
        table.add_row(key, Text(value))  # Text: a gateway's reason may hold [brackets]
    console.print(table)
    if len(c.sessions) > 1:
        _lane_table(lanes)  # a pool of one says it all in the table above
    if c.status is CampaignStatus.RUNNING and c.waiting_reason:
        console.print(Text(f"{c.waiting_reason}; resumes by itself"))
    stopped = stop_line(c, lanes)
    if stopped:
        # below the table, unwrapped: what to do next is the line an operator copies from
        console.print(Text(stopped))


def delivery_rows(figures: DeliveryFigures, *, pooled: bool) -> list[tuple[str, str]]:
    """``delivered``/``read`` rows from the gateways' receipts, rates over sent (a late
    failure is failed, no longer sent), with each session's share in a pool."""
    rows = []
    for name, attr in (("delivered", "delivered"), ("read", "read")):
        total: DeliveryCounts = figures.total
        line = f"{getattr(total, attr)} ({getattr(total, attr + '_rate'):.1%} of sent)"
        if pooled:
            line += "; " + ", ".join(
                f"{session} {getattr(c, attr)}/{c.sent}" for session, c in figures.sessions.items()
            )
        rows.append((name, line))
    return rows


def _count(
    status: RecipientStatus, count: int, reasons: Mapping[RecipientStatus, Mapping[str, int]]
) -> str:
    """Skipped and duplicate counts with their reasons (opted out or 131050; repeated in the
    list or messaged recently): the operator must tell a consent refusal from a typo."""
    return reasons_label(count, reasons[status]) if status in reasons else str(count)


def content_rows(c: Campaign) -> list[tuple[str, str]]:
    """What the campaign sends and on what basis: the legal basis and its note, the texts,
    the list's variables, the media, the duplicate window and, for a follow-up, its origin."""
    basis = c.legal_basis + (f" — {c.legal_note}" if c.legal_note else "")
    rows = [
        ("legal basis", basis),
        ("texts", texts_label(c)),
        ("variables", ", ".join(c.columns) or "-"),
        ("media", media_label(c.media) if c.media else "-"),
        ("dedupe", f"numbers messaged in the last {c.dedupe_days:g} days skipped"
         if c.dedupe_days is not None else "-"),
    ]  # fmt: skip
    if c.retry_of is not None:
        rows.append(("follow-up", f"of campaign {c.retry_of} (retries its recipients)"))
    return rows


@app.command()
def unknowns(
    campaign_id: int = typer.Argument(
        ..., metavar="ID", help="Campaign id.", callback=options.campaign_id
    ),
    full_numbers: bool = typer.Option(False, "--full-numbers", help="Do not mask the numbers."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Recipients whose send was cut off (the gateway may or may not have sent): they are
    never resent by default; check them by hand."""
    with open_store() as store:
        store.get_campaign(campaign_id)
        rows = store.recipients(campaign_id, RecipientStatus.UNKNOWN)
    shown = [
        {
            "position": r["position"],
            "batch": r["batch_number"],
            "phone": r["phone"] if full_numbers else mask_phone(r["phone"]),
            "session": r["session_name"],
            "error_code": r["error_code"],
            "error_message": r["error_message"],
            "claimed_at": r["claimed_at"],
        }
        for r in rows
    ]
    if as_json:
        emit_json(shown)
        return
    if not shown:
        console.print(f"campaign {campaign_id} has no unknown recipient")
        return
    table = new_table(
        "#",
        "batch",
        "phone",
        "session",
        "why",
        "claimed",
        title=f"campaign {campaign_id}: {len(shown)} unknown",
    )
    for r in shown:
        table.add_row(
            str(r["position"]),
            str(r["batch"]),
            str(r["phone"]),
            str(r["session"] or "-"),
            str(r["error_message"] or r["error_code"] or "-"),
            when(r["claimed_at"]),
        )
    console.print(table)


@app.command()
def stuck(
    hours: float = typer.Option(
        24.0, help="Running for longer than this many hours.", callback=options.hours
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Campaigns running for longer than a threshold (a person should look at them)."""
    with open_store() as store:
        campaigns = store.find_stuck_campaigns(timedelta(hours=hours))
    if as_json:
        emit_json([campaign_data(c) for c in campaigns])
    elif not campaigns:
        console.print(f"no campaign has been running for more than {hours:g} h")
    else:
        _campaign_table(campaigns, title=f"running for more than {hours:g} h")
