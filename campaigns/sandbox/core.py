"""The transport-free heart of the sandbox: request/response values, settings, and the
:class:`Sandbox` object the dialect handlers share (faults, record, counters, ids)."""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from campaigns.sandbox.faults import FaultState
from campaigns.sandbox.limits import DEFAULT_CLOUD_THROUGHPUT, Latency, Throughput
from campaigns.sandbox.record import RecordWriter

WAHA_SHAPES = ("noweb", "webjs", "empty")
EVOLUTION_CLOSED_FORMS = ("500", "500-list", "400-list")


class Headers(Protocol):
    """Case-insensitive header lookup (``http.client.HTTPMessage`` satisfies it)."""

    def get(self, name: str, default: None = None) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the dialects see it."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Headers
    body: bytes
    received_at: float
    """``time.time()`` when the request arrived (before any injected delay)."""

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError when it is not."""
        return json.loads(self.body or b"null")


@dataclass(slots=True)
class Response:
    """One HTTP answer. ``held_row`` names a record row whose ``answered_at`` must be stamped
    after the answer is written (accept-then-hang); ``delay`` is the latency to wait before
    writing it (see :mod:`campaigns.sandbox.limits`)."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    held_row: int | None = None
    delay: float = 0.0


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    """A JSON answer (compact separators: the body is part of the hot path)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(
        status, body, [("Content-Type", "application/json; charset=utf-8"), *(headers or [])]
    )


@dataclass(slots=True)
class SandboxSettings:
    """Behaviour switches; all can be changed at run time through ``POST /_sandbox/config``."""

    api_keys: frozenset[str] | None = None
    """Accepted tokens for every dialect; None = any non-empty token is accepted."""
    waha_wait: float = 5.0
    """How long WAHA send endpoints wait for a session to become WORKING before the 422."""
    waha_shape: str = "noweb"
    """Body of WAHA's sendText 201: ``noweb``, ``webjs`` or ``empty`` (WAHA 2025.6.5)."""
    evolution_closed_form: str = "500"
    """Evolution "Connection Closed" answer: ``500`` (string message), ``500-list`` or
    ``400-list`` (message list, the BadRequestException path)."""
    cloud_auth_status: int = 401
    """HTTP status of Cloud API code-190 answers (Meta documents none; 400 or 401)."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["api_keys"] = None if self.api_keys is None else len(self.api_keys)
        return data

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply validated changes; raises ValueError on an unknown key or a bad value."""
        for key, value in changes.items():
            if key == "api_keys":
                self.api_keys = None if value is None else frozenset(str(v) for v in value)
            elif key == "waha_wait":
                self.waha_wait = float(value)
            elif key == "waha_shape" and value in WAHA_SHAPES:
                self.waha_shape = str(value)
            elif key == "evolution_closed_form" and value in EVOLUTION_CLOSED_FORMS:
                self.evolution_closed_form = str(value)
            elif key == "cloud_auth_status" and value in (400, 401):
                self.cloud_auth_status = int(value)
            else:
                raise ValueError(f"bad setting {key}={value!r}")


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message the sandbox accepted, as :attr:`Sandbox.accept_listeners` hear of it (the
    receipts scheduler, :mod:`campaigns.sandbox.receipts`)."""

    dialect: str
    session: str
    digits: str
    gateway_message_id: str
    """The id the send's answer gave (WAHA NOWEB: the bare ``key.id``)."""
    deliverable: bool
    template: bool


_NON_DIGITS = re.compile(r"\D")


def digits_of(number: str) -> str:
    """The digits of a number or jid (``+55 (11) 9...``, ``5511...@c.us`` → ``5511...``)."""
    return _NON_DIGITS.sub("", number.split("@", 1)[0])


