"""tether functions list."""

from __future__ import annotations

import click

from controlplane.cli import _format
from controlplane.cli._client import make_remote, remote_options
from tether.v1 import run_service_pb2


@click.group()
def functions() -> None:
    """Inspect registered functions."""


@functions.command("list")
@click.option("--app", "app_id", default="", help="Only this app's functions.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@remote_options
def list_functions(
    app_id: str, as_json: bool, address: str, api_key: str | None, tls: bool | None
) -> None:
    """Every function the control plane knows, with its triggers and workers."""
    remote = make_remote(address, api_key, tls)
    with remote.runs() as stub:
        response = stub.ListFunctions(
            run_service_pb2.ListFunctionsRequest(app_id=app_id), metadata=remote.metadata
        )
    items = [_format.function_json(f) for f in response.functions]
    if as_json:
        click.echo(_format.dump(items))
        return
    if not items:
        if app_id:
            click.echo(f"no functions registered for app {app_id!r}")
        else:
            click.echo("no functions registered yet: start a worker ('tether worker module:app')")
        return
    rows = []
    for item in items:
        triggers = ", ".join(
            t["event"] + (f" if {t['if']}" if t.get("if") else "")
            if "event" in t
            else f"cron {t['cron']}"
            for t in item["triggers"]
        )
        workers = item["connected_workers"]
        shown = click.style(str(workers), fg="green") if workers else click.style("0", fg="yellow")
        rows.append([item["app_id"], item["id"], triggers, str(item["retries"]), shown])
    click.echo(_format.table(["APP", "FUNCTION", "TRIGGERS", "RETRIES", "WORKERS"], rows))
