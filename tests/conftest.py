"""Shared fixtures: a real PostgreSQL with cheap per-test databases.

With DATABASE_URL set (CI: the machine's PostgreSQL) tests use that server; without it they start
an embedded PostgreSQL from the pip package in .data/test-postgres (``CAMPAIGNS_TEST_DATA_DIR``
moves .data) — the same code path either way. A template database is migrated once per run;
each test gets ``CREATE DATABASE … TEMPLATE``.

A session leaves no process behind: every process it starts inherits a session marker in its
environment, and :func:`pytest_sessionfinish` fails the run, naming them, if any outlives it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from campaigns.settings import Pacing, Settings
from campaigns.state import CampaignStateManager
from campaigns.store import db
from tests.leftovers import SESSION_MARKER, Proc, processes_in, processes_with_env

ROOT = Path(__file__).resolve().parent.parent
CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_DATA = Path(os.environ.get("CAMPAIGNS_TEST_DATA_DIR") or ROOT / ".data").absolute()
"""Where the tests' own embedded servers keep their folders."""

_HANDED_OVER: set[Path] = set()
"""Server folders this session leaves running on purpose: another session still uses them."""


def require(condition: bool, reason: str) -> None:
    """Skip locally when a service is missing; in CI a missing service is a failure."""
    if condition:
        return
    if CI:
        pytest.fail(reason)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    # Campaigns need a legal basis (LGPD); the tests' commands and workers use the documented
    # deployment default unless a test says otherwise.
    os.environ.setdefault("LEGAL_BASIS", "consent")
    # a fresh marker even in a session started by another one (which passed its own down)
    os.environ[SESSION_MARKER] = uuid.uuid4().hex


def _interpreter_helper(proc: Proc) -> bool:
    """multiprocessing's resource tracker (started by the tests that use processes) is this
    interpreter's own helper: it outlives those tests by design and exits with pytest."""
    if "multiprocessing.resource_tracker" not in proc.cmdline:
        return False
    try:
        stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return int(stat[1]) == os.getpid()  # the parent pid: ours, not a leaked process's


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process it started is still alive (servers daemonize, so they are
    found by the marker they inherited, not as children). They are then terminated."""
    marker = os.environ.get(SESSION_MARKER)
    if not marker:
        return
    deadline = time.monotonic() + 10  # a stopped server's last backends take a moment
    while True:
        left = [
            p
            for p in processes_with_env(SESSION_MARKER, marker)
            if not _handed_over(p) and not _interpreter_helper(p)
        ]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  pid {p.pid}: {p.cmdline[:200]}" for p in left]
    text = "\n".join(["the test session left processes running:", *lines])
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(text, red=True)
    else:
        print(text)
    for proc in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGTERM)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _handed_over(proc: Proc) -> bool:
    return any(proc in processes_in(folder) for folder in _HANDED_OVER)


class SharedFolder:
    """A server folder concurrent test sessions share (initdb'ed once, adopted by the next).

    Each session holds a shared lock on it while it runs; at its end the session that finds
    itself the last user (:meth:`last_user`) stops the server, and the others hand it over."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handle: IO[str] | None = None

    def __enter__(self) -> SharedFolder:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._handle = (self.folder / ".sessions").open("a")
        fcntl.flock(self._handle, fcntl.LOCK_SH)
        return self

    def last_user(self) -> bool:
        """True if no other session uses the folder; it then waits for this one to finish."""
        assert self._handle is not None
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _HANDED_OVER.add(self.folder)
            return False
        return True

    def __exit__(self, *exc: object) -> None:
        assert self._handle is not None
        self._handle.close()  # releases the lock


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server's maintenance database (``postgres``)."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield make_url(configured).set(database="postgres").render_as_string(hide_password=False)
        return
    from campaigns.local.postgres import EmbeddedPostgres

    server = EmbeddedPostgres(TEST_DATA / "test-postgres", durable=False)
    with SharedFolder(server.data_dir) as shared:
        server.start()
        yield server.url("postgres")
        if shared.last_user():
            server.stop()


def _admin(url: str, sql: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> Iterator[str]:
    """A database migrated to head once per test run; tests copy it."""
    name = f"cc_template_{os.getpid()}"
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name}")
    _admin(pg_server_url, f"CREATE DATABASE {name}")
    url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    db.upgrade(url)
    yield name
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """A fresh migrated database for one test."""
    name = f"cc_test_{uuid.uuid4().hex[:12]}"
    _admin(pg_server_url, f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def empty_database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    name = f"cc_empty_{uuid.uuid4().hex[:12]}"
    _admin(pg_server_url, f"CREATE DATABASE {name}")
    yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def server_tmp_path() -> Iterator[Path]:
    """A temporary folder for embedded servers. Not pytest's ``tmp_path``: under root the
    embedded PostgreSQL runs as a system user, and pytest resets its temporary root to mode
    0700 whenever any session starts, locking that user out of a server mid-test."""
    path = Path(tempfile.mkdtemp(prefix="campaigns-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def settings() -> Settings:
    return Settings(
        pacing=Pacing(
            batch_size=10, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0
        ),
        default_region="BR",
        legal_basis="consent",  # the tests' documented default basis (README, Configuration)
    )


@pytest.fixture
def store(database_url: str, settings: Settings) -> Iterator[CampaignStateManager]:
    manager = CampaignStateManager(database_url, settings=settings)
    yield manager
    manager.dispose()


@pytest.fixture
def console_session(store: CampaignStateManager) -> str:
    store.add_session("sales", "console", "console://local")
    return "sales"
