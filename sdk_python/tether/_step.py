"""Step tools: ``ctx.step.run``, ``ctx.step.sleep``, ``ctx.step.sleep_until``."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from tether import _json
from tether._durations import DurationLike, to_milliseconds
from tether._errors import NonRetriableError
from tether._execution import STEP_KIND_RUN
from tether._telemetry import record_error, step_span

if TYPE_CHECKING:
    from tether._execution import Execution

P = ParamSpec("P")
T = TypeVar("T")

#: The attempt number of the step whose code is running (0-based), for ctx.attempt.
current_step_attempt: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "tether_step_attempt", default=None
)


class Step:
    """The durable building blocks of a function. Every step has an id, unique in
    the function and stable across deployments: it is how results are memoized."""

    def __init__(self, execution: Execution) -> None:
        self._x = execution

    @overload
    async def run(
        self, id: str, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T: ...

    @overload
    async def run(self, id: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

    async def run(self, id: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` once for the whole run and return its result.

        The result is memoized: when the function runs again (after a sleep, a
        retry, a crash) the stored result is returned without calling ``fn``. A
        synchronous ``fn`` runs in a thread. The result must be JSON; what is
        returned is the JSON round trip of it, the same value every replay sees.
        If ``fn`` raises, the step is retried with backoff; once retries are spent,
        :class:`~tether.StepError` is raised here.
        """
        x = self._x
        name, hashed = x.allocate(id)
        memo = await x.memoized(hashed)
        if memo is not None:
            return x.memoized_result(name, memo)
        x.note_new_step(name)
        if x.stopped:
            await x.park()
        attempt = x.step_attempts.get(hashed, 0)
        if x.step_not_before.get(hashed, 0) > x.now_ms():
            # A retry that is not due yet: wait it out like a sleep.
            await x.park()
        if x.step_count > x.limits.max_steps_per_run:
            await x.step_failed(
                name,
                hashed,
                STEP_KIND_RUN,
                NonRetriableError(
                    f"step {name!r} would be step {x.step_count} of the run; "
                    f"the limit is {x.limits.max_steps_per_run} steps per run"
                ),
                x.now_ms(),
                attempt,
            )
        while True:
            started = x.now_ms()
            failure: Exception | None = None
            x.begin_step()
            token = current_step_attempt.set(attempt)
            try:
                with step_span(x.trace_ids, x.run_id, x.function.id, name, hashed, attempt) as span:
                    try:
                        result = await _call(fn, args, kwargs, x)
                    except Exception as error:
                        record_error(span, error)
                        raise
            except Exception as error:
                failure = error
            finally:
                # Also when user code cancels this step call (a timeout around it).
                current_step_attempt.reset(token)
                x.end_step()
            if failure is None:
                break
            # In a worker this never returns; the harness returns to retry.
            await x.step_failed(name, hashed, STEP_KIND_RUN, failure, started, attempt)
            attempt += 1
        try:
            output = _json.dumps(result)
        except _json.NotSerializableError as problem:
            await x.step_failed(
                name,
                hashed,
                STEP_KIND_RUN,
                NonRetriableError(
                    f"step {name!r} returned a value that is not JSON-serializable: {problem} "
                    "(step results must be dict, list, str, int, float, bool or None)"
                ),
                started,
                attempt,
            )
            raise AssertionError("unreachable") from None
        too_big = ""
        if len(output) > x.limits.max_step_output_bytes:
            too_big = (
                f"step {name!r} output is {len(output)} bytes; the limit is "
                f"{x.limits.max_step_output_bytes} bytes per step"
            )
        elif x.state_bytes + len(output) > x.limits.max_run_state_bytes:
            too_big = (
                f"step {name!r} would bring the run's state to {x.state_bytes + len(output)} "
                f"bytes; the limit is {x.limits.max_run_state_bytes} bytes per run"
            )
        if too_big:
            await x.step_failed(
                name, hashed, STEP_KIND_RUN, NonRetriableError(too_big), started, attempt
            )
            raise AssertionError("unreachable")
        x.state_bytes += len(output)
        x.step_completed(name, hashed, STEP_KIND_RUN, output, started)
        return _json.loads(output)

    async def sleep(self, id: str, duration: DurationLike) -> None:
        """Pause the run for ``duration`` ("1h30m", a timedelta, or seconds). No
        worker is busy meanwhile; the run resumes on any worker."""
        ms = to_milliseconds(duration)
        await self._sleep(id, lambda now: now + ms)

    async def sleep_until(self, id: str, until: dt.datetime) -> None:
        """Pause the run until ``until`` (a naive datetime is local time)."""
        if not isinstance(until, dt.datetime):
            raise TypeError(f"sleep_until needs a datetime, not {type(until).__name__}")
        until_ms = int(until.timestamp() * 1000)
        await self._sleep(id, lambda _now: until_ms)

    async def _sleep(self, id: str, until: Callable[[int], int]) -> None:
        x = self._x
        name, hashed = x.allocate(id)
        memo = await x.memoized(hashed)
        if memo is not None:
            x.memoized_result(name, memo)
            return
        x.note_new_step(name)
        now = x.now_ms()
        await x.plan_sleep(name, hashed, until(now), now)


async def _call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], x: Execution
) -> Any:
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__):
        return await fn(*args, **kwargs)
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    result = await loop.run_in_executor(
        x.executor, functools.partial(context.run, fn, *args, **kwargs)
    )
    if inspect.isawaitable(result):
        result = await result
    return result
