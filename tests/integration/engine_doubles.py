"""Doubles and fixtures shared by the in-process batch runner tests (tests/integration/
test_engine_*.py): real PostgreSQL and Redis, a gateway double that answers from a script."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from campaigns.engine import BatchRunner
from campaigns.gateways.base import OutcomeKind, OutgoingMessage, SendOutcome, SessionHealth
from campaigns.pacing import SessionPacer
from campaigns.settings import Pacing, Settings
from campaigns.state import CampaignStateManager
from tests.conftest import ROOT

NUMBERS = [f"+5511{900000000 + i}" for i in range(6)]
FAST = Pacing(batch_size=3, min_interval=0, max_interval=0, batch_delay_min=0, batch_delay_max=0)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """The machine's Redis (pacing keys under a prefix of each test's own), else one of ours."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    from campaigns.local.redis import EmbeddedRedis

    server = EmbeddedRedis(ROOT / ".data" / f"test-redis-engine-{uuid.uuid4().hex[:6]}")
    server.start()
    yield server.url()
    server.stop()


class ScriptedGateway:
    """Answers each send with ``answer(message)`` (SENT by default) and keeps what it was
    asked to send, in order. ``raise_for``: numbers whose send raises (an adapter bug)."""

    kind = "scripted"

    def __init__(
        self,
        answer: Callable[[OutgoingMessage], SendOutcome] | None = None,
        raise_for: set[str] | None = None,
    ) -> None:
        self.answer = answer
        self.raise_for = raise_for or set()
        self.sent: list[str] = []

    def send(self, message: OutgoingMessage) -> SendOutcome:
        self.sent.append(message.to)
        if message.to in self.raise_for:
            raise RuntimeError("adapter bug: unexpected answer shape")
        if self.answer is not None:
            return self.answer(message)
        return SendOutcome(OutcomeKind.SENT, message_id=f"id-{len(self.sent)}")

    def health(self) -> SessionHealth:
        return SessionHealth(True, "ok")

    def close(self) -> None:
        return None


class Pool:
    """A GatewayPool of one gateway."""

    def __init__(self, gateway: ScriptedGateway) -> None:
        self.gateway = gateway

    def get(self, session: str) -> ScriptedGateway:
        return self.gateway


def pacer_for(url: str, **options: float) -> SessionPacer:
    """A pacer on ``url`` with keys of its own."""
    return SessionPacer(
        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2),
        key_prefix=f"t-{uuid.uuid4().hex}:",
        **options,  # type: ignore[arg-type]
    )


def runner_for(
    store: CampaignStateManager,
    pacer: SessionPacer,
    gateway: ScriptedGateway,
    settings: Settings | None = None,
    **options: object,
) -> BatchRunner:
    return BatchRunner(
        store, pacer, Pool(gateway),  # type: ignore[arg-type]
        settings or Settings(legal_basis="consent", pacing=FAST), **options
    )
