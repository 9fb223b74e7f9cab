"""Delivery receipts: after a send is accepted, the sandbox tells the dialect's registered
webhook targets that the message was sent, then delivered, then read, as the real gateway
would: Cloud API ``statuses`` (sent, delivered, read, or failed with ``errors[]``), WAHA
``message.ack`` (SERVER, DEVICE, READ, or ERROR) and Evolution ``messages.update``
(SERVER_ACK, DELIVERY_ACK, READ, or ERROR). Bodies and their sources:
:mod:`campaigns.sandbox.receipt_payloads`. Signed as today's session and inbound webhooks
(:class:`campaigns.sandbox.webhooks.Webhooks`): WAHA ``X-Webhook-Hmac`` (HMAC-SHA512) with the
target's key, Cloud ``X-Hub-Signature-256`` with the target's key or ``META_APP_SECRET``,
Evolution unsigned.

Steered by :class:`ReceiptSettings` (``POST /_sandbox/receipts``): off by default, so tests and
benchmarks that register targets for session events get no receipts they did not ask for.
``sent`` leaves at once, ``delivered`` ``delivered_after`` seconds later, ``read``
``read_after`` seconds after that, for ``read_share`` of the messages. ``fail_share`` get
``failed`` instead of ``delivered`` (Cloud 131026 or 131049), ``duplicate_share`` of the
receipts are posted twice (the same bytes, as a gateway's retry would), ``reorder_share`` of
the read messages get ``read`` before ``delivered``. Every choice is drawn from
``Random(f"{seed}:{message id}")``: the same seed gives the same receipts whatever the order
or timing of the sends. A message the sandbox accepted to a number not on WhatsApp (WAHA)
stays at SERVER, as WAHA's does (gateways.md §2.6).

Delivery: a few worker threads share one time-ordered heap, so a send's answer never waits
for a receiver and a slow receiver holds only one worker. The heap is capped
(``max_pending``): receipts past it are dropped and recorded as ``dropped``. A 5xx, a 429 or
no answer is retried with exponential backoff (``retry_delay`` doubling up to a minute) for
``retry_for`` seconds, like Evolution's webhook retries (``webhook.controller.ts``
``retryWebhookRequest``) and Meta's (days, gateways.md §1.7), scaled down; any other 4xx is
final. Every attempt is a row of the record (:mod:`campaigns.sandbox.receipt_record`).
:meth:`Receipts.stop` wakes and joins every worker; receipts still waiting are abandoned.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from campaigns.sandbox import receipt_payloads as payloads
from campaigns.sandbox.core import Accepted, Sandbox
from campaigns.sandbox.webhooks import Webhooks, WebhookTarget, ulid

log = logging.getLogger(__name__)

MAX_BACKOFF = 60.0
DUPLICATE_GAP = 0.2
"""Seconds between a receipt and its deliberate copy."""
_SHARES = ("read_share", "fail_share", "duplicate_share", "reorder_share")
_SECONDS = ("delivered_after", "read_after", "retry_for", "retry_delay")


@dataclass(slots=True)
class ReceiptSettings:
    """What receipts the sandbox sends (see the module docstring)."""

    enabled: bool = False
    delivered_after: float = 1.0
    read_after: float = 2.0
    read_share: float = 1.0
    fail_share: float = 0.0
    duplicate_share: float = 0.0
    reorder_share: float = 0.0
    seed: int = 0
    retry_for: float = 180.0
    retry_delay: float = 1.0
    max_pending: int = 100_000

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply validated changes (all or none); raises ValueError on a bad key or value."""
        staged = replace(self)
        for key, value in changes.items():
            if key == "enabled" and isinstance(value, bool):
                staged.enabled = value
            elif key in _SHARES and _number(value) and 0.0 <= float(value) <= 1.0:
                setattr(staged, key, float(value))
            elif key in _SECONDS and _number(value) and float(value) >= 0.0:
                setattr(staged, key, float(value))
            elif key in ("seed", "max_pending") and _number(value) and int(value) == value:
                if key == "max_pending" and int(value) < 1:
                    raise ValueError("max_pending must be at least 1")
                setattr(staged, key, int(value))
            else:
                raise ValueError(f"bad receipts setting {key}={value!r}")
        for name in self.__slots__:
            setattr(self, name, getattr(staged, name))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Step:
    """One receipt planned for a message: ``sent``, ``delivered``, ``read`` or ``failed``,
    ``delay`` seconds after the send."""

    step: str
    delay: float
    duplicate: bool = False
    error_code: int | None = None


