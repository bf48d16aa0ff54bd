"""Step tools: ``ctx.step.run``, ``sleep``, ``sleep_until``, ``wait_for_event``,
``invoke`` and ``send_event``."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from tether import _json
from tether._convert import EventLike, event_message
from tether._durations import DurationLike, to_milliseconds
from tether._errors import NonRetriableError
from tether._function import Function
from tether._models import Event
from tether._telemetry import record_error, step_span
from tether.v1 import common_pb2, worker_service_pb2

if TYPE_CHECKING:
    from tether._execution import Execution

P = ParamSpec("P")
T = TypeVar("T")

STEP_KIND_SEND_EVENT = common_pb2.STEP_KIND_SEND_EVENT

#: The attempt number of the step whose code is running (0-based), for ctx.attempt.
current_step_attempt: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "tether_step_attempt", default=None
)
#: The id (as written, with any suffix) of the step whose code is running, for ctx.logger.
current_step_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tether_step_id", default=None
)

# What a step does, once it knows its name and hashed id: (fn, args, kwargs).
Prepared = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class Step:
    """The durable building blocks of a function. Every step has an id, unique in
    the function and stable across deployments: it is how results are memoized."""

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

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
        return await self._step(
            id, common_pb2.STEP_KIND_RUN, lambda _name, _hashed: (fn, args, kwargs)
        )

    async def send_event(self, id: str, events: EventLike | Sequence[EventLike]) -> list[str]:
        """Send events from the run, exactly once even if the function is retried:
        each event without an id gets one derived from the run and the step, so a
        resend is recognised as a duplicate. Returns the event ids."""
        items: list[EventLike] = [events] if isinstance(events, Event | Mapping) else list(events)
        if not items:
            raise ValueError(f"send_event {id!r}: no events to send")
        run_id = self._execution.run_id

        def prepare(_name: str, hashed: str) -> Prepared:
            messages = []
            for index, item in enumerate(items):
                message = event_message(item, index)
                if not message.id:
                    message.id = f"{run_id}-{hashed[:16]}-{index}"
                messages.append(message)
            return self._execution.send_events, (messages,), {}

        result: list[str] = await self._step(id, STEP_KIND_SEND_EVENT, prepare)
        return result

    async def _step(self, id: str, kind: int, prepare: Callable[[str, str], Prepared]) -> Any:
        x = self._execution
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
                kind,
                NonRetriableError(
                    f"step {name!r} would be step {x.step_count} of the run; "
                    f"the limit is {x.limits.max_steps_per_run} steps per run"
                ),
                x.now_ms(),
                attempt,
            )
        fn, args, kwargs = prepare(name, hashed)
        while True:
            started = x.now_ms()
            failure: Exception | None = None
            x.begin_step()
            token = current_step_attempt.set(attempt)
            id_token = current_step_id.set(name)
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
                current_step_id.reset(id_token)
                x.end_step()
            if failure is None:
                break
            # In a worker this never returns; the harness returns to retry.
            await x.step_failed(name, hashed, kind, failure, started, attempt)
            attempt += 1
        output = await self._encode(name, hashed, kind, result, started, attempt)
        x.state_bytes += len(output)
        x.step_completed(name, hashed, kind, output, started)
        if x.cancelled:
            # The run was cancelled while this step ran: its result is recorded,
            # nothing after it runs.
            await x.park()
        return _json.loads(output)

    async def _encode(
        self, name: str, hashed: str, kind: int, result: Any, started: int, attempt: int
    ) -> bytes:
        x = self._execution
        try:
            output = _json.dumps(result)
        except _json.NotSerializableError as problem:
            await x.step_failed(
                name,
                hashed,
                kind,
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
            await x.step_failed(name, hashed, kind, NonRetriableError(too_big), started, attempt)
            raise AssertionError("unreachable")
        return output

    # -- steps that suspend the run ---------------------------------------------------

    async def sleep(self, id: str, duration: DurationLike) -> None:
        """Pause the run for ``duration`` ("1h30m", a timedelta, or seconds). No
        worker is busy meanwhile; the run resumes on any worker."""
        ms = to_milliseconds(duration)
        await self._suspend(
            id,
            lambda now: worker_service_pb2.PlannedWait(
                sleep=worker_service_pb2.Sleep(until_ms=now + ms)
            ),
        )

    async def sleep_until(self, id: str, until: dt.datetime) -> None:
        """Pause the run until ``until`` (a naive datetime is local time)."""
        if not isinstance(until, dt.datetime):
            raise TypeError(f"sleep_until needs a datetime, not {type(until).__name__}")
        until_ms = int(until.timestamp() * 1000)
        await self._suspend(
            id,
            lambda _now: worker_service_pb2.PlannedWait(
                sleep=worker_service_pb2.Sleep(until_ms=until_ms)
            ),
        )

    async def wait_for_event(
        self,
        id: str,
        *,
        event: str,
        timeout: DurationLike,
        match: str | None = None,
        if_: str | None = None,
    ) -> Event | None:
        """Pause until an event named ``event`` arrives, and return it; return
        None once ``timeout`` passes. ``match="data.user_id"`` requires the
        incoming event's value at that path to equal this run's event's;
        ``if_`` is a CEL expression over ``event`` (this run's) and ``async``
        (the incoming one). Events received from the moment the run reaches this
        step count, even if they arrive before the run is suspended."""
        if not isinstance(event, str) or not event:
            raise ValueError(f"wait_for_event {id!r}: give the event name to wait for")
        timeout_ms = to_milliseconds(timeout)
        wait = worker_service_pb2.WaitForEvent(
            event=event, match=match or "", if_expression=if_ or ""
        )

        def plan(now: int) -> worker_service_pb2.PlannedWait:
            wait.timeout_until_ms = now + timeout_ms
            return worker_service_pb2.PlannedWait(wait_for_event=wait)

        value = await self._suspend(id, plan)
        return _event(value)

    async def invoke(
        self,
        id: str,
        *,
        function: Function | str,
        data: Mapping[str, Any] | None = None,
        timeout: DurationLike | None = None,
        parent_close: Literal["cancel", "abandon"] = "cancel",
    ) -> Any:
        """Run another function (``function``: a Function of this app, its id, or
        ``"app-id/function-id"`` for another app's) as a child run with ``data``
        as its event data, and return its output. If the child fails, is
        cancelled or does not finish within ``timeout``, StepError is raised here
        (the step is not retried: the child retried already).

        ``parent_close``: when this run is cancelled (or ends without the child),
        or ``timeout`` passes, the child is cancelled too (``"cancel"``), or
        left to run on by itself (``"abandon"``)."""
        if parent_close not in _PARENT_CLOSE:
            raise ValueError(
                f"invoke {id!r}: parent_close is 'cancel' or 'abandon', not {parent_close!r}"
            )
        if isinstance(function, Function):
            app_id, function_id = "", function.id
        elif isinstance(function, str) and function:
            app_id, _, function_id = function.rpartition("/")
        else:
            raise TypeError(f"invoke {id!r}: function is a Function or an id, not {function!r}")
        try:
            payload = _json.dumps(dict(data or {}))
        except _json.NotSerializableError as problem:
            raise ValueError(f"invoke {id!r}: data is not JSON-serializable: {problem}") from None
        timeout_ms = to_milliseconds(timeout) if timeout is not None else None
        invoke = worker_service_pb2.Invoke(
            app_id=app_id,
            function_id=function_id,
            data=payload,
            parent_close=_PARENT_CLOSE[parent_close],
        )

        def plan(now: int) -> worker_service_pb2.PlannedWait:
            if timeout_ms is not None:
                invoke.timeout_until_ms = now + timeout_ms
            return worker_service_pb2.PlannedWait(invoke=invoke)

        return await self._suspend(
            id, plan, target=function if isinstance(function, Function) else None
        )

    async def _suspend(
        self,
        id: str,
        plan: Callable[[int], worker_service_pb2.PlannedWait],
        target: Function | None = None,
    ) -> Any:
        x = self._execution
        name, hashed = x.allocate(id)
        memo = await x.memoized(hashed)
        if memo is not None:
            return x.memoized_result(name, memo)
        x.note_new_step(name)
        if x.stopped:
            await x.park()
        now = x.now_ms()
        wait = plan(now)
        wait.step_id = hashed
        wait.name = name
        wait.started_at_ms = now
        # In a worker this never returns: the run resumes in a later execution.
        return await x.plan(wait, target)


# The default goes out unset (UNSPECIFIED means cancel): the plan's bytes stay
# what they were before the field existed.
_PARENT_CLOSE = {
    "cancel": worker_service_pb2.PARENT_CLOSE_UNSPECIFIED,
    "abandon": worker_service_pb2.PARENT_CLOSE_ABANDON,
}


def _event(value: Any) -> Event | None:
    if not isinstance(value, dict):
        return None
    return Event(
        name=value.get("name", ""),
        data=value.get("data") or {},
        id=value.get("id", ""),
        user=value.get("user") or None,
        ts=int(value.get("ts") or 0),
    )


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
