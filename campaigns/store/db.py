"""The connector: engines, migrations, and translation of driver errors.

Nothing outside the store imports SQLAlchemy; driver errors are turned into
:class:`campaigns.errors.StoreUnavailable` here and never leak past the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from campaigns.errors import StoreUnavailable
from campaigns.inputs import database_url

ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"

POOL_TIMEOUT_S = 5.0
"""Longest wait for a pooled connection. Transactions last milliseconds, so a pool busy this
long is an outage (StoreUnavailable: the caller waits and retries, nothing is failed), and the
wait is one of the blocking points a task run's time bound adds up (workers/limits.py)."""
CONNECT_TIMEOUT_S = 10
"""Longest wait to open a connection (libpq's connect_timeout, whole seconds)."""


def create_db_engine(
    url: str, pool_size: int = 10, *, pre_ping: bool = True, pool_timeout: float = POOL_TIMEOUT_S
) -> Engine:
    """An engine whose pool is bounded: sending threads share it, so a thousand paced
    sessions do not mean a thousand PostgreSQL connections.

    ``pre_ping`` checks each connection on checkout, so a long-lived process (the command line,
    the webhook receiver, tests) never sees a connection that died in a PostgreSQL restart. The
    sending workers turn it off: it costs a round trip per transaction, two per message, and
    they recover anyway (SQLAlchemy invalidates the whole pool on the first dead connection, the
    engine retries records, the task retries runs).

    ``url`` may be ``postgresql://``, ``postgres://`` or ``postgresql+psycopg2://``: every
    URL that enters the store goes through :func:`campaigns.inputs.database_url`, so it always
    means psycopg2 (SQLAlchemy 2.1 alone would pick psycopg 3 for ``postgresql://``)."""
    return create_engine(
        database_url(url),
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": "campaign-continuity",
        },
    )


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn a lost or refused database connection, or a pool with no connection free within
    its timeout, into :class:`StoreUnavailable`."""
    try:
        yield
    except PoolTimeout as exc:
        # every pooled connection stayed busy (DB_POOL_SIZE): an outage like any other, which
        # callers wait out; never a batch failure
        detail = str(exc).split(" (Background", 1)[0]
        raise StoreUnavailable(f"no database connection free in the pool: {detail}") from exc
    except OperationalError as exc:
        raise StoreUnavailable(str(exc.orig).strip().splitlines()[0]) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable("the database connection was lost") from exc
        raise


def _alembic_config(url: str) -> object:
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.attributes["url"] = database_url(url)
    config.attributes["configure_logging"] = False
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    from alembic import command

    command.upgrade(_alembic_config(url), revision)  # type: ignore[arg-type]


def downgrade(url: str, revision: str = "base") -> None:
    """Revert migrations down to ``revision``."""
    from alembic import command

    command.downgrade(_alembic_config(url), revision)  # type: ignore[arg-type]


def current_revision(url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    from alembic.migration import MigrationContext

    engine = create_engine(database_url(url), pool_size=1)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
