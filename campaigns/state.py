"""The original design's import path of the store: ``from campaigns.state import
CampaignStateManager``. The store itself lives in :mod:`campaigns.store`."""

from campaigns.store import CampaignStateManager

__all__ = ["CampaignStateManager"]
