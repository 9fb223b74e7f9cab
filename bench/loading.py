"""List loading (issue 2): ``CampaignStateManager.create_campaign(Path)`` on a generated file of
100,000 and 1,000,000 entries (with repeats and unparseable entries), in a child process whose
peak RSS is read from ``ru_maxrss``; baseline: a bare ``COPY`` of a pre-built CSV of the same
rows into a plain table, in a child process too, in the same run."""

from __future__ import annotations

import multiprocessing
import random
import resource
import time
from pathlib import Path
from typing import Any

import psycopg2
from sqlalchemy.engine import make_url

from bench.harness import Bench, Row, fmt_s

NAME = "loading"
TARGET_SECONDS = 30.0
TARGET_RSS_MB = 300.0
ANALYZED_CAP_S = 90.0
"""How long the load into an analyzed ledger may run before it is called off."""
DUPLICATE_SHARE = 0.01
INVALID_SHARE = 0.005

_BARE_TABLE = """
CREATE TABLE IF NOT EXISTS bench_bare_copy (
    campaign_id bigint, position integer, batch_number integer, phone text, raw text,
    variables jsonb, status text
)"""
_BARE_COPY = (
    "COPY bench_bare_copy (campaign_id, position, batch_number, phone, raw, variables, status)"
    " FROM STDIN WITH (FORMAT csv, FORCE_NULL (phone, variables))"
)


