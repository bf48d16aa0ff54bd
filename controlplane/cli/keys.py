"""tether keys create|list|rotate|revoke: API keys of an environment, managed
on the database (see _store.py for who may). Running control planes see a
change within seconds, without a restart.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from controlplane.cli._store import db_option, on_store
from controlplane.engine.clock import SystemClock
from controlplane.model.access import DEFAULT_ENVIRONMENT, ApiKey, Role

T = TypeVar("T")

_env_option = click.option(
    "--env",
    "environment",
    default=DEFAULT_ENVIRONMENT,
    show_default=True,
    help="The environment the keys belong to (tether env list).",
)


def _with_ring(work: Callable[..., Awaitable[T]], db: str) -> T:
    from controlplane.access.keys import KeyRing

    return on_store(db, lambda store: work(KeyRing(store)))


def _shown(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "name": key.name,
        "role": key.role.value,
        "apps": list(key.apps),
        "created_at_ms": key.created_at_ms,
        "revoked_at_ms": key.revoked_at_ms,
    }


def _print_secret(key: ApiKey, secret: str) -> None:
    """The secret alone on stdout (so that ``> file`` makes a key file); what
    it is on stderr."""
    click.echo(
        f"created key {key.id} ({key.role}{', apps ' + ', '.join(key.apps) if key.apps else ''})",
        err=True,
    )
    click.echo(secret)
    click.echo(
        "This is the only time the key is shown: store it now "
        "(TETHER_API_KEY, or a file for TETHER_API_KEY_FILE).",
        err=True,
    )


@click.group()
def keys() -> None:
    """API keys with roles: send, worker (optionally bound to apps), read, admin."""


@keys.command("create")
@click.option("--name", required=True, help="What the key is for, e.g. 'shop workers'.")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--app", "apps", multiple=True, help="Worker keys: an app it may serve (repeatable).")
@_env_option
@db_option
def create(name: str, role: str, apps: tuple[str, ...], environment: str, db: str) -> None:
    """Create a key; its secret is printed once."""
    key, secret = _with_ring(
        lambda ring: ring.create(
            name, Role(role), apps, now_ms=SystemClock().now_ms(), environment=environment
        ),
        db,
    )
    _print_secret(key, secret)


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_env_option
@db_option
def list_keys(include_revoked: bool, as_json: bool, environment: str, db: str) -> None:
    """The keys (never their secrets)."""
    found = _with_ring(
        lambda ring: ring.list(include_revoked=include_revoked, environment=environment), db
    )
    for key in found:
        if as_json:
            click.echo(json.dumps(_shown(key)))
        else:
            state = "revoked" if key.revoked_at_ms else "active"
            apps = ",".join(key.apps) or "-"
            click.echo(f"{key.id}  {key.role:<6}  {apps:<20}  {state:<7}  {key.name}")


@keys.command("rotate")
@click.argument("key_id")
@_env_option
@db_option
def rotate(key_id: str, environment: str, db: str) -> None:
    """Replace a key with a new secret (same name, role and apps); the old one
    stops working at once."""
    key, secret = _with_ring(
        lambda ring: ring.rotate(key_id, now_ms=SystemClock().now_ms(), environment=environment), db
    )
    _print_secret(key, secret)


@keys.command("revoke")
@click.argument("key_id")
@_env_option
@db_option
def revoke(key_id: str, environment: str, db: str) -> None:
    """Revoke a key: calls with it are refused from now on."""
    _with_ring(
        lambda ring: ring.revoke(key_id, now_ms=SystemClock().now_ms(), environment=environment), db
    )
    click.echo(f"revoked key {key_id}")
