"""tether runs list|show|cancel|replay|watch|export."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click
import grpc

from controlplane.cli import _format
from controlplane.cli._client import make_remote, remote_options
from tether.v1 import common_pb2, run_service_pb2


def _run_filters(fn: Any) -> Any:
    """--function, --app and --status (repeatable): which runs a listing takes."""
    for option in reversed(
        [
            click.option(
                "--function", "function_id", default="", help="Only runs of this function."
            ),
            click.option("--app", "app_id", default="", help="Only runs of this app."),
            click.option(
                "--status",
                "statuses",
                multiple=True,
                type=click.Choice(sorted(_format.STATUS_BY_NAME)),
                help="Only runs in this state (repeatable).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@click.group()
def runs() -> None:
    """Inspect and administer runs."""


@runs.command("list")
@_run_filters
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--page-token", default="", help="Continue from a previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@remote_options
def list_runs(
    function_id: str,
    app_id: str,
    statuses: tuple[str, ...],
    limit: int,
    page_token: str,
    as_json: bool,
    address: str,
    api_key: str | None,
    tls: bool | None,
) -> None:
    """Recent runs, newest first."""
    remote = make_remote(address, api_key, tls)
    request = run_service_pb2.ListRunsRequest(
        app_id=app_id,
        function_id=function_id,
        statuses=[_format.STATUS_BY_NAME[s] for s in statuses],  # type: ignore[misc]
        page_size=limit,
        page_token=page_token,
    )
    with remote.runs() as stub:
        response = stub.ListRuns(request, metadata=remote.metadata)
    if as_json:
        click.echo(
            _format.dump(
                {
                    "runs": [_format.run_json(r) for r in response.runs],
                    "next_page_token": response.next_page_token or None,
                }
            )
        )
        return
    if not response.runs:
        click.echo("no runs")
        return
    click.echo(_format.runs_table(list(response.runs)))
    if response.next_page_token:
        click.echo(f"\nmore: --page-token {response.next_page_token}")


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@remote_options
def show_run(
    run_id: str, as_json: bool, address: str, api_key: str | None, tls: bool | None
) -> None:
    """A run's timeline: each step, attempt and sleep, with durations and results."""
    remote = make_remote(address, api_key, tls)
    with remote.runs() as stub:
        response = stub.GetRun(
            run_service_pb2.GetRunRequest(run_id=run_id), metadata=remote.metadata
        )
    if as_json:
        click.echo(_format.dump(_format.run_detail_json(response)))
    else:
        click.echo(_format.timeline(response))


class _UtcTime(click.ParamType[int]):
    """An ISO 8601 time (``2026-11-24``, ``2026-11-24 09:30:00.250``, ``...Z``,
    ``...+01:00``) as epoch milliseconds; times without an offset are UTC."""

    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        try:
            parsed = dt.datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time like '2026-11-24 09:30:00'", param, ctx)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return int(parsed.timestamp() * 1000)


@runs.command("cancel")
@click.argument("run_id", required=False)
@click.option("--reason", default="cancelled from the CLI", show_default=True)
@click.option(
    "--function", "function_id", default="", help="Cancel every unfinished run of this function."
)
@click.option("--app", "app_id", default="", help="The function's app (with --function).")
@click.option(
    "--created-after",
    type=_UtcTime(),
    default=0,
    help="With --function: only runs created at or after this time (ISO 8601; UTC unless it "
    "says otherwise).",
)
@click.option(
    "--created-before",
    type=_UtcTime(),
    default=0,
    help="With --function: only runs created before this time (ISO 8601; UTC unless it "
    "says otherwise).",
)
@remote_options
def cancel_run(
    run_id: str | None,
    reason: str,
    function_id: str,
    app_id: str,
    created_after: int,
    created_before: int,
    address: str,
    api_key: str | None,
    tls: bool | None,
) -> None:
    """Cancel a run (it starts no further step), or with --function and --app
    every unfinished run of a function created in a time range."""
    remote = make_remote(address, api_key, tls)
    if run_id and function_id:
        raise click.UsageError("give a RUN_ID or --function, not both")
    if function_id:
        if not app_id:
            raise click.UsageError("--function needs --app (function ids are unique per app)")
        request = run_service_pb2.CancelRunsRequest(
            app_id=app_id,
            function_id=function_id,
            created_after_ms=created_after,
            created_before_ms=created_before,
            reason=reason,
        )
        click.echo(f"cancelling unfinished runs of {app_id}/{function_id}...", err=True)
        with remote.runs() as stub:
            response = stub.CancelRuns(request, metadata=remote.metadata)
        click.echo(f"cancelled {response.cancelled} run(s)")
        return
    if not run_id:
        raise click.UsageError("give the RUN_ID to cancel, or --function and --app")
    with remote.runs() as stub:
        cancelled = stub.CancelRun(
            run_service_pb2.CancelRunRequest(run_id=run_id, reason=reason), metadata=remote.metadata
        )
    click.echo(f"run {cancelled.run.id} {_format.styled_status(cancelled.run.status)}")


