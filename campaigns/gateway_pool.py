"""Gateways of the sessions, built once per worker and shared by its threads.

Each adapter keeps one ``requests.Session`` per thread inside, so sharing the adapter object is
safe. The token is read from the environment variable the session names, at build time, and
lives only in the adapter's memory: never in the database, a log line or a task argument.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping

from campaigns.domain import SenderSession, StopKind
from campaigns.gateways import build_gateway
from campaigns.gateways.base import (
    Gateway,
    GatewayConfig,
    OutcomeKind,
    OutgoingMessage,
    SendOutcome,
    SessionHealth,
)
from campaigns.settings import Settings
from campaigns.store import CampaignStateManager

REFRESH_S = 60.0
"""How long a built gateway is reused before the session row is read again (an operator who
fixes a base URL or an option sees it applied within a minute, without restarting workers)."""


class MissingTokenGateway:
    """Stands in for a session whose token variable is not set on this worker: every send is
    SESSION_DOWN with a reason that says which variable to set, a ``blocked`` stop (setting it
    needs a person and a worker restart; no reconnect fixes it)."""

    kind = "missing-token"

    def __init__(self, session: str, variable: str) -> None:
        self.reason = (
            f"environment variable {variable} (token of session {session}) is not set on "
            "this worker"
        )

    def send(self, message: OutgoingMessage) -> SendOutcome:
        return SendOutcome(
            OutcomeKind.SESSION_DOWN,
            error_code="no_token",
            error_message=self.reason,
            auth_failure=True,
            stop=StopKind.BLOCKED,
        )

    def health(self) -> SessionHealth:
        return SessionHealth(False, "no_token", self.reason, auth_failure=True)

    def close(self) -> None:
        return None


def gateway_for(
    session: SenderSession, settings: Settings, env: Mapping[str, str] | None = None
) -> Gateway:
    """Build the adapter of one session, with its token from the environment."""
    env = os.environ if env is None else env
    token = None
    if session.token_env:
        token = env.get(session.token_env)
        if not token:
            return MissingTokenGateway(session.name, session.token_env)
    config = GatewayConfig(
        session_name=session.name,
        base_url=session.base_url,
        token=token,
        options=dict(session.options),
        connect_timeout=settings.gateway_connect_timeout,
        read_timeout=settings.gateway_read_timeout,
    )
    return build_gateway(session.gateway, config)


class GatewayPool:
    """The gateways of this worker, by session name."""

    def __init__(self, store: CampaignStateManager, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._lock = threading.Lock()
        self._built: dict[str, tuple[float, Gateway]] = {}

    def get(self, session_name: str) -> Gateway:
        now = time.monotonic()
        with self._lock:
            cached = self._built.get(session_name)
            if cached and now - cached[0] < REFRESH_S:
                return cached[1]
        gateway = gateway_for(self.store.get_session(session_name), self.settings)
        with self._lock:
            self._built[session_name] = (now, gateway)
        return gateway

    def close(self) -> None:
        with self._lock:
            for _, gateway in self._built.values():
                gateway.close()
            self._built.clear()
