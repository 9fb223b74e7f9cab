"""The operators' API's request and response bodies, for its OpenAPI page.

Responses are the command line's ``--json`` views (:mod:`campaigns.views`), declared here so the
page shows them; ``extra="allow"`` lets a field added to a view (receipts' delivered and read
figures) through before it is declared. Requests carry shapes only: every value is checked by
the engine's own checks (the Python API's), which name the field at fault.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Options(BaseModel):
    """A new campaign's settings (the JSON body's fields, or the upload's form fields)."""

    model_config = ConfigDict(extra="forbid")

    session: str | list[str] = Field(
        description="A sender session's name, or a pool of them (one lane each, in order)."
    )
    message: str | None = Field(
        None,
        description="The text: {name}, {name|fallback} from the list's columns, spintax "
        "{Olá|Oi}. With media it is the caption and may be left out.",
    )
    variants: list[str] = Field(default_factory=list, description="More texts, one per person.")
    legal_basis: str | None = Field(
        None, description="consent or legitimate_interest; default: the deployment's LEGAL_BASIS."
    )
    legal_note: str | None = None
    media: dict[str, Any] | None = Field(
        None, description="{kind: image|document|audio|video, url, mime?, filename?}."
    )
    start_at: datetime | None = Field(None, description="Scheduled start (ISO 8601, with zone).")
    region: str | None = Field(None, description="Region of numbers without a country code.")
    sticky: bool = True
    window_hours: str | None = Field(None, description="Send only in these periods, 08:00-20:00.")
    window_days: str | None = Field(None, description="mon-sat, 1-5, all (needs window_hours).")
    window_tz: str | None = Field(None, description="IANA time zone of the window.")
    dedupe_days: float | None = Field(None, description="Skip numbers messaged that recently.")
    batch_size: int | None = Field(None, description="Default: the deployment's BATCH_SIZE.")
    min_interval: float | None = None
    max_interval: float | None = None
    batch_delay_min: float | None = None
    batch_delay_max: float | None = None


class NewCampaign(Options):
    """A campaign from a JSON list (for large lists, upload a CSV: it streams)."""

    numbers: list[str | dict[str, str | None]] = Field(
        description="Phone numbers, or objects with a phone column and the text's variables."
    )


class ControlIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, description="Stored with the campaign (pause, cancel).")


class RetryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    statuses: list[str] = Field(
        default_factory=lambda: ["failed"], description="failed and/or unknown."
    )
    error_code: str | None = Field(None, description="Only those that failed with this code.")


class CampaignOut(BaseModel):
    """A campaign (``campaigns list --json``); the message itself is left out (personal)."""

    model_config = ConfigDict(extra="allow")

    id: int
    session: str
    sessions: list[str]
    status: str
    total_numbers: int
    total_batches: int
    current_batch: int
    processed_numbers: int
    sent: int
    failed: int
    duplicates: int
    invalid: int
    unknown: int
    skipped: int
    batch_size: int
    message_length: int
    legal_basis: str | None
    texts: int
    columns: list[str]
    media: dict[str, Any] | None
    dedupe_days: float | None
    retry_of: int | None
    interrupt_reason: str | None
    interrupt_kind: str | None
    waiting_reason: str | None
    created_at: datetime | None
    updated_at: datetime | None


class StatusOut(CampaignOut):
    """A campaign with its live ledger counts, ETA and lanes (``campaigns status --json``)."""

    ledger: dict[str, int]
    remaining: int
    batches_done: int
    eta_seconds: float
    last_error: str | None
    lanes: list[dict[str, Any]] | None = None
    skipped_reasons: dict[str, int] | None = None
    duplicate_reasons: dict[str, int] | None = None
    delivery: dict[str, Any] | None = None
    """Receipts: delivered (read ones included) and read, with rates over sent, in all and per
    sending session."""


class FollowUpOut(StatusOut):
    """The follow-up campaign a retry created (``campaigns retry --json``)."""

    recipients: int
    left_out: dict[str, int]


class ChangedOut(BaseModel):
    """A campaign's new status (``campaigns pause|resume|cancel --json``)."""

    id: int
    status: str
    batch: int | None = None
    position: int | None = None


class RecipientOut(BaseModel):
    """One ledger row: the columns of ``campaigns export``."""

    model_config = ConfigDict(extra="allow")

    position: int
    phone: str | None
    status: str


class RecipientsOut(BaseModel):
    recipients: list[RecipientOut]
    next_after: int | None = Field(
        description="Pass it as ``after`` for the next page; null on the last page."
    )


class SessionOut(BaseModel):
    """A sender session (``campaigns sessions list --json``): no secret, only a variable's name."""

    model_config = ConfigDict(extra="allow")

    name: str
    gateway: str
    base_url: str
    connection_status: str | None
    last_checked_at: datetime | None


class CheckOut(BaseModel):
    """A session's health, as its gateway answered now (``campaigns sessions check --json``)."""

    name: str
    connected: bool
    state: str
    detail: str | None
