"""Settings with every URL filled in: configured ones as given, missing ones pointing at the
embedded PostgreSQL and Redis (started or adopted in the data folder)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

from campaigns.settings import Settings


def resolve_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the settings; start embedded servers for the URLs that are not configured."""
    env = os.environ if env is None else env
    settings = Settings.from_env(env)
    if settings.database_url and settings.broker_url and settings.pacing_redis_url:
        return settings
    from campaigns.local.services import ensure_local_services

    services = ensure_local_services(settings.data_dir, env)
    return dataclasses.replace(
        settings,
        database_url=services.database_url,
        broker_url=services.broker_url,
        redis_url=services.redis_url,
    )
