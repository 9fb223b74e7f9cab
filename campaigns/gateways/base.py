"""The one small interface every gateway adapter implements.

An adapter turns one outgoing message into one HTTP call and classifies the answer into a
:class:`SendOutcome`. The engine never looks at HTTP status codes or gateway error codes: it acts
only on :class:`OutcomeKind`, so each dialect's quirks stay inside its own module.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from campaigns.domain import StopKind


class OutcomeKind(enum.StrEnum):
    """What the engine does with a recipient after a gateway call."""

    SENT = "sent"
    """Accepted by the gateway; ``message_id`` carries its id when it gave one."""
    RECIPIENT_FAILED = "recipient_failed"
    """Permanent for this recipient (not on WhatsApp, invalid number): record failed, go on."""
    THROTTLED = "throttled"
    """Rate limited; nothing was sent. Release the claim, wait ``retry_after`` seconds, go on."""
    SESSION_DOWN = "session_down"
    """The sender session cannot send (disconnected, logged out, bad token, timelocked,
    template refused...). Release the claim, interrupt the campaign with ``error_message`` as
    the reason and ``stop`` as the kind of the stop, which decides who may resume it."""
    TRANSIENT = "transient"
    """An explicit temporary error answer, or the request never reached the gateway (connect
    error); nothing was sent. Safe to retry a bounded number of times, then failed."""
    AMBIGUOUS = "ambiguous"
    """The gateway may or may not have sent (read timeout, connection cut mid-answer). The
    recipient becomes ``unknown`` and is not resent by default."""


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The classified answer of one gateway call."""

    kind: OutcomeKind
    message_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retry_after: float | None = None
    """Seconds to wait before sending again on this session (THROTTLED, TRANSIENT; SESSION_DOWN
    with ``stop`` LIMITED: when the limit ends)."""
    auth_failure: bool = False
    """SESSION_DOWN because the credentials were refused: a human must fix the token."""
    http_status: int | None = None
    stop: StopKind | None = None
    """SESSION_DOWN only: ``disconnected`` when a reconnect of the session fixes it (the watcher
    resumes on the next healthy check), ``limited`` when it ends by itself after
    ``retry_after``, ``blocked`` when only a person can fix it (a healthy health check proves
    nothing then: resuming automatically would hit WhatsApp again with the same refusal)."""

    @property
    def stop_kind(self) -> StopKind:
        """The kind of stop of a SESSION_DOWN outcome; one that names none is a disconnection
        unless the credentials were refused."""
        if self.stop is not None:
            return self.stop
        return StopKind.BLOCKED if self.auth_failure else StopKind.DISCONNECTED


@dataclass(frozen=True, slots=True)
class TemplateSpec:
    """A Cloud API template message: name, language and components (already filled)."""

    name: str
    language: str
    components: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to one recipient. ``to`` is E.164 with the leading ``+``."""

    to: str
    text: str | None = None
    template: TemplateSpec | None = None


@dataclass(frozen=True, slots=True)
class SessionHealth:
    """Whether the sender session can send now, as the gateway reports it."""

    connected: bool
    state: str
    """The gateway's own word for the state (WORKING, open, close, SCAN_QR_CODE, ...)."""
    detail: str = ""
    auth_failure: bool = False


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """How to reach one session's gateway. The token is read from the environment by the
    caller (``token_env``) and never stored."""

    session_name: str
    base_url: str
    token: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


class Gateway(Protocol):
    """A sender session's gateway."""

    kind: str

    def send(self, message: OutgoingMessage) -> SendOutcome:
        """Send one message; classify the answer. Never raises for gateway answers or
        network errors: those are outcomes."""
        ...

    def health(self) -> SessionHealth:
        """Ask the gateway whether the session is connected. Never raises."""
        ...

    def close(self) -> None:
        """Release HTTP connections."""
        ...
