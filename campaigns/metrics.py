"""Prometheus metrics of the workers and the web service (``prometheus_client``).

What is counted where it happens (the engine calls the small functions below):

- ``campaigns_messages_total{outcome,session,gateway}``: gateway answers to send requests, by
  the adapter's classification (``sent``, ``recipient_failed``, ``throttled``, ...; ``error``
  when the adapter raised);
- ``campaigns_send_seconds{gateway}``: how long one gateway call took (histogram);
- ``campaigns_pacing_lag_seconds{session}``: how late a request left after the send turn it
  was granted (the schedule lag ``make bench`` measures from the sandbox's side);
- ``campaigns_waits_total{reason}`` and ``campaigns_wait_seconds_total{reason}``: a lane that
  waits (``window``, ``capacity``) or holds its session (``throttling``, ``backoff``), and the
  seconds each wait announced;
- ``campaigns_recoveries_total{trigger}``: campaigns (or lanes) put back to work, by who did;
- ``campaigns_receipts_total{status,dialect}``: delivery receipts stored (committed: applied
  to the ledger, or kept for a send not recorded yet).

What the store knows is read at scrape time by :class:`StoreCollector` in the web service (one
GROUP BY per table, never a gauge kept up to date by workers that may die):
``campaigns_campaigns{status,stop_kind,waiting}``, ``campaigns_heartbeat_age_seconds{status}``
and ``campaigns_lanes_down{session,stop_kind}``.

**A metric never breaks a send.** Every function here catches any exception and drops the
sample (logged once per process at DEBUG): a full disk under PROMETHEUS_MULTIPROC_DIR or a bug
here costs a data point, not a recipient. They only touch memory (or an mmap'ed file in
multiprocess mode), so they cost microseconds.

**Labels are bounded.** ``outcome``, ``reason``, ``trigger``, ``status``, ``dialect`` and
``gateway`` come from fixed sets (anything else is ``other``); ``session`` is a sender
session's name, bounded by the sessions table. Never a phone number or a campaign id: each
distinct label set is a time series Prometheus keeps for weeks, so a label per recipient or per
campaign grows without end (and a phone number in a metric is personal data sent to one more
system).

**Processes.** Without ``PROMETHEUS_MULTIPROC_DIR`` each process has its own registry: the web
service exports its own on ``/metrics``, a worker exports its own on ``METRICS_PORT``. With it
(a directory shared by the workers and the web service: one host, or one volume in compose),
prometheus_client writes every process's samples there (it decides when it is first imported,
so the variable must be in the environment before the process starts) and ``/metrics``
aggregates them all with ``MultiProcessCollector``; the directory must be emptied before the
processes start (``python -m campaigns.metrics clean DIR``).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.registry import Collector

log = logging.getLogger("campaigns.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PORT_ENV = "METRICS_PORT"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The text format ``generate_latest`` writes (our names are plain ASCII), as every Prometheus
reads it; newer prometheus_client versions label it 1.0.0, which Prometheus 2 does not know."""

OUTCOMES = frozenset({
    "sent", "recipient_failed", "throttled", "session_down", "transient", "deferred",
    "opted_out", "ambiguous", "error",
})  # fmt: skip
GATEWAYS = frozenset({"cloud-api", "waha", "evolution", "console", "missing-token"})
WAIT_REASONS = frozenset({"window", "capacity", "throttling", "backoff"})
TRIGGERS = frozenset({"sweep", "watcher", "webhook", "worker_start", "operator"})
RECEIPT_STATUSES = frozenset({"sent", "delivered", "read", "played", "failed", "pending"})
DIALECTS = frozenset({"cloud", "waha", "evolution"})
SESSION_LABEL_MAX = 100
"""A session name is at most this long in the sessions table; a longer label is cut."""

