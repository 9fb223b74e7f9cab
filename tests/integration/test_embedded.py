"""Embedded PostgreSQL and Redis: start, stop, restart, kill, adoption, product entry point.

Every server here is private (its own folder and port); the machine's shared servers are never
touched. A server that cannot start fails the test in CI and skips it locally, with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import psycopg2
import pytest
import redis

from campaigns.local import resolve_settings
from campaigns.local.postgres import EmbeddedPostgres
from campaigns.local.processes import EmbeddedServerError, free_port
from campaigns.local.redis import EmbeddedRedis
from campaigns.local.services import ensure_local_services

CI = os.environ.get("CI", "").lower() == "true"
REPO = Path(__file__).resolve().parents[2]

Server = TypeVar("Server", EmbeddedPostgres, EmbeddedRedis)


def started(server: Server) -> Server:
    """Start ``server``; in CI a failure fails the test, locally it skips with the reason."""
    try:
        server.start()
    except (EmbeddedServerError, OSError) as exc:
        if CI:
            raise
        pytest.skip(f"embedded {type(server).__name__} cannot start here: {exc}")
    return server


@pytest.fixture
def tmp_path(server_tmp_path: Path) -> Path:
    """Every server of this module lives outside pytest's temporary root (see
    tests/conftest.py server_tmp_path)."""
    return server_tmp_path


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = started(EmbeddedPostgres(tmp_path / "pg", durable=False))
    yield server
    server.stop()


@pytest.fixture
def durable_pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = started(EmbeddedPostgres(tmp_path / "pg"))
    yield server
    server.stop()


@pytest.fixture
def rds() -> Iterator[EmbeddedRedis]:
    server = started(EmbeddedRedis())
    yield server
    server.stop()


def sql(server: EmbeddedPostgres, query: str, database: str = "postgres") -> list[tuple[object]]:
    conn = psycopg2.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname=database, connect_timeout=5
    )
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(query)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


def client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url(), socket_timeout=2, socket_connect_timeout=2)


# ----------------------------------------------------------------------------- PostgreSQL


def test_postgres_start_answers_on_its_own_port(pg: EmbeddedPostgres) -> None:
    assert pg.is_running()
    assert pg.port != 5432
    assert pg.url() == f"postgresql+psycopg2://postgres@127.0.0.1:{pg.port}/postgres"
    assert sql(pg, "SELECT current_user") == [("postgres",)]
    assert sql(pg, "SHOW fsync") == [("off",)]


def test_postgres_start_twice_is_idempotent(pg: EmbeddedPostgres) -> None:
    assert pg.start() is False
    assert pg.is_running()


def test_postgres_is_durable_by_default(durable_pg: EmbeddedPostgres) -> None:
    settings = "SELECT name, setting FROM pg_settings WHERE name IN "
    rows = sql(durable_pg, settings + "('fsync', 'synchronous_commit', 'full_page_writes')")
    assert dict(rows) == {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


def test_postgres_data_survives_stop_and_restart_on_the_same_port(pg: EmbeddedPostgres) -> None:
    url = pg.create_database("camp")
    sql(pg, "CREATE TABLE t (x int); INSERT INTO t VALUES (42)", "camp")
    pg.stop()
    assert not pg.is_running()
    pg.restart()
    assert pg.url("camp") == url
    assert sql(pg, "SELECT x FROM t", "camp") == [(42,)]


def test_postgres_kill_then_start_recovers_committed_data(
    durable_pg: EmbeddedPostgres,
) -> None:
    sql(durable_pg, "CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
    durable_pg.kill()
    assert not durable_pg.is_running()
    with pytest.raises(psycopg2.OperationalError):
        sql(durable_pg, "SELECT 1")
    assert durable_pg.start() is True
    assert sql(durable_pg, "SELECT x FROM t") == [(7,)]


def test_postgres_remembers_its_port_in_the_data_dir(tmp_path: Path) -> None:
    first = started(EmbeddedPostgres(tmp_path / "pg", durable=False))
    port = first.port
    first.stop()
    second = started(EmbeddedPostgres(tmp_path / "pg", durable=False))
    try:
        assert second.port == port
    finally:
        second.stop()


def test_two_postgres_on_different_dirs_run_at_once(tmp_path: Path) -> None:
    a = started(EmbeddedPostgres(tmp_path / "a", durable=False))
    try:
        b = started(EmbeddedPostgres(tmp_path / "b", durable=False))
        try:
            assert a.port != b.port
            sql(a, "CREATE TABLE only_in_a (x int)")
            assert sql(b, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'") == [(0,)]
        finally:
            b.stop()
    finally:
        a.stop()


def test_postgres_left_running_by_another_process_is_adopted(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    script = textwrap.dedent(f"""
        from pathlib import Path
        from campaigns.local.postgres import EmbeddedPostgres
        server = EmbeddedPostgres(Path({str(data_dir)!r}), durable=False)
        server.start()
        print(server.port)
    """)
    try:
        out = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except subprocess.CalledProcessError as exc:
        if CI:
            raise
        pytest.skip(f"embedded postgres cannot start here: {exc.stderr}")
    port = int(out.stdout.strip())
    adopter = EmbeddedPostgres(data_dir, durable=False)
    try:
        assert adopter.is_running()  # the starting process has exited; the server has not
        assert adopter.start() is False
        assert adopter.port == port
        assert sql(adopter, "SELECT 1") == [(1,)]
    finally:
        adopter.stop()
    assert not adopter.is_running()


def test_postgres_stop_when_not_running_is_a_no_op(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "never")
    server.stop()
    server.kill()
    assert not server.is_running()


def test_postgres_context_manager_stops_on_exit(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", durable=False)
    try:
        with server as running:
            assert running.is_running()
    except EmbeddedServerError as exc:
        if CI:
            raise
        pytest.skip(f"embedded postgres cannot start here: {exc}")
    assert not server.is_running()


# ----------------------------------------------------------------------------- Redis


def test_redis_start_answers_with_the_expected_settings(rds: EmbeddedRedis) -> None:
    assert rds.is_running()
    assert rds.port != 6379
    c = client(rds)
    assert c.ping()
    assert c.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    assert c.config_get("save") == {"save": ""}
    assert c.config_get("appendonly") == {"appendonly": "no"}
    assert rds.url(3) == f"redis://127.0.0.1:{rds.port}/3"
    c.close()


def test_redis_restart_keeps_the_port_and_loses_the_data(rds: EmbeddedRedis) -> None:
    port = rds.port
    c = client(rds)
    c.set("k", "v")
    rds.restart()
    assert rds.port == port
    assert c.get("k") is None  # the client reconnects by itself
    c.close()


def test_redis_kill_then_start(rds: EmbeddedRedis) -> None:
    c = client(rds)
    c.set("k", "v")
    rds.kill()
    assert not rds.is_running()
    with pytest.raises(redis.ConnectionError):
        client(rds).ping()
    assert rds.start() is True
    assert c.get("k") is None
    c.close()


def test_redis_flushall_empties_only_this_server(rds: EmbeddedRedis) -> None:
    other = started(EmbeddedRedis())
    try:
        client(rds).set("k", "v")
        client(other).set("k", "v")
        rds.flushall()
        assert client(rds).get("k") is None
        assert client(other).get("k") == b"v"
    finally:
        other.stop()


def test_redis_with_a_data_dir_is_adopted(tmp_path: Path) -> None:
    first = started(EmbeddedRedis(tmp_path / "redis", port=free_port()))
    second = EmbeddedRedis(tmp_path / "redis")
    try:
        assert second.is_running()
        assert second.start() is False
        assert second.port == first.port
    finally:
        second.stop()
    assert not first.is_running()


def test_redis_context_manager_stops_on_exit() -> None:
    server = EmbeddedRedis()
    with server:
        assert server.is_running()
    assert not server.is_running()


# ----------------------------------------------------------------------------- product entry


def test_ensure_local_services_uses_configured_urls_and_starts_nothing(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql+psycopg2://u@db.example/x",
        "CELERY_BROKER_URL": "redis://broker.example:6379/0",
    }
    services = ensure_local_services(tmp_path, env)
    assert services.database_url == env["DATABASE_URL"]
    assert services.broker_url == env["CELERY_BROKER_URL"]
    assert services.redis_url == env["CELERY_BROKER_URL"]  # pacing defaults to a Redis broker
    assert services.postgres is None and services.redis is None
    assert services.started == frozenset()
    assert not (tmp_path / "postgres").exists()


def test_ensure_local_services__starts_only_what_the_caller_needs(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql+psycopg2://u@db.example/x",
        "CELERY_BROKER_URL": "amqp://guest@mq.example//",
    }
    services = ensure_local_services(tmp_path, env, ("database", "broker"))
    assert (services.database_url, services.broker_url) == (
        env["DATABASE_URL"],
        env["CELERY_BROKER_URL"],
    )
    assert services.redis_url is None  # pacing is not needed: no Redis for it
    assert services.redis is None and services.started == frozenset()
    assert list(tmp_path.iterdir()) == []  # the data folder was not even touched


def test_resolve_settings__without_need_fills_every_url_as_before(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql+psycopg2://u@db.example/x",
        "REDIS_URL": "redis://redis.example:6379/1",
        "CAMPAIGNS_DATA_DIR": str(tmp_path),
    }
    settings = resolve_settings(env)
    assert settings.broker_url == settings.pacing_redis_url == env["REDIS_URL"]
    only_database = resolve_settings(env, need=("database",))
    assert only_database.database_url == env["DATABASE_URL"]
    assert list(tmp_path.iterdir()) == []


def test_ensure_local_services_with_rabbitmq_still_needs_a_redis(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql+psycopg2://u@db.example/x",
        "CELERY_BROKER_URL": "amqp://guest@mq.example//",
    }
    try:
        services = ensure_local_services(tmp_path, env)
    except EmbeddedServerError as exc:
        if CI:
            raise
        pytest.skip(f"embedded redis cannot start here: {exc}")
    assert services.redis is not None
    try:
        assert services.broker_url == env["CELERY_BROKER_URL"]
        assert services.redis_url == services.redis.url()
        assert services.started == {"redis"}
    finally:
        services.redis.stop()


def test_ensure_local_services_without_urls_starts_then_adopts(tmp_path: Path) -> None:
    try:
        first = ensure_local_services(tmp_path, {})
    except EmbeddedServerError as exc:
        if CI:
            raise
        pytest.skip(f"embedded servers cannot start here: {exc}")
    assert first.postgres is not None and first.redis is not None
    try:
        assert first.started == {"postgres", "redis"}
        assert first.database_url == first.postgres.url("campaigns")
        assert first.broker_url == first.redis_url == first.redis.url()
        assert sql(first.postgres, "SELECT current_database()", "campaigns") == [("campaigns",)]
        again = ensure_local_services(tmp_path, {})
        assert again.started == frozenset()
        assert (again.database_url, again.redis_url) == (first.database_url, first.redis_url)
    finally:
        first.postgres.stop()
        first.redis.stop()


def test_two_processes_ensuring_services_at_once_share_one_set(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import json
        from pathlib import Path
        from campaigns.local.services import ensure_local_services
        s = ensure_local_services(Path({str(tmp_path)!r}), {{}})
        print(json.dumps([s.database_url, s.redis_url, sorted(s.started)]))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    results = [json.loads(proc.communicate(timeout=120)[0] or "null") for proc in procs]
    postgres, redis_server = (
        EmbeddedPostgres(tmp_path / "postgres"),
        EmbeddedRedis(tmp_path / "redis"),
    )
    try:
        if None in results and not CI:
            pytest.skip("embedded servers cannot start here")
        (db_a, redis_a, started_a), (db_b, redis_b, started_b) = results
        assert (db_a, redis_a) == (db_b, redis_b)
        assert sorted([started_a, started_b]) == [[], ["postgres", "redis"]]
    finally:
        postgres.stop()
        redis_server.stop()
