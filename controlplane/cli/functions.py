"""tether functions list|pause|resume."""

from __future__ import annotations

import click

from controlplane.cli import _format
from controlplane.cli._client import make_remote, remote_options
from tether.v1 import clock_service_pb2, run_service_pb2


@click.group()
def functions() -> None:
    """Inspect, pause and resume registered functions."""


@functions.command("list")
@click.option("--app", "app_id", default="", help="Only this app's functions.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@remote_options
def list_functions(
    app_id: str, as_json: bool, address: str, api_key: str | None, tls: bool | None
) -> None:
    """Every function the control plane knows: its triggers (with the next cron
    tick), workers, whether it is paused, and its flow control."""
    remote = make_remote(address, api_key, tls)
    with remote.runs() as stub:
        response = stub.ListFunctions(
            run_service_pb2.ListFunctionsRequest(app_id=app_id), metadata=remote.metadata
        )
    if as_json:
        click.echo(_format.dump([_format.function_json(f) for f in response.functions]))
        return
    if not response.functions:
        if app_id:
            click.echo(f"no functions registered for app {app_id!r}")
        else:
            click.echo("no functions registered yet: start a worker ('tether worker module:app')")
        return
    now_ms = 0
    if any(ms for f in response.functions for ms in f.next_fire_ms):
        # Next ticks are in the control plane's clock, which may be virtual.
        with remote.clock() as clock:
            now_ms = clock.GetTime(
                clock_service_pb2.GetTimeRequest(), metadata=remote.metadata
            ).now_ms
    click.echo(_format.functions_table(list(response.functions), now_ms))


@functions.command("pause")
@click.argument("function_id", metavar="FUNCTION")
@click.option("--app", "app_id", required=True, help="The function's app.")
@click.option(
    "--skip",
    is_flag=True,
    help="New events start nothing (each is recorded as skipped) instead of queueing "
    "runs held until the resume.",
)
@remote_options
def pause_function(
    function_id: str, app_id: str, skip: bool, address: str, api_key: str | None, tls: bool | None
) -> None:
    """Pause a function: its runs start no execution until it is resumed (a step
    already running finishes). By default new events queue runs that are held."""
    mode = run_service_pb2.PAUSE_MODE_SKIP if skip else run_service_pb2.PAUSE_MODE_HOLD
    remote = make_remote(address, api_key, tls)
    with remote.runs() as stub:
        stub.PauseFunction(
            run_service_pb2.PauseFunctionRequest(app_id=app_id, function_id=function_id, mode=mode),
            metadata=remote.metadata,
        )
    then = (
        "new events start nothing and are recorded as skipped"
        if skip
        else "new events queue runs that are held until it is resumed"
    )
    click.echo(
        f"paused {app_id}/{function_id}: its runs start no execution; {then}\n"
        f"resume it with: tether functions resume {function_id} --app {app_id}"
    )


@functions.command("resume")
@click.argument("function_id", metavar="FUNCTION")
@click.option("--app", "app_id", required=True, help="The function's app.")
@remote_options
def resume_function(
    function_id: str, app_id: str, address: str, api_key: str | None, tls: bool | None
) -> None:
    """Resume a paused function: held runs start in the order they were due."""
    remote = make_remote(address, api_key, tls)
    with remote.runs() as stub:
        response = stub.ResumeFunction(
            run_service_pb2.ResumeFunctionRequest(app_id=app_id, function_id=function_id),
            metadata=remote.metadata,
        )
    released = response.released_runs
    click.echo(
        f"resumed {app_id}/{function_id}: {released} held run{'' if released == 1 else 's'} "
        "released"
    )
