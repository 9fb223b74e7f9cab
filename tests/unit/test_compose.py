"""docker-compose.yml, .env.example and the Dockerfile agree with the code.

Every command names a real entry point and real options; every variable they name is one the
code (or the image or tool that receives it) reads; every variable the settings read is
documented; long-running services have healthchecks and restart policies; the worker scales and
shuts down warm. No Docker engine is needed: the files are parsed and compared with the code.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

import click
import pytest
import yaml

from campaigns.gateway_pool import MissingTokenGateway, gateway_for
from campaigns.settings import Settings
from tests.conftest import ROOT
from workers.limits import check_limits, compute_limits

COMPOSE_PATH = ROOT / "docker-compose.yml"
ENV_EXAMPLE_PATH = ROOT / ".env.example"
DOCKERFILE_PATH = ROOT / "Dockerfile"
DOCKERIGNORE_PATH = ROOT / ".dockerignore"

CODE_FILES = [
    ROOT / "celeryconfig.py",
    ROOT / "alembic" / "env.py",
    *sorted((ROOT / "campaigns").rglob("*.py")),
    *sorted((ROOT / "workers").rglob("*.py")),
]
ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*[A-Z0-9]$")

# Variables read by something other than our code, each with who reads it.
POSTGRES_IMAGE_VARIABLES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
"""Read by the postgres image's entrypoint when it creates its data folder."""
SESSION_TOKEN_VARIABLES = {"SANDBOX_TOKEN"}
"""Named by a session's ``--token-env``; gateway_pool reads the variable a session names."""
DOCKER_PROVIDED_VARIABLES = {"HOSTNAME"}
"""Set by Docker in every container (the worker's node name is celery@$HOSTNAME)."""
ONE_SHOT_SERVICES = {"migrate", "metrics-init"}
PER_SERVICE_VARIABLES = {"PROMETHEUS_MULTIPROC_DIR": {"worker", "web"}}
"""Set in the ``environment:`` of these services only, never in .env: prometheus_client enters
multiprocess mode when the variable exists at all (even empty), in every process given it."""


# --- the files ------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_PATH.read_text())
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict)
    return found


def app_services() -> list[str]:
    """Services built from this repository's Dockerfile (the others are stock images)."""
    return [name for name, service in services().items() if "build" in service]


def long_running() -> list[str]:
    return [name for name in services() if name not in ONE_SHOT_SERVICES]


