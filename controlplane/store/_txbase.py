"""What every part of a transaction shares: its connection and dialect facts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ClauseElement, Connection, Insert, Table
from sqlalchemy.sql.compiler import SQLCompiler

T = TypeVar("T")

InsertFactory = Callable[[Table], Insert]

# "Not due at all": the due time of a leased run until a step failure lowers it
# to a retry time, and the until_ms of a wait without a timeout.
NOT_DUE = 2**62

# SQLite allows 32,766 bound parameters per statement; stay well below for IN lists.
IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    """A statement rendered once for a dialect, run by the driver itself."""

    sql: str
    #: For a positional paramstyle, the parameters' names in the SQL's order.
    order: tuple[str, ...] | None
    #: Parameters the statement gives values of itself (``values(x=1)``).
    fixed: dict[str, Any]


_DRIVER: dict[tuple[Any, str], _DriverStatement] = {}


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

    def _execute_rows(
        self,
        key: Any,
        build: Callable[[], ClauseElement],
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
    ) -> None:
        """Run the statement ``build`` makes once per row, as the driver's own
        executemany: rendered once per dialect (under ``key``), with each row's
        values as a tuple, so that the hot path's writes pay nothing per row
        to SQLAlchemy. The statement's parameters must be plain values (no
        type processing, no Python-side defaults); an INSERT without values
        names its ``columns``."""
        if not rows:
            return
        dialect = self.conn.dialect
        statement = _DRIVER.get((key, dialect.name))
        if statement is None:
            compiled = build().compile(
                dialect=dialect, column_keys=list(columns) if columns is not None else None
            )
            assert isinstance(compiled, SQLCompiler)
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            fixed = {n: b.value for n, b in compiled.binds.items() if not b.required}
            statement = _DRIVER[key, dialect.name] = _DriverStatement(compiled.string, order, fixed)
        order, fixed = statement.order, statement.fixed
        params: list[Any]
        if order is None:
            params = [{**fixed, **r} for r in rows] if fixed else list(rows)
        elif fixed:
            params = [tuple(r[n] if n in r else fixed[n] for n in order) for r in rows]
        else:
            params = [tuple(r[n] for n in order) for r in rows]
        self.conn.exec_driver_sql(statement.sql, params)

    def _insert_all(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows that all have the same columns (unnamed ones take their
        server defaults)."""
        if not rows:
            return
        columns = tuple(rows[0])
        self._execute_rows((table.name, columns), lambda: table.insert().inline(), rows, columns)
