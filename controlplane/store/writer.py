"""Group commit: every write goes through one connection in one thread.

Callers submit operations (functions of a connection). The writer takes every
operation waiting, runs them in one transaction, commits once, then resolves each
caller's future. While a transaction is being committed the next batch builds up,
so under load each fsync covers many outcomes.

An operation submitted as ``urgent`` (a client's Send of a few events) goes
into the next transaction ahead of every operation still waiting, so that a
sender waits for at most the transaction being committed, not behind a
backlog of workers' results.

During a database outage most callers learn it at once (Unavailable). An
operation submitted with ``hold=True`` (what workers report: outcomes,
heartbeats) is kept instead and tried again, with backoff, for up to
``hold_window_s``; later held operations queue behind it in order, while the
others keep failing at once. So a short outage re-runs no step: the workers'
results wait, unacknowledged, and are applied when the database is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
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
    # Kept through an outage (up to the hold window) instead of failing at once.
    hold: bool = False


@dataclass(slots=True)
class _Outage:
    """Nothing of the batch reached the database (no fallback ran yet)."""

    error: Exception


# Backoff between attempts of held operations during an outage. Short: what
# is held is workers' results, and each second they wait once the database is
# back is a second of every run's progress (an attempt that fails costs one
# refused connection).
_RETRY_FIRST_S = 0.1
_RETRY_MAX_S = 0.5


class GroupCommitWriter:
    def __init__(
        self,
        connect: Callable[[], Connection],
        outage_error: Callable[[Exception], Exception | None] = lambda error: None,
        committed: Callable[[], None] = lambda: None,
        *,
        max_batch: int = 1024,
        hold_window_s: float = 30.0,
    ) -> None:
        """``outage_error`` turns an error meaning "the database is unreachable"
        into the error callers get (else None); ``committed`` hears of every
        commit; held operations wait out an outage for ``hold_window_s``."""
        self._connect = connect
        self._hold_window_s = hold_window_s
        self._outage_error = outage_error
        self._committed = committed
        self._max_batch = max_batch
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tether-writer")
        # Waiting operations, urgent ones apart; the event is set while any wait.
        self._urgent: deque[_Op] = deque()
        self._waiting: deque[_Op] = deque()
        self._arrived = asyncio.Event()
        self._started = False
        self._task: asyncio.Task[None] | None = None
        self._conn: Connection | None = None
        # Operations submitted and not yet resolved.
        self.pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.batches = 0
        # Set by close(): held operations stop waiting out an outage.
        self._closing = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._connect)
        self._started = True
        self._task = asyncio.create_task(self._run(), name="tether-writer")

    async def close(self) -> None:
        if self._task is not None:
            # Let queued operations finish before stopping (held ones give up
            # waiting for a database that is away).
            self._closing = True
            await self._idle.wait()
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)

    def submit(
        self,
        fn: Callable[[Connection], T],
        fallback: Fallback | None = None,
        *,
        hold: bool = False,
        urgent: bool = False,
    ) -> asyncio.Future[T]:
        """Queue ``fn`` for the next group transaction; the future holds its result
        once committed. Operations run in the order they were submitted, but
        ``urgent`` ones go ahead of all that wait; with ``hold``, one waits out
        an outage (see the module's docstring)."""
        if not self._started:
            raise RuntimeError("the writer is not started")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self.pending += 1
        self._idle.clear()
        (self._urgent if urgent else self._waiting).append(_Op(fn, future, fallback, hold))
        self._arrived.set()
        return future

    def _take(self, limit: int) -> list[_Op]:
        """Up to ``limit`` waiting operations, urgent ones first."""
        batch: list[_Op] = []
        for waiting in (self._urgent, self._waiting):
            while waiting and len(batch) < limit:
                batch.append(waiting.popleft())
        if not self._urgent and not self._waiting:
            self._arrived.clear()
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            batch = self._take(self._max_batch)
            if not batch:  # a wake-up with nothing waiting: wait again
                continue
            try:
                applied = await loop.run_in_executor(self._executor, self._apply, batch)
            except BaseException as error:  # the executor itself failed
                applied = [(False, error)] * len(batch)
            self.batches += 1
            if isinstance(applied, _Outage):
                holding = self._hold_window_s > 0
                held = [op for op in batch if holding and op.hold]
                others = [op for op in batch if not (holding and op.hold)]
                await self._resolve(others, await self._fail_all(others, applied.error))
                if held:
                    await self._resolve(held, await self._retry_held(held, applied.error))
                continue
            await self._resolve(batch, applied)

    async def _resolve(self, ops: list[_Op], results: list[tuple[bool, Any]]) -> None:
        # Count the ops done only after their callers resumed (their wake-ups
        # were queued by the futures first): until then an idle check must not
        # think nothing is happening.
        asyncio.get_running_loop().call_soon(self._settled, len(ops))
        for op, (ok, value) in zip(ops, results, strict=True):
            if op.future.done():
                continue
            if ok:
                op.future.set_result(value)
            else:
                op.future.set_exception(value)

    async def _fail_all(self, ops: list[_Op], error: Exception) -> list[tuple[bool, Any]]:
        if not ops:
            return []
        conn = self._conn
        assert conn is not None
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: [self._failed(conn, op, error) for op in ops]
        )

    async def _retry_held(self, held: list[_Op], error: Exception) -> list[tuple[bool, Any]]:
        """Try the held operations again until the database answers or the hold
        window passes; meanwhile later held operations join them (in order)
        and the others fail at once."""
        loop = asyncio.get_running_loop()
        give_up_at = time.monotonic() + self._hold_window_s
        delay = _RETRY_FIRST_S
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)
            arrived = self._take(len(self._urgent) + len(self._waiting))
            held.extend(op for op in arrived if op.hold)
            refused = [op for op in arrived if not op.hold]
            await self._resolve(refused, await self._fail_all(refused, error))
            applied = await loop.run_in_executor(self._executor, self._apply, held)
            if not isinstance(applied, _Outage):
                return applied
            error = applied.error
            if self._closing or time.monotonic() >= give_up_at:
                return await self._fail_all(held, error)

    def _settled(self, count: int) -> None:
        self.pending -= count
        if not self.pending:
            self._idle.set()

    def _apply(self, batch: list[_Op]) -> list[tuple[bool, Any]] | _Outage:
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
                # Nothing reaches the database: the caller decides who learns it.
                return _Outage(outage)
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
