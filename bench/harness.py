"""What every benchmark shares: the services, scratch databases, a stack of engine processes,
process measurements, and the table rows.

Every figure is a ratio to a baseline measured in the same run: the machine is shared and
noisy, so an absolute number measured an hour ago says little.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from campaigns.dispatch import TaskSender
from campaigns.local import resolve_settings
from campaigns.local.redis import EmbeddedRedis
from campaigns.local.stack import Child, LocalStack, wait_until
from campaigns.processor import CampaignBatchProcessor
from campaigns.settings import Settings
from campaigns.store import CampaignStateManager, db

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_TOKEN = "bench-sandbox-token"

# Short recovery timings, as in tests/acceptance/conftest.py FAST_ENV: STALL_TIMEOUT must exceed
# one gateway call (connect + read timeouts).
FAST_ENV = {
    "GATEWAY_CONNECT_TIMEOUT": "1",
    "GATEWAY_READ_TIMEOUT": "3",
    "STALL_TIMEOUT": "6",
    "SWEEP_INTERVAL": "2",
    "SESSION_WATCH_INTERVAL": "1",
    "TASK_TIME_BUDGET": "20",
}


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    benchmark: str
    figure: str
    value: str
    baseline: str = "—"
    ratio: float | None = None
    target: str = "—"
    met: bool | None = None

    def cells(self) -> list[str]:
        ratio = "—" if self.ratio is None else f"{self.ratio:.2f}"
        met = "—" if self.met is None else ("yes" if self.met else "**no**")
        return [self.benchmark, self.figure, self.value, self.baseline, ratio, self.target, met]


HEADER = ["benchmark", "figure", "value", "baseline (same run)", "ratio", "target", "met?"]


def autocommit(database_url: str, sql: str) -> None:
    """One statement outside a transaction (CREATE DATABASE, VACUUM, TRUNCATE)."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


def failed_row(benchmark: str, error: BaseException) -> Row:
    """The row of a benchmark that could not finish: the table still has every benchmark."""
    return Row(benchmark, "did not finish", f"{type(error).__name__}: {error}"[:160], met=False)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in 0..1); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def numbers(count: int, start: int = 0) -> list[str]:
    """Distinct valid Brazilian mobile numbers in E.164."""
    return [f"+5511{900000000 + i}" for i in range(start, start + count)]


@dataclass
class Bench:
    """The run's context: services, sizes, scratch folders. One per ``python -m bench``."""

    quick: bool
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    settings: Settings = field(default_factory=resolve_settings)
    _template: str | None = None
    _private_redis: EmbeddedRedis | None = None
    _databases: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Settings and caveats the benchmarks report under the table."""

    @property
    def work_dir(self) -> Path:
        path = ROOT / ".data" / f"bench-{self.run_id}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def server_url(self) -> str:
        """The PostgreSQL server's maintenance database."""
        assert self.settings.database_url is not None
        url = make_url(self.settings.database_url).set(database="postgres")
        return url.render_as_string(hide_password=False)

    @property
    def broker_url(self) -> str:
        assert self.settings.broker_url is not None
        return self.settings.broker_url

    @property
    def redis_url(self) -> str:
        url = self.settings.pacing_redis_url
        assert url is not None
        return url

    def admin(self, sql: str) -> None:
        autocommit(self.server_url, sql)

    def database(self, label: str) -> str:
        """A fresh migrated scratch database (copied from a template migrated once)."""
        if self._template is None:
            name = f"bench_template_{self.run_id}"
            self.admin(f"CREATE DATABASE {name}")
            self._databases.append(name)
            db.upgrade(self.url_of(name))
            self._template = name
        name = f"bench_{label}_{self.run_id}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {self._template}")
        self._databases.append(name)
        return self.url_of(name)

    def url_of(self, name: str) -> str:
        return make_url(self.server_url).set(database=name).render_as_string(hide_password=False)

    def private_redis(self) -> EmbeddedRedis:
        """A Redis of the benchmarks' own, for anything that flushes or restarts it."""
        if self._private_redis is None:
            self._private_redis = EmbeddedRedis(self.work_dir / "redis")
            self._private_redis.start()
        return self._private_redis

    def env(
        self, database_url: str, *, redis_url: str | None = None, **extra: str
    ) -> dict[str, str]:
        """The environment of a stack: its database, a distinct queue, no secrets of ours."""
        url = redis_url or self.redis_url
        return {
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": url if redis_url else self.broker_url,
            "REDIS_URL": url,
            "CAMPAIGNS_QUEUE": f"bench-{self.run_id}-{uuid.uuid4().hex[:6]}",
            "SANDBOX_TOKEN": SANDBOX_TOKEN,
            "CAMPAIGNS_LOG_LEVEL": "INFO",
            "LEGAL_BASIS": "consent",  # benchmark campaigns: the documented default basis
            **extra,
        }

    @contextlib.contextmanager
    def stack(self, label: str, env: Mapping[str, str]) -> Iterator[LocalStack]:
        """Engine processes for one benchmark; every campaign cancelled and every child
        stopped at the end, the queue's keys deleted."""
        local = LocalStack(env=env, log_dir=self.work_dir / label)
        try:
            yield local
        finally:
            shut_down(local, env)

    def close(self) -> None:
        for name in reversed(self._databases):
            with contextlib.suppress(Exception):
                self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._databases.clear()
        if self._private_redis is not None:
            self._private_redis.stop()
            self._private_redis = None
        if not os.environ.get("BENCH_KEEP"):  # BENCH_KEEP=1 keeps the logs and records
            shutil.rmtree(ROOT / ".data" / f"bench-{self.run_id}", ignore_errors=True)


