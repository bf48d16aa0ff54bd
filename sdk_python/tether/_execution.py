"""One execution of a run on this worker.

The function runs from the start. Memoized steps return their stored result at
once; a new ``step.run`` executes now and its result is streamed back while the
function carries on. When the function cannot go on (it sleeps, or a step failed
and must be retried later) the execution reports what it waits for and drops the
coroutine; the control plane resumes the run later with more memoized state.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from tether import _json
from tether._convert import cron_from_message, event_from_message
from tether._errors import NonRetriableError, RetryAfterError, StepError
from tether._function import Function
from tether._step_ids import StepIds, hash_step_id
from tether._telemetry import parse_traceparent
from tether.v1 import common_pb2, worker_service_pb2

if TYPE_CHECKING:
    from tether._context import Context

Emit = Callable[[worker_service_pb2.Outcome], None]
Sender = Callable[[list[common_pb2.Event]], Awaitable[list[str]]]

log = logging.getLogger("tether.worker")

# How many event-loop turns an execution waits, once every branch looks blocked,
# for parallel branches to reach their next step before it suspends.
_SETTLE_TURNS = 4


@dataclass(frozen=True, slots=True)
class Limits:
    """What the control plane accepts (from Welcome); checked before sending."""

    max_step_output_bytes: int = 4 * 1024 * 1024
    max_run_state_bytes: int = 32 * 1024 * 1024
    max_steps_per_run: int = 1000
    max_frame_bytes: int = 64 * 1024 * 1024


def error_info(error: BaseException) -> common_pb2.ErrorInfo:
    return common_pb2.ErrorInfo(
        name=type(error).__name__,
        message=str(error),
        stack="".join(traceback.format_exception(error)),
    )


class Execution:
    """The state of one Execute: memoized steps, new steps, planned waits."""

    def __init__(
        self,
        function: Function,
        execute: worker_service_pb2.Execute,
        emit: Emit,
        *,
        limits: Limits | None = None,
        executor: Executor | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.function = function
        self.run_id = execute.run_id
        self.execution_id = execute.execution_id
        self.attempt = execute.attempt
        self.events = [event_from_message(e) for e in execute.events]
        self.cron = cron_from_message(execute.cron) if execute.HasField("cron") else None
        self.memo: dict[str, worker_service_pb2.MemoizedStep] = {
            s.step_id: s for s in execute.steps
        }
        self.unreached: set[str] = set(self.memo)
        # Memoized results are handed back in the order they were recorded, so
        # that parallel branches interleave on replay as they did the first time
        # (and repeated step ids get the same suffixes). Sequential code asks for
        # them in that order anyway and never waits.
        self._memo_order = {s.step_id: i for i, s in enumerate(execute.steps)}
        self._next_memo = 0
        self._memo_waiters: dict[int, asyncio.Future[None]] = {}
        self.step_attempts: dict[str, int] = dict(execute.step_attempts)
        self.step_not_before: dict[str, int] = dict(execute.step_not_before_ms)
        self.trace_ids = parse_traceparent(execute.trace.traceparent)
        self.limits = limits or Limits()
        self.executor = executor
        self.sender = sender
        self.ids = StepIds()
        self.step_count = len(self.memo)
        # Bytes of memoized outputs: the run's state, which has a limit.
        self.state_bytes = sum(len(s.output) for s in execute.steps)
        self.new_steps: list[str] = []
        self.planned: list[worker_service_pb2.PlannedWait] = []
        self.cancelled = False
        # Set once the terminal outcome is sent: branches still running (parallel
        # siblings of a branch that raised) start nothing and report nothing.
        self.finished = False
        # Steps whose user code is running now, and step calls that can never return
        # in this execution (a planned wait, a failed step).
        self.active = 0
        self.parked = 0
        # Bumped on every step call; tells whether parallel branches still move.
        self.version = 0
        self._emit = emit
        self._changed = asyncio.Event()
        self._server_base_ms = execute.server_time_ms or time.time_ns() // 1_000_000
        self._monotonic_base_ns = time.monotonic_ns()
        self._task: asyncio.Task[Any] | None = None

    # -- time and state ---------------------------------------------------------

    def now_ms(self) -> int:
        """Now in the control plane's clock (which may be virtual)."""
        return self._server_base_ms + (time.monotonic_ns() - self._monotonic_base_ns) // 1_000_000

    @property
    def replaying(self) -> bool:
        """True while memoized steps remain that the code has not reached yet."""
        return bool(self.unreached)

    def allocate(self, step_id: str) -> tuple[str, str]:
        """(the step's id with any ``:n`` suffix, its hashed wire id)."""
        name = self.ids.allocate(step_id)
        self.version += 1
        return name, hash_step_id(name)

    async def memoized(self, hashed: str) -> worker_service_pb2.MemoizedStep | None:
        """The stored result of this step, once every result recorded before it
        has been handed out; None for a step that has no stored result."""
        memo = self.memo.get(hashed)
        if memo is None:
            return None
        self.unreached.discard(hashed)
        index = self._memo_order[hashed]
        if index > self._next_memo:
            waiter = asyncio.get_running_loop().create_future()
            self._memo_waiters[index] = waiter
            self.version += 1
            self._changed.set()
            try:
                await waiter
            finally:
                self._memo_waiters.pop(index, None)
        self._handed_out(index)
        return memo

    def _handed_out(self, index: int) -> None:
        self._next_memo = max(self._next_memo, index + 1)
        waiter = self._memo_waiters.get(self._next_memo)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _skip_unclaimed_memos(self) -> None:
        """Every branch waits for a result recorded later than one nobody asks
        for (the code changed): hand out the earliest awaited one; the skipped
        results stay unreached and are reported as non-determinism."""
        index = min(self._memo_waiters)
        self._next_memo = index
        self._memo_waiters[index].set_result(None)
        self.version += 1

    def memoized_result(self, name: str, memo: worker_service_pb2.MemoizedStep) -> Any:
        if memo.WhichOneof("result") == "error":
            raise StepError(name, memo.error.name, memo.error.message, memo.error.stack)
        return _json.loads(memo.output)

    def note_new_step(self, name: str) -> None:
        self.new_steps.append(name)
        self.step_count += 1

    def begin_step(self) -> None:
        self.active += 1
        self.version += 1

    def end_step(self) -> None:
        self.active -= 1
        self.version += 1
        if self.parked:
            self._changed.set()

    async def park(self) -> NoReturn:
        """Block this step call for the rest of the execution."""
        self.parked += 1
        self.version += 1
        self._changed.set()
        await asyncio.get_running_loop().create_future()
        raise AssertionError("a parked step never resumes")

    @property
    def stopped(self) -> bool:
        """No new step may start: the execution was cancelled or has ended."""
        return self.cancelled or self.finished

    def emit(self, outcome: worker_service_pb2.Outcome) -> None:
        if self.finished:
            return
        outcome.execution_id = self.execution_id
        outcome.run_id = self.run_id
        self._emit(outcome)

    # -- what steps report (overridden by the unit-test harness) -------------------------

    def step_completed(
        self, name: str, hashed: str, kind: int, output: bytes, started_ms: int
    ) -> None:
        self.emit(
            worker_service_pb2.Outcome(
                step_completed=worker_service_pb2.StepCompleted(
                    step_id=hashed,
                    name=name,
                    kind=kind,  # type: ignore[arg-type]
                    output=output,
                    started_at_ms=started_ms,
                    ended_at_ms=self.now_ms(),
                )
            )
        )

    async def step_failed(
        self,
        name: str,
        hashed: str,
        kind: int,
        error: BaseException,
        started_ms: int,
        attempt: int,
        *,
        retriable: bool | None = None,
    ) -> None:
        """Report a failed attempt. In a worker the step call never returns: the
        control plane decides when to retry. The harness retries or raises here."""
        if retriable is None:
            retriable = not isinstance(error, NonRetriableError)
        delay = error.delay_ms if isinstance(error, RetryAfterError) else 0
        self.emit(
            worker_service_pb2.Outcome(
                step_failed=worker_service_pb2.StepFailed(
                    step_id=hashed,
                    name=name,
                    kind=kind,  # type: ignore[arg-type]
                    error=error_info(error),
                    retriable=retriable,
                    retry_delay_ms=delay,
                    started_at_ms=started_ms,
                    ended_at_ms=self.now_ms(),
                )
            )
        )
        log.warning(
            "run %s: step %r failed (attempt %d): %s: %s",
            self.run_id,
            name,
            attempt + 1,
            type(error).__name__,
            error,
        )
        await self.park()

    async def plan(self, wait: worker_service_pb2.PlannedWait, target: Function | None) -> Any:
        """Report a step that suspends the run (sleep, wait, invoke). In a worker
        the call never returns; the harness returns the step's result at once."""
        self.planned.append(wait)
        await self.park()

    async def send_events(self, messages: list[common_pb2.Event]) -> list[str]:
        """Send events for ``step.send_event``; returns their ids."""
        if self.sender is None:
            raise RuntimeError("this execution cannot send events")
        return await self.sender(messages)

    # -- driving the function -----------------------------------------------------------

    def cancel(self) -> None:
        """The run was cancelled: start no further step. A step running now
        finishes and reports its result; then the execution ends, reporting
        nothing more."""
        self.cancelled = True
        self._changed.set()
        if self.active == 0 and self._task is not None:
            self._task.cancel()

    def drop(self) -> None:
        """Stop at once (the connection is gone): report nothing more."""
        self.cancelled = True
        self.finished = True
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        from tether._context import Context

        task = asyncio.create_task(self._call(Context(self)))
        self._task = task
        task.add_done_callback(lambda _: self._changed.set())
        try:
            suspended = await self._until_done_or_stuck(task)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if self.cancelled:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return
        try:
            self._report_divergence()
            if suspended:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                self.emit(
                    worker_service_pb2.Outcome(
                        suspended=worker_service_pb2.Suspended(waits=self.planned)
                    )
                )
            else:
                self._report_result(task)
        except Exception as error:
            # Never end an execution without a terminal outcome: the run would
            # be re-executed forever.
            log.exception("run %s: could not report the execution's result", self.run_id)
            self.emit(
                worker_service_pb2.Outcome(
                    run_failed=worker_service_pb2.RunFailed(
                        error=error_info(error), retriable=False
                    )
                )
            )
        finally:
            self.finished = True

    async def _call(self, ctx: Context) -> Any:
        return await self.function.handler(ctx)

    async def _until_done_or_stuck(self, task: asyncio.Task[Any]) -> bool:
        """Wait until the function returns (False) or no branch of it can make
        progress in this execution (True)."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            while True:
                if task.done():
                    return False
                if not (self.parked or self._memo_waiters) or self.active:
                    break
                version = self.version
                for _ in range(_SETTLE_TURNS):
                    await asyncio.sleep(0)
                if task.done():
                    return False
                if self.active == 0 and self.version == version:
                    if self._memo_waiters:
                        self._skip_unclaimed_memos()
                        continue
                    return True

    def _report_divergence(self) -> None:
        if not self.unreached:
            return
        message = (
            f"non-determinism in run {self.run_id}: {len(self.unreached)} memoized step(s) "
            "were never reached"
        )
        if self.new_steps:
            message += f" while new step(s) were met: {', '.join(map(repr, self.new_steps))}"
        message += "; the function's code changed since this run started"
        log.warning("%s", message)
        self.emit(
            worker_service_pb2.Outcome(
                non_determinism=worker_service_pb2.NonDeterminism(
                    message=message,
                    new_steps=self.new_steps,
                    unreached_step_ids=sorted(self.unreached),
                )
            )
        )

    def _report_result(self, task: asyncio.Task[Any]) -> None:
        error: BaseException | None
        if task.cancelled():
            error = asyncio.CancelledError(
                "the function was cancelled by its own code (asyncio.CancelledError)"
            )
        else:
            error = task.exception()
        if error is None:
            try:
                output = _json.dumps(task.result())
            except _json.NotSerializableError as problem:
                error = NonRetriableError(
                    f"function {self.function.id!r} returned a value that is not "
                    f"JSON-serializable: {problem} "
                    "(return dict, list, str, int, float, bool or None)"
                )
            else:
                if len(output) > self.limits.max_step_output_bytes:
                    error = NonRetriableError(
                        f"function {self.function.id!r} returned {len(output)} bytes; the limit "
                        f"is {self.limits.max_step_output_bytes} bytes"
                    )
                else:
                    self.emit(
                        worker_service_pb2.Outcome(
                            run_completed=worker_service_pb2.RunCompleted(output=output)
                        )
                    )
                    return
        retriable = not isinstance(error, NonRetriableError | StepError)
        delay = error.delay_ms if isinstance(error, RetryAfterError) else 0
        log.warning(
            "run %s: function %r failed (attempt %d)%s: %s: %s",
            self.run_id,
            self.function.id,
            self.attempt + 1,
            "" if retriable else ", not retriable",
            type(error).__name__,
            error,
        )
        self.emit(
            worker_service_pb2.Outcome(
                run_failed=worker_service_pb2.RunFailed(
                    error=error_info(error), retriable=retriable, retry_delay_ms=delay
                )
            )
        )