def plan(accepted: Accepted, settings: ReceiptSettings) -> list[Step]:
    """The receipts of one accepted message, deterministic from the seed and its id."""
    rng = random.Random(f"{settings.seed}:{accepted.gateway_message_id}")
    # Always the same draws in the same order, whatever the branch, so that one share's
    # change does not reshuffle the others' choices.
    fail = rng.random() < settings.fail_share
    read = rng.random() < settings.read_share
    reorder = rng.random() < settings.reorder_share
    code = rng.choice(sorted(payloads.CLOUD_FAILURES))
    dup = [rng.random() < settings.duplicate_share for _ in range(3)]
    delivered, read_at = settings.delivered_after, settings.delivered_after + settings.read_after
    steps = [Step("sent", 0.0, dup[0])]
    if not accepted.deliverable:
        return steps
    if fail:
        return [*steps, Step("failed", delivered, dup[1], code)]
    if read and reorder:
        delivered, read_at = read_at, delivered
    steps.append(Step("delivered", delivered, dup[1]))
    if read:
        steps.append(Step("read", read_at, dup[2]))
    return steps


@dataclass(slots=True)
class _Job:
    accepted: Accepted
    target: WebhookTarget
    step: Step
    attempt: int = 1
    copy: bool = False
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    give_up_at: float = 0.0