class Sandbox:
    """State shared by every dialect handler and the control API."""

    def __init__(
        self,
        record_path: str | os.PathLike[str],
        *,
        settings: SandboxSettings | None = None,
        seed: int | None = None,
        cloud_throughput: int | None = DEFAULT_CLOUD_THROUGHPUT,
        latency: float = 0.0,
    ) -> None:
        self.settings = settings or SandboxSettings()
        self.faults = FaultState(seed)
        self.throughput = Throughput(cloud_throughput)
        self.latency = Latency(latency)
        self.record = RecordWriter(record_path)
        self.base_url = ""
        self._ids = itertools.count(1)
        # Message ids must differ across server restarts on the same record file.
        self._prefix = os.urandom(4).hex().upper()
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        # Told of every accepted message after it is recorded; must not block (the answer
        # waits for them).
        self.accept_listeners: list[Callable[[Accepted], None]] = []

    def authorized(self, token: str | None) -> bool:
        """Whether ``token`` is accepted (exact match when keys are configured)."""
        if not token:
            return False
        keys = self.settings.api_keys
        return keys is None or token in keys

    def next_id(self, width: int = 16) -> str:
        """A fresh upper-case hex message id (WhatsApp ids look like ``3EB0...``)."""
        return f"{self._prefix}{next(self._ids):0{width - len(self._prefix)}X}"

    def count(self, key: str) -> None:
        """Bump a statistics counter (``cloud.send.200`` ...)."""
        with self._counts_lock:
            self._counts[key] += 1

    def counters(self) -> dict[str, int]:
        with self._counts_lock:
            return dict(sorted(self._counts.items()))

    def reset_counters(self) -> None:
        with self._counts_lock:
            self._counts.clear()

    def hold(self, session: str) -> None:
        """Apply the *slow* fault: hold this answer for the configured delay."""
        delay = self.faults.delay(session)
        if delay > 0:
            time.sleep(delay)

    def accept(
        self,
        *,
        dialect: str,
        session: str,
        recipient: str,
        digits: str,
        text: str | None,
        template: Mapping[str, Any] | None,
        gateway_message_id: str,
        received_at: float,
        hang: float,
        deliverable: bool = True,
        media: Mapping[str, Any] | None = None,
    ) -> int | None:
        """Record an accepted message (committed before the answer leaves); ``media`` is a
        media send's file, ``text`` then its caption. With ``hang``,
        hold the answer afterwards and return the row id to stamp once it is sent.
        ``answered_at`` counts the dialect's latency in: the server waits it out right after."""
        latency = self.latency.of(dialect, session)
        row = self.record.add(
            dialect=dialect,
            session=session,
            recipient=recipient,
            e164="+" + digits,
            text=text,
            template=template,
            gateway_message_id=gateway_message_id,
            received_at=received_at,
            answered_at=None if hang > 0 else time.time() + latency,
            deliverable=deliverable,
            media=media,
        )
        accepted = Accepted(dialect, session, digits, gateway_message_id, deliverable,
                            template is not None)
        for listener in self.accept_listeners:
            listener(accepted)
        if hang <= 0:
            return None
        time.sleep(hang)  # accepted and recorded, but the client hears nothing yet
        return row

    def refused(
        self,
        response: Response,
        *,
        dialect: str,
        session: str,
        recipient: str,
        digits: str,
        fault: str,
        code: int | None,
        received_at: float,
    ) -> Response:
        """Record a send refused on purpose (a fault, the throughput); returns ``response``."""
        self.record.refused(
            dialect=dialect,
            session=session,
            recipient=recipient,
            e164="+" + digits,
            fault=fault,
            status=response.status,
            code=None if code is None else str(code),
            received_at=received_at,
        )
        return response

    def close(self) -> None:
        self.faults.close()
        self.record.close()


def own_number(session: str) -> str:
    """The sandbox's own phone number for ``session`` (stable, fictional +1 555 range): WAHA's
    ``me.id`` and Evolution's ``wuid``."""
    return f"1555{zlib.crc32(session.encode()) % 10_000_000:07d}"


def retry_after(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A ``Retry-After`` header when the throttle fault asked for one."""
    value = params.get("retry_after")
    return [] if value is None else [("Retry-After", str(value))]