@runs.command("replay")
@click.argument("run_id")
@click.option(
    "--from-failed-step",
    is_flag=True,
    help="Keep the steps that completed before the failed one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@remote_options
def replay_run(
    run_id: str,
    from_failed_step: bool,
    as_json: bool,
    address: str,
    api_key: str | None,
    tls: bool | None,
) -> None:
    """Start a new run of the same function with the same event."""
    mode = (
        run_service_pb2.REPLAY_MODE_FROM_FAILED_STEP
        if from_failed_step
        else run_service_pb2.REPLAY_MODE_FROM_START
    )
    remote = make_remote(address, api_key, tls)
    with remote.runs() as stub:
        response = stub.ReplayRun(
            run_service_pb2.ReplayRunRequest(run_id=run_id, mode=mode), metadata=remote.metadata
        )
    if as_json:
        click.echo(_format.dump(_format.run_json(response.run)))
        return
    click.echo(
        f"started run {response.run.id} replaying {run_id}   (tether runs watch {response.run.id})"
    )


@runs.command("watch")
@click.argument("run_id")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@remote_options
def watch_run(
    run_id: str, timeout: float | None, address: str, api_key: str | None, tls: bool | None
) -> None:
    """Follow a run's status until it finishes, then print its timeline."""
    remote = make_remote(address, api_key, tls)
    with remote.runs() as stub:
        try:
            for update in stub.WaitRun(
                run_service_pb2.WaitRunRequest(run_id=run_id),
                metadata=remote.metadata,
                timeout=timeout,
            ):
                run = update.run
                now = dt.datetime.now().strftime("%H:%M:%S")
                click.echo(f"{now}  run {run.id} {_format.styled_status(run.status)}")
        except grpc.RpcError as error:
            if isinstance(error, grpc.Call) and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise click.ClickException(
                    f"run {run_id} did not finish within {timeout} s"
                ) from None
            raise
        response = stub.GetRun(
            run_service_pb2.GetRunRequest(run_id=run_id), metadata=remote.metadata
        )
    click.echo("")
    click.echo(_format.timeline(response))
    if response.run.status != common_pb2.RUN_STATUS_COMPLETED:
        # Scripts can tell a run that did not complete from one that did.
        raise SystemExit(1)


@runs.command("export")
@_run_filters
@click.option("--created-after", type=_UtcTime(), default=0, help="Created at or after (UTC).")
@click.option("--created-before", type=_UtcTime(), default=0, help="Created before (UTC).")
@click.option(
    "--output",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="Where to write (default: standard output).",
)
@remote_options
def export_runs(
    function_id: str,
    app_id: str,
    statuses: tuple[str, ...],
    created_after: int,
    created_before: int,
    output: Any,
    address: str,
    api_key: str | None,
    tls: bool | None,
) -> None:
    """Runs with their events, steps and history, one JSON object per line
    (as 'runs show --json' prints them): for archiving before retention
    deletes them."""
    remote = make_remote(address, api_key, tls)
    request = run_service_pb2.ListRunsRequest(
        app_id=app_id,
        function_id=function_id,
        statuses=[_format.STATUS_BY_NAME[s] for s in statuses],  # type: ignore[misc]
        created_after_ms=created_after,
        created_before_ms=created_before,
        page_size=_EXPORT_PAGE,
    )
    written = 0
    with remote.runs() as stub:
        while True:
            page = stub.ListRuns(request, metadata=remote.metadata)
            for run in page.runs:
                detail = stub.GetRun(
                    run_service_pb2.GetRunRequest(run_id=run.id), metadata=remote.metadata
                )
                output.write(json.dumps(_format.run_detail_json(detail), ensure_ascii=False))
                output.write("\n")
                written += 1
            if not page.next_page_token:
                break
            request.page_token = page.next_page_token
    click.echo(f"exported {written} run(s)", err=True)


_EXPORT_PAGE = 500
