"""Storage: SQLAlchemy Core tables, Alembic migrations, SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import make_url

from controlplane.store.base import Store
from controlplane.store.migrate import migrate
from controlplane.store.postgres import PostgresStore
from controlplane.store.sqlite import SQLiteStore

__all__ = ["PostgresStore", "SQLiteStore", "Store", "migrate", "open_store"]


def open_store(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    schema: str | None = None,
    hold_window_s: float = 30.0,
) -> Store:
    """A store for a SQLAlchemy URL: ``sqlite:///path`` or ``postgresql+psycopg://...``
    (with ``schema``, its tables are in that PostgreSQL schema)."""
    try:
        backend = make_url(url).get_backend_name()
    except Exception as error:
        raise ValueError(f"invalid database URL {url!r}: {error}") from None
    if backend == "sqlite":
        return SQLiteStore(url, synchronous=sqlite_synchronous, hold_window_s=hold_window_s)
    if backend == "postgresql":
        return PostgresStore(url, schema=schema, hold_window_s=hold_window_s)
    raise ValueError(
        f"unsupported database {backend!r} in {url!r}: use sqlite:///path/to/file.db "
        "or postgresql+psycopg://user@host/db"
    )
