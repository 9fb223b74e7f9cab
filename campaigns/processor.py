"""CampaignBatchProcessor: the original design's entry point, now durable.

``process_large_campaign_array`` creates the campaign and its ledger in one transaction and
enqueues the first batch; it returns the campaign id at once. Everything after that is driven by
the workers, and can always be re-derived from PostgreSQL.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from campaigns import inputs
from campaigns.dispatch import Enqueue, configured_enqueue
from campaigns.domain import CampaignStatus, RecipientStatus
from campaigns.errors import CampaignError, InvalidArgument
from campaigns.media import MediaSpec, check_size, media_spec
from campaigns.numbers import Entry
from campaigns.recovery import CampaignRecoveryManager
from campaigns.settings import Pacing
from campaigns.store import CampaignStateManager
from campaigns.windows import SendWindow, next_open_all, window_from_options

log = logging.getLogger("campaigns.processor")


@dataclass(frozen=True, slots=True)
class FollowUp:
    """What :meth:`CampaignBatchProcessor.retry_campaign` created."""

    campaign_id: int
    """The follow-up campaign (running, its first batch enqueued)."""
    retry_of: int
    """The campaign whose recipients it retries."""
    recipients: int
    """How many recipients it retries."""
    opted_out: int
    """Matching recipients left out: their number is now on the opt-out list."""
    already_retried: int
    """Matching recipients left out: an earlier follow-up of the same campaign holds them."""


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
        legal_basis: str | None = None,
        legal_note: str | None = None,
        variants: Sequence[str] = (),
        media: MediaSpec | Mapping[str, Any] | None = None,
        dedupe_days: float | None = None,
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
        overlaps a session's is refused before anything is written.

        ``legal_basis`` (``consent`` or ``legitimate_interest``) with ``legal_note``: the LGPD
        basis the campaign relies on, required unless the deployment sets ``LEGAL_BASIS``.
        ``message`` may use the list's variables (``{name}``, ``{name|fallback}``) and spintax
        (``{Olá|Oi|Bom dia}``); ``variants`` are more texts, one chosen per recipient
        (:mod:`campaigns.content`); everything the texts need of the list is checked before
        anything is kept. ``media``: an image, document, audio or video by URL
        (:class:`campaigns.media.MediaSpec` or its JSON), ``message`` its caption; its type
        and size are checked against every gateway of the pool first (one HEAD request).
        ``dedupe_days``: numbers the pool's sessions messaged that recently are counted as
        duplicates, the earlier campaign named."""
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
        spec = None
        if media is not None:
            kinds = [self.state.get_session(name).gateway for name in names]
            spec = media_spec(media, kinds, caption=message if isinstance(message, str) else "")
            if spec is not None:
                settings = self.state.settings
                check_size(spec, kinds, timeout=settings.gateway_connect_timeout
                           + settings.gateway_read_timeout)  # fmt: skip
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
            legal_basis=legal_basis,
            legal_note=legal_note,
            variants=variants,
            media_spec=spec,
            dedupe_days=dedupe_days,
        )
        if campaign.status is CampaignStatus.RUNNING and campaign.run_token:
            self._start(campaign.id, 1, campaign.run_token)
        return campaign.id

    def retry_campaign(
        self,
        campaign_id: int,
        *,
        statuses: Sequence[RecipientStatus | str] = (RecipientStatus.FAILED,),
        error_code: str | None = None,
    ) -> FollowUp:
        """Retry the failed (or, asked for, unknown) recipients of a campaign, optionally only
        those whose error was ``error_code``: a follow-up campaign with exactly them, their
        variables and variants, the same texts, media, pool and pacing, and its first batch
        enqueued. Numbers now on the opt-out list, and numbers an earlier follow-up of this
        campaign holds, are left out. Returns the follow-up (its id, how many it retries, how
        many were left out and why): the operator must see what a retry did not take.

        A follow-up rather than a new run of the same campaign: the original's ledger stays
        the record of what happened to its list, and its counters keep adding up."""
        campaign, counts = self.state.create_followup(
            campaign_id, statuses=statuses, error_code=error_code
        )
        log.info(
            "campaign %s: follow-up %s of campaign %s (%s left out as opted out, %s as "
            "already retried)",
            campaign.id, campaign.id, campaign_id, counts["opted_out"], counts["already_retried"],
        )  # fmt: skip
        if campaign.run_token:
            self._start(campaign.id, 1, campaign.run_token)
        return FollowUp(
            campaign_id=campaign.id,
            retry_of=campaign_id,
            recipients=campaign.total_numbers,
            opted_out=counts["opted_out"],
            already_retried=counts["already_retried"],
        )

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
