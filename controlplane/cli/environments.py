"""tether env create|list|delete: environments, managed on the database (see
_store.py for who may). Running control planes start or stop serving one
within seconds, without a restart."""

from __future__ import annotations

import json
import time

import click

from controlplane.cli._store import db_option, on_store
from controlplane.config import parse_retention
from controlplane.engine.clock import SystemClock
from controlplane.engine.settings import format_duration
from controlplane.model.access import FOREVER


@click.group("env")
def environments() -> None:
    """Environments: each has its own functions, events, runs and keys."""


def _retention(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    """The environment's own retention: None (the control plane's), or ms, or FOREVER."""
    if value is None:
        return None
    try:
        ms = parse_retention(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    return FOREVER if ms is None else ms


@environments.command("create")
@click.argument("name")
@click.option(
    "--retention",
    "retention_ms",
    callback=_retention,
    help="Keep its finished runs this long ('30d', 'forever'); default: the control "
    "plane's --retention.",
)
@db_option
def create(name: str, retention_ms: int | None, db: str) -> None:
    """Create an environment (then give it keys: tether keys create --env NAME)."""
    from controlplane.access.environments import create_environment

    now = SystemClock().now_ms()
    on_store(
        db, lambda store: create_environment(store, name, now_ms=now, retention_ms=retention_ms)
    )
    click.echo(f"created environment {name}")


@environments.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@db_option
def list_environments(as_json: bool, db: str) -> None:
    """The environments, the default first."""
    from controlplane.access.environments import list_environments

    for environment in on_store(db, list_environments):
        retention = environment.retention_ms
        shown = (
            "default retention"
            if retention is None
            else "kept forever"
            if retention == FOREVER
            else f"kept {format_duration(retention)}"
        )
        if as_json:
            line = {
                "name": environment.name,
                "created_at_ms": environment.created_at_ms,
                "retention_ms": retention,
            }
            click.echo(json.dumps(line))
        else:
            click.echo(f"{environment.name:<32}  {shown}")


@environments.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@db_option
def delete(name: str, yes: bool, db: str) -> None:
    """Delete an environment with everything in it: its keys stop working at
    once, control planes stop serving it, then its data is deleted."""
    from controlplane.access.environments import (
        REFRESH_S,
        delete_environment,
        drop_environment_data,
    )

    if not yes:
        click.confirm(
            f"Delete environment {name!r} with all its functions, events, runs and keys?",
            abort=True,
        )
    on_store(db, lambda store: delete_environment(store, name, now_ms=SystemClock().now_ms()))
    click.echo(f"deleted environment {name}; its keys are revoked", err=True)
    # Running control planes close it on notice (PostgreSQL) or at their next
    # look at the list; its data goes after that.
    grace_s = REFRESH_S + 1.0
    click.echo(f"waiting {grace_s:.0f} s for running control planes to stop serving it", err=True)
    time.sleep(grace_s)
    drop_environment_data(db, name)
    click.echo(f"deleted the data of environment {name}")
