"""What a caller of :func:`campaigns.local.resolve_settings` uses. A module of its own so that
the services module can name it without importing the package back (an import circle)."""

from __future__ import annotations

from typing import Literal

Need = Literal["database", "broker", "redis"]
"""What a caller uses: the database, the Celery broker, the Redis for pacing and locks."""

EVERYTHING: tuple[Need, ...] = ("database", "broker", "redis")
"""What a worker uses; the default, so callers written before ``need`` keep their servers."""
DATABASE: tuple[Need, ...] = ("database",)
"""What the commands that only read or change the store use."""
