"""Commands that work on the database itself (keys, environments): the store
of the default environment, opened and migrated for one piece of work.

Who may run them: whoever can reach the database (as for ``tether migrate``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import click

from controlplane.config import DEV_DATABASE

if TYPE_CHECKING:
    from controlplane.store import Store

T = TypeVar("T")

db_option = click.option(
    "--db",
    default=DEV_DATABASE,
    envvar="TETHER_DATABASE_URL",
    show_default=True,
    help="SQLAlchemy URL of the store.",
)


def on_store(db: str, work: Callable[[Store], Awaitable[T]], environment: str | None = None) -> T:
    """Run ``work`` on the store at ``db`` (the default environment's), or on
    the store of ``environment``; the engine's errors become the command's
    error message."""
    from controlplane.access.environments import list_environments, store_location
    from controlplane.model.access import DEFAULT_ENVIRONMENT
    from controlplane.model.errors import EngineError

    async def on(store: Store) -> T:
        try:
            return await work(store)
        except EngineError as error:
            raise click.ClickException(str(error)) from None
        finally:
            await store.close()

    async def run() -> T:
        home = await _opened(db, None)
        if environment in (None, DEFAULT_ENVIRONMENT):
            return await on(home)
        try:
            names = {e.name for e in await list_environments(home)}
        finally:
            await home.close()
        if environment not in names:
            raise click.ClickException(f"no environment {environment!r} (tether env list)")
        return await on(await _opened(*store_location(db, environment)))

    return asyncio.run(run())


async def _opened(url: str, schema: str | None) -> Store:
    """The store at ``url`` (tables in ``schema``), migrated and started."""
    from controlplane.store import migrate, open_store

    try:
        store = open_store(url, schema=schema)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    await asyncio.to_thread(migrate, store.engine, schema)
    await store.start()
    return store
