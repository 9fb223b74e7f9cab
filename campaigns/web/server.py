"""Serving the app with uvicorn: ``serve`` for ``campaigns web``, ``running`` for tests and the
local stack's in-process use.

Choices, each for a reason:

- ``workers=1``: one process per container; scale with more containers behind the proxy. The
  app's store pool and broker client are per process anyway.
- ``proxy_headers=False`` (uvicorn turns them on by default): behind no proxy, a client could
  forge ``X-Forwarded-For`` and be logged as anyone. Enable it only where a proxy sets them.
- The access log never carries a query string: Meta's handshake puts ``hub.verify_token`` in
  the URL, and a log is no place for a secret. :class:`NoQueryString` is a filter on the
  ``uvicorn.access`` logger that cuts the path argument of every record at its ``?``.
- ``timeout_graceful_shutdown``: SIGTERM stops accepting, lets requests in flight finish (an
  opt-out being stored is answered), then exits; a hung request cannot hold the stop forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

GRACEFUL_SHUTDOWN_SECONDS = 20
"""Under docker compose's default stop_grace_period (10 s) plus margin would be tighter; requests
here take milliseconds, so this only bounds a stuck one."""
ACCESS_LOGGER = "uvicorn.access"


class NoQueryString(logging.Filter):
    """Cuts the query string off the path of uvicorn's access log records: its format is
    ``'%s - "%s %s HTTP/%s" %d'`` with the path (query included) as the third argument."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def _quiet_queries() -> None:
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, NoQueryString) for f in logger.filters):
        logger.addFilter(NoQueryString())


def _log_config() -> dict[str, Any]:
    """uvicorn's own logging, plus our ``campaigns`` loggers on its stderr handler (the
    receiver logs refused signatures and recorded opt-outs there)."""
    config: dict[str, Any] = {**uvicorn.config.LOGGING_CONFIG}
    level = (os.environ.get("CAMPAIGNS_LOG_LEVEL") or "INFO").upper()
    config["loggers"] = {
        **config["loggers"],
        "campaigns": {"handlers": ["default"], "level": level, "propagate": False},
    }
    return config


def config(app: FastAPI, host: str, port: int, *, log: bool = True) -> uvicorn.Config:
    """The uvicorn configuration of the service (the choices in this module's docstring)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=1,
        proxy_headers=False,
        server_header=False,
        access_log=log,
        log_config=_log_config() if log else None,
        lifespan="on",  # a lifespan that fails (no database) stops the start, loudly
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), bound before uvicorn starts so the caller knows
    the port and a taken one fails at once, with the OS's own message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(host: str, port: int, app: FastAPI | None = None) -> int:
    """Serve ``app`` (default: :func:`create_app` from the environment) until SIGTERM or
    Ctrl-C; 0 after a graceful stop."""
    if app is None:
        from campaigns.web.app import create_app

        app = create_app()
    sock = bind(host, port)
    server = uvicorn.Server(config(app, host, port))
    _quiet_queries()
    # uvicorn re-raises the signal it stopped on once it is done, to the handler found before
    # it: SIGTERM's default would then kill us with 143 after a clean stop. Ignore it there.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # Ctrl-C after the graceful stop: the stop was the point
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    if not server.started:
        print("the web service did not start (see the log above)", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` in a thread of this process; yields its base URL once it answers, and
    stops it (lifespan shutdown included) and joins the thread on exit."""
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    server = uvicorn.Server(config(app, host, bound, log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the web service stopped while starting (lifespan failed?)")
            threading.Event().wait(0.02)
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
