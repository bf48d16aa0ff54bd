"""tether dev, tether server, tether worker, tether migrate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from controlplane.cli import _logging
from controlplane.config import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    DEV_DATABASE,
    Config,
    grpc_address,
    is_loopback,
    parse_retention,
    read_key_file,
)

# The control plane itself (SQLAlchemy, Alembic, gRPC servers) is imported by the
# commands that run it, so that client commands start quickly.

log = logging.getLogger("tether")
F = TypeVar("F", bound=Callable[..., Any])

_http_options = [
    click.option(
        "--http-port",
        default=DEFAULT_HTTP_PORT,
        show_default=True,
        type=click.IntRange(0, 65535),
        envvar="TETHER_HTTP_PORT",
        help="Port of the dev UI, JSON API, /metrics and /healthz (0: any free port).",
    ),
    click.option("--no-http", is_flag=True, help="Serve no HTTP (gRPC only)."),
]

_log_options = [
    click.option(
        "--log-level",
        default="info",
        show_default=True,
        type=click.Choice(["debug", "info", "warning", "error"]),
    ),
    click.option(
        "--log-format", default="text", show_default=True, type=click.Choice(["text", "json"])
    ),
]


def _with_options(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _retention(_ctx: click.Context, _param: click.Parameter, value: str) -> int | None:
    try:
        return parse_retention(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _retention_option(default: str) -> Callable[[F], F]:
    return click.option(
        "--retention",
        "retention_ms",
        default=default,
        show_default=True,
        envvar="TETHER_RETENTION",
        callback=_retention,
        help="Delete finished runs (with their steps and history) and the events nothing "
        "needs this long after they ended: '7d', '36h', or 'forever' (TETHER_RETENTION). "
        "An environment may set its own (tether env create --retention).",
    )


_with_log_options = _with_options(_log_options)
_with_http_options = _with_options(_http_options)


@click.command()
@click.option(
    "--db",
    default=DEV_DATABASE,
    envvar="TETHER_DATABASE_URL",
    show_default=True,
    help="SQLAlchemy URL of the store.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Loopback address to listen on (127.0.0.1, ::1 or localhost): the dev server has no "
    "authentication; use 'tether server' to serve other machines.",
)
@click.option("--port", default=DEFAULT_GRPC_PORT, show_default=True, type=int, help="gRPC port.")
@click.option(
    "--worker",
    "workers",
    multiple=True,
    metavar="MODULE:APP",
    help="Also run a worker for this app (repeatable); restarted if it crashes.",
)
@click.option(
    "--worker-command",
    "worker_commands",
    multiple=True,
    metavar="COMMAND",
    help="Also run this worker command, in any language, for example "
    "'node --import tsx worker.ts' (repeatable); restarted if it crashes.",
)
@click.option(
    "--app-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where workers import their modules from.",
)
@click.option(
    "--clock", default="system", show_default=True, type=click.Choice(["system", "virtual"])
)
@_retention_option("1d")
@_with_http_options
@_with_log_options
def dev(
    db: str,
    host: str,
    port: int,
    workers: tuple[str, ...],
    worker_commands: tuple[str, ...],
    app_dir: str,
    clock: str,
    retention_ms: int | None,
    http_port: int,
    no_http: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Run a control plane for development: SQLite under ./.tether, the dev UI,
    readable logs."""
    if not is_loopback(host):
        raise click.BadParameter(
            f"{host or 'every interface'} is not a loopback address: tether dev has no "
            "authentication and listens on 127.0.0.1, ::1 or localhost only; to serve other "
            "machines run 'tether server' (with --api-key)",
            param_hint="--host",
        )
    _logging.configure(log_level, log_format)
    config = _config(
        db_url=db,
        host=host,
        port=port,
        clock=clock,
        http_port=None if no_http else http_port,
        retention_ms=retention_ms,
    )
    commands = [[sys.executable, "-m", "tether", spec] for spec in workers]
    commands += [shlex.split(command) for command in worker_commands]
    asyncio.run(_dev(config, commands, Path(app_dir)))


