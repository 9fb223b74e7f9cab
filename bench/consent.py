"""Consent and export (issue 12).

Rows 1-4, the ledger export: a 1,000,000-row campaign created through the store's COPY path
(``create_campaign`` from a generator, ``start_at`` tomorrow so nothing sends; no worker runs),
its ledger then filled as a finished campaign's (a session, a message id, claim and finish
times and a variant on every row, one in 50 failed with an error) so that every column is
written. ``campaigns export ID --format csv`` and ``--format jsonl`` run as the operator runs
them, each in its own process (numbers masked, the default), writing to a file: seconds from
start to exit and that process's peak RSS (its own VmHWM, read until it exits).
Baseline, same run: a bare ``COPY (SELECT the same columns ... ORDER BY position) TO STDOUT``
through psycopg2 in a fresh Python process, writing the same rows to a file.

Row 5, the opt-out check on the send path: one Cloud API session at ``rate`` 1,000 and no
latency (as bench/protection.py), one worker, the real claim + record path. Four campaigns in
the order empty list, 1,000,000-number list, the same list, empty list again (the list is
emptied with TRUNCATE): messages/s with the list over messages/s without it, each the mean of
its two campaigns (target ≥ 0.95). The list is filled with ``import_optouts`` from a generator
of 1,000,000 valid numbers none of the campaigns holds (the check runs on every claim and
never matches) plus a few numbers of each listed campaign, which must end ``skipped`` and never
reach the sandbox.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import make_url

from bench.harness import (
    ROOT,
    SANDBOX_TOKEN,
    Bench,
    Client,
    Row,
    autocommit,
    fmt_s,
    numbers,
    rate,
)
from bench.ledgers import FAILED_EVERY, ZERO, big_campaign
from campaigns.domain import RecipientStatus
from campaigns.numbers import Entry
from campaigns.sandbox import SandboxControl, SandboxRecord

NAME = "consent"
LEGAL = {"LEGAL_BASIS": "consent"}
"""The deployment default basis (campaigns must name one): the benches' campaigns are ours."""

EXPORT_SIZE, EXPORT_QUICK = 1_000_000, 20_000
TARGET_EXPORT_S = 20.0
TARGET_EXPORT_MB = 150.0

OPTOUTS, OPTOUTS_QUICK = 1_000_000, 20_000
MATCHED = 6
"""Numbers of each listed campaign put on the list: the check matches them, they end skipped."""
CHECK_TOTAL, CHECK_QUICK = 10_000, 300
FAST_RATE = 1000
IN_FLIGHT = 32
TARGET_CHECK = 0.95

_EXPORTED = (
    "position, batch_number, phone, status, session_name, attempts, gateway_message_id, "
    "error_code, error_message, finished_at, claimed_at, variant"
)
_BARE_COPY = """
import sys
import psycopg2
conn = psycopg2.connect(sys.argv[1])
with conn.cursor() as cursor, open(sys.argv[3], "w", encoding="utf-8") as out:
    cursor.copy_expert(sys.argv[2], out, size=65536)
conn.close()
"""


def run(bench: Bench) -> list[Row]:
    return [*_export_rows(bench), _check_row(bench)]


# ---------------------------------------------------------------------------------- export


