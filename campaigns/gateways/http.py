"""HTTP plumbing shared by the gateway adapters.

One :class:`requests.Session` per adapter per thread (requests does not promise one is thread
safe) on one connection pool per adapter (urllib3's is), sized for the requests in flight so a
rate lane's threads reuse warm connections; the configured timeouts on every call, and the one
rule that keeps a campaign from sending twice: **a network failure is TRANSIENT only when the
request provably never reached the gateway** (it could not connect).
Any failure after the request was written (read timeout, connection reset or closed while
waiting for the answer, a body cut short) is AMBIGUOUS: the gateway may have sent.

Calls that cannot send anything (health checks, WAHA's check-exists) pass ``sends=False``: for
them a failure after connecting is harmless and stays TRANSIENT.

**The gap holds on the wire.** The one request of a send that delivers the message passes
``paced=True``. While a thread runs inside :func:`paced_sends`, that request's connection is
established first (connect, TLS, proxy tunnel) and then the thread's hook runs, right before the
request's first byte is written: the engine's hook re-takes the session's send turn when the
grant got stale in pre-send work (WAHA's check-exists, a cold connect). Other requests are not
paced. The mechanism lives in :mod:`campaigns.gateways.wire`.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
import urllib3.exceptions
import urllib3.util.ssl_match_hostname

from campaigns.domain import StopKind
from campaigns.gateways.base import GatewayConfig, OutcomeKind, SendOutcome
from campaigns.gateways.wire import PacedAdapter, armed
from campaigns.gateways.wire import RequestNotSent as RequestNotSent  # re-exported
from campaigns.gateways.wire import paced_sends as paced_sends  # re-exported
from campaigns.masking import mask_phone

logger = logging.getLogger(__name__)

MAX_RETRY_AFTER = 24 * 3600.0
"""An absurd Retry-After (a date years ahead) is capped: the engine would otherwise park the
session forever on a misconfigured proxy's answer."""

_MAX_DETAIL = 300

# Failures raised while opening the connection: the request was never written.
_CONNECT_FAILURES: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectTimeout,
    urllib3.exceptions.ConnectTimeoutError,
    urllib3.exceptions.NewConnectionError,  # refused, unreachable, DNS (NameResolutionError)
)

# A TLS error's type does not say when it struck: in the handshake (before the request: safe to
# retry) or on a record after it (the gateway may have the request). Its traceback does: the
# handshake runs in these frames (ssl's, and urllib3's connect before the request). A refused
# certificate is the handshake's by nature.
_HANDSHAKE_FRAMES = frozenset({"do_handshake", "_validate_conn"})
_CERTIFICATE_ERRORS = (ssl.CertificateError, urllib3.util.ssl_match_hostname.CertificateError)

# Raised by requests before anything goes on the wire: a configuration mistake that will fail
# every message the same way, so the adapters stop the campaign instead of burning the list.
_INVALID_REQUEST: tuple[type[BaseException], ...] = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """A gateway's answer: status, parsed JSON body (``None`` if empty or not JSON), raw text
    (for error details only, never logged whole) and the parsed ``Retry-After``."""

    status: int
    body: Any
    text: str
    retry_after: float | None
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


# --------------------------------------------------------------------------- helpers