@cache
def env_example() -> dict[str, str]:
    """NAME=value lines of .env.example (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE_PATH.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            assert name not in values, f".env.example names {name} twice"
            values[name.strip()] = value.strip()
    return values


def argv(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def option_names(args: list[str]) -> list[str]:
    """``--port=5555`` and ``--port 5555`` → ``--port``; short options kept as given."""
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("-")]


def option_value(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


# --- what the code reads --------------------------------------------------------------------


class _EnvReads(ast.NodeVisitor):
    """String constants read from the environment: ``os.environ.get("X")``, ``env.get("X")``,
    ``os.environ["X"]``, ``os.getenv("X")`` and helpers given the environment and a name
    (``_read(env, "X", ...)``, ``_number(env, "X", ...)``)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.constants: dict[str, str] = {}
        """Module-level ``NAME = "VALUE"`` of the file being read (``HMAC_KEY_ENV = "X"``)."""

    def read(self, tree: ast.Module) -> None:
        self.constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets if isinstance(target, ast.Name)
        }
        self.visit(tree)

    @staticmethod
    def _is_environ(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr == "environ"
        return isinstance(node, ast.Name) and node.id in {"env", "environ"}

    def _add(self, node: ast.AST) -> None:
        value = node.value if isinstance(node, ast.Constant) else None
        if isinstance(node, ast.Name):
            value = self.constants.get(node.id)
        if isinstance(value, str) and ENV_NAME.match(value):
            self.names.add(value)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and node.args:
            if (func.attr in {"get", "pop"} and self._is_environ(func.value)) or (
                func.attr == "getenv"
            ):
                self._add(node.args[0])
        if any(self._is_environ(arg) for arg in node.args):
            for arg in node.args:
                self._add(arg)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if self._is_environ(node.value):
            self._add(node.slice)
        self.generic_visit(node)


@cache
def variables_read_by_code() -> frozenset[str]:
    reader = _EnvReads()
    for path in CODE_FILES:
        reader.read(ast.parse(path.read_text(), str(path)))
    return frozenset(reader.names | settings_variables() | limits_variables())


class _RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return default

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@cache
def settings_variables() -> frozenset[str]:
    """Every variable ``Settings.from_env`` reads (observed, not guessed)."""
    env = _RecordingEnv()
    Settings.from_env(env)
    return frozenset(env.asked)


@cache
def limits_variables() -> frozenset[str]:
    env = _RecordingEnv()
    compute_limits(Settings(), env)
    return frozenset(env.asked)


def flower_reads(name: str) -> bool:
    """Flower applies FLOWER_<OPTION> for each of its options."""
    from flower.options import default_options

    return name.startswith("FLOWER_") and name[len("FLOWER_"):].lower() in default_options


def read_by_someone(name: str) -> bool:
    return (
        name in variables_read_by_code()
        or name in POSTGRES_IMAGE_VARIABLES
        or name in SESSION_TOKEN_VARIABLES
        or flower_reads(name)
    )


def compose_variables() -> set[str]:
    """``${X}``/``$X`` interpolated by compose, ``$$X`` expanded in a container's shell, and
    keys of ``environment:`` blocks."""
    text = "\n".join(_strings(compose()))  # values only: comments are not interpolated
    named = set(re.findall(r"\$\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    named |= set(re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    for service in services().values():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        named |= set(environment)
    return named


# --- entry points ---------------------------------------------------------------------------


@cache
def workers_app_probe() -> dict[str, Any]:
    """Import ``workers`` as a container would (the .env.example environment) in a fresh
    interpreter: celeryconfig runs at import, and nothing here may start embedded servers."""
    script = (
        "import json, celery, workers, workers.tasks\n"
        "app = workers.app\n"
        "print(json.dumps({'is_celery': isinstance(app, celery.Celery),"
        " 'tasks': sorted(app.tasks),"
        " 'scheduled': sorted(e['task'] for e in app.conf.beat_schedule.values())}))\n"
    )
    env = {
        key: value for key, value in os.environ.items()
        if key not in settings_variables() | limits_variables()
    }
    env.update({k: v for k, v in env_example().items() if v})
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(probe, dict)
    return probe


def celery_command(args: list[str]) -> None:
    from celery.bin.celery import celery as celery_cli

    assert args[1:3] == ["-A", "workers"], f"the app is workers: {args}"
    probe = workers_app_probe()
    assert probe["is_celery"], "workers.app is not a Celery app"
    assert set(probe["scheduled"]) <= set(probe["tasks"]), "beat schedules an unknown task"
    sub = args[3]
    assert isinstance(celery_cli, click.Group)
    command = celery_cli.commands.get(sub)
    assert command is not None, f"celery has no {sub!r} command"
    if sub == "flower":
        from flower.options import default_options

        for name in option_names(args[4:]):
            assert name.lstrip("-").replace("-", "_") in default_options, f"flower {name}"
        return
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for name in option_names(args[4:]):
        assert name in known, f"celery {sub} has no option {name}"


def campaigns_command(args: list[str]) -> None:
    if importlib.util.find_spec("campaigns.cli") is None:
        pytest.skip("campaigns.cli does not exist yet: `campaigns` sub-commands not checked")
    import typer.main

    from campaigns.cli import app

    # Typer builds its commands on its own copy of click: duck-typed, groups have `commands`
    command: Any = typer.main.get_command(app)
    rest = args[1:]
    path = ["campaigns"]
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        sub = command.commands.get(rest[0])
        assert sub is not None, f"{' '.join(path)} has no sub-command {rest[0]!r}"
        path.append(rest.pop(0))
        command = sub
    assert not hasattr(command, "commands"), f"{' '.join(path)} needs a sub-command"
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for name in option_names(rest):
        assert name in known, f"{' '.join(path)} has no option {name}"


def module_command(args: list[str]) -> None:
    assert args[1] == "-m", args
    assert importlib.util.find_spec(args[2]) is not None, f"no module {args[2]}"


# --- tests ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", app_services())
def test_every_app_service_command__names_a_real_entry_point(name: str) -> None:
    args = argv(services()[name]["command"])
    if args[0] == "celery":
        celery_command(args)
    elif args[0] == "campaigns":
        campaigns_command(args)
    elif args[0] in {"python", "python3"}:
        module_command(args)
    else:
        pytest.fail(f"{name}: unknown program {args[0]!r}")


def test_campaigns_console_script__is_the_cli_entry_point() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^campaigns = "([\w.]+):(\w+)"', pyproject, re.MULTILINE)
    assert match, "pyproject.toml declares no `campaigns` script"
    if importlib.util.find_spec(match.group(1)) is None:
        pytest.skip(f"{match.group(1)} does not exist yet")
    assert callable(getattr(importlib.import_module(match.group(1)), match.group(2)))


def test_app_services__build_this_image_and_read_the_env_file() -> None:
    for name in app_services():
        service = services()[name]
        assert service["build"] == ".", name
        assert service.get("env_file") in (".env", [".env"]), name
    assert services()["postgres"].get("env_file") in (".env", [".env"])


def test_variables_named_by_compose_and_env_example__are_read_by_the_code() -> None:
    unread = sorted(
        name for name in set(env_example()) | compose_variables()
        if not read_by_someone(name) and name not in DOCKER_PROVIDED_VARIABLES
    )
    assert unread == [], f"named in compose/.env.example but read by nothing: {unread}"


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def test_shell_variables_of_healthchecks__exist_in_the_container() -> None:
    text = "\n".join(_strings(compose()))
    for name in re.findall(r"\$\$\{?([A-Za-z_][A-Za-z0-9_]*)", text):
        assert name in env_example() or name in DOCKER_PROVIDED_VARIABLES, name


def test_every_variable_the_settings_read__is_documented_in_env_example() -> None:
    missing = sorted((settings_variables() | limits_variables()) - set(env_example()))
    assert missing == [], f"read by Settings/limits, missing from .env.example: {missing}"


def test_every_variable_the_code_reads__is_documented_in_env_example() -> None:
    # beyond Settings: the queue, log switches, the sandbox key, the webhook HMAC key
    missing = sorted(variables_read_by_code() - set(env_example()) - set(PER_SERVICE_VARIABLES))
    assert missing == [], f"read by the code, missing from .env.example: {missing}"


def test_per_service_variables__are_set_where_needed_and_documented_not_set() -> None:
    text = ENV_EXAMPLE_PATH.read_text()
    for name, where in PER_SERVICE_VARIABLES.items():
        assert name in variables_read_by_code(), name
        assert name not in env_example(), f"{name} must not be in .env (every service reads it)"
        assert f"# {name}=" in text, f".env.example must explain {name}"
        setting = {
            service: (services()[service].get("environment") or {}).get(name)
            for service in services()
        }
        assert {service for service, value in setting.items() if value} == where, name
        assert len({setting[service] for service in where}) == 1, f"{name}: one directory"
    # the multiprocess directory is one volume shared by its services, emptied before they start
    for service in PER_SERVICE_VARIABLES["PROMETHEUS_MULTIPROC_DIR"]:
        spec = services()[service]
        assert "metrics-data:/metrics" in spec["volumes"], service
        assert spec["depends_on"]["metrics-init"]["condition"] == "service_completed_successfully"
    init = argv(services()["metrics-init"]["command"])
    assert init[1:5] == ["-m", "campaigns.metrics", "clean", "/metrics"], init


def test_variable_scanner__finds_the_reads_of_each_kind() -> None:
    # one name per reading style, so the scanner cannot rot into finding nothing
    assert {"CAMPAIGNS_QUEUE", "LOG_FULL_NUMBERS", "SANDBOX_API_KEY", "CAMPAIGNS_LOG_LEVEL",
            "DATABASE_URL", "BATCH_SIZE", "VISIBILITY_TIMEOUT", "WAHA_WEBHOOK_HMAC_KEY",
            } <= variables_read_by_code()
    assert "DEFAULT_REGION" in settings_variables()
    assert "RABBITMQ_CONSUMER_TIMEOUT" in limits_variables()


def test_session_token_variables__are_read_through_the_session_that_names_them() -> None:
    from campaigns.domain import SenderSession

    for variable in SESSION_TOKEN_VARIABLES:
        session = SenderSession(
            name="rehearsal", gateway="waha", base_url="http://sandbox:8099",
            token_env=variable, options={}, connection_status="unknown",
            last_checked_at=None, last_error=None, created_at=datetime.now(UTC),
        )
        settings = Settings()
        assert isinstance(gateway_for(session, settings, {}), MissingTokenGateway)
        built = gateway_for(session, settings, {variable: "x"})
        assert not isinstance(built, MissingTokenGateway)
        built.close()


def test_env_example__documents_each_variable_with_a_comment() -> None:
    lines = ENV_EXAMPLE_PATH.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            block = i
            while block > 0 and lines[block - 1].strip() and not lines[block - 1].startswith("#"):
                block -= 1  # a group of related variables shares the comment above it
            assert block > 0 and lines[block - 1].startswith("#"), f"undocumented: {line}"


def test_env_example__is_a_configuration_the_worker_accepts() -> None:
    example = {k: v for k, v in env_example().items() if v}
    settings = Settings.from_env(example)
    limits = compute_limits(settings, example)
    check_limits(limits, settings, example["CELERY_BROKER_URL"])
    rabbit = {**example, "CELERY_BROKER_URL": "amqp://guest:guest@rabbitmq:5672//"}
    check_limits(compute_limits(settings, rabbit), settings, rabbit["CELERY_BROKER_URL"])


def test_env_example__holds_no_real_secret() -> None:
    example = env_example()
    secrets = [name for name in example
               # KEY as a word of the name: OPTOUT_KEYWORDS holds words, not a secret
               if re.search(r"PASSWORD|TOKEN|(?:^|_)KEY(?:_|$)|SECRET|AUTH", name)]
    assert secrets, "the scan must see the secret-bearing variables"
    for name in secrets:
        assert "change-me" in example[name], f"{name} must hold a placeholder"
    assert "change-me" in example["DATABASE_URL"]


def test_long_running_services__have_healthchecks_and_restart_policies() -> None:
    for name in long_running():
        service = services()[name]
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: healthcheck"
        test = check["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}, name
        if test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], f"{name} healthcheck", "exec")
    for name in ONE_SHOT_SERVICES:
        assert services()[name].get("restart") == "no", f"{name} runs once"


def test_depends_on__conditions_are_sane() -> None:
    all_services = services()
    for name, service in all_services.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in all_services, f"{name} depends on unknown {dependency}"
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in all_services[dependency], f"{dependency} has none"
            elif condition == "service_completed_successfully":
                assert dependency in ONE_SHOT_SERVICES, f"{dependency} never completes"
            else:
                assert condition == "service_started", f"{name}: {condition}"
    # nothing touching the schema starts before the migration finished
    for name in ("worker", "beat", "web"):
        assert all_services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert all_services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    _assert_acyclic(all_services)


def _assert_acyclic(all_services: dict[str, dict[str, Any]]) -> None:
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, f"depends_on cycle through {name}"
        if name in done:
            return
        visiting.add(name)
        for dependency in all_services[name].get("depends_on") or {}:
            visit(dependency)
        visiting.discard(name)
        done.add(name)

    for name in all_services:
        visit(name)


def test_worker__scales_and_gets_a_warm_shutdown() -> None:
    worker = services()["worker"]
    assert "container_name" not in worker, "--scale worker=N needs generated names"
    assert "ports" not in worker, "a published port would clash between scaled workers"
    args = argv(worker["command"])
    assert "--pool" not in args and "-P" not in args, "the I/O pool comes from celeryconfig"
    example = {k: v for k, v in env_example().items() if v}
    limits = compute_limits(Settings.from_env(example), example)
    grace = _seconds(worker["stop_grace_period"])
    assert grace > limits.hard_time_limit, (grace, limits.hard_time_limit)


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_published_ports__match_the_commands_and_healthchecks() -> None:
    for name, service in services().items():
        for mapping in service.get("ports") or []:
            container_port = str(mapping).split(":")[-1].split("/")[0]
            args = argv(service["command"])
            assert option_value(args, "--port") == container_port, name
            test = " ".join(service["healthcheck"]["test"])
            assert f"127.0.0.1:{container_port}" in test or (
                f"'127.0.0.1', {container_port}" in test
            ), f"{name}: the healthcheck probes another port"
    sandbox = argv(services()["sandbox"]["command"])
    assert option_value(sandbox, "--host") == "0.0.0.0"
    assert option_value(sandbox, "--record", ) == "/data/sandbox.sqlite"
    assert any(volume.endswith(":/data") for volume in services()["sandbox"]["volumes"])


def test_redis__never_evicts_and_survives_restarts() -> None:
    args = argv(services()["redis"]["command"])
    assert option_value(args, "--maxmemory-policy") == "noeviction"
    assert option_value(args, "--appendonly") == "yes"
    assert services()["redis"]["image"].split(":")[1].startswith("7")
    assert services()["postgres"]["image"].split(":")[1].startswith("16")


def test_flower__takes_basic_auth_from_the_env_file() -> None:
    flower = services()["flower"]
    assert not any(arg.startswith("--basic-auth") for arg in argv(flower["command"]))
    user, _, password = env_example()["FLOWER_BASIC_AUTH"].partition(":")
    assert user and password
    assert "FLOWER_UNAUTHENTICATED_API" not in env_example()


def test_dockerfile__slim_python_non_root_and_copies_files_that_exist() -> None:
    lines = [line.strip() for line in DOCKERFILE_PATH.read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}, "the image must not run as root"
    assert any(re.match(r"RUN pip install \.$", line) for line in lines)
    ignored = [p.strip() for p in DOCKERIGNORE_PATH.read_text().splitlines()
               if p.strip() and not p.startswith("#")]
    for line in lines:
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
                excluded = [p for p in ignored if not p.startswith("!")
                            and fnmatch.fnmatch(source.rstrip("/"), p)]
                assert excluded == [], f"COPY {source} is excluded by .dockerignore"
    assert ".env" in ignored, "the image must never contain .env"