MESSAGES = Counter(
    "campaigns_messages",
    "Gateway answers to send requests, by the adapter's outcome (error: the adapter raised), "
    "sender session and gateway kind.",
    ["outcome", "session", "gateway"],
)
SEND_SECONDS = Histogram(
    "campaigns_send_seconds",
    "Seconds one gateway send call took (request and answer), by gateway kind.",
    ["gateway"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0),
)
PACING_LAG = Histogram(
    "campaigns_pacing_lag_seconds",
    "Seconds between the send turn a lane was granted and its request leaving, by session.",
    ["session"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
WAITS = Counter(
    "campaigns_waits",
    "Times a lane waited: a closed send window, no capacity left under the caps, the "
    "gateway throttling the session, a backoff after a transient error.",
    ["reason"],
)
WAIT_SECONDS = Counter(
    "campaigns_wait_seconds",
    "Seconds of waiting announced by those waits (what the lane was told to wait).",
    ["reason"],
)
RECOVERIES = Counter(
    "campaigns_recoveries",
    "Campaigns or lanes put back to work, by trigger: the recovery sweep, the session "
    "watcher, a gateway webhook, a worker start, an operator.",
    ["trigger"],
)
RECEIPTS = Counter(
    "campaigns_receipts",
    "Delivery receipts stored (applied to the ledger or kept for their send), by status and "
    "gateway dialect.",
    ["status", "dialect"],
)

_failed_once = threading.Event()


def _safe(what: str, call: Callable[[], object]) -> None:
    """Run one metric update; never raise into the engine (see the module docstring)."""
    try:
        call()
    except Exception:  # a metric must never cost a send
        if not _failed_once.is_set():
            _failed_once.set()
            log.debug("metrics: %s failed; samples are dropped", what, exc_info=True)


def _bounded(value: object, allowed: frozenset[str]) -> str:
    text = str(value)
    return text if text in allowed else "other"


def _session(name: object) -> str:
    return str(name)[:SESSION_LABEL_MAX]


def send_answered(session: str, gateway: object, outcome: str, seconds: float) -> None:
    """One call of ``gateway`` (an adapter: its ``kind`` is the label) ended with ``outcome``
    after ``seconds``."""

    def update() -> None:
        kind = _bounded(getattr(gateway, "kind", "other"), GATEWAYS)
        MESSAGES.labels(_bounded(outcome, OUTCOMES), _session(session), kind).inc()
        SEND_SECONDS.labels(kind).observe(max(0.0, float(seconds)))

    _safe("send_answered", update)


def pacing_lag(session: str, seconds: float) -> None:
    """A request left ``seconds`` after its granted turn (early ones count as 0)."""
    _safe(
        "pacing_lag",
        lambda: PACING_LAG.labels(_session(session)).observe(max(0.0, float(seconds))),
    )


def waited(reason: str, seconds: float) -> None:
    """A lane waits ``seconds`` for ``reason`` (window, capacity, throttling, backoff)."""
    label = _bounded(reason, WAIT_REASONS)

    def update() -> None:
        WAITS.labels(label).inc()
        WAIT_SECONDS.labels(label).inc(max(0.0, float(seconds)))

    _safe("waited", update)


def recovered(trigger: str, count: int = 1) -> None:
    """``count`` campaigns or lanes were put back to work by ``trigger``."""
    if count > 0:
        _safe("recovered", lambda: RECOVERIES.labels(_bounded(trigger, TRIGGERS)).inc(count))


def receipt_applied(status: str, dialect: str) -> None:
    """A delivery receipt was stored (call it once per receipt, after its commit)."""
    _safe(
        "receipt_applied",
        lambda: RECEIPTS.labels(
            _bounded(str(status).lower(), RECEIPT_STATUSES), _bounded(dialect, DIALECTS)
        ).inc(),
    )


class LagGate:
    """Wraps a lane's pre-send gate (:meth:`SessionPacer.gate`) to time the request leaving:
    the gate runs right before the first byte is written. Gateways without HTTP (the console)
    never run it; then the moment the send began stands in."""

    def __init__(self, gate: Callable[[], object], session: str, slot_at: float) -> None:
        self.gate, self.session, self.slot_at = gate, session, slot_at
        self.left = time.time()

    def __call__(self) -> object:
        moved = self.gate()
        self.left = time.time()
        return moved

    def observe(self) -> None:
        # slot_at is on the Redis clock; one host's (or NTP-synced) clocks agree to ms
        pacing_lag(self.session, self.left - self.slot_at)


# --- export ----------------------------------------------------------------------------------


def multiproc_dir() -> str | None:
    """The shared directory of multiprocess mode, when this process is in it."""
    return os.environ.get(MULTIPROC_ENV) or None


class _Union:
    """Several collectors read as one registry (``generate_latest`` takes anything that
    collects)."""

    def __init__(self, parts: Iterable[Any]) -> None:
        self.parts = list(parts)

    def collect(self) -> Iterator[Any]:
        for part in self.parts:
            yield from part.collect()


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    """The text exposition of this process (or, in multiprocess mode, of every process writing
    to the shared directory), followed by ``extra`` collectors (the web's store gauges)."""
    path = multiproc_dir()
    if path is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        base: Any = registry
    else:
        base = REGISTRY
    return generate_latest(_Union([base, *extra]))


def serve_worker_metrics() -> int | None:
    """Start the worker's own exporter on METRICS_PORT (a thread of the worker's main
    process); the port, or None when unset or it could not start (logged, never fatal)."""
    raw = (os.environ.get(PORT_ENV) or "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
        path = multiproc_dir()
        if path is not None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
            start_http_server(port, registry=registry)
        else:
            start_http_server(port)
    except Exception as exc:  # metrics must not keep a worker from sending
        log.warning("metrics: could not serve on %s=%s: %s", PORT_ENV, raw, exc)
        return None
    log.info("metrics: serving Prometheus metrics on port %s", port)
    return port


def process_dead(pid: int) -> None:
    """A process that wrote to the shared directory exited: drop its live gauges (counters and
    histograms stay, as totals must)."""
    path = multiproc_dir()
    if path is not None:
        _safe(
            "mark_process_dead",
            lambda: multiprocess.mark_process_dead(pid, path),  # type: ignore[no-untyped-call]
        )


def clean(path: str) -> int:
    """Empty the shared directory before the processes start (stale files of dead processes
    would be merged into every scrape, and a reused pid would continue an old file)."""
    os.makedirs(path, exist_ok=True)
    removed = 0
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.remove(full)
        removed += 1
    return removed


def main(argv: list[str]) -> int:
    """``python -m campaigns.metrics clean DIR [--owner USER]``: empty the multiprocess
    directory (compose's metrics-init runs it as root before the worker and the web start,
    and hands the fresh volume to the user the app runs as)."""
    if len(argv) not in (2, 4) or argv[0] != "clean" or (len(argv) == 4 and argv[2] != "--owner"):
        print("usage: python -m campaigns.metrics clean DIR [--owner USER]", file=sys.stderr)
        return 2
    removed = clean(argv[1])
    if len(argv) == 4:
        shutil.chown(argv[1], argv[3], argv[3])
    print(f"metrics: emptied {argv[1]} ({removed} entries removed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