async def _dev(config: Config, workers: list[list[str]], app_dir: Path) -> None:
    from controlplane.app import ControlPlane

    plane = ControlPlane(config)
    try:
        await plane.start()
    except OSError as error:
        raise click.ClickException(
            f"{error}. Is another control plane running? Choose other ports with --port and "
            "--http-port."
        ) from None
    address = grpc_address(config.host, plane.port)
    click.echo(_dev_banner(config, address, plane.http_port, workers), err=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in ("SIGINT", "SIGTERM"):
        loop.add_signal_handler(getattr(__import__("signal"), sig), stop.set)
    supervisors = [
        asyncio.create_task(_supervise(command, address, app_dir, stop)) for command in workers
    ]
    await stop.wait()
    log.info("shutting down")
    await asyncio.gather(*supervisors, return_exceptions=True)
    await plane.stop()


def _dev_banner(
    config: Config, address: str, http_port: int | None, workers: list[list[str]]
) -> str:
    host = "localhost" if config.host in ("0.0.0.0", "::", "127.0.0.1") else config.host
    lines = ["", click.style("Tether dev server", bold=True)]
    if http_port is not None:
        ui = click.style(f"http://{host}:{http_port}", fg="cyan", underline=True)
        lines.append(f"  dev UI          {ui}")
    lines += [
        f"  gRPC            {address}  (TETHER_ADDRESS for workers and the CLI)",
        f"  database        {config.db_url}",
        f"  clock           {config.clock}",
        "  workers         "
        + (", ".join(_worker_name(w) for w in workers) if workers else "none started here"),
        "",
        "  send an event   tether send NAME --data JSON",
        "  watch runs      tether runs list  ·  tether runs watch RUN_ID",
        "  functions       tether functions list",
        "",
    ]
    return "\n".join(lines)


def _worker_name(command: list[str]) -> str:
    """``module:app`` for a Python worker, else the command as typed."""
    if command[:3] == [sys.executable, "-m", "tether"]:
        return command[3]
    return shlex.join(command)


async def _supervise(command: list[str], address: str, app_dir: Path, stop: asyncio.Event) -> None:
    """Run a worker command and restart it if it dies, until ``stop``."""
    env = dict(os.environ, TETHER_ADDRESS=address)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(app_dir.resolve()), env.get("PYTHONPATH")])
    )
    while not stop.is_set():
        # Its own session: a Ctrl-C in the terminal reaches only `tether dev`,
        # which then asks the worker once (SIGTERM) to drain.
        try:
            process = await asyncio.create_subprocess_exec(
                *command, env=env, cwd=str(app_dir), start_new_session=True
            )
        except OSError as error:
            log.error("cannot start worker %s: %s", _worker_name(command), error)
            return
        waiter = asyncio.create_task(process.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(waiter, 30)
                except TimeoutError:
                    process.kill()
            stopper.cancel()
            return
        stopper.cancel()
        log.warning(
            "worker %s exited with code %s; restarting in 2 s",
            _worker_name(command),
            process.returncode,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2)


@click.command()
@click.option(
    "--db",
    envvar="TETHER_DATABASE_URL",
    required=True,
    help="SQLAlchemy URL: sqlite:///path.db or postgresql+psycopg://user@host/db "
    "(TETHER_DATABASE_URL).",
)
@click.option(
    "--host",
    default="0.0.0.0",
    show_default=True,
    help="Address of both ports. Without an API key (or --tls-client-ca) only "
    "loopback is allowed (127.0.0.1, ::1, localhost) unless --insecure-no-auth.",
)
@click.option(
    "--port",
    default=DEFAULT_GRPC_PORT,
    show_default=True,
    type=int,
    envvar="TETHER_PORT",
    help="gRPC port (TETHER_PORT).",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="TETHER_TLS_CERT",
    help="PEM certificate (chain): serve TLS on the gRPC port and HTTPS on the HTTP port "
    "(TETHER_TLS_CERT).",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="TETHER_TLS_KEY",
    help="Unencrypted PEM private key of --tls-cert (TETHER_TLS_KEY).",
)
@click.option(
    "--tls-client-ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="TETHER_TLS_CLIENT_CA",
    help="PEM CA certificate(s): require mutual TLS, so that every client of both ports "
    "(workers, CLI, browsers) presents a certificate signed by it; needs --tls-cert and "
    "--tls-key (TETHER_TLS_CLIENT_CA).",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    envvar="TETHER_API_KEYS",
    help="Require this bearer token (repeatable; TETHER_API_KEYS, space-separated).",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="TETHER_API_KEYS_FILE",
    default=None,
    help="A file of admin keys, one per line (TETHER_API_KEYS_FILE): a mounted secret, "
    "kept out of the process list and the environment.",
)
@click.option(
    "--outage-window",
    "outage_window_s",
    default=30,
    show_default=True,
    type=click.IntRange(0, 600),
    envvar="TETHER_OUTAGE_WINDOW",
    help="Seconds that workers' outcomes and heartbeats wait out a database outage, "
    "unacknowledged, before their executions are given up (0: at once).",
)
@click.option(
    "--metrics-need-key",
    is_flag=True,
    envvar="TETHER_METRICS_NEED_KEY",
    help="GET /metrics needs a 'read' or 'admin' key of the default environment, as the "
    "JSON API does (TETHER_METRICS_NEED_KEY); otherwise it is open, like /healthz.",
)
@click.option(
    "--insecure-no-auth",
    is_flag=True,
    envvar="TETHER_INSECURE_NO_AUTH",
    help="Allow listening on a non-loopback --host with no API key and no client CA: anyone "
    "who can reach the ports can send events and control runs (TETHER_INSECURE_NO_AUTH).",
)
@click.option(
    "--sqlite-synchronous",
    default="FULL",
    show_default=True,
    type=click.Choice(["OFF", "NORMAL", "FULL", "EXTRA"], case_sensitive=False),
)
@click.option("--heartbeat-ms", default=3000, show_default=True, type=click.IntRange(100))
@click.option("--lease-timeout-ms", default=15000, show_default=True, type=click.IntRange(200))
@click.option(
    "--clock", default="system", show_default=True, type=click.Choice(["system", "virtual"])
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='Write {"grpc_port": ..., "http_port": ...} here once listening (for tools and tests).',
)
@_retention_option("7d")
@_with_http_options
@_with_log_options
def server(
    db: str,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    api_keys: tuple[str, ...],
    api_key_file: Path | None,
    outage_window_s: int,
    metrics_need_key: bool,
    insecure_no_auth: bool,
    sqlite_synchronous: str,
    heartbeat_ms: int,
    lease_timeout_ms: int,
    clock: str,
    ready_file: Path | None,
    retention_ms: int | None,
    http_port: int,
    no_http: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Run a control plane for production.

    With --tls-cert and --tls-key both ports speak TLS (gRPC and HTTPS); with
    --tls-client-ca clients of both must present a certificate from that CA.
    Without an API key it listens on loopback only, unless --insecure-no-auth.
    """
    _logging.configure(log_level, log_format)
    keys = tuple(k for raw in api_keys for k in raw.split() if k)
    if keys and click.get_current_context().get_parameter_source("api_keys") is (
        click.core.ParameterSource.COMMANDLINE
    ):
        log.warning(
            "API keys given on the command line show in the process list: set "
            "TETHER_API_KEYS or --api-key-file instead, or create stored keys with "
            "'tether keys create'"
        )
    if api_key_file is not None:
        try:
            keys += read_key_file(api_key_file)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
    config = _config(
        db_url=db,
        stored_keys=not keys and not is_loopback(host) and _holds_keys(db),
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        api_keys=keys,
        insecure_no_auth=insecure_no_auth,
        metrics_need_key=metrics_need_key,
        outage_window_s=float(outage_window_s),
        retention_ms=retention_ms,
        sqlite_synchronous=sqlite_synchronous.upper(),
        heartbeat_interval_ms=heartbeat_ms,
        lease_timeout_ms=lease_timeout_ms,
        clock=clock,
        ready_file=ready_file,
        http_port=None if no_http else http_port,
    )
    if not config.authenticated and not is_loopback(config.host):
        log.warning(
            "--insecure-no-auth: serving %s with no API key and no client certificates; anyone "
            "who can reach it can send events and control runs",
            config.host or "every interface",
        )
    from controlplane.app import ControlPlane

    try:
        asyncio.run(ControlPlane(config).run_until_signalled())
    except OSError as error:
        raise click.ClickException(str(error)) from None


def _holds_keys(db: str) -> bool:
    """Whether the store already holds API keys (a store that cannot be read
    counts as holding none: the guard then refuses, and the start says why)."""
    from controlplane.store.keys_tx import holds_active_keys

    try:
        return holds_active_keys(db)
    except Exception:
        return False


def _config(**kwargs: object) -> Config:
    try:
        return Config(**kwargs)  # type: ignore[arg-type]
    except ValueError as error:
        raise click.ClickException(str(error)) from None


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("target", metavar="MODULE:APP")
@click.option(
    "--capacity",
    default=100,
    show_default=True,
    type=click.IntRange(1),
    help="Most executions at once.",
)
@click.option(
    "--app-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory to import MODULE from.",
)
def worker(target: str, capacity: int, app_dir: str) -> None:
    """Serve the functions of the Tether app at MODULE:APP (e.g. myapp.worker:app)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(app_dir).resolve()), env.get("PYTHONPATH")])
    )
    # The SDK runs the worker; the control plane never imports user code.
    args = [sys.executable, "-m", "tether", target, "--capacity", str(capacity)]
    os.execve(sys.executable, args, env)


@click.command("migrate")
@click.option("--db", default=DEV_DATABASE, envvar="TETHER_DATABASE_URL", show_default=True)
def migrate_command(db: str) -> None:
    """Create or upgrade the database schema."""
    from controlplane.store import migrate, open_store

    try:
        store = open_store(db)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    revision = migrate(store.engine)
    store.engine.dispose()
    click.echo(f"schema is at revision {revision}")
