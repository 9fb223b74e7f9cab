"""Long-running helpers and local services: ``sandbox``, ``web`` (and its alias ``webhooks``),
``services``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from campaigns.cli import options
from campaigns.cli.app import app
from campaigns.cli.common import JSON_HELP, console, emit_json
from campaigns.errors import CampaignError
from campaigns.settings import Settings

services_app = typer.Typer(
    help="The embedded PostgreSQL and Redis started in the data folder when no URL is set.",
    no_args_is_help=True,
)


@app.command()
def sandbox(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8099, help="Port (0 picks a free one)."),
    record: Annotated[Path, typer.Option(help="SQLite file recording accepted messages.")] = Path(
        ".data/sandbox.sqlite"
    ),
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key", help="Accepted key (repeatable; default: $SANDBOX_API_KEY, else any)."
        ),
    ] = None,
    waha_wait: float = typer.Option(
        5.0, help="Seconds WAHA sends wait for a WORKING session before answering 422."
    ),
    seed: int | None = typer.Option(None, help="Seed of the fault randomness."),
    cloud_throughput: int = typer.Option(
        80,
        help="Cloud API sends per second per phone_number_id before it answers 130429"
        " (Meta's default is 80; 0: no limit).",
        callback=options.count(maximum=100_000, minimum=0),
    ),
    latency: float = typer.Option(
        0.0,
        help="Seconds added before every gateway answer (e.g. 0.25 for a realistic round"
        " trip).",
        callback=options.seconds(maximum=600.0),
    ),
    receipts: bool = typer.Option(
        False, help="Send delivery receipts (sent, delivered, read) to the registered webhook"
        " targets; tune them with POST /_sandbox/receipts."),
    verbose: bool = typer.Option(False, help="Log every request."),
) -> None:
    """Run the sandbox WhatsApp gateway (Cloud API, WAHA and Evolution dialects) until
    Ctrl-C or SIGTERM."""
    from campaigns.sandbox import main as sandbox_main

    record.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        "--host",
        host,
        "--port",
        str(port),
        "--record",
        str(record),
        "--waha-wait",
        str(waha_wait),
        "--cloud-throughput",
        str(cloud_throughput),
        "--latency",
        str(latency),
    ]
    for key in api_key or []:
        argv += ["--api-key", key]
    if seed is not None:
        argv += ["--seed", str(seed)]
    if receipts:
        argv.append("--receipts")
    if verbose:
        argv.append("--verbose")
    raise typer.Exit(sandbox_main(argv))


def _serve_web(host: str, port: int) -> None:
    """Start the web service: settings first (embedded servers when no URL is set), then the
    socket, so a bad configuration or a taken port fails before anything is served."""
    from campaigns.local import resolve_settings
    from campaigns.web.app import create_app
    from campaigns.web.server import serve

    settings = resolve_settings(need=("database", "broker"))  # no pacing Redis: it sends none
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    console.print(f"web service: {url} (health: {url}/healthz, API docs: {url}/docs)",
                  markup=False, highlight=False)  # fmt: skip
    try:
        code = serve(host, port, create_app(settings=settings))
    except OSError as exc:  # the port is taken, the address is not ours
        raise CampaignError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    raise typer.Exit(code)


def _port(value: int) -> int:
    # a usage error (exit 2, the option named), before any server or database is touched
    if not 1 <= value <= 65535:
        raise typer.BadParameter(f"a port is 1 to 65535, got {value}")
    return value


HOST_HELP = "Address to listen on (0.0.0.0: every interface, as in a container)."


@app.command()
def web(
    host: str = typer.Option("127.0.0.1", help=HOST_HELP),
    port: int = typer.Option(8000, help="Port.", callback=_port),
) -> None:
    """Run the web service (FastAPI under uvicorn) until Ctrl-C or SIGTERM: the gateways'
    webhooks (session state: WAHA session.status, Evolution connection.update, and opt-outs;
    Meta's handshake) and GET /healthz."""
    _serve_web(host, port)


@app.command()
def webhooks(
    host: str = typer.Option("127.0.0.1", help=HOST_HELP),
    port: int = typer.Option(8090, help="Port.", callback=_port),
) -> None:
    """Alias of `campaigns web` (the same service) on the receiver's old default port 8090,
    kept for the scripts that call it."""
    _serve_web(host, port)


@services_app.command("status")
def services_status(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Show whether the embedded servers of the data folder run, and their URLs."""
    from campaigns.local.postgres import EmbeddedPostgres
    from campaigns.local.redis import EmbeddedRedis

    data_dir = Settings.from_env().data_dir.absolute()
    postgres, redis = EmbeddedPostgres(data_dir / "postgres"), EmbeddedRedis(data_dir / "redis")
    info = {
        "data_dir": str(data_dir),
        "postgres": {
            "running": postgres.is_running(),
            "url": postgres.url("campaigns") if postgres.is_running() else None,
        },
        "redis": {
            "running": redis.is_running(),
            "url": redis.url() if redis.is_running() else None,
        },
    }
    if as_json:
        emit_json(info)
        return
    for name in ("postgres", "redis"):
        server = info[name]
        assert isinstance(server, dict)
        state = f"running at {server['url']}" if server["running"] else "not running"
        console.print(f"{name}: {state}", markup=False)


@services_app.command("stop")
def services_stop(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Stop the embedded PostgreSQL and Redis of the data folder (the next command that needs
    them starts them again). Servers given by URL are never touched."""
    from campaigns.local.postgres import EmbeddedPostgres
    from campaigns.local.redis import EmbeddedRedis

    data_dir = Settings.from_env().data_dir.absolute()
    postgres, redis = EmbeddedPostgres(data_dir / "postgres"), EmbeddedRedis(data_dir / "redis")
    stopped = []
    if postgres.is_running():
        postgres.stop()
        stopped.append("postgres")
    if redis.is_running():
        redis.stop()
        stopped.append("redis")
    if as_json:
        emit_json({"data_dir": str(data_dir), "stopped": stopped})
    elif stopped:
        console.print(f"stopped {' and '.join(stopped)} in {data_dir}", markup=False)
    else:
        console.print(f"no embedded server runs in {data_dir}", markup=False)
