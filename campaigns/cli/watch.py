"""``campaigns watch``: a live progress bar until the campaign finishes, narrating what happens
to it (interrupted, resumed from where, paused, cancelled). The demo uses the same follower."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn

from campaigns.cli import options
from campaigns.cli.app import EXIT_ERROR, app
from campaigns.cli.common import (
    console,
    duration,
    emit_json_line,
    open_store,
    settled,
    snapshot_data,
)
from campaigns.domain import CampaignStatus, LaneState, RecipientStatus, StatusSnapshot
from campaigns.receipts import DeliveryFigures
from campaigns.store import CampaignStateManager


class Follower:
    """Polls one campaign and turns its status changes into sentences."""

    def __init__(
        self,
        store: CampaignStateManager,
        campaign_id: int,
        say: Callable[[str], None],
        on_resume: Callable[[int | None, int | None], None] | None = None,
    ) -> None:
        self.store = store
        self.campaign_id = campaign_id
        self.say = say
        self.on_resume = on_resume
        """Called with (batch, recipient position) when the campaign is seen resuming."""
        self.status: CampaignStatus | None = None
        self.changes = 0
        self.lanes: dict[str, LaneState] = {}
        self.delivery: DeliveryFigures | None = None
        """The delivered/read figures of the last poll (receipts keep coming after the end)."""

    def poll(self) -> StatusSnapshot:
        """Read the campaign; narrate a status change since the last poll, and in a pool
        each lane that left the rotation or came back while the campaign runs."""
        snapshot = self.store.snapshot(self.campaign_id)
        self.delivery = self.store.delivery_counts(self.campaign_id)
        status = snapshot.campaign.status
        changed = status is not self.status
        if changed:
            previous, self.status = self.status, status
            if previous is not None:
                self.changes += 1
                self._narrate(previous, snapshot)
        if len(snapshot.campaign.sessions) > 1:
            self._narrate_lanes(status, quiet=changed)
        return snapshot

    def _narrate_lanes(self, status: CampaignStatus, *, quiet: bool) -> None:
        for lane in self.store.list_lanes(self.campaign_id):
            before = self.lanes.get(lane.session_name)
            self.lanes[lane.session_name] = lane.state
            if before in (None, lane.state) or quiet or status is not CampaignStatus.RUNNING:
                continue  # the campaign's own stop and resume say it for every lane
            if lane.state is LaneState.DOWN:
                kind = lane.stop_kind.value if lane.stop_kind else "down"
                self.say(
                    f"lane {lane.session_name} left the rotation ({kind}: "
                    f"{lane.reason or 'no reason given'}); the other lanes take its recipients"
                )
            else:
                self.say(f"lane {lane.session_name} is back in the rotation")

    def _narrate(self, previous: CampaignStatus, snapshot: StatusSnapshot) -> None:
        c = snapshot.campaign
        reason = c.interrupt_reason or "no reason given"
        if c.status is CampaignStatus.RUNNING:
            batch = self.store.first_open_batch(c.id)
            position = self.store.first_pending_position(c.id)
            if self.on_resume is not None:
                self.on_resume(batch, position)
            self.say(
                f"campaign {c.id} was {previous.value}; resumed from batch {batch}, "
                f"recipient #{position}"
            )
        elif c.status is CampaignStatus.INTERRUPTED:
            self.say(f"campaign {c.id} interrupted: {reason}")
        elif c.status is CampaignStatus.PAUSED:
            self.say(f"campaign {c.id} paused: {reason}; resume it with `campaigns resume {c.id}`")
        elif c.status is CampaignStatus.COMPLETED:
            self.say(f"campaign {c.id} completed")
        else:
            self.say(f"campaign {c.id} {c.status.value}: {reason}")


def detail(snapshot: StatusSnapshot, delivery: DeliveryFigures | None = None) -> str:
    """The text beside the bar: outcome counts, delivered and read, batch, ETA."""
    c = snapshot.campaign
    counts = snapshot.counts
    parts = [f"sent {counts.get(RecipientStatus.SENT, 0)}"]
    if delivery is not None and delivery.total.delivered:
        total = delivery.total  # receipts: said only once there are some
        parts.append(f"delivered {total.delivered} ({total.delivered_rate:.0%})")
        parts.append(f"read {total.read} ({total.read_rate:.0%})")
    # only what is worth a look, to keep the line short
    for status in (RecipientStatus.FAILED, RecipientStatus.UNKNOWN):
        if counts.get(status, 0):
            parts.append(f"{status.value} {counts[status]}")
    if counts.get(RecipientStatus.SKIPPED, 0):
        # every skip is an opt-out (the list at the claim, or 131050): say which kind of skip
        parts.append(f"skipped {counts[RecipientStatus.SKIPPED]} (opted out)")
    parts.append(f"batch {c.current_batch}/{c.total_batches}")
    if c.status is not CampaignStatus.RUNNING:
        parts.append(c.status.value)
    elif snapshot.remaining:
        parts.append(f"ETA {duration(snapshot.eta_seconds())}")
    if c.status is CampaignStatus.RUNNING and c.waiting_reason:
        parts.append(c.waiting_reason)  # "waiting for capacity on sales until 14:05 (...)"
    return " · ".join(parts)


def follow_with_progress(
    store: CampaignStateManager,
    campaign_id: int,
    out: Console,
    *,
    interval: float = 0.5,
    on_tick: Callable[[StatusSnapshot, Callable[[str], None]], None] | None = None,
    stop_on_pause: bool = True,
    on_resume: Callable[[int | None, int | None], None] | None = None,
) -> StatusSnapshot:
    """Show a live bar until the campaign is finished (or paused, with ``stop_on_pause``);
    ``on_tick`` sees every snapshot and may narrate too. Returns the last snapshot."""
    pause = threading.Event()
    with Progress(
        TextColumn("[bold]campaign {task.fields[cid]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        console=out,
    ) as progress:

        def say(text: str) -> None:
            progress.console.print(text, markup=False, highlight=False)

        follower = Follower(store, campaign_id, say, on_resume)
        snapshot = follower.poll()
        task = progress.add_task(
            "", total=snapshot.campaign.total_numbers, cid=campaign_id,
            detail=detail(snapshot, follower.delivery),
        )
        while True:
            shown = detail(snapshot, follower.delivery)
            progress.update(task, completed=settled(snapshot), detail=shown)
            if on_tick is not None:
                on_tick(snapshot, say)
            status = snapshot.campaign.status
            if status.finished or (stop_on_pause and status is CampaignStatus.PAUSED):
                if not follower.changes:  # it was over before we looked: say so anyway
                    reason = snapshot.campaign.interrupt_reason
                    say(
                        f"campaign {campaign_id} is {status.value}"
                        + (
                            f": {reason}"
                            if reason and status is not CampaignStatus.COMPLETED
                            else ""
                        )
                    )
                return snapshot
            pause.wait(interval)
            snapshot = follower.poll()


def _follow_json(store: CampaignStateManager, campaign_id: int, interval: float) -> StatusSnapshot:
    pause = threading.Event()
    last: dict[str, Any] | None = None
    follower = Follower(store, campaign_id, lambda text: emit_json_line({"event": text}))
    while True:
        snapshot = follower.poll()
        data = snapshot_data(snapshot)
        if follower.delivery is not None:
            data["delivery"] = follower.delivery.as_dict()
        changed = {k: data.get(k) for k in ("status", "ledger", "current_batch", "delivery")}
        if changed != last:
            last = changed
            emit_json_line(data)
        status = snapshot.campaign.status
        if status.finished or status is CampaignStatus.PAUSED:
            return snapshot
        pause.wait(interval)


@app.command()
def watch(
    campaign_id: int = typer.Argument(
        ..., metavar="ID", help="Campaign id.", callback=options.campaign_id
    ),
    interval: float = typer.Option(
        0.5, help="Seconds between two reads.", callback=options.seconds(minimum=0.05)
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON object per change (one per line) instead of a bar."
    ),
) -> None:
    """Follow a campaign with a live progress bar until it finishes.

    Exits 0 when it completes; 1 when it fails, is cancelled or is paused. An interrupted
    campaign is followed on: recovery resumes it when its session reconnects."""
    with open_store() as store:
        if as_json:
            last = _follow_json(store, campaign_id, interval)
        else:
            last = follow_with_progress(store, campaign_id, console, interval=interval)
    if last.campaign.status is not CampaignStatus.COMPLETED:
        raise typer.Exit(EXIT_ERROR)