class Receipts:
    """The receipts scheduler of one sandbox: :meth:`on_accept` is its accept listener."""

    def __init__(self, sandbox: Sandbox, webhooks: Webhooks,
                 settings: ReceiptSettings | None = None, *, workers: int = 4,
                 timeout: float = 2.0) -> None:
        self.sandbox = sandbox
        self.webhooks = webhooks
        self.settings = settings or ReceiptSettings()
        self._initial = replace(self.settings)
        self.timeout = timeout
        self._heap: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [threading.Thread(target=self._work, name=f"sandbox-receipts-{n}",
                                          daemon=True) for n in range(workers)]
        sandbox.accept_listeners.append(self.on_accept)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Wake and join every worker (each finishes at most its current attempt)."""
        with self._cond:
            self._stopping = True
            abandoned = len(self._heap)
            self._heap.clear()
            self._cond.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=self.timeout + 1)
        if abandoned:
            log.info("sandbox stopped with %d receipts not yet sent", abandoned)

    def configure(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        with self._cond:
            self.settings.update(changes)
            return self.settings.to_json()

    def reset(self) -> None:
        """Back to the settings the sandbox started with; forget scheduled receipts."""
        with self._cond:
            self.settings = replace(self._initial)
            self._heap.clear()

    def pending(self) -> int:
        """Receipts scheduled or being sent."""
        with self._cond:
            return len(self._heap) + self._in_flight

    def on_accept(self, accepted: Accepted) -> None:
        """Schedule the receipts of an accepted message (never blocks on the network)."""
        settings = self.settings
        if not settings.enabled:
            return
        targets = [t for t in self.webhooks.targets() if t.dialect == accepted.dialect
                   and t.session in (None, accepted.session)]
        if not targets:
            return
        now = time.monotonic()
        steps = plan(accepted, settings)
        dropped: list[_Job] = []
        with self._cond:
            for target in targets:
                for step in steps:
                    job = _Job(accepted, target, step)
                    if len(self._heap) + self._in_flight >= settings.max_pending:
                        dropped.append(job)
                    else:
                        self._push(now + step.delay, job)
            self._cond.notify_all()
        for job in dropped:
            self._record(job, None, "dropped", "too many receipts scheduled", attempt=0)

    def _push(self, due: float, job: _Job) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), job))

    def _work(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        job = heapq.heappop(self._heap)[2]
                        self._in_flight += 1
                        break
                    self._cond.wait(None if not self._heap else self._heap[0][0] - now)
            try:
                self._attempt(job)
            except Exception:  # a sandbox bug must not kill the worker
                log.exception("sandbox receipt delivery failed")
            finally:
                with self._cond:
                    self._in_flight -= 1

    def _attempt(self, job: _Job) -> None:
        if job.target.id not in {t.id for t in self.webhooks.targets()}:
            return  # unregistered (or reset) since: nobody to tell
        if job.body is None:
            job.body, job.headers = self._build(job)
            job.give_up_at = time.monotonic() + self.settings.retry_for
            if job.step.duplicate and not job.copy:
                twin = replace(job, copy=True, headers=dict(job.headers))
                with self._cond:
                    self._push(time.monotonic() + DUPLICATE_GAP, twin)
                    self._cond.notify()
        status, error = self._post(job.target.url, job.body, job.headers)
        if status is not None and 200 <= status < 300:
            outcome = "delivered"
        elif status is None or status >= 500 or status == 429:
            delay = min(self.settings.retry_delay * 2 ** (job.attempt - 1), MAX_BACKOFF)
            retry = time.monotonic() + delay
            outcome = "retrying" if retry <= job.give_up_at and not self._stopping else "given_up"
            if outcome == "retrying":
                with self._cond:
                    self._push(retry, replace(job, attempt=job.attempt + 1))
                    self._cond.notify()
        else:
            outcome = "refused"
        self._record(job, status, outcome, error, attempt=job.attempt)

    def _build(self, job: _Job) -> tuple[bytes, dict[str, str]]:
        accepted, target = job.accepted, job.target
        name = payloads.STATUS_NAMES[accepted.dialect][job.step.step]
        rid = payloads.receipt_id(accepted.dialect, accepted.gateway_message_id,
                                  accepted.digits)
        if accepted.dialect == "cloud":
            body = payloads.cloud_status(accepted.session, rid, accepted.digits, name,
                                         template=accepted.template,
                                         error_code=job.step.error_code)
            return body, self.webhooks.cloud_headers(target, body)
        if accepted.dialect == "waha":
            envelope = payloads.waha_ack(accepted.session, rid, accepted.digits, name,
                                         f"evt_{ulid()}")
            return self.webhooks.waha_signed(target, envelope)
        return payloads.evolution_update(accepted.session, rid, accepted.digits, name,
                                         target.url, self.webhooks.server_url), {}

    def _post(self, url: str, body: bytes, headers: dict[str, str]
              ) -> tuple[int | None, str | None]:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json",
                                                     **headers})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return int(answer.status), None
        except urllib.error.HTTPError as exc:  # the receiver answered, with a refusal
            exc.close()
            return exc.code, None
        except Exception as exc:  # no answer: refused connection, timeout, reset
            return None, f"{type(exc).__name__}: {exc}"

    def _record(self, job: _Job, status: int | None, outcome: str, error: str | None, *,
                attempt: int) -> None:
        accepted = job.accepted
        self.sandbox.count(f"receipts.{outcome}")
        try:
            self.sandbox.record.receipt(
                accepted.dialect, accepted.session, accepted.gateway_message_id,
                payloads.receipt_id(accepted.dialect, accepted.gateway_message_id,
                                    accepted.digits),
                payloads.STATUS_NAMES[accepted.dialect][job.step.step], job.step.step,
                attempt, status, outcome, error, int(job.copy), job.target.id, time.time())
        except RuntimeError:
            pass  # the record closed while the sandbox stopped
