"""Is a database's schema the one this code expects? The check every command runs before it
touches tables, and the migration of the embedded database on its first use.

A configured database (``DATABASE_URL``) is never migrated behind the operator's back: a
missing or older schema is reported with what to run. The embedded database belongs to the
project, so it is brought to head when it is behind.
"""

from __future__ import annotations

import functools

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from campaigns.errors import ConfigurationError
from campaigns.store import db


class SchemaNotCurrent(ConfigurationError):
    """The database's schema is not the one this version of campaigns expects."""


@functools.cache
def _scripts() -> ScriptDirectory:
    from alembic.config import Config

    return ScriptDirectory.from_config(Config(str(db.ALEMBIC_INI)))


def head_revision() -> str:
    """The newest migration this code knows."""
    head = _scripts().get_current_head()
    assert head is not None  # the project ships at least one migration
    return head


def _knows(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except Exception:  # alembic raises several kinds for an id it has never seen
        return False


def revision_of(target: Engine | str) -> str | None:
    """The revision the database is at (None: no schema), through an engine or a URL."""
    engine = create_engine(target, pool_size=1) if isinstance(target, str) else target
    try:
        with db.translate_errors(), engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        if isinstance(target, str):
            engine.dispose()


def require_current(target: Engine | str) -> None:
    """Raise :class:`SchemaNotCurrent` saying what to run unless the database is at head."""
    current, head = revision_of(target), head_revision()
    if current == head:
        return
    url = target if isinstance(target, str) else target.url
    where = make_url(url).render_as_string(hide_password=True)
    if current is None:
        problem = "has no schema"
    elif _knows(current):
        problem = f"is at revision {current}, head is {head}"
    else:
        raise SchemaNotCurrent(
            f"the database at {where} is at revision {current}, which this version of "
            f"campaigns does not know (head is {head}): it was migrated by a newer version"
        )
    raise SchemaNotCurrent(f"the database at {where} {problem}: run `campaigns db upgrade`")


def upgrade_if_behind(url: str) -> bool:
    """Migrate to head a database with no schema or an older one (True if it did). A revision
    this code does not know is left alone: :func:`require_current` reports it."""
    current = revision_of(url)
    if current == head_revision() or (current is not None and not _knows(current)):
        return False
    db.upgrade(url)
    return True
