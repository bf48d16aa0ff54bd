"""SQLite: the embedded default (WAL, synchronous=FULL unless told otherwise)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Insert, Table, create_engine, event, make_url
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.pool import ConnectionPoolEntry

from controlplane.store.base import Store

SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
# SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN (primary result codes).
_UNREACHABLE = frozenset({10, 13, 14})
# The execution option that marks the writer's connection.
_WRITER_OPTION = "tether_writer"


class SQLiteStore(Store):
    dialect = "sqlite"
    shared = False

    def __init__(
        self,
        url: str,
        *,
        synchronous: str = "FULL",
        readers: int = 4,
        hold_window_s: float = 30.0,
    ) -> None:
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ValueError(
                f"invalid SQLite synchronous mode {synchronous!r}; "
                f"use one of {', '.join(SYNCHRONOUS_MODES)}"
            )
        self._synchronous = mode
        super().__init__(url, readers=readers, hold_window_s=hold_window_s)

    def _create_engine(self, url: str) -> Engine:
        parsed = make_url(url)
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
        )
        synchronous = self._synchronous

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
            # Let SQLAlchemy's BEGIN below control transactions, not the driver.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # The writer takes the write lock as its transaction begins: a
            # deferred transaction that read first and must then write fails at
            # once with "database is locked" while another process holds the
            # lock (SQLite does not wait there: it could deadlock), where an
            # immediate one waits for the busy timeout.
            writer = conn.get_execution_options().get(_WRITER_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

        return engine

    def _connect_writer(self) -> Connection:
        return self.engine.connect().execution_options(**{_WRITER_OPTION: True})

    def insert(self, table: Table) -> Insert:
        return sqlite_insert(table)

    def is_outage(self, error: Exception) -> bool:
        if super().is_outage(error):
            return True
        # The file cannot be opened, read or written (a busy database is not
        # an outage: the busy timeout covers it).
        cause = getattr(error, "orig", error)
        code = getattr(cause, "sqlite_errorcode", None)
        return (
            isinstance(cause, sqlite3.OperationalError)
            and code is not None
            and (code & 0xFF in _UNREACHABLE)
        )
