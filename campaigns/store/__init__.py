"""The store: everything that touches SQLAlchemy and PostgreSQL.

- :mod:`~campaigns.store.models`: the schema of record (Alembic migrations are checked
  against it);
- :mod:`~campaigns.store.db`: the connector (engines, migrations, driver errors turned into
  :class:`campaigns.errors.StoreUnavailable`);
- :mod:`~campaigns.store.queries`: every SQL statement the store runs, named;
- :mod:`~campaigns.store.loading`: the bulk loader (COPY) of number lists;
- :mod:`~campaigns.store.manager`: :class:`CampaignStateManager`, whose verbs are grouped in
  the sibling modules.

No module outside this package imports SQLAlchemy (a ruff rule and a layout test enforce it):
the rest of the engine sees frozen values from :mod:`campaigns.domain` only.
"""

from campaigns.store.manager import CampaignStateManager

__all__ = ["CampaignStateManager"]
