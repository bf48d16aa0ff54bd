"""The store: one interface over SQLite and PostgreSQL.

All writes go through :meth:`Store.write` (the group-commit writer); reads run
on a small thread pool with their own connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine, Insert, Table, text
from sqlalchemy.exc import DBAPIError

from controlplane.store.availability import Availability
from controlplane.store.tx import ReadTx, WriteTx
from controlplane.store.writer import GroupCommitWriter

T = TypeVar("T")

# How often the database is probed (SELECT 1), so that health reports the truth
# when nothing else is going on; more often during an outage, to see it end.
PROBE_INTERVAL_S = 2.0
PROBE_INTERVAL_DOWN_S = 0.5


class Store(ABC):
    """Where every event, run and step lives."""

    #: ``sqlite`` or ``postgresql``.
    dialect: str
    #: True when several control planes may share this store.
    shared: bool
    #: The PostgreSQL schema holding the tables (None: the default search path).
    schema: str | None = None

    def __init__(self, url: str, *, readers: int = 4, hold_window_s: float = 30.0) -> None:
        self.url = url
        self.engine: Engine = self._create_engine(url)
        self.availability = Availability()
        # What workers report waits out an outage this long (writer.py).
        self._writer = GroupCommitWriter(
            self._connect_writer,
            self._outage_error,
            self.availability.succeeded,
            hold_window_s=hold_window_s,
        )
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="tether-reader")
        self._probe: asyncio.Task[None] | None = None

    @abstractmethod
    def _create_engine(self, url: str) -> Engine: ...

    @abstractmethod
    def insert(self, table: Table) -> Insert:
        """The dialect's INSERT (it supports ON CONFLICT)."""

    def _connect_writer(self) -> Connection:
        return self.engine.connect()

    def is_outage(self, error: Exception) -> bool:
        """Whether ``error`` means the database cannot be reached (rather than
        that the operation was wrong)."""
        return isinstance(error, DBAPIError) and error.connection_invalidated

    def _outage_error(self, error: Exception) -> Exception | None:
        """The Unavailable error to give callers for an outage, else None."""
        return self.availability.failed(error) if self.is_outage(error) else None

    async def start(self) -> None:
        await self._writer.start()
        self._probe = asyncio.create_task(self._probe_loop(), name="tether-store-probe")

    async def _probe_loop(self) -> None:
        while True:
            down = not self.availability.available
            await asyncio.sleep(PROBE_INTERVAL_DOWN_S if down else PROBE_INTERVAL_S)
            with contextlib.suppress(Exception):  # an outage is logged by availability
                await self.read(lambda r: r.conn.execute(text("SELECT 1")))

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
        await self._writer.close()
        self._readers.shutdown(wait=True)
        self.engine.dispose()

    @property
    def pending_writes(self) -> int:
        return self._writer.pending

    def submit(
        self,
        op: Callable[[WriteTx], T],
        fallback: Callable[[WriteTx, Exception], object] | None = None,
        *,
        hold: bool = False,
        urgent: bool = False,
    ) -> asyncio.Future[T]:
        """Queue ``op`` for the next group-committed transaction, now. Operations
        are applied in the order they are submitted. If ``op`` fails,
        ``fallback`` runs in its place (its own transaction) before anything later.
        With ``hold``, an outage keeps it waiting (up to the hold window)
        instead of failing it at once: for what workers report. An ``urgent``
        one goes ahead of all that wait (a client's Send of a few events)."""
        insert = self.insert
        lock_rows = self.shared
        lock_namespace = self.schema or ""

        def tx(conn: Connection) -> WriteTx:
            return WriteTx(conn, insert, lock_rows=lock_rows, lock_namespace=lock_namespace)

        on_failure = None
        if fallback is not None:

            def on_failure(conn: Connection, error: Exception) -> object:
                return fallback(tx(conn), error)

        return self._writer.submit(lambda conn: op(tx(conn)), on_failure, hold=hold, urgent=urgent)

    async def write(
        self, op: Callable[[WriteTx], T], *, hold: bool = False, urgent: bool = False
    ) -> T:
        """Run ``op`` in the next group-committed transaction and wait for the commit."""
        return await self.submit(op, hold=hold, urgent=urgent)

    def announce(self, kind: str = "work") -> None:
        """Tell other control planes sharing the store that something they may
        act on changed: ``work`` (runs queued or released, a concurrency slot
        freed, a function resumed) or ``functions`` (functions registered). Does
        nothing when the store is not shared."""
        return None

    def listen(self, on_change: Callable[[str], None]) -> None:
        """Call ``on_change(kind)`` when another control plane announces a
        change. Does nothing when the store is not shared."""
        return None

    async def read(self, op: Callable[[ReadTx], T]) -> T:
        """Run ``op`` on a read connection in a consistent snapshot."""
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._read, op)

    def _read(self, op: Callable[[ReadTx], T]) -> T:
        try:
            with self.engine.connect() as conn, conn.begin():
                result = op(ReadTx(conn, self.insert))
        except Exception as error:
            outage = self._outage_error(error)
            if outage is None:
                raise
            raise outage from None
        self.availability.succeeded()
        return result