def session_down(
    answer: HttpAnswer,
    reason: str,
    *,
    stop: StopKind,
    auth: bool = False,
    retry_after: float | None = None,
) -> SendOutcome:
    """SESSION_DOWN for an HTTP answer: the campaign is interrupted with ``reason`` and a stop
    of kind ``stop`` (each adapter decides it: nothing here knows what a reconnect fixes)."""
    return SendOutcome(
        OutcomeKind.SESSION_DOWN,
        error_code=str(answer.status),
        error_message=reason,
        auth_failure=auth,
        http_status=answer.status,
        stop=stop,
        retry_after=retry_after,
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Parse a ``Retry-After`` header: delay-seconds or an HTTP date. ``None`` when absent
    or unreadable; never negative; capped at :data:`MAX_RETRY_AFTER`."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is read as such
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


_PHONE_LIKE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def redact(text: object, limit: int = _MAX_DETAIL) -> str:
    """A gateway's error text made fit for logs and stored reasons: phone-like digit runs
    masked (gateways echo the number, the jid or the whole request back), cut to ``limit``."""
    raw = str(text)
    masked = _PHONE_LIKE.sub(lambda m: mask_phone(re.sub(r"[^\d+]", "", m.group())), raw)
    return masked if len(masked) <= limit else masked[: limit - 1] + "…"


def digits(number: str) -> str:
    """``+55 (11) 99999-1234`` → ``5511999991234``: the form WAHA and Evolution expect."""
    return re.sub(r"\D", "", number)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and the urllib3 errors requests wraps in ``args``."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo.extend(a for a in current.args if isinstance(a, BaseException))
        for linked in (
            getattr(current, "reason", None),
            current.__cause__,
            current.__context__,
        ):
            if isinstance(linked, BaseException):
                todo.append(linked)
    return seen


def failed_to_connect(exc: BaseException) -> bool:
    """True when ``exc`` proves the request was never written: the connection could not be
    opened, or its TLS handshake failed. requests raises ``ConnectionError`` both for that and
    for a connection dropped while waiting for the answer (``RemoteDisconnected``/
    ``ProtocolError``), and ``SSLError`` for a handshake and for a record after the request
    alike, so look inside."""
    chain = _chain(exc)
    return any(isinstance(e, _CONNECT_FAILURES) for e in chain) or _in_handshake(chain)


def _in_handshake(chain: list[BaseException]) -> bool:
    for error in chain:
        frame, found = error.__traceback__, isinstance(error, _CERTIFICATE_ERRORS)
        while frame is not None and not found:
            found = frame.tb_frame.f_code.co_name in _HANDSHAKE_FRAMES
            frame = frame.tb_next
        if found:
            return True
    return False


def classify_exception(exc: BaseException, *, sends: bool) -> SendOutcome:
    """The outcome of a call that raised instead of answering."""
    name = type(exc).__name__
    if isinstance(exc, _INVALID_REQUEST):
        return SendOutcome(
            OutcomeKind.SESSION_DOWN,
            error_code="invalid_request",
            error_message=f"the gateway URL or headers are invalid ({name}); fix the session",
            stop=StopKind.BLOCKED,  # a configuration mistake: no reconnect fixes it
        )
    if failed_to_connect(exc):
        return SendOutcome(
            OutcomeKind.TRANSIENT,
            error_code="connect_failed",
            error_message=f"could not connect to the gateway ({name})",
        )
    if not sends:
        return SendOutcome(
            OutcomeKind.TRANSIENT,
            error_code="no_answer",
            error_message=f"no answer from the gateway ({name})",
        )
    code = "read_timeout" if isinstance(exc, requests.exceptions.ReadTimeout) else "no_answer"
    return SendOutcome(
        OutcomeKind.AMBIGUOUS,
        error_code=code,
        error_message=f"the request reached the gateway but no answer came back ({name}); "
        "it may have been sent",
    )


def status_fallback(answer: HttpAnswer, *, sends: bool) -> SendOutcome:
    """Classification by HTTP status alone, for answers whose body says nothing an adapter
    recognizes. 504 on a send is AMBIGUOUS: a proxy gave up waiting on a gateway that had the
    request (WAHA can hang on a send, devlikeapro/waha#870)."""
    detail = f"HTTP {answer.status}"
    if answer.status in (401, 403):
        return SendOutcome(
            OutcomeKind.SESSION_DOWN,
            error_code=str(answer.status),
            error_message="the gateway refused the credentials; fix the session's token",
            auth_failure=True,
            http_status=answer.status,
            stop=StopKind.BLOCKED,
        )
    if answer.status == 429:
        return SendOutcome(
            OutcomeKind.THROTTLED,
            error_code="429",
            error_message="rate limited (HTTP 429)",
            retry_after=answer.retry_after if answer.retry_after is not None else 5.0,
            http_status=429,
        )
    kind = OutcomeKind.AMBIGUOUS if sends and answer.status == 504 else OutcomeKind.TRANSIENT
    return SendOutcome(
        kind,
        error_code=str(answer.status),
        error_message=detail,
        retry_after=answer.retry_after,
        http_status=answer.status,
    )


# --------------------------------------------------------------------------- the client


class HttpClient:
    """Thread-local sessions on one shared connection pool, plus timeouts, for one gateway.
    ``headers`` (auth included) go on every request; they are never logged. ``pool_size``:
    the connections kept open to the gateway (never fewer than requests' default, 10)."""

    def __init__(
        self, config: GatewayConfig, headers: Mapping[str, str], *, pool_size: int = 0
    ) -> None:
        self.base_url = config.base_url.rstrip("/")
        # not blocking when full: a thread past the pool connects rather than wait (send late)
        self._adapter = PacedAdapter(pool_maxsize=max(pool_size, 10))  # 10: requests' default
        self._timeout = (config.connect_timeout, config.read_timeout)
        self._headers = dict(headers)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        # Deployments reach graph.facebook.com through HTTPS_PROXY and trust private CAs through
        # REQUESTS_CA_BUNDLE, so the environment is honoured — but read once per gateway: with
        # trust_env on, requests re-reads it on every call (about 12% of a sending worker's CPU).
        with requests.Session() as probe:
            self._environment = probe.merge_environment_settings(
                self.base_url, {}, None, None, None
            )

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.mount("https://", self._adapter)
            session.mount("http://", self._adapter)
            session.headers.update(self._headers)
            session.trust_env = False
            session.proxies.update(self._environment["proxies"])
            session.verify = self._environment["verify"]
            session.cert = self._environment["cert"]
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        sends: bool,
        paced: bool = False,
    ) -> HttpAnswer | SendOutcome:
        """Make one call. Returns the answer, whatever its status, or the outcome of a failure
        to get one (see :func:`classify_exception`). Never raises for network errors; raises
        :class:`RequestNotSent` when the pre-send hook of a ``paced`` call raised."""
        started = time.monotonic()
        try:
            with armed(paced):
                response = self._session().request(
                    method,
                    self.base_url + path,
                    json=json_body,
                    params=params,
                    timeout=self._timeout,
                    allow_redirects=False,
                )
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            outcome = classify_exception(exc, sends=sends)
            logger.warning(
                "%s %s failed after %.0f ms: %s",
                method,
                path,
                (time.monotonic() - started) * 1000,
                outcome.error_message,
            )
            return outcome
        logger.debug(
            "%s %s -> %s in %.0f ms",
            method,
            path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return _answer(response)

    def close(self) -> None:
        """Close every thread's session and the pooled connections."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._adapter.close()  # a client no thread used has no session to close it
        self._local = threading.local()


def _answer(response: requests.Response) -> HttpAnswer:
    text = response.text
    body: Any = None
    if text.strip():
        try:
            body = json.loads(text)
        except ValueError:
            body = None
    return HttpAnswer(
        status=response.status_code,
        body=body,
        text=text,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        headers=response.headers,
    )


class _RedactQuery(logging.Filter):
    """urllib3 logs every request line at DEBUG, query string included; WAHA's check-exists
    carries the phone number there. Keep the path, drop the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                a.split("?", 1)[0] + "?…" if isinstance(a, str) and "?" in a else a
                for a in record.args
            )
        return True


def _install_log_filter() -> None:
    pool_logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactQuery) for f in pool_logger.filters):
        pool_logger.addFilter(_RedactQuery())


_install_log_filter()
