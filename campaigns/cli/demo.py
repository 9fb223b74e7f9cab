"""``campaigns demo``: the main job in one command, on a fresh machine.

Starts (when no URL is configured) the embedded PostgreSQL and Redis, migrates, runs the sandbox
gateway, one worker and beat as child processes with short timings, sends a campaign of a few
hundred generated numbers (with duplicates and invalid entries), drops the WhatsApp session
half-way so the campaign is interrupted and the session watcher resumes it, and ends with a
summary checked against the sandbox's own record. Ctrl-C (or SIGTERM) stops everything it
started.
"""

from __future__ import annotations

import dataclasses
import os
import random
import secrets
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import typer
from rich.console import Console

from campaigns.cli.app import EXIT_ERROR, EXIT_INTERRUPTED, app
from campaigns.cli.common import emit_json
from campaigns.cli.demo_story import POOL, SESSION, DemoRun, print_summary, story, summarize
from campaigns.cli.watch import follow_with_progress
from campaigns.dispatch import TaskSender
from campaigns.domain import CampaignStatus, RecipientStatus, StatusSnapshot
from campaigns.errors import CampaignError, InvalidTransition
from campaigns.local import resolve_settings
from campaigns.local.stack import LocalStack
from campaigns.processor import CampaignBatchProcessor
from campaigns.receipts import DeliveryCounts
from campaigns.sandbox import SandboxControl, SandboxRecord
from campaigns.settings import Pacing, Settings
from campaigns.store import CampaignStateManager
from campaigns.store import db as migrations
from campaigns.webhooks import HMAC_KEY_ENV

TOKEN_ENV = "DEMO_SANDBOX_TOKEN"
RECEIPTS = (1.0, 2.0, 0.7)
"""The sandbox's receipts: delivered 1 s after a send, read 2 s after that, for 70% of them."""
RECEIPTS_GRACE_S = 5.0
"""How long past the last receipt's schedule the summary waits for it (webhook retries)."""
DEMO_DATABASE = "campaigns_demo"
"""With the embedded PostgreSQL the demo keeps its campaigns in a database of their own, so its
fast-paced worker never touches the operator's campaigns."""

PACING = Pacing(
    batch_size=50, min_interval=0.03, max_interval=0.08, batch_delay_min=0.5, batch_delay_max=1.0
)

# Short timings so the interruption and the recovery happen within seconds. STALL_TIMEOUT must
# exceed one gateway call (connect + read timeouts).
FAST_ENV = {
    "BATCH_SIZE": str(PACING.batch_size),
    "MIN_INTERVAL": str(PACING.min_interval),
    "MAX_INTERVAL": str(PACING.max_interval),
    "BATCH_DELAY_MIN": str(PACING.batch_delay_min),
    "BATCH_DELAY_MAX": str(PACING.batch_delay_max),
    "GATEWAY_CONNECT_TIMEOUT": "1",
    "GATEWAY_READ_TIMEOUT": "3",
    "STALL_TIMEOUT": "6",
    "SWEEP_INTERVAL": "2",
    "SESSION_WATCH_INTERVAL": "1",
    "TASK_TIME_BUDGET": "20",
    "WORKER_CONCURRENCY": "4",
}