def write_number_file(path: Path, count: int, seed: int = 7) -> None:
    """``count`` entries, one per line, in mixed human formats; about 1% repeat an earlier
    number and 0.5% are not phone numbers."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(count):
            draw = rng.random()
            if draw < INVALID_SHARE:
                out.write(f"call me maybe {i}\n")
                continue
            n = rng.randrange(i) if draw < INVALID_SHARE + DUPLICATE_SHARE and i else i
            digits = f"{900000000 + n:09d}"
            if i % 3 == 0:
                out.write(f"+55 11 {digits[:5]}-{digits[5:]}\n")
            elif i % 3 == 1:
                out.write(f"(11) {digits[:5]}-{digits[5:]}\n")
            else:
                out.write(f"5511{digits}\n")


def write_bare_csv(source: Path, target: Path, batch_size: int = 300) -> None:
    """The ledger rows of ``source`` as CSV, already normalized (the baseline does no work)."""
    with source.open(encoding="utf-8") as numbers, target.open("w", encoding="utf-8") as out:
        for position, line in enumerate(numbers, start=1):
            raw = line.strip()
            digits = "".join(ch for ch in raw if ch.isdigit())
            valid = len(digits) >= 11
            phone = f"+55{digits[-11:]}" if valid else ""
            status = "pending" if valid else "invalid"
            out.write(
                f'1,{position},{(position - 1) // batch_size + 1},"{phone}","{raw}",,"{status}"\n'
            )


def _dsn(database_url: str) -> str:
    url = make_url(database_url)
    return f"host={url.host} port={url.port or 5432} user={url.username} dbname={url.database}" + (
        f" password={url.password}" if url.password else ""
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _engine_child(database_url: str, path: str, session: str, out: Any) -> None:
    """In a fresh process: create one campaign from the file; report seconds and peak RSS."""
    from campaigns.domain import RecipientStatus
    from campaigns.settings import Pacing, Settings
    from campaigns.store import CampaignStateManager

    store = CampaignStateManager(
        database_url, settings=Settings(legal_basis="consent", db_pool_size=1)
    )
    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    try:
        campaign = store.create_campaign(Path(path), "Hello there", session, pacing=Pacing())
    except Exception as exc:  # the statement timeout of the capped case
        out.put({"error": f"{type(exc).__name__}", "seconds": time.perf_counter() - started})
        store.dispose()
        return
    seconds = time.perf_counter() - started
    counts = store.snapshot(campaign.id).counts
    store.dispose()
    out.put(
        {
            "seconds": seconds,
            "total": campaign.total_numbers,
            "duplicates": counts.get(RecipientStatus.DUPLICATE, 0),
            "invalid": counts.get(RecipientStatus.INVALID, 0),
            "rss_mb": _peak_rss_mb(),
            "rss_before_mb": rss_before,
        }
    )


def _bare_child(database_url: str, csv_path: str, out: Any) -> None:
    """In a fresh process: COPY the pre-built CSV into a plain table in one transaction."""
    conn = psycopg2.connect(_dsn(database_url))
    try:
        with conn.cursor() as cursor:
            cursor.execute(_BARE_TABLE)
            cursor.execute("TRUNCATE bench_bare_copy")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor, open(csv_path, "rb") as handle:
            cursor.copy_expert(_BARE_COPY, handle, size=65536)
        conn.commit()
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    out.put({"seconds": seconds, "rss_mb": _peak_rss_mb()})


def _in_child(target: Any, *args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, queue))
    process.start()
    try:
        result: dict[str, Any] = queue.get(timeout=900)
    finally:
        process.join(timeout=60)
    if process.exitcode not in (0, None):
        raise RuntimeError(f"loading child exited with {process.exitcode}")
    return result


def run(bench: Bench) -> list[Row]:
    from campaigns.settings import Settings
    from campaigns.store import CampaignStateManager

    sizes = [2_000, 20_000] if bench.quick else [100_000, 1_000_000]
    database_url = bench.database("loading")
    store = CampaignStateManager(database_url, settings=Settings(legal_basis="consent"))
    session = "bench-loading"
    store.add_session(session, "console", "console://bench")
    store.dispose()
    rows: list[Row] = []
    for size in sizes:
        numbers = bench.work_dir / f"numbers-{size}.txt"
        bare_csv = bench.work_dir / f"bare-{size}.csv"
        write_number_file(numbers, size)
        write_bare_csv(numbers, bare_csv)
        bare = _in_child(_bare_child, database_url, str(bare_csv))
        loaded = _in_child(_engine_child, database_url, str(numbers), session)
        assert loaded["total"] == size, loaded
        biggest = size == 1_000_000
        label = f"{size:,} numbers"
        rows.append(
            Row(
                "list loading",
                f"{label}: create_campaign(Path), seconds",
                f"{fmt_s(loaded['seconds'])} ({size / loaded['seconds']:,.0f}/s; "
                f"{loaded['duplicates']:,} dup, {loaded['invalid']:,} invalid)",
                f"bare COPY {fmt_s(bare['seconds'])} ({size / bare['seconds']:,.0f}/s)",
                loaded["seconds"] / bare["seconds"],
                f"< {TARGET_SECONDS:.0f} s" if biggest else "—",
                loaded["seconds"] < TARGET_SECONDS if biggest else None,
            )
        )
        rows.append(
            Row(
                "list loading",
                f"{label}: peak RSS of the loading process",
                f"{loaded['rss_mb']:.0f} MB (after imports: {loaded['rss_before_mb']:.0f} MB)",
                f"bare COPY process {bare['rss_mb']:.0f} MB",
                loaded["rss_mb"] / bare["rss_mb"],
                f"< {TARGET_RSS_MB:.0f} MB" if biggest else "—",
                loaded["rss_mb"] < TARGET_RSS_MB if biggest else None,
            )
        )
        numbers.unlink()
        bare_csv.unlink()
    rows.append(_into_analyzed_ledger(bench, database_url, session, sizes[0]))
    return rows


def _into_analyzed_ledger(bench: Bench, database_url: str, session: str, size: int) -> Row:
    """A campaign loaded into a ledger that already holds analyzed campaigns: the normal case
    in production, where autovacuum analyzes the table after the first campaigns."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url, isolation_level="AUTOCOMMIT", pool_size=1)
    with engine.connect() as conn:
        conn.execute(text("ANALYZE campaign_recipients"))
    engine.dispose()
    cap = 30.0 if bench.quick else ANALYZED_CAP_S
    capped = make_url(database_url).update_query_dict(
        {"options": f"-c statement_timeout={int(cap * 1000)}"}
    )
    numbers = bench.work_dir / f"numbers-analyzed-{size}.txt"
    write_number_file(numbers, size, seed=11)
    loaded = _in_child(
        _engine_child, capped.render_as_string(hide_password=False), str(numbers), session
    )
    numbers.unlink()
    target = size / (1_000_000 / TARGET_SECONDS)
    finished = "error" not in loaded
    bench.notes.append(
        "list loading into an analyzed ledger: the same loader after ANALYZE campaign_recipients "
        "(what autovacuum does once the first campaigns are in), with a statement timeout of "
        f"{cap:.0f} s; the target is the 1M-in-{TARGET_SECONDS:.0f} s rate."
    )
    return Row(
        "list loading",
        f"{size:,} numbers into a ledger with analyzed campaigns: seconds",
        fmt_s(loaded["seconds"])
        if finished
        else f"not done after {cap:.0f} s ({loaded['error']}: statement timeout)",
        f"the {TARGET_SECONDS:.0f} s-per-1M rate: {target:.1f} s",
        loaded["seconds"] / target,
        f"< {target:.1f} s",
        finished and loaded["seconds"] < target,
    )
