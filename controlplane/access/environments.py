"""Environments: the unit of isolation (Temporal calls them namespaces).

Each environment has a store of its own, so nothing in one can see or touch
anything in another: on SQLite a file next to the default one
(``tether.db`` → ``tether.env-prod.db``), on PostgreSQL a schema
(``tether_env_prod``) in the same database. The default environment's store
lists the others and holds every environment's API keys.

A control plane serves every environment listed, each with an engine of its
own; a caller's key says which one its calls reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import make_url

from controlplane.engine.engine import Engine
from controlplane.model.access import DEFAULT_ENVIRONMENT, Environment
from controlplane.model.errors import FailedPrecondition, InvalidArgument, NotFound
from controlplane.store import Store

log = logging.getLogger("tether")

MAX_ENVIRONMENT_NAME = 32
_NAME = re.compile(r"[a-z][a-z0-9-]*")
# How often the list of environments is read again (another process created
# or deleted one); an unknown environment of a valid key is looked for at once.
REFRESH_S = 5.0


def environment_problem(name: str) -> str | None:
    """Why ``name`` cannot name an environment, or None."""
    if len(name) > MAX_ENVIRONMENT_NAME or not _NAME.fullmatch(name):
        return (
            f"invalid environment name {name[:64]!r}: use 1 to {MAX_ENVIRONMENT_NAME} "
            "lowercase letters, digits and '-', starting with a letter"
        )
    return None


def store_location(home_url: str, name: str) -> tuple[str, str | None]:
    """(database URL, PostgreSQL schema) of environment ``name``'s store, for a
    control plane whose default environment is at ``home_url``."""
    if name == DEFAULT_ENVIRONMENT:
        return home_url, None
    parsed = make_url(home_url)
    if parsed.get_backend_name() == "postgresql":
        return home_url, "tether_env_" + name.replace("-", "_")
    database = parsed.database or ""
    if database in ("", ":memory:"):
        raise FailedPrecondition("environments need a database file, not an in-memory database")
    path = Path(database)
    env_path = path.with_name(f"{path.stem}.env-{name}{path.suffix or '.db'}")
    return parsed.set(database=str(env_path)).render_as_string(hide_password=False), None


def checked_name(name: str) -> str:
    problem = environment_problem(name)
    if problem:
        raise InvalidArgument(problem)
    return name


async def create_environment(
    home: Store, name: str, *, now_ms: int, retention_ms: int | None = None
) -> Environment:
    """List a new environment in the default store (its own store is made by
    whoever opens it first); ``retention_ms`` overrides the control planes'
    retention (FOREVER keeps its runs)."""
    if checked_name(name) == DEFAULT_ENVIRONMENT:
        raise InvalidArgument("the default environment always exists")
    store_location(home.url, name)  # refuses a store that cannot have others
    environment = Environment(name, now_ms, retention_ms)
    if not await home.write(lambda tx: tx.add_environment(environment)):
        raise InvalidArgument(f"an environment named {name!r} already exists")
    home.announce("environments")
    return environment


async def list_environments(home: Store) -> list[Environment]:
    """Every environment, the default first."""
    listed = await home.read(lambda r: r.environments())
    return [Environment(DEFAULT_ENVIRONMENT, 0), *listed]


async def delete_environment(home: Store, name: str, *, now_ms: int) -> None:
    """Forget an environment and revoke its keys at once (its data stays in
    its store until :func:`drop_environment_data`)."""
    if checked_name(name) == DEFAULT_ENVIRONMENT:
        raise InvalidArgument("the default environment cannot be deleted")
    if not await home.write(lambda tx: tx.remove_environment(name, now_ms)):
        raise NotFound(f"no environment {name!r}")
    home.announce("environments")
    home.announce("keys")


def drop_environment_data(home_url: str, name: str) -> None:
    """Delete a deleted environment's store: its SQLite file, or its schema."""
    url, schema = store_location(home_url, name)
    if schema is None:
        database = make_url(url).database or ""
        for suffix in ("", "-wal", "-shm"):
            Path(database + suffix).unlink(missing_ok=True)
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        engine.dispose()


OpenEngine = Callable[[str], Awaitable[Engine]]
CloseEngine = Callable[[str, Engine], Awaitable[None]]


class HostedEnvironments:
    """The environments this control plane serves, each with its own engine
    (and store), opened when listed and closed when deleted."""

    def __init__(
        self, home: Store, default: Engine, open_engine: OpenEngine, close_engine: CloseEngine
    ) -> None:
        self._home = home
        self._engines: dict[str, Engine] = {DEFAULT_ENVIRONMENT: default}
        self._open_engine = open_engine
        self._close_engine = close_engine
        self._lock = asyncio.Lock()

    @property
    def names(self) -> list[str]:
        return sorted(self._engines)

    def engines(self) -> list[Engine]:
        return list(self._engines.values())

    def engine(self, name: str) -> Engine:
        """The engine of environment ``name`` (NotFound if not served here)."""
        found = self._engines.get(name)
        if found is None:
            raise NotFound(f"no environment {name!r} on this control plane")
        return found

    async def ensure(self, name: str) -> None:
        """Open environment ``name`` now if it is listed but not yet served
        (a key of an environment created a moment ago)."""
        if name not in self._engines:
            await self.reload()

    async def reload(self) -> None:
        """Serve what the default store lists: open new environments, close
        deleted ones."""
        async with self._lock:
            listed = {e.name for e in await self._home.read(lambda r: r.environments())}
            listed.add(DEFAULT_ENVIRONMENT)
            for name in sorted(listed - self._engines.keys()):
                try:
                    self._engines[name] = await self._open_engine(name)
                except Exception as error:
                    # Retried at every reload: one line each, not a traceback
                    # (an unreachable database is what it usually is).
                    log.warning("could not open environment %r (%s); will retry", name, error)
                    continue
                log.info("serving environment %r", name)
            for name in sorted(self._engines.keys() - listed):
                engine = self._engines.pop(name)
                await self._close_engine(name, engine)
                log.info("environment %r was deleted; no longer serving it", name)

    async def keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_S)
            with contextlib.suppress(Exception):  # an outage is the store's to report
                await self.reload()

    async def close(self) -> None:
        """Close every environment but the default (its owner closes that)."""
        async with self._lock:
            for name in sorted(self._engines.keys() - {DEFAULT_ENVIRONMENT}):
                await self._close_engine(name, self._engines.pop(name))
