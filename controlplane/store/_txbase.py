"""What every part of a transaction shares: its connection and dialect facts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Insert, Table

InsertFactory = Callable[[Table], Insert]

# "Not due at all": the due time of a leased run until a step failure lowers it
# to a retry time, and the until_ms of a wait without a timeout.
NOT_DUE = 2**62

# SQLite allows 32,766 bound parameters per statement; stay well below for IN lists.
IN_CHUNK = 500


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

    def _insert_all(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            self.conn.execute(table.insert(), list(rows))
