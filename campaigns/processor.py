"""CampaignBatchProcessor: the original design's entry point, now durable.

``process_large_campaign_array`` creates the campaign and its ledger in one transaction and
enqueues the first batch; it returns the campaign id at once. Everything after that is driven by
the workers, and can always be re-derived from PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from campaigns import inputs
from campaigns.dispatch import Enqueue, configured_enqueue
from campaigns.domain import CampaignStatus
from campaigns.errors import CampaignError, InvalidArgument
from campaigns.numbers import Entry
from campaigns.recovery import CampaignRecoveryManager
from campaigns.settings import Pacing
from campaigns.store import CampaignStateManager
from campaigns.windows import SendWindow, next_open_all, window_from_options

log = logging.getLogger("campaigns.processor")


class CampaignBatchProcessor:
    """Creates campaigns and hands their batches to the workers.

    Seconds, not milliseconds: ``min_interval``/``max_interval`` between two messages of the
    session, ``batch_delay_min``/``batch_delay_max`` between two batches.
    """

    def __init__(
        self,
        batch_size: int = 300,
        min_interval: float = 4,
        max_interval: float = 10,
        batch_delay_min: float = 15,
        batch_delay_max: float = 30,
        *,
        enqueue: Enqueue | None = None,
    ) -> None:
        # Pacing.validate checks every number (type, finiteness, range) and names it
        if enqueue is not None and not callable(enqueue):
            raise InvalidArgument(
                f"enqueue must be a callable or None, got {type(enqueue).__name__}"
            )
        self.pacing = Pacing(
            batch_size=batch_size,
            min_interval=min_interval,
            max_interval=max_interval,
            batch_delay_min=batch_delay_min,
            batch_delay_max=batch_delay_max,
        ).validate()
        self._enqueue = enqueue or configured_enqueue
        self._state: CampaignStateManager | None = None

    def set_state_manager(self, state_manager: CampaignStateManager) -> None:
        """Use this store (the original design's wiring)."""
        self._state = state_manager

    @property
    def state(self) -> CampaignStateManager:
        if self._state is None:
            raise CampaignError("call set_state_manager() before processing campaigns")
        return self._state

    def process_large_campaign_array(
        self,
        numbers: Iterable[str | Mapping[str, str] | Entry] | Path,
        message: str,
        session: str | Sequence[str],
        *,
        template: Mapping[str, Any] | None = None,
        start_at: datetime | None = None,
        region: str | None = None,
        sticky: bool = True,
        window: SendWindow | None = None,
    ) -> int:
        """Create the campaign (ledger and state in one transaction), enqueue its first batch,
        and return its id at once. With ``start_at`` the campaign waits, ``scheduled``, and
        the sweep starts it when due.

        ``session`` is one session name, or a list of names: a sender pool, one lane per
        session, each at its own pace; with ``sticky`` (the default) a number that a pool
        session sent to before goes through that session while it is healthy. The batch task
        runs one lane per session of the pool in the rotation.

        ``window`` is the campaign's own send window (:func:`campaigns.windows.parse_window`):
        outside it, and outside its session's window, a lane waits. A window that never
        overlaps a session's is refused before anything is written."""
        names = inputs.session_names(session)
        if window is not None and not isinstance(window, SendWindow):
            raise InvalidArgument(
                f"window must be a SendWindow or None, got {type(window).__name__}"
            )
        for name in names:
            options = self.state.get_session(name).options  # an unknown name says so first
            own = window_from_options(options)
            if window is not None and own is not None:
                try:
                    next_open_all((window, own), datetime.now(UTC))
                except InvalidArgument:
                    raise InvalidArgument(
                        f"the campaign's window {window.describe()} never overlaps session "
                        f"{name}'s window {own.describe()}; nothing was created"
                    ) from None
        campaign = self.state.create_campaign(
            numbers,
            message,
            session,
            pacing=self.pacing,
            template=template,
            start_at=start_at,
            region=region,
            sticky=sticky,
            window=window,
        )
        if campaign.status is CampaignStatus.RUNNING and campaign.run_token:
            self._start(campaign.id, 1, campaign.run_token)
        return campaign.id

    def resume_campaign(self, campaign_id: int) -> int:
        """Resume a paused, interrupted or scheduled campaign — or restart the chain of a
        running one — from the first batch that still has work. Any task of an earlier chain
        is fenced off by the new run token. Returns the batch it resumes from.

        The operator's resume: the same path as ``campaigns resume`` and
        :meth:`CampaignRecoveryManager.recover_campaign`."""
        recovery = CampaignRecoveryManager(self.state, enqueue=self._enqueue)
        return recovery.recover_campaign(campaign_id, reason="an operator asked").batch_number

    def _start(self, campaign_id: int, batch: int, token: str) -> None:
        try:
            self._enqueue(campaign_id, batch, token, 0.0)
        except Exception:
            # the campaign is committed; the sweep starts its chain once it looks stalled
            log.exception(
                "campaign %s: could not enqueue batch %s; the recovery sweep will start it",
                campaign_id,
                batch,
            )
