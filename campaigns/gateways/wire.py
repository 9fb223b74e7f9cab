"""The pre-send hook: the gap between two sends holds when their requests leave (design.md,
"The gap holds on the wire").

A send may do slow work after its turn was granted: WAHA's check-exists, a cold TCP or TLS
connect, a proxy tunnel. So the one request that delivers the message (the adapters pass
``paced=True`` to :meth:`campaigns.gateways.http.HttpClient.request`) runs the thread's hook
after its connection is established and right before its first byte is written; the engine's
hook re-takes the session's turn there when the grant got stale.

How: requests' transport adapter (:class:`PacedAdapter`) gives urllib3 pools whose connection
class runs the hook at the top of ``HTTPConnection.request`` — urllib3 2.x calls it from
``HTTPConnectionPool._make_request`` after ``_validate_conn`` (where HTTPS connects), and it
writes nothing before ``putrequest``. A connection that is still closed is connected first, so
the connect is pre-send work like any other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.poolmanager

PreSendHook = Callable[[], object]
"""Runs right before a paced request's bytes go out; may sleep. A truthy answer means it waited,
so the connection is checked again (a gateway may close an idle keep-alive connection)."""

_RECONNECTS = 3
_hooks = threading.local()


class RequestNotSent(BaseException):
    """The pre-send hook raised: not one byte of the request left this process.

    A BaseException on purpose: it must pass every "the request may have been sent" catch-all
    on its way up (requests', the adapters', the engine's), which would otherwise record the
    recipient as unknown. ``cause`` is what the hook raised."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the request was not sent: {type(cause).__name__}: {cause}")
        self.cause = cause


@contextmanager
def paced_sends(hook: PreSendHook) -> Iterator[None]:
    """While the block runs, every ``paced=True`` request of this thread runs ``hook`` after
    its connection is established and before its first byte is written. If the hook raises,
    the request fails with :class:`RequestNotSent` carrying the hook's exception."""
    previous = getattr(_hooks, "installed", None)
    _hooks.installed = hook
    try:
        yield
    finally:
        _hooks.installed = previous


@contextmanager
def armed(paced: bool) -> Iterator[None]:
    """Arm this thread's hook (if any) for the one request made inside the block."""
    _hooks.armed = getattr(_hooks, "installed", None) if paced else None
    try:
        yield
    finally:
        _hooks.armed = None


def _before_first_byte(conn: urllib3.connection.HTTPConnection) -> None:
    hook: PreSendHook | None = getattr(_hooks, "armed", None)
    if hook is None:
        return
    for attempt in range(_RECONNECTS + 1):
        if conn.is_closed:
            conn.connect()  # connect (and TLS) before the hook: they are pre-send work too
        try:
            waited = hook()
        except BaseException as exc:
            raise RequestNotSent(exc) from exc
        if not waited or attempt == _RECONNECTS or conn.is_connected:
            return
        # the gateway closed the connection while the hook waited: writing on it now would
        # fail after the grant was spent, so reconnect and let the hook check the turn again
        conn.close()


class _PacedHTTPConnection(urllib3.connection.HTTPConnection):
    def request(
        self, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any
    ) -> None:
        _before_first_byte(self)
        super().request(method, url, body=body, headers=headers, **kwargs)


class _PacedHTTPSConnection(urllib3.connection.HTTPSConnection):
    def request(
        self, method: str, url: str, body: Any = None, headers: Any = None, **kwargs: Any
    ) -> None:
        _before_first_byte(self)
        super().request(method, url, body=body, headers=headers, **kwargs)


class _PacedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _PacedHTTPConnection


class _PacedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _PacedHTTPSConnection


_PACED_POOLS: dict[str, type[urllib3.connectionpool.HTTPConnectionPool]] = {
    "http": _PacedHTTPPool,
    "https": _PacedHTTPSPool,
}


class PacedAdapter(requests.adapters.HTTPAdapter):
    """requests' transport adapter whose connections run the thread's pre-send hook (see
    :func:`paced_sends`); through an HTTP(S) proxy too (a SOCKS proxy's connections are
    urllib3's own: there the gap holds at the grant only). Takes HTTPAdapter's arguments
    (``pool_maxsize``...)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_PACED_POOLS)

    def proxy_manager_for(
        self, proxy: str, **proxy_kwargs: Any
    ) -> urllib3.poolmanager.PoolManager:
        manager: urllib3.poolmanager.PoolManager = super().proxy_manager_for(
            proxy, **proxy_kwargs
        )
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = dict(_PACED_POOLS)
        return manager
