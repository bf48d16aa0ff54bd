"""A real Engine in the test's process: a temporary SQLite store, a virtual clock
that only moves when told, and a worker session whose frames land in memory.

    async with EngineHarness.start(tmp_path, [spec("greet")]) as h:
        [result] = await h.send("app/greet")
        execution = await h.next_execution()
        await h.report(execution, h.step_completed("hello", b'"hi"'), RunCompleted(b'"done"'))
        assert (await h.run(result.run_ids[0])).run.status is RunStatus.COMPLETED

No gRPC and no subprocess: what the engine decides is seen in the store and in
what the session sink was given, in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane.engine.clock import SystemClock, VirtualClock
from controlplane.engine.engine import Engine
from controlplane.engine.sessions import WorkerSession
from controlplane.engine.settings import EngineSettings
from controlplane.model import (
    EventInput,
    EventTrigger,
    Execution,
    FunctionSpec,
    HeldExecution,
    Outcome,
    OutcomeBody,
    Refusal,
    RunCompleted,
    RunDetail,
    RunStatus,
    SendResult,
    StepCompleted,
    StepKind,
    Trigger,
    WorkerHello,
)
from controlplane.model.errors import EngineError
from controlplane.store import Store, migrate, open_store
from tether._step_ids import hash_step_id

APP = "harness"
# Every harness serves this function too: a run of it is the barrier of
# dispatched_with_probe().
PROBE = "harness-probe"
START_MS = 1_800_000_000_000
WAIT_S = 5.0


def spec(function_id: str, *, event: str | None = None, **options: Any) -> FunctionSpec:
    """A function of app ``harness`` triggered by ``event`` (default
    ``app/<function_id>``), with any FunctionSpec options."""
    triggers: tuple[Trigger, ...] = (EventTrigger(event or f"app/{function_id}"),)
    return FunctionSpec(APP, function_id, function_id, triggers, **options)


@dataclass
class MemorySink:
    """A SessionSink that keeps what the engine sends to the worker."""

    executions: asyncio.Queue[Execution] = field(default_factory=asyncio.Queue)
    acks: list[tuple[int, list[Refusal]]] = field(default_factory=list)
    cancels: list[tuple[str, str, str, bool]] = field(default_factory=list)
    closed: list[tuple[str, EngineError | None]] = field(default_factory=list)
    #: Called with the execution id of a cancelled run, as a worker's CancelAck.
    confirm_cancel: Callable[[str], None] | None = None
    _acked: asyncio.Event = field(default_factory=asyncio.Event)

    def dispatch(self, executions: list[Execution]) -> None:
        for execution in executions:
            self.executions.put_nowait(execution)

    def ack(self, through_seq: int, refusals: list[Refusal]) -> None:
        self.acks.append((through_seq, refusals))
        self._acked.set()

    def cancel(
        self, execution_id: str, run_id: str, reason: str, *, run_cancelled: bool = False
    ) -> None:
        self.cancels.append((execution_id, run_id, reason, run_cancelled))
        if run_cancelled and self.confirm_cancel is not None:
            # A worker answers after the frame arrives, never inside the call.
            asyncio.get_running_loop().call_soon(self.confirm_cancel, execution_id)

    def close(self, reason: str, *, error: EngineError | None = None) -> None:
        self.closed.append((reason, error))

    async def acked_through(self, seq: int) -> list[Refusal]:
        """The refusals of the ack that covers ``seq``, once it came."""
        async with asyncio.timeout(WAIT_S):
            while True:
                for through, refusals in self.acks:
                    if through >= seq:
                        return refusals
                self._acked.clear()
                await self._acked.wait()


class EngineHarness:
    def __init__(
        self, engine: Engine, store: Store, clock: VirtualClock, settings: EngineSettings
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.settings = settings
        self.sink = MemorySink()
        self.session: WorkerSession | None = None
        self.functions: list[FunctionSpec] = []
        self.capacity = 0
        self._seq = 0

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        directory: Path,
        functions: Sequence[FunctionSpec],
        *,
        capacity: int = 10,
        settings: EngineSettings | None = None,
        system_clock: bool = False,
    ) -> AsyncIterator[EngineHarness]:
        """An engine on a fresh SQLite file with one worker serving ``functions``.
        With ``system_clock``, the engine runs on the wall clock, as a server
        does (the harness's clock then reads the same time and cannot be
        advanced)."""
        store = open_store(f"sqlite:///{directory / 'engine.db'}")
        await asyncio.to_thread(migrate, store.engine)
        await store.start()
        clock = VirtualClock(None if system_clock else START_MS, auto_skip=False)
        settings = settings or EngineSettings()
        engine = Engine(store, SystemClock() if system_clock else clock, settings)
        await engine.start()
        harness = cls(engine, store, clock, settings)
        try:
            if functions:
                harness.functions = [*functions, spec(PROBE)]
                harness.capacity = capacity
                await harness.connect()
            yield harness
        finally:
            await harness.engine.stop()
            await store.close()

    async def connect(self, held: Sequence[HeldExecution] = ()) -> WorkerSession:
        """A new stream of the worker (re-announcing ``held``), which becomes the
        harness's session; the previous one is left as it is (not disconnected)."""
        self.sink = MemorySink()
        self._seq = 0
        hello = WorkerHello(
            1, APP, "harness-worker", "python", "test", self.capacity, self.functions, tuple(held)
        )
        session = await self.engine.connect_worker(hello, self.sink)
        self.session = session
        self.sink.confirm_cancel = lambda execution_id: self.engine.worker_acknowledged_cancel(
            session, execution_id
        )
        return session

    async def restart(self) -> None:
        """A new engine on the same store and clock, as after a kill -9 of the
        control plane: no stream, no in-memory state survives."""
        await self.engine.stop()
        self.session = None
        self.engine = Engine(self.store, self.engine.clock, self.settings)
        await self.engine.start()

    # -- events and runs ------------------------------------------------------------

    async def send(
        self, name: str, data: dict[str, Any] | None = None, *, id: str = ""
    ) -> SendResult:
        payload = json.dumps(data or {}).encode()
        [result] = await self.engine.send_events(
            [EventInput(id, name, payload, b"", self.clock.now_ms())]
        )
        return result

    async def run(self, run_id: str) -> RunDetail:
        return await self.engine.get_run(run_id)

    async def status(self, run_id: str) -> RunStatus:
        return (await self.run(run_id)).run.status

    async def advance(self, by_ms: int) -> None:
        await self.engine.advance_clock(by_ms)

    # -- the worker's side ----------------------------------------------------------

    async def next_execution(self) -> Execution:
        """The next execution dispatched to the worker."""
        async with asyncio.timeout(WAIT_S):
            return await self.sink.executions.get()

    async def dispatched_with_probe(self) -> list[Execution]:
        """What the dispatcher hands out from now on, up to and with a probe run
        started now and the rest of the probe's claim (the probe excluded, and
        completed). A run that is due is claimed no later than the probe's claim
        (within it, a function with runs executing may come after the probe), so
        ``[]`` means nothing else is due."""
        [probe_id] = (await self.send(f"app/{PROBE}")).run_ids
        others: list[Execution] = []
        while True:
            execution = await self.next_execution()
            if execution.run_id != probe_id:
                others.append(execution)
                continue
            # One claim is handed to the sink at once: the rest of it is queued.
            while not self.sink.executions.empty():
                others.append(self.sink.executions.get_nowait())
            await self.report(execution, RunCompleted(b"null"))
            return others

    def step_completed(self, name: str, output: bytes = b"null") -> StepCompleted:
        now = self.clock.now_ms()
        return StepCompleted(hash_step_id(name), name, StepKind.RUN, output, now, now)

    async def report(self, execution: Execution, *bodies: OutcomeBody) -> list[Refusal]:
        """Send these outcomes of ``execution`` in one frame; the ack's refusals."""
        assert self.session is not None
        outcomes = []
        for body in bodies:
            self._seq += 1
            outcomes.append(Outcome(self._seq, execution.execution_id, execution.run_id, body))
        self.engine.receive_outcomes(self.session, outcomes)
        return await self.sink.acked_through(self._seq)
