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


def on_store(db: str, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``work`` on the store at ``db``; the engine's errors become the
    command's error message."""
    from controlplane.model.errors import EngineError
    from controlplane.store import migrate, open_store

    async def run() -> T:
        try:
            store = open_store(db)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        await asyncio.to_thread(migrate, store.engine)
        await store.start()
        try:
            return await work(store)
        except EngineError as error:
            raise click.ClickException(str(error)) from None
        finally:
            await store.close()

    return asyncio.run(run())