def _export_rows(bench: Bench) -> list[Row]:
    size = EXPORT_QUICK if bench.quick else EXPORT_SIZE
    database_url = bench.database(f"{NAME}_export")
    env = bench.env(database_url, **LEGAL)
    campaign_id, loaded, filled = big_campaign(env, size, "export-bench")
    child_env = {**os.environ, **env}
    out = bench.work_dir / "export"
    out.mkdir(exist_ok=True)
    cli = [sys.executable, "-m", "campaigns.cli", "export", str(campaign_id)]
    measured = {}
    for fmt in ("csv", "jsonl"):
        path = out / f"ledger.{fmt}"
        argv = [*cli, "--format", fmt, "--out", str(path)]
        measured[fmt] = _measure(argv, child_env, out / f"{fmt}.log")
        lines = _count_lines(path)
        if lines != size + (fmt == "csv"):
            raise RuntimeError(f"the {fmt} export wrote {lines:,} lines for {size:,} rows")
        path.unlink()
    bare_path = out / "bare.csv"
    query = (
        f"COPY (SELECT {_EXPORTED} FROM campaign_recipients WHERE campaign_id = {campaign_id}"
        " ORDER BY position) TO STDOUT WITH (FORMAT csv, HEADER)"
    )
    libpq = make_url(database_url).set(drivername="postgresql")
    bare = _measure(
        [sys.executable, "-c", _BARE_COPY, libpq.render_as_string(hide_password=False), query,
         str(bare_path)],
        child_env,
        out / "bare.log",
    )  # fmt: skip
    if _count_lines(bare_path) != size + 1:
        raise RuntimeError("the bare COPY did not write every row")
    bare_path.unlink()
    bench.notes.append(
        f"ledger export: a {size:,}-row campaign created with create_campaign from a generator "
        f"(COPY path, {loaded:.0f} s), start_at tomorrow and no worker, then its ledger filled "
        f"as a finished campaign's in one UPDATE ({filled:.0f} s; a session, message id, claim "
        f"and finish times and a variant a/b/c on every row, one in {FAILED_EVERY} failed "
        "with an error) and VACUUM ANALYZE. `python -m campaigns.cli export ID --format F "
        "--out FILE` in its own process, numbers masked (the default); seconds from start "
        "(imports included) to exit; peak RSS: the process's VmHWM. Baseline: "
        "psycopg2's copy_expert of COPY (SELECT the same 12 columns ... ORDER BY position) TO "
        "STDOUT (FORMAT csv, HEADER) in a fresh Python process, to a file."
    )
    rows = []
    label = f"{size:,}-row ledger"
    for fmt in ("csv", "jsonl"):
        seconds, rss = measured[fmt]
        rows += [
            Row(
                "ledger export",
                f"{label}: `campaigns export ID --format {fmt}`, seconds",
                f"{fmt_s(seconds)} ({size / seconds:,.0f} rows/s)",
                f"bare COPY TO {fmt_s(bare[0])}",
                seconds / bare[0],
                f"< {TARGET_EXPORT_S:.0f} s",
                seconds < TARGET_EXPORT_S,
            ),
            Row(
                "ledger export",
                f"{label}: `campaigns export ID --format {fmt}`, peak RSS of the process",
                f"{rss:.0f} MB",
                f"bare COPY TO process {bare[1]:.0f} MB",
                rss / bare[1],
                f"< {TARGET_EXPORT_MB:.0f} MB",
                rss < TARGET_EXPORT_MB,
            ),
        ]
    return rows