def generate_numbers(count: int, seed: int | None = None) -> list[str]:
    """``count`` entries: Brazilian mobile numbers, about 2% repeats of earlier ones and 1%
    entries that are not phone numbers (so the summary shows both)."""
    rng = random.Random(seed)
    duplicates = max(1, count // 50) if count >= 10 else 0
    invalid = max(1, count // 100) if count >= 10 else 0
    unique = count - duplicates - invalid
    numbers = [f"+55 11 9{n:08d}" for n in rng.sample(range(10**7, 10**8), unique)]
    for i in range(duplicates):
        numbers.insert(rng.randrange(len(numbers)), numbers[i * 3 % unique].replace(" ", ""))
    for i in range(invalid):
        numbers.insert(rng.randrange(len(numbers)), ("12345", "not a number", "+99 0")[i % 3])
    return numbers


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the demo like Ctrl-C does: with everything it started stopped."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _uninterruptible() -> Iterator[None]:
    """Cleanup runs to its end: a second Ctrl-C must not leave children behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _embedded_running(data_dir: Path) -> dict[str, bool]:
    from campaigns.local.postgres import EmbeddedPostgres
    from campaigns.local.redis import EmbeddedRedis

    return {
        "postgres": EmbeddedPostgres(data_dir / "postgres").is_running(),
        "redis": EmbeddedRedis(data_dir / "redis").is_running(),
    }


def _stop_embedded(data_dir: Path, names: list[str]) -> None:
    from campaigns.local.postgres import EmbeddedPostgres
    from campaigns.local.redis import EmbeddedRedis

    if "postgres" in names:
        EmbeddedPostgres(data_dir / "postgres").stop()
    if "redis" in names:
        EmbeddedRedis(data_dir / "redis").stop()


def _where(url: str | None) -> str:
    """A URL without its password, to say where things run."""
    if url is None:
        return "-"
    parsed = urlsplit(url)
    return f"{parsed.hostname}:{parsed.port}{parsed.path}".rstrip("/")


def _settings(out: Console, data_dir: Path, run: DemoRun) -> Settings:
    """Resolve the servers (starting embedded ones when no URL is configured) and give the
    demo its own database on the embedded PostgreSQL."""
    configured = os.environ.get("DATABASE_URL")
    before = _embedded_running(data_dir)
    if not (configured and os.environ.get("CELERY_BROKER_URL")):
        out.print(f"starting the embedded servers in {data_dir} (no URL configured) ...")
    settings = resolve_settings()
    after = _embedded_running(data_dir)
    run.started_servers = [
        name for name in ("postgres", "redis") if after[name] and not before[name]
    ]
    if not configured:
        from campaigns.local.postgres import EmbeddedPostgres

        url = EmbeddedPostgres(data_dir / "postgres").create_database(DEMO_DATABASE)
        settings = dataclasses.replace(settings, database_url=url)
    out.print(
        f"PostgreSQL {_where(settings.database_url)}, broker and pacing Redis "
        f"{_where(settings.broker_url)}"
    )
    return settings


def _child_env(settings: Settings, data_dir: Path, token: str, hmac_key: str) -> dict[str, str]:
    assert settings.database_url and settings.broker_url and settings.pacing_redis_url
    return {
        **FAST_ENV,
        "DATABASE_URL": settings.database_url,
        "CELERY_BROKER_URL": settings.broker_url,
        "REDIS_URL": settings.pacing_redis_url,
        "CAMPAIGNS_DATA_DIR": str(data_dir),
        # a queue of its own: nothing queued by an earlier run or another deployment runs here
        "CAMPAIGNS_QUEUE": f"demo-{uuid.uuid4().hex[:8]}",
        "CAMPAIGNS_LOG_LEVEL": "INFO",
        TOKEN_ENV: token,
        HMAC_KEY_ENV: hmac_key,  # the web service checks the sandbox's signed webhooks
    }


def _fresh_session(store: CampaignStateManager, base_url: str) -> None:
    """(Re)create the demo's pool, cancelling what an earlier, killed demo left running."""
    for campaign in store.list_campaigns(session=SESSION, limit=1000):
        if not campaign.status.finished:
            try:
                store.cancel(campaign.id, "superseded by a new demo run")
            except InvalidTransition:
                pass
    for name in POOL:
        try:
            store.remove_session(name)
        except CampaignError:
            pass  # there was none
        store.add_session(name, "waha", base_url, token_env=TOKEN_ENV)


def _receipts_in(store: CampaignStateManager, cid: int, last: StatusSnapshot) -> DeliveryCounts:
    """The campaign's delivered and read counts once the last sends' receipts are in (they
    trail the sends by a few seconds: every delivered one, then the reads that follow it), or
    what came by then."""
    sent = last.counts.get(RecipientStatus.SENT, 0)
    deadline = time.monotonic() + sum(RECEIPTS[:2]) + RECEIPTS_GRACE_S
    while store.delivery_counts(cid).total.delivered < sent and time.monotonic() < deadline:
        time.sleep(0.25)
    time.sleep(RECEIPTS[1] + 0.5)  # the last deliveries' reads
    return store.delivery_counts(cid).total


class Demo:
    """One demo run: what it started, so that cleanup stops exactly that."""

    def __init__(self, out: Console, numbers: int, keep_data: bool) -> None:
        self.out = out
        self.numbers = numbers
        self.keep_data = keep_data
        self.data_dir = Settings.from_env().data_dir.absolute()
        self.run = DemoRun()
        self.store: CampaignStateManager | None = None
        self.stack: LocalStack | None = None
        self.enqueuer: TaskSender | None = None

    def say(self, text: str) -> None:
        self.out.print(text, markup=False, highlight=False)

    def execute(self) -> dict[str, Any]:
        """Run the demo to its summary."""
        settings = _settings(self.out, self.data_dir, self.run)
        assert settings.database_url is not None and settings.broker_url is not None
        migrations.upgrade(settings.database_url)
        self.say(f"database migrated to {migrations.current_revision(settings.database_url)}")
        self.store = store = CampaignStateManager(settings=settings)
        run_dir = self.data_dir / "demo" / time.strftime("%Y%m%d-%H%M%S")
        run_dir.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(16)  # lives in the children's environment only
        hmac_key = secrets.token_urlsafe(24)  # likewise, and the sandbox's webhook target
        env = _child_env(settings, self.data_dir, token, hmac_key)
        self.stack = stack = LocalStack(env=env, log_dir=run_dir / "logs")
        record = SandboxRecord(run_dir / "sandbox.sqlite")
        sandbox_url = stack.start_sandbox(record.path, api_key=token, waha_wait=0.5)
        self.say(f"sandbox gateway at {sandbox_url} (WAHA dialect); starting a worker and beat")
        stack.start_beat()
        stack.start_worker(concurrency=4)
        self.say(f"worker and beat running; their logs are in {run_dir / 'logs'}")
        web = stack.start_web()
        self.say(f"web service: {web} (webhooks, /healthz, API docs at /docs)")
        # a newcomer watches the drop and the recovery on the dashboard: a token to sign in
        # with, printed because this is a local demo on its own database (never do this with
        # a shared one); operator scope, so the page's pause and resume work too
        login = store.create_token(f"demo-{run_dir.name}-{secrets.token_hex(3)}", "operator")
        self.say(f"dashboard: {web}/ (sign in with the token below)")
        self.say(f"dashboard token (operator, this demo only): {login}")
        _fresh_session(store, sandbox_url)
        self.say(
            f"sessions {' and '.join(POOL)} added: waha at {sandbox_url}, token from "
            f"${TOKEN_ENV}; the campaign goes out over both (a sender pool)"
        )
        with SandboxControl(sandbox_url) as control:
            # as a WAHA server would: session events and delivery receipts, signed, to the
            # web service (the dashboard's delivered and read figures come from them)
            control.add_webhook(f"{web}/webhooks/waha", "waha", hmac_key=hmac_key)
            control.receipts(True, delivered_after=RECEIPTS[0], read_after=RECEIPTS[1],
                             read_share=RECEIPTS[2])  # fmt: skip
        self.say(
            f"sandbox webhooks to {web}/webhooks/waha (signed): session events, and receipts "
            f"(delivered {RECEIPTS[0]:g} s after a send, read {RECEIPTS[1]:g} s later for "
            f"{RECEIPTS[2]:.0%} of them)"
        )

        numbers_file = run_dir / "numbers.txt"
        numbers_file.write_text("\n".join(generate_numbers(self.numbers)) + "\n", "utf-8")
        self.enqueuer = TaskSender.for_broker(settings.broker_url, env["CAMPAIGNS_QUEUE"])
        processor = CampaignBatchProcessor(**dataclasses.asdict(PACING), enqueue=self.enqueuer)
        processor.set_state_manager(store)
        started = time.monotonic()
        self.run.campaign_id = cid = processor.process_large_campaign_array(
            numbers_file, "Hello from the Campaign Continuity demo!", list(POOL),
            # the LGPD basis every campaign names; the demo's numbers are the sandbox's own
            legal_basis="consent", legal_note="demo: sandbox numbers, no real person",
        )  # fmt: skip
        first = store.snapshot(cid)
        counts = first.counts
        self.run.valid = first.remaining
        self.say(
            f"campaign {cid}: {first.campaign.total_numbers} entries from {numbers_file.name} "
            f"({counts.get(RecipientStatus.DUPLICATE, 0)} duplicates and "
            f"{counts.get(RecipientStatus.INVALID, 0)} invalid, never sent) in "
            f"{first.campaign.total_batches} batches of {PACING.batch_size}, "
            f"{PACING.min_interval:g}–{PACING.max_interval:g}s between messages"
        )
        with SandboxControl(sandbox_url) as control:
            last = follow_with_progress(
                store,
                cid,
                self.out,
                interval=0.25,
                on_tick=story(self.run, store, control),
                on_resume=self._resumed,
            )
        elapsed = time.monotonic() - started
        delivery = _receipts_in(store, cid, last)
        return summarize(last, record, elapsed, self.run, delivery)

    def _resumed(self, batch: int | None, position: int | None) -> None:
        self.run.resumed_from = (batch, position)
        if self.run.interrupted and not self.run.reconnected:
            # the webhook (or the watcher) resumes in the same breath as the session is back:
            # say it first
            self.run.reconnected = True
            self.say(f"session {SESSION} reconnected")

    def cleanup(self) -> list[str]:
        """Stop what this run started; returns what it did, for the last line."""
        done = []
        store, cid = self.store, self.run.campaign_id
        if store is not None and cid is not None:
            try:
                if not store.get_campaign(cid).status.finished:
                    store.cancel(cid, "the demo was stopped")
                    done.append(f"campaign {cid} cancelled")
            except CampaignError:
                pass  # the database went away: nothing more to tidy there
        if self.stack is not None:
            self.stack.stop_all()
            done.append("worker, beat, sandbox and web service stopped")
        if self.enqueuer is not None:
            self.enqueuer.close()
        if store is not None:
            if not self.keep_data and cid is not None:
                try:
                    store.delete_campaign(cid)
                    for name in POOL:
                        store.remove_session(name)
                except CampaignError:
                    pass
            store.dispose()
        if self.run.started_servers and not self.keep_data:
            _stop_embedded(self.data_dir, self.run.started_servers)
            done.append(f"embedded {' and '.join(self.run.started_servers)} stopped")
        return done


@app.command()
def demo(
    numbers: int = typer.Option(300, min=10, max=5000, help="How many entries to send to."),
    keep_data: bool = typer.Option(
        False,
        "--keep-data",
        help="Keep the demo's campaign and session, and leave the embedded servers it started "
        "running, to explore them with the other commands.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as JSON on stdout (the story goes to stderr)."
    ),
) -> None:
    """Run a campaign against the sandbox gateway, drop its WhatsApp session half-way, and
    watch recovery resume it from the exact recipient. Takes about a minute."""
    out = Console(stderr=as_json, highlight=False, soft_wrap=True)
    run = Demo(out, numbers, keep_data)
    summary: dict[str, Any] | None = None
    try:
        with _sigterm_as_interrupt():
            summary = run.execute()
    except KeyboardInterrupt:
        with _uninterruptible():
            done = run.cleanup()
        typer.echo(f"demo interrupted: {'; '.join(done) or 'nothing was running yet'}", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BaseException:
        with _uninterruptible():
            run.cleanup()
        raise
    with _uninterruptible():
        done = run.cleanup()
    if as_json:
        emit_json(summary)
    else:
        print_summary(out, summary)
    out.print("; ".join(done), markup=False, highlight=False)  # stderr with --json
    ok = (
        summary["status"] == CampaignStatus.COMPLETED.value
        and summary["sandbox_duplicates"] == 0
        and summary["sandbox_messages"] == summary["sent"]
    )
    if not ok:
        typer.echo("error: the demo campaign did not complete cleanly; see the logs", err=True)
        raise typer.Exit(EXIT_ERROR)
