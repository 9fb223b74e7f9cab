"""The one small interface every gateway adapter implements.

An adapter turns one outgoing message into one HTTP call and classifies the answer into a
:class:`SendOutcome`. The engine never looks at HTTP status codes or gateway error codes: it acts
only on :class:`OutcomeKind`, so each dialect's quirks stay inside its own module.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from campaigns.domain import StopKind
from campaigns.media import MediaSpec


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
    DEFERRED = "deferred"
    """A limit of this recipient, not of the session (Cloud API 131049 per-user marketing cap,
    131056 pair rate): nothing was sent; send it again after ``retry_after`` seconds (None: a
    day later, at most MAX_DEFERRALS times), while the lane goes on with the others."""
    OPTED_OUT = "opted_out"
    """The recipient stopped this kind of message (Cloud API 131050): skipped, never retried."""
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
    typing_s: float = 0.0
    """Seconds to show "typing…" to the recipient before the text leaves (0: none). The lane
    sets it and fits the wait inside the pacing gap; adapters whose session option ``typing``
    is off ignore it, and it never changes what is sent."""
    media: MediaSpec | None = None
    """An image, document, audio or video sent by URL; ``text`` is then its caption (None or
    empty: no caption). Checked for every gateway of the pool when the campaign was created
    (:func:`campaigns.media.media_spec`)."""


@dataclass(frozen=True, slots=True)
class SessionHealth:
    """Whether the sender session can send now, as the gateway reports it."""

    connected: bool
    state: str
    """The gateway's own word for the state (WORKING, open, close, SCAN_QR_CODE, ...)."""
    detail: str = ""
    auth_failure: bool = False
    stop: StopKind | None = None
    """A stop the gateway reports in force even while the session is connected: ``limited``
    (WAHA 475 capping, until ``until``), ``blocked`` (WAHA 463 reach-out timelock: only an
    operator resumes). None when the gateway reports nothing of the kind."""
    until: float | None = None
    """Epoch seconds when ``stop`` ends, when the gateway says (a capping's cycle end)."""

    def stop_in_force(self, now: float | None = None) -> StopKind | None:
        """The reported stop that holds at ``now`` (epoch seconds, default the current time):
        ``blocked`` always, ``limited`` until ``until`` (or always when no end is known)."""
        if self.stop is StopKind.LIMITED and self.until is not None:
            return self.stop if (time.time() if now is None else now) < self.until else None
        return self.stop

    def watch_answer(self, now: float | None = None) -> tuple[bool, str]:
        """(connected, state) as the session watcher reads a health answer: a session that is
        connected but reports a stop in force is *not* connected for it — resuming then would
        send the refused request again (a capped or timelocked number) — and its state names
        the stop, short (``WORKING (limited)``: the watcher stores it as the session's status,
        at most 40 characters; ``detail`` says more)."""
        stop = self.stop_in_force(now)
        if stop is None:
            return self.connected, self.state
        return False, f"{self.state[:28]} ({stop.value})"


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


def typing_seconds(text: str, *, low: float = 1.0, high: float = 5.0) -> float:
    """How long to show "typing…" before ``text`` leaves: 0.05 s per character, clamped to
    ``[low, high]``, rounded to 10 ms. Deterministic: a jitter, if any, is the lane's.

    Source: WAHA's "How to Avoid Blocking" page (devlikeapro/waha-docs,
    content/docs/overview/how-to-avoid-blocking) recommends, per message, "Send seen", then
    "Start typing before sending a message and wait for a random interval depending on the
    size of the message", then "Stop typing", then send (``/api/sendSeen``,
    ``/api/startTyping``, ``/api/stopTyping``, ``/api/sendText``). The page gives no rate: 0.05
    s per character (a fast typist's 20 characters per second) is our choice."""
    if high < low:
        raise ValueError("high must not be below low")
    return round(min(max(len(text) * 0.05, low), high), 2)


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
