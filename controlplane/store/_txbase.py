"""What every part of a transaction shares: its connection and dialect facts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Insert, Table

T = TypeVar("T")

InsertFactory = Callable[[Table], Insert]

# "Not due at all": the due time of a leased run until a step failure lowers it
# to a retry time, and the until_ms of a wait without a timeout.
NOT_DUE = 2**62

# SQLite allows 32,766 bound parameters per statement; stay well below for IN lists.
IN_CHUNK = 500


# Statements built once per dialect (see TxBase._prepared).
_PREPARED: dict[tuple[str, str], Any] = {}


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class TxBase:
    """A connection inside a transaction (read-only unless a subclass writes)."""

    def __init__(
        self,
        conn: Connection,
        insert: InsertFactory,
        *,
        lock_rows: bool = False,
        lock_namespace: str = "",
    ) -> None:
        self.conn = conn
        self._insert = insert
        # PostgreSQL: lock rows (and skip locked ones when claiming) so that
        # several control planes can share the store. SQLite has one writer anyway.
        self._lock_rows = lock_rows
        self._postgres = conn.dialect.name == "postgresql"
        # Advisory locks are database-wide: an environment's schema names its own.
        self._lock_namespace = lock_namespace

    def _prepared(self, name: str, build: Callable[[InsertFactory], T]) -> T:
        """The statement ``build`` makes with this dialect's INSERT, built once
        per dialect: the hot path then pays neither for building it nor for
        its cache key, which SQLAlchemy memoizes on the statement object."""
        key = (name, self.conn.dialect.name)
        statement = _PREPARED.get(key)
        if statement is None:
            statement = _PREPARED[key] = build(self._insert)
        return statement

    def _insert_all(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.conn.execute(_plain_insert(table), list(rows))


_INSERTS: dict[Table, Insert] = {}


def _plain_insert(table: Table) -> Insert:
    statement = _INSERTS.get(table)
    if statement is None:
        statement = _INSERTS[table] = table.insert()
    return statement