def _measure(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Seconds from start to exit and peak RSS (MB) of one command, that process alone: its
    VmHWM, the high-water mark of its own memory, read until it exits. (``ru_maxrss`` from
    wait4 would count the bench process too: Linux carries the forking parent's high-water
    mark over ``exec`` into the child's.)"""
    peak_kb = 0
    with log.open("wb") as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=errors,
        )  # fmt: skip
        while process.poll() is None:
            peak_kb = max(peak_kb, _high_water_kb(process.pid))
            time.sleep(0.01)
        seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{argv[2:5]} exited {process.returncode}: {log.read_text()[-2000:]}")
    return seconds, peak_kb / 1024


def _high_water_kb(pid: int) -> int:
    """VmHWM of a live process (0 once it is gone: an exited process has no memory)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


# ---------------------------------------------------------------------------------- check


def _check_row(bench: Bench) -> Row:
    total = CHECK_QUICK if bench.quick else CHECK_TOTAL
    size = OPTOUTS_QUICK if bench.quick else OPTOUTS
    database_url = bench.database(f"{NAME}_check")
    env = bench.env(database_url, **LEGAL)
    record_path = bench.work_dir / "consent-check.sqlite"
    # (label, offset of its numbers) in time order: empty list, listed, listed, empty again
    plan = [("empty", 1), ("listed", 2), ("listed2", 3), ("empty2", 4)]
    lists = {label: numbers(total, 10**7 * offset) for label, offset in plan}
    step = total // MATCHED
    matched = {label: lists[label][::step][:MATCHED] for label in ("listed", "listed2")}
    rates: dict[str, float] = {}
    with bench.stack(f"{NAME}-check", env) as local:
        sandbox_url = local.start_sandbox(record_path, api_key=SANDBOX_TOKEN, waha_wait=0.5)
        with SandboxControl(sandbox_url) as control:
            control.throughput(None)  # no limit: what is measured is the engine, not Meta's
        client = Client(env)
        try:
            local.start_worker("w0", concurrency=IN_FLIGHT + 8)
            rates["empty"] = _send(client, sandbox_url, bench, "empty", lists["empty"], [])
            started = time.monotonic()
            imported = client.store.import_optouts(
                _optout_entries(size, [*matched["listed"], *matched["listed2"]])
            )
            import_seconds = time.monotonic() - started
            # as an operator's import leaves it (the import refreshes the planner statistics
            # itself); no vacuum of our own: the sends meet the list as it stands
            listed_count = client.store.count_optouts()
            for label in ("listed", "listed2"):
                rates[label] = _send(client, sandbox_url, bench, label, lists[label],
                                     matched[label])  # fmt: skip
            autocommit(database_url, "TRUNCATE campaign_optouts")
            rates["empty2"] = _send(client, sandbox_url, bench, "empty2", lists["empty2"], [])
        finally:
            client.close()
    record = SandboxRecord(record_path)
    reached = {m.e164 for m in record.messages()}
    leaked = [n for group in matched.values() for n in group if n in reached]
    if leaked or record.duplicates():
        raise RuntimeError(f"{len(leaked)} listed numbers reached the sandbox, or duplicates")
    baseline = (rates["empty"] + rates["empty2"]) / 2
    listed = (rates["listed"] + rates["listed2"]) / 2
    skipped = sum(len(group) for group in matched.values())
    bench.notes.append(
        f"opt-out check: one cloud-api session per campaign at rate {FAST_RATE}, {IN_FLIGHT} "
        f"in flight, no latency, one worker × {IN_FLIGHT + 8} threads; {total:,} recipients "
        f"per campaign, sent in the order empty list / list / list / empty list (TRUNCATE): "
        + " / ".join(f"{rates[label]:.0f}" for label, _ in plan)
        + f" messages/s. The list: {listed_count:,} global entries from import_optouts of a "
        f"generator ({imported.read:,} read, {imported.added:,} added in "
        f"{import_seconds:.0f} s; the import analyses the list itself, no vacuum): "
        f"{size:,} valid numbers in no campaign and "
        f"{MATCHED} numbers of each listed campaign, which ended skipped ({skipped} in all, "
        "none recorded by the sandbox). Messages/s counts sent messages only."
    )
    return Row(
        "opt-out check",
        f"messages/s with a {size:,}-number opt-out list (rate 1,000, no latency)",
        f"{listed:.0f}/s ({skipped} listed recipients skipped)",
        f"same campaigns, empty list: {baseline:.0f}/s",
        listed / baseline,
        f"≥ {TARGET_CHECK}",
        listed / baseline >= TARGET_CHECK,
    )


def _optout_entries(size: int, matched: list[str]) -> Iterator[Entry]:
    """``size`` valid numbers no campaign of this bench holds (+5511950000000 on), with the
    ``matched`` ones spread among them."""
    every = max(1, size // (len(matched) + 1))
    pending = list(matched)
    for i in range(size):
        yield Entry(f"+5511{950000000 + i}")
        if pending and i % every == every - 1:
            yield Entry(pending.pop())
    yield from (Entry(n) for n in pending)


def _send(
    client: Client, sandbox_url: str, bench: Bench, label: str, recipients: list[str],
    matched: list[str],
) -> float:  # fmt: skip
    """Send one campaign to the end; messages/s of what was sent. Its ``matched`` numbers
    are on the list: they must end skipped."""
    name = f"check-{label}-{bench.run_id}"
    client.store.add_session(
        name, "cloud-api", sandbox_url, token_env="SANDBOX_TOKEN", phone_number_id=name,
        pacing="rate", rate=str(FAST_RATE), in_flight=str(IN_FLIGHT), tier="unlimited",
    )  # fmt: skip
    campaign = client.store.create_campaign(recipients, "Hi", name, pacing=ZERO)
    assert campaign.run_token is not None
    started = time.monotonic()
    client.enqueuer(campaign.id, 1, campaign.run_token, 0.0)
    finished = client.wait_finished([campaign.id], 900)
    sent = client.sent([campaign.id])
    skipped = client.store.snapshot(campaign.id).counts.get(RecipientStatus.SKIPPED, 0)
    if sent != len(recipients) - len(matched) or skipped != len(matched):
        raise RuntimeError(f"campaign {label}: {sent} sent and {skipped} skipped")
    return rate(sent, finished - started)
