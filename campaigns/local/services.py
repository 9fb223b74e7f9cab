"""The product's entry to the embedded servers: with ``DATABASE_URL`` / ``CELERY_BROKER_URL``
unset, :func:`ensure_local_services` starts (or adopts) PostgreSQL and Redis in a project data
folder, so a laptop with only ``pip install`` runs the same code path as production.

The other users of :mod:`campaigns.local.postgres` and :mod:`campaigns.local.redis` are tests
that stop, restart, kill or flush a server. They must never touch the machine's shared servers,
so every embedded server listens on a port of its own, on 127.0.0.1 only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from campaigns.local.needs import EVERYTHING, Need
from campaigns.local.postgres import EmbeddedPostgres
from campaigns.local.processes import file_lock
from campaigns.local.redis import EmbeddedRedis

EMBEDDED_DATABASE_NAME = "campaigns"
"""The database :func:`ensure_local_services` creates in the embedded PostgreSQL."""


@dataclass(frozen=True)
class LocalServices:
    """The URLs the product uses, and the embedded servers behind them (None: URL given, or
    not needed and not configured)."""

    database_url: str | None
    broker_url: str | None
    redis_url: str | None
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    started: frozenset[str] = frozenset()
    """Names ("postgres", "redis") of servers this call launched (not merely adopted)."""


def ensure_local_services(
    data_dir: Path,
    env: Mapping[str, str],
    need: Iterable[Need] = EVERYTHING,
    *,
    migrate: bool = True,
) -> LocalServices:
    """Use the configured URLs; start (or adopt) embedded servers for the missing ones among
    ``need``, and only those, so a command never leaves a server running that it did not use:

    * no ``DATABASE_URL``: PostgreSQL in ``data_dir/postgres``, database ``campaigns``,
      migrated to head when it is behind (unless ``migrate`` is False: ``campaigns db``
      migrates on its own terms);
    * no ``CELERY_BROKER_URL``: the broker is ``REDIS_URL`` if set, else an embedded Redis in
      ``data_dir/redis``;
    * no ``REDIS_URL``: pacing uses the broker when it is Redis, else the embedded Redis.

    The servers keep running after this process exits; the next process adopts them.
    """
    needed = set(need)
    unknown = needed - set(EVERYTHING)
    if unknown:
        raise ValueError(f"unknown needs {sorted(unknown)}; choose from {EVERYTHING}")
    data_dir = Path(data_dir).absolute()
    database_url = env.get("DATABASE_URL") or None
    broker_url = env.get("CELERY_BROKER_URL") or None
    redis_url = env.get("REDIS_URL") or None
    if redis_url is None and broker_url and broker_url.startswith(("redis://", "rediss://")):
        redis_url = broker_url
    broker_url = broker_url or redis_url

    postgres: EmbeddedPostgres | None = None
    redis_server: EmbeddedRedis | None = None
    started: set[str] = set()
    embedded_database = database_url is None and "database" in needed
    embedded_redis = redis_url is None and (
        "redis" in needed or ("broker" in needed and broker_url is None)
    )
    if not (embedded_database or embedded_redis):
        # everything needed is configured: not even the data folder is touched
        return LocalServices(database_url, broker_url, redis_url)
    # One lock over the whole decision: two processes starting at once get the same servers,
    # and the embedded database is migrated once.
    with file_lock(data_dir / ".services.lock"):
        if embedded_database:
            postgres = EmbeddedPostgres(data_dir / "postgres")
            if postgres.start():
                started.add("postgres")
            database_url = postgres.create_database(EMBEDDED_DATABASE_NAME)
            if migrate:
                # lazily: the store (SQLAlchemy, Alembic) loads only for a caller that needs it
                from campaigns.store.schema import upgrade_if_behind

                upgrade_if_behind(database_url)
        if embedded_redis:
            redis_server = EmbeddedRedis(data_dir / "redis")
            if redis_server.start():
                started.add("redis")
            redis_url = redis_server.url()
            broker_url = broker_url or redis_url
    return LocalServices(
        database_url=database_url,
        broker_url=broker_url,
        redis_url=redis_url,
        postgres=postgres,
        redis=redis_server,
        started=frozenset(started),
    )
