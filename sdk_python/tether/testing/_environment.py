"""A control plane subprocess on a virtual clock, plus an in-process worker."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from tether._channel import ChannelConfig, Connection, translate
from tether._client import Tether
from tether._durations import DurationLike, to_milliseconds
from tether._function import Function
from tether._worker import Worker
from tether.v1 import (
    clock_service_pb2,
    clock_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
)


class TestEnvironment:
    """``async with TestEnvironment(app) as env:`` — the app's client points at a
    fresh control plane (SQLite in a temporary directory, virtual clock) and a
    worker serves ``functions`` (default: all of the app's) until the block ends.

    The clock skips ahead to the next sleep, retry or timeout whenever nothing
    runs, but never to a cron tick (a daily schedule would keep it running
    forever). Fire a cron function with :meth:`advance_to_next_tick`, or move
    the clock with :meth:`advance` / :meth:`advance_to`; ticks the clock jumps
    past by more than a minute count as missed, and the trigger's ``catch_up``
    decides what runs for them.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: Tether,
        *,
        functions: Sequence[Function] | None = None,
        clock: str = "virtual",
        db_url: str | None = None,
        capacity: int = 100,
        startup_timeout_s: float = 30.0,
        server_args: Sequence[str] = (),
    ) -> None:
        self.app = app
        self._functions = list(functions) if functions is not None else None
        self._clock = clock
        self._db_url = db_url
        self._capacity = capacity
        self._startup_timeout_s = startup_timeout_s
        self._server_args = list(server_args)
        self._dir: Path | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._previous_address: str | None = None
        self.worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self.address = ""
        # The environment's own calls (clock, function listing) to its control plane.
        self._connection: Connection | None = None

    @property
    def log_file(self) -> Path:
        """The control plane's log, for when a test needs to know why."""
        assert self._dir is not None
        return self._dir / "control-plane.log"

    async def __aenter__(self) -> TestEnvironment:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="tether-test-"))
        ready = self._dir / "ready.json"
        db_url = self._db_url or f"sqlite:///{self._dir / 'tether.db'}"
        command = [
            sys.executable,
            "-m",
            "controlplane",
            "server",
            "--db",
            db_url,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--clock",
            self._clock,
            "--ready-file",
            str(ready),
            "--no-http",
            "--log-level",
            "info",
            # Time skips by days here: retention would delete what a test looks at.
            "--retention",
            "forever",
            *self._server_args,
        ]
        log = self.log_file.open("wb")
        self._process = await asyncio.create_subprocess_exec(
            *command, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
        log.close()
        port = await self._wait_ready(ready)
        self.address = f"127.0.0.1:{port}"
        self._connection = Connection(ChannelConfig(self.address, None, tls=False))
        self._previous_address = self.app.address
        self.app._set_address(self.address)
        if self._functions is None or self._functions:
            self.worker = self.app.worker(functions=self._functions, capacity=self._capacity)
            self._worker_task = asyncio.create_task(self.worker.run())
            await self._wait(self.worker.connected.wait(), "the worker to connect")

    async def _wait_ready(self, ready: Path) -> int:
        deadline = time.monotonic() + self._startup_timeout_s
        assert self._process is not None
        while time.monotonic() < deadline:
            if ready.exists():
                return int(json.loads(ready.read_text())["grpc_port"])
            if self._process.returncode is not None:
                break
            await asyncio.sleep(0.02)
        raise RuntimeError(
            "the control plane did not start"
            + (
                f" (exit code {self._process.returncode})"
                if self._process.returncode is not None
                else ""
            )
            + f"; its log:\n{self.log_file.read_text(errors='replace')[-4000:]}"
        )

    async def _wait(self, awaitable: Any, what: str) -> None:
        task = asyncio.ensure_future(awaitable)
        watched = [task]
        if self._worker_task is not None:
            watched.append(self._worker_task)
        done, _ = await asyncio.wait(
            watched, timeout=self._startup_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if task not in done:
            task.cancel()
            worker = self._worker_task
            if worker is not None and worker in done and worker.exception() is not None:
                raise RuntimeError(
                    f"the worker stopped while waiting for {what}"
                ) from worker.exception()
            raise RuntimeError(f"timed out waiting for {what}")

    async def stop(self) -> None:
        if self.worker is not None and self._worker_task is not None:
            self.worker.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._worker_task, 10)
            self.worker = None
            self._worker_task = None
        await self.app.close()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        if self._previous_address is not None:
            self.app._set_address(self._previous_address)
            self._previous_address = None
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _started_connection(self) -> Connection:
        if self._connection is None:
            raise RuntimeError(
                "the TestEnvironment is not started: use 'async with TestEnvironment(app) "
                "as env' or 'await env.start()'"
            )
        return self._connection

    # -- the virtual clock -----------------------------------------------------------

    async def _clock_call(self, method: str, request: Any) -> clock_service_pb2.GetTimeResponse:
        stub: Any = clock_service_pb2_grpc.ClockServiceStub(
            self._started_connection().aio_channel()
        )
        try:
            response = await getattr(stub, method)(request)
        except grpc.RpcError as error:
            raise translate(error, self.address) from None
        assert isinstance(response, clock_service_pb2.GetTimeResponse)
        return response

    async def now(self) -> dt.datetime:
        """The control plane's current (virtual) time."""
        response = await self._clock_call("GetTime", clock_service_pb2.GetTimeRequest())
        return dt.datetime.fromtimestamp(response.now_ms / 1000, dt.UTC)

    async def advance(self, duration: DurationLike) -> dt.datetime:
        """Move the virtual clock forward; timers that fall due fire."""
        request = clock_service_pb2.AdvanceRequest(by_ms=to_milliseconds(duration))
        response = await self._clock_call("Advance", request)
        return dt.datetime.fromtimestamp(response.now_ms / 1000, dt.UTC)

    async def advance_to(self, when: dt.datetime) -> dt.datetime:
        """Move the virtual clock forward to ``when`` (a naive datetime is local
        time); timers and cron ticks due by then fire. A time already passed
        leaves the clock where it is."""
        now = await self._clock_call("GetTime", clock_service_pb2.GetTimeRequest())
        target = int((when if when.tzinfo else when.astimezone()).timestamp() * 1000)
        if target <= now.now_ms:
            return dt.datetime.fromtimestamp(now.now_ms / 1000, dt.UTC)
        return await self.advance(dt.timedelta(milliseconds=target - now.now_ms))

    async def next_tick(self, function: Function | str) -> dt.datetime | None:
        """When one of the app's functions is due to fire next by its cron
        triggers (the earliest of them); None without a cron trigger."""
        function_id = function if isinstance(function, str) else function.id
        stub: Any = run_service_pb2_grpc.RunServiceStub(self._started_connection().aio_channel())
        request = run_service_pb2.ListFunctionsRequest(app_id=self.app.app_id)
        try:
            response = await stub.ListFunctions(request)
        except grpc.RpcError as error:
            raise translate(error, self.address) from None
        for info in response.functions:
            if info.definition.id == function_id:
                fires = [ms for ms in info.next_fire_ms if ms > 0]
                return dt.datetime.fromtimestamp(min(fires) / 1000, dt.UTC) if fires else None
        raise ValueError(f"function {function_id!r} is not registered with the control plane")

    async def advance_to_next_tick(self, function: Function | str) -> dt.datetime:
        """Move the clock to the function's next cron tick, which starts a run
        of it (find it with ``app.runs.list(function_id=...)``); returns the
        tick, which the run sees as ``ctx.cron.scheduled_at``."""
        tick = await self.next_tick(function)
        if tick is None:
            name = function if isinstance(function, str) else function.id
            raise ValueError(f"function {name!r} has no cron trigger")
        await self.advance_to(tick)
        return tick

    async def set_auto_skip(self, enabled: bool) -> None:
        """Turn off to stop the clock jumping ahead to the next timer (for
        example, to send an event while a run sleeps); advance it by hand."""
        await self._clock_call("SetAutoSkip", clock_service_pb2.SetAutoSkipRequest(enabled=enabled))

    @contextlib.asynccontextmanager
    async def hold_clock(self) -> AsyncIterator[None]:
        """``async with env.hold_clock():`` in the block the clock does not jump
        ahead to the next timer: it moves only at its real pace and by
        ``advance``, so a test can deliver an event to a run waiting for it
        before the wait times out. Jumping resumes as before when it ends."""
        previous = await self._clock_call("GetTime", clock_service_pb2.GetTimeRequest())
        await self.set_auto_skip(False)
        try:
            yield
        finally:
            await self.set_auto_skip(previous.auto_skip)
