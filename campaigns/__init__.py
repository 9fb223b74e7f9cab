"""Campaign Continuity: bulk WhatsApp campaigns that are never lost and never sent twice.

The original design's names import from the package itself::

    from campaigns import CampaignBatchProcessor, CampaignStateManager, CampaignRecoveryManager

They load on first use (PEP 562), so importing a light module such as ``campaigns.domain`` does
not pull in SQLAlchemy, the database driver or Celery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from campaigns.processor import CampaignBatchProcessor
    from campaigns.recovery import CampaignRecoveryManager
    from campaigns.store import CampaignStateManager

_LAZY = {
    "CampaignBatchProcessor": "campaigns.processor",
    "CampaignRecoveryManager": "campaigns.recovery",
    "CampaignStateManager": "campaigns.store",
}

__all__ = ["CampaignBatchProcessor", "CampaignRecoveryManager", "CampaignStateManager"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
