"""Group commit: every write goes through one connection in one thread.

Callers submit operations (functions of a connection). The writer takes every
operation waiting, runs them in one transaction, commits once, then resolves each
caller's future. While a transaction is being committed the next batch builds up,
so under load each fsync covers many outcomes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection

from controlplane.model.errors import EngineError

log = logging.getLogger(__name__)

T = TypeVar("T")


Fallback = Callable[[Connection, Exception], object]


@dataclass(slots=True)
class _Op:
    fn: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    # Run in its own transaction, in the failed operation's place in the queue,
    # when ``fn`` fails: before any later operation.
    fallback: Fallback | None = None


class GroupCommitWriter:
    def __init__(
        self,
        connect: Callable[[], Connection],
        outage_error: Callable[[Exception], Exception | None] = lambda error: None,
        committed: Callable[[], None] = lambda: None,
        *,
        max_batch: int = 1024,
    ) -> None:
        """``outage_error`` turns an error meaning "the database is unreachable"
        into the error callers get (else None); ``committed`` hears of every
        commit."""
        self._connect = connect
        self._outage_error = outage_error
        self._committed = committed
        self._max_batch = max_batch
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tether-writer")
        self._queue: asyncio.Queue[_Op] | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: Connection | None = None
        # Operations submitted and not yet resolved.
        self.pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.batches = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._connect)
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="tether-writer")

    async def close(self) -> None:
        if self._task is not None:
            # Let queued operations finish before stopping.
            await self._idle.wait()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)

    def submit(
        self, fn: Callable[[Connection], T], fallback: Fallback | None = None
    ) -> asyncio.Future[T]:
        """Queue ``fn`` for the next group transaction; the future holds its result
        once committed. Operations run in the order they were submitted."""
        if self._queue is None:
            raise RuntimeError("the writer is not started")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.pending += 1
        self._idle.clear()
        self._queue.put_nowait(_Op(fn, future, fallback))
        return future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await loop.run_in_executor(self._executor, self._apply, batch)
            except BaseException as error:  # the executor itself failed
                results = [(False, error)] * len(batch)
            self.batches += 1
            # Count the batch done only after its callers resumed (their wake-ups
            # were queued by the futures first): until then an idle check must not
            # think nothing is happening.
            loop.call_soon(self._settled, len(batch))
            for op, (ok, value) in zip(batch, results, strict=True):
                if op.future.done():
                    continue
                if ok:
                    op.future.set_result(value)
                else:
                    op.future.set_exception(value)

    def _settled(self, count: int) -> None:
        self.pending -= count
        if not self.pending:
            self._idle.set()

    def _apply(self, batch: list[_Op]) -> list[tuple[bool, Any]]:
        conn = self._conn
        assert conn is not None
        try:
            with conn.begin():
                results = [(True, op.fn(conn)) for op in batch]
            self._committed()
            return results
        except Exception as error:
            outage = self._outage_error(error)
            if outage is not None:
                # Nothing reaches the database: every caller learns it at once.
                return [self._failed(conn, op, outage) for op in batch]
            if len(batch) == 1:
                return [self._failed(conn, batch[0], error)]
        # One operation failed and took the batch down: run each on its own so the
        # failure reaches only its caller.
        return [self._apply_one(conn, op) for op in batch]

    def _apply_one(self, conn: Connection, op: _Op) -> tuple[bool, Any]:
        try:
            with conn.begin():
                result = op.fn(conn)
            self._committed()
            return True, result
        except Exception as error:
            return self._failed(conn, op, self._outage_error(error) or error)

    def _failed(self, conn: Connection, op: _Op, error: Exception) -> tuple[bool, Any]:
        # Engine errors (an outage among them) are the caller's to report.
        if not isinstance(error, EngineError):
            log.error("write failed: %s", error, exc_info=error)
        if op.fallback is not None:
            try:
                with conn.begin():
                    op.fallback(conn, error)
            except Exception as fallback_error:
                if self._outage_error(fallback_error) is None:
                    log.exception("the fallback of a failed write failed too")
        return False, error
