"""The servers of a laptop: settings with every needed URL filled in, configured ones as given,
missing ones pointing at the embedded PostgreSQL and Redis (started or adopted in the data
folder). The servers themselves are in :mod:`campaigns.local.postgres` and
:mod:`campaigns.local.redis`; :mod:`campaigns.local.stack` runs the engine's processes."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping

from campaigns.local.needs import DATABASE, EVERYTHING, Need
from campaigns.settings import Settings

__all__ = ["DATABASE", "EVERYTHING", "Need", "resolve_settings"]


def resolve_settings(
    env: Mapping[str, str] | None = None,
    *,
    need: Iterable[Need] = EVERYTHING,
    migrate: bool = True,
) -> Settings:
    """Read the settings; start embedded servers for the URLs in ``need`` that are not
    configured. URLs not needed are left as configured (None when unset), so no server is
    started for them. With ``migrate`` the embedded database is brought to head when behind
    (never a configured one)."""
    env = os.environ if env is None else env
    settings = Settings.from_env(env)
    needed = set(need)
    missing = {
        "database": settings.database_url is None,
        "broker": settings.broker_url is None,
        "redis": settings.pacing_redis_url is None,
    }
    if not any(missing[name] for name in needed):
        return settings
    from campaigns.local.services import ensure_local_services

    services = ensure_local_services(settings.data_dir, env, needed, migrate=migrate)
    return dataclasses.replace(
        settings,
        database_url=services.database_url,
        broker_url=services.broker_url,
        redis_url=services.redis_url,
    )