def shut_down(local: LocalStack, env: Mapping[str, str]) -> None:
    """Cancel every campaign (tasks notice the lost fence and return, so a warm shutdown is
    quick and acks them), stop the children, then delete the queue from the broker."""
    with contextlib.suppress(Exception):
        engine = create_engine(env["DATABASE_URL"], pool_size=1)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE campaign_batch_state SET status = 'cancelled', run_token = NULL"
                    " WHERE status IN ('running', 'interrupted', 'scheduled', 'paused')"
                )
            )
        engine.dispose()
    for name in list(local.children):
        if name != "sandbox":
            with contextlib.suppress(Exception):
                local.stop(name, timeout=15)
    local.stop_all()
    broker = env.get("CELERY_BROKER_URL", "")
    if broker.startswith("redis"):
        with contextlib.suppress(redis.RedisError):
            client = redis.Redis.from_url(broker, socket_timeout=5)
            queue = env["CAMPAIGNS_QUEUE"]
            keys = list(client.scan_iter(match=f"{queue}*"))
            if keys:
                client.delete(*keys)
            client.close()


class Client:
    """The campaign-creating side: a store and an enqueuer on a stack's environment."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.store = CampaignStateManager(
            env["DATABASE_URL"], settings=Settings.from_env({**env, "DB_POOL_SIZE": "4"})
        )
        self.enqueuer = TaskSender.for_broker(env["CELERY_BROKER_URL"], env["CAMPAIGNS_QUEUE"])

    def processor(self, **pacing: Any) -> CampaignBatchProcessor:
        values = {
            "batch_size": 300,
            "min_interval": 0,
            "max_interval": 0,
            "batch_delay_min": 0,
            "batch_delay_max": 0,
            **pacing,
        }
        p = CampaignBatchProcessor(**values, enqueue=self.enqueuer)
        p.set_state_manager(self.store)
        return p

    def add_session(self, name: str, base_url: str, gateway: str = "waha") -> str:
        # benchmarks send more than a new portfolio's 250 recipients a day
        options = {"phone_number_id": name, "tier": "unlimited"} if gateway == "cloud-api" else {}
        token = None if gateway == "console" else "SANDBOX_TOKEN"
        self.store.add_session(name, gateway, base_url, token_env=token, **options)
        return name

    def count_status(self, ids: Sequence[int], statuses: Sequence[str]) -> int:
        with self.store.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM campaign_batch_state"
                        " WHERE id = ANY(:ids) AND status::text = ANY(:statuses)"
                    ),
                    {"ids": list(ids), "statuses": list(statuses)},
                ).scalar_one()
            )

    def wait_finished(self, ids: Sequence[int], timeout: float) -> float:
        """Wait until every campaign is completed (or failed/cancelled); the monotonic time."""
        final = ("completed", "failed", "cancelled")
        wait_until(
            lambda: self.count_status(ids, final) == len(ids),
            timeout,
            f"{len(ids)} campaigns to finish",
            interval=0.05,
        )
        return time.monotonic()

    def sent(self, ids: Sequence[int]) -> int:
        with self.store.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM campaign_recipients"
                        " WHERE campaign_id = ANY(:ids) AND status = 'sent'"
                    ),
                    {"ids": list(ids)},
                ).scalar_one()
            )

    def close(self) -> None:
        self.enqueuer.close()
        self.store.dispose()


def start_celery(
    local: LocalStack,
    name: str,
    app: str,
    *,
    concurrency: int,
    extra_env: Mapping[str, str] | None = None,
    loglevel: str = "INFO",
) -> Child:
    """Start ``celery -A app worker`` (threads pool) as a child of ``local``, like
    :meth:`LocalStack.start_worker` does for the engine's own app; returns once it is ready."""
    local.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = local.log_dir / f"{name}.log"
    env = {**os.environ, **local.env, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
    argv = [
        sys.executable, "-m", "celery", "-A", app, "worker", "-l", loglevel, "-n",
        f"{name}@%h", "--pool", "threads", "--concurrency", str(concurrency),
        "--without-mingle", "--without-gossip",
    ]  # fmt: skip
    with log_path.open("ab") as handle:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    child = Child(name, process, log_path)
    local.children[name] = child
    wait_until(lambda: " ready." in child.log() or not child.alive, 60, f"{name} to be ready")
    if not child.alive:
        raise RuntimeError(f"{name} exited:\n{child.log()[-3000:]}")
    return child


def tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants (those still alive)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss_mb(pid: int) -> float:
    """Resident memory of a process tree, in MB."""
    total = 0
    for process in tree(pid):
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total / 2**20


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU seconds used so far by a process (and its descendants)."""
    total = 0.0
    processes = tree(pid) if children else tree(pid)[:1]
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def listener_pid(url: str) -> int | None:
    """The pid of the local server listening on ``url``'s port (PostgreSQL's postmaster,
    redis-server), to account for its CPU; None if it is not local or not visible."""
    from sqlalchemy.engine import make_url as parse

    port = parse(url.replace("redis://", "redis+x://")).port
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return int(conn.pid) if conn.pid is not None else None
    return None


class CpuMeter:
    """CPU seconds of labelled processes (trees) over one measured run."""

    def __init__(self, pids: Mapping[str, list[tuple[int, bool]]]) -> None:
        self.pids = pids
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        return {
            label: sum(cpu_seconds(pid, children=tree_) for pid, tree_ in entries)
            for label, entries in self.pids.items()
        }

    def per_message_ms(self, messages: int) -> dict[str, float]:
        now = self._read()
        return {label: 1000 * (now[label] - self.start[label]) / messages for label in now}


class MachineCpu:
    """Share of the whole machine's CPU that was busy (every process, ours or not) since
    construction: near 100% means the figure is bounded by the cores, not by the design."""

    def __init__(self) -> None:
        self.start = psutil.cpu_times()

    def busy_percent(self) -> float:
        end = psutil.cpu_times()
        total = sum(end) - sum(self.start)
        idle = (end.idle + getattr(end, "iowait", 0.0)) - (
            self.start.idle + getattr(self.start, "iowait", 0.0)
        )
        return 100.0 * (1 - idle / total) if total > 0 else float("nan")


class Sampler:
    """Samples a process tree's RSS while a block runs (peak and last, in MB)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self.last = 0.0

    def sample(self) -> float:
        self.last = rss_mb(self.pid)
        self.peak = max(self.peak, self.last)
        return self.last


def poll(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.02) -> float:
    """Wait for ``predicate``; returns the ``time.time()`` at which it first held."""
    wait_until(predicate, timeout, what, interval=every)
    return time.time()


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def fmt_s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def machine_facts(bench: Bench) -> dict[str, str]:
    """Cores, memory, service versions, Python: what the figures were measured on."""
    import platform

    engine = create_engine(bench.server_url, pool_size=1)
    try:
        with engine.connect() as conn:
            pg = str(conn.execute(text("SHOW server_version")).scalar_one())
    finally:
        engine.dispose()
    client = redis.Redis.from_url(bench.redis_url, socket_timeout=5)
    try:
        redis_version = str(client.info("server").get("redis_version"))
    finally:
        client.close()
    memory = psutil.virtual_memory().total / 2**30
    return {
        "cores": str(os.cpu_count()),
        "memory": f"{memory:.1f} GiB",
        "PostgreSQL": pg,
        "Redis": redis_version,
        "broker": bench.broker_url.split("://", 1)[0],
        "Python": platform.python_version(),
        "platform": platform.platform(),
    }
