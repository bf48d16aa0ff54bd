"""tether env create|list|delete: environments, managed on the database (see
_store.py for who may). Running control planes start or stop serving one
within seconds, without a restart."""

from __future__ import annotations

import json
import time

import click

from controlplane.cli._store import db_option, on_store
from controlplane.engine.clock import SystemClock


@click.group("env")
def environments() -> None:
    """Environments: each has its own functions, events, runs and keys."""


@environments.command("create")
@click.argument("name")
@db_option
def create(name: str, db: str) -> None:
    """Create an environment (then give it keys: tether keys create --env NAME)."""
    from controlplane.access.environments import create_environment

    on_store(db, lambda store: create_environment(store, name, now_ms=SystemClock().now_ms()))
    click.echo(f"created environment {name}")


@environments.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@db_option
def list_environments(as_json: bool, db: str) -> None:
    """The environments, the default first."""
    from controlplane.access.environments import list_environments

    for environment in on_store(db, list_environments):
        if as_json:
            click.echo(
                json.dumps({"name": environment.name, "created_at_ms": environment.created_at_ms})
            )
        else:
            click.echo(environment.name)


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
