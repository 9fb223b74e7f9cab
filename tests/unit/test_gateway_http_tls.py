"""A TLS error is a connect failure only when it struck in the handshake, before the request was
written; one after the request (a corrupt record while reading the answer) is ambiguous: the
gateway may have sent. Over real sockets on loopback: a server that answers the handshake in
plain HTTP, and a TLS server (tests/fixtures/tls, a self-signed certificate for 127.0.0.1) that
reads the whole request and then corrupts the connection."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import urllib3.exceptions

from campaigns.gateways.base import GatewayConfig, OutcomeKind, OutgoingMessage, SendOutcome
from campaigns.gateways.cloud_api import CloudApiGateway
from campaigns.gateways.http import HttpClient, classify_exception
from tests.gateway_stub import GatewayStub

TLS = Path(__file__).resolve().parents[1] / "fixtures" / "tls"
CERT, KEY = TLS / "test-gateway.pem", TLS / "test-gateway.key"


def handshake_refused() -> requests.exceptions.SSLError:
    """A real handshake failure (the peer answered in plain HTTP), wrapped as requests does."""
    incoming = ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(
        incoming, ssl.MemoryBIO(), server_hostname="gateway.example"
    )
    incoming.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    try:
        tls.do_handshake()
    except ssl.SSLError as exc:
        return requests.exceptions.SSLError(urllib3.exceptions.SSLError(exc))
    raise AssertionError("the handshake should have failed")


def test_a_handshake_failure__is_a_connect_failure() -> None:
    assert classify_exception(handshake_refused(), sends=True).kind is OutcomeKind.TRANSIENT


def test_a_tls_error_with_no_trace_of_a_handshake__may_have_been_sent() -> None:
    bare = requests.exceptions.SSLError(urllib3.exceptions.SSLError("bad record mac"))
    assert classify_exception(bare, sends=True).kind is OutcomeKind.AMBIGUOUS
    assert classify_exception(bare, sends=False).kind is OutcomeKind.TRANSIENT


def client(url: str, monkeypatch: pytest.MonkeyPatch) -> HttpClient:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(CERT))  # trust the test certificate
    return HttpClient(GatewayConfig("default", url, "t", connect_timeout=2, read_timeout=3), {})


def test_https_to_a_server_speaking_plain_http__fails_in_the_handshake_and_is_transient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with GatewayStub() as stub:
        http = client(stub.url.replace("http://", "https://"), monkeypatch)
        answer = http.request("POST", "/messages", json_body={"to": "+1"}, sends=True)
        http.close()
    assert isinstance(answer, SendOutcome)
    assert (answer.kind, answer.error_code) == (OutcomeKind.TRANSIENT, "connect_failed")


@pytest.fixture
def corrupting_tls_server() -> Iterator[tuple[str, list[bytes]]]:
    """A TLS server that reads one whole request, then writes a corrupt record in place of
    the answer: the client's TLS layer fails while reading, after the request was sent."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT, KEY)
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def serve() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as tls:
            data = b""
            while b"\r\n\r\n" not in data:
                data += tls.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += tls.recv(65536)
            received.append(body)
            # an application-data record the client cannot decrypt, on the bare socket
            os.write(tls.fileno(), b"\x17\x03\x03\x00\x40" + os.urandom(64))
            threading.Event().wait(1.0)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        thread.join(timeout=5)
        listener.close()


def test_a_tls_error_after_the_request_was_written__is_ambiguous(
    corrupting_tls_server: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = corrupting_tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(CERT))
    config = GatewayConfig(
        "default", url, "t", {"phone_number_id": "123"}, connect_timeout=2, read_timeout=3
    )
    gateway = CloudApiGateway(config)

    outcome = gateway.send(OutgoingMessage(to="+5511999991234", text="Hi"))
    gateway.close()

    assert outcome.kind is OutcomeKind.AMBIGUOUS, outcome
    assert len(received) == 1 and b"5511999991234" in received[0]  # the gateway has it
