"""The pre-send hook (campaigns/gateways/wire.py): it runs after the paced request's connection
is established and before its first byte, only for the request that sends, and a hook that
raises means nothing was sent.

The gateway here is a raw TCP server that stamps when it accepted each connection and when the
first byte of each request arrived, so the order is read from the wire itself.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from campaigns.gateways.base import GatewayConfig, OutcomeKind, OutgoingMessage
from campaigns.gateways.http import HttpClient, RequestNotSent, paced_sends
from campaigns.gateways.waha import WahaGateway

ANSWER = (
    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\n\r\n{}"
)
CHECK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 22\r\n"
    b'Connection: keep-alive\r\n\r\n{"numberExists": true}'
)


@dataclass
class Wire:
    """What the server saw: per connection, when it was accepted; per request, its first line
    and when its first byte arrived."""

    accepted: list[float] = field(default_factory=list)
    requests: list[tuple[str, float]] = field(default_factory=list)
    close_idle_after: float | None = None
    """Close a connection this long after answering (a gateway's keep-alive timeout)."""


class RawGateway:
    def __init__(self) -> None:
        self.wire = Wire()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.wire.accepted.append(time.monotonic())
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                if not buffer:
                    self.wire.requests.append(("", time.monotonic()))
                buffer += chunk
                head, sep, rest = buffer.partition(b"\r\n\r\n")
                if not sep:
                    continue
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(rest) < length:
                    continue
                first_line = head.split(b"\r\n")[0].decode()
                self.wire.requests[-1] = (first_line, self.wire.requests[-1][1])
                buffer = rest[length:]
                conn.sendall(CHECK if first_line.startswith("GET") else ANSWER)
                if self.wire.close_idle_after is not None:
                    time.sleep(self.wire.close_idle_after)
                    return

    def __enter__(self) -> RawGateway:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@pytest.fixture
def gateway() -> Iterator[RawGateway]:
    with RawGateway() as raw:
        yield raw


def client(url: str) -> HttpClient:
    return HttpClient(GatewayConfig("default", url, connect_timeout=1, read_timeout=2), {})


def test_hook_runs_after_the_connect_and_before_the_first_byte(gateway: RawGateway) -> None:
    http = client(gateway.url)
    ran: list[float] = []

    def hook() -> bool:
        time.sleep(0.3)
        ran.append(time.monotonic())
        return True

    with paced_sends(hook):
        answer = http.request("POST", "/api/sendText", json_body={}, sends=True, paced=True)
    assert not isinstance(answer, type(None))
    assert len(ran) == 1
    ((_, first_byte),) = gateway.wire.requests
    assert first_byte >= ran[0]  # the bytes left after the hook...
    # ...on a connection made before it (the server accepts within its 0.1 s poll)
    assert gateway.wire.accepted[0] <= ran[0] - 0.15
    http.close()


def test_only_the_paced_request_runs_the_hook(gateway: RawGateway) -> None:
    waha = WahaGateway(
        GatewayConfig("default", gateway.url, options={"check_exists": "true"},
                      connect_timeout=1, read_timeout=2)
    )  # fmt: skip
    calls: list[int] = []
    with paced_sends(lambda: calls.append(len(gateway.wire.requests))):
        outcome = waha.send(OutgoingMessage(to="+5511999991234", text="Hi"))
    assert outcome.kind is OutcomeKind.SENT
    lines = [line for line, _ in gateway.wire.requests]
    assert lines[0].startswith("GET /api/contacts/check-exists")
    assert lines[1].startswith("POST /api/sendText")
    assert calls == [1]  # once, after check-exists had been answered, before sendText
    # outside the block nothing is paced
    waha.send(OutgoingMessage(to="+5511999991234", text="Hi"))
    assert calls == [1]
    waha.close()


def test_a_hook_that_raises_means_not_one_byte_was_sent(gateway: RawGateway) -> None:
    http = client(gateway.url)

    def refuse() -> bool:
        raise RuntimeError("the turn was cancelled")

    with paced_sends(refuse), pytest.raises(RequestNotSent) as caught:
        http.request("POST", "/api/sendText", json_body={}, sends=True, paced=True)
    assert isinstance(caught.value.cause, RuntimeError)
    time.sleep(0.05)
    assert gateway.wire.requests == []
    # the client still works afterwards (the aborted connection was thrown away)
    answer = http.request("POST", "/api/sendText", json_body={}, sends=True)
    assert getattr(answer, "status", None) == 201
    http.close()


def test_a_connection_closed_while_the_hook_waited_is_reopened_and_the_turn_checked_again(
    gateway: RawGateway,
) -> None:
    http = client(gateway.url)
    gateway.wire.close_idle_after = 0.15  # the gateway drops idle keep-alive connections
    first = http.request("POST", "/api/sendText", json_body={}, sends=True)
    assert getattr(first, "status", None) == 201
    hooks: list[bool] = []

    def slow_turn() -> bool:
        waited = not hooks  # the first call waits past the gateway's idle timeout
        if waited:
            time.sleep(0.3)
        hooks.append(waited)
        return waited

    with paced_sends(slow_turn):
        answer = http.request("POST", "/api/sendText", json_body={}, sends=True, paced=True)
    assert getattr(answer, "status", None) == 201, answer
    assert hooks == [True, False]  # asked again on the new connection
    assert len(gateway.wire.accepted) == 2
    http.close()
