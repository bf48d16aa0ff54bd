"""Run one function in-process with mocked step results; no control plane."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tether import _json
from tether._convert import EventLike, event_from_message, event_message
from tether._errors import StepError
from tether._execution import Execution, error_info
from tether._function import Function
from tether._models import Event
from tether._step_ids import hash_step_id
from tether.v1 import common_pb2, worker_service_pb2


@dataclass(slots=True)
class StepCall:
    """A step the function reached, in order."""

    id: str
    #: "run", "sleep", "wait_for_event", "invoke" or "send_event".
    kind: str
    #: True when the result came from ``steps=`` instead of running the code.
    mocked: bool = False
    output: Any = None
    error: StepError | None = None
    attempts: int = 0
    #: For sleeps: how long the function asked to sleep.
    slept: dt.timedelta | None = None


@dataclass(slots=True)
class HarnessResult:
    output: Any
    #: The exception the function raised, if it did.
    error: BaseException | None
    steps: list[StepCall] = field(default_factory=list)
    #: Events the function sent with step.send_event.
    sent_events: list[Event] = field(default_factory=list)

    def step(self, step_id: str) -> StepCall:
        """The call of the step with this id (``id:1`` for the second one)."""
        for call in self.steps:
            if call.id == step_id:
                return call
        raise KeyError(f"the function never reached step {step_id!r}; it reached {self.step_ids}")

    @property
    def step_ids(self) -> list[str]:
        return [c.id for c in self.steps]


class _HarnessExecution(Execution):
    def __init__(
        self,
        function: Function,
        events: Sequence[EventLike],
        mocks: Mapping[str, Any],
        attempt: int,
    ) -> None:
        now = time.time_ns() // 1_000_000
        execute = worker_service_pb2.Execute(
            execution_id="harness",
            run_id="harness-run",
            function_id=function.id,
            attempt=attempt,
            events=[event_message(e, i) for i, e in enumerate(events)],
            server_time_ms=now,
        )
        for name, value in mocks.items():
            memo = execute.steps.add(step_id=hash_step_id(name))
            if isinstance(value, BaseException):
                memo.error.CopyFrom(error_info(value))
            else:
                try:
                    memo.output = _json.dumps(value)
                except _json.NotSerializableError as problem:
                    raise ValueError(f"the mock for step {name!r} is not JSON: {problem}") from None
        super().__init__(function, execute, lambda _outcome: None)
        self.calls: list[StepCall] = []
        self.sent: list[Event] = []
        self._names: dict[str, str] = {}
        self._open: dict[str, StepCall] = {}

    @property
    def replaying(self) -> bool:
        # Mocks are results handed out, not a replay: ctx.logger speaks throughout.
        return False

    def allocate(self, step_id: str) -> tuple[str, str]:
        name, hashed = super().allocate(step_id)
        self._names[hashed] = name
        return name, hashed

    async def memoized(self, hashed: str) -> worker_service_pb2.MemoizedStep | None:
        # Mocks have no recorded order: hand them out as asked.
        memo = self.memo.get(hashed)
        if memo is not None:
            call = StepCall(id=self._names[hashed], kind="run", mocked=True)
            if memo.WhichOneof("result") == "error":
                call.error = StepError(call.id, memo.error.name, memo.error.message)
            else:
                call.output = _json.loads(memo.output)
            self.calls.append(call)
        return memo

    def _call_for(self, name: str, kind: int = common_pb2.STEP_KIND_RUN) -> StepCall:
        call = self._open.get(name)
        if call is None:
            label = "send_event" if kind == common_pb2.STEP_KIND_SEND_EVENT else "run"
            call = StepCall(id=name, kind=label)
            self._open[name] = call
            self.calls.append(call)
        return call

    def step_completed(
        self, name: str, hashed: str, kind: int, output: bytes, started_ms: int
    ) -> None:
        call = self._call_for(name, kind)
        call.attempts += 1
        call.output = _json.loads(output)

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
        from tether._errors import NonRetriableError

        call = self._call_for(name, kind)
        call.attempts += 1
        can_retry = retriable if retriable is not None else not isinstance(error, NonRetriableError)
        if can_retry and attempt < self.function.retries:
            return  # the step runs again at once: the harness does not wait out backoff
        call.error = StepError(name, type(error).__name__, str(error))
        raise call.error

    async def plan(self, wait: worker_service_pb2.PlannedWait, target: Function | None) -> Any:
        kind = wait.WhichOneof("kind")
        if kind == "sleep":
            slept = dt.timedelta(milliseconds=wait.sleep.until_ms - wait.started_at_ms)
            self.calls.append(StepCall(id=wait.name, kind="sleep", slept=slept))
            return None
        if kind == "wait_for_event":
            # No event arrives in the harness: the wait times out (mock it to
            # return an event).
            self.calls.append(StepCall(id=wait.name, kind="wait_for_event"))
            return None
        call = StepCall(id=wait.name, kind="invoke")
        self.calls.append(call)
        if target is None:
            call.error = StepError(
                wait.name,
                "InvokeError",
                f"the harness runs only invoked functions passed as Function objects; "
                f"mock step {wait.name!r} instead",
            )
            raise call.error
        data = _json.loads(wait.invoke.data) or {}
        child = await run_function(target, event={"name": "tether/function.invoked", "data": data})
        if child.error is not None:
            call.error = StepError(wait.name, type(child.error).__name__, str(child.error))
            raise call.error
        call.output = child.output
        return child.output

    async def send_events(self, messages: list[common_pb2.Event]) -> list[str]:
        self.sent.extend(event_from_message(m) for m in messages)
        return [m.id for m in messages]


async def run_function(
    function: Function,
    *,
    event: EventLike | None = None,
    events: Sequence[EventLike] | None = None,
    steps: Mapping[str, Any] | None = None,
    attempt: int = 0,
) -> HarnessResult:
    """Run ``function`` once, start to end, in this process.

    ``steps`` maps step ids to mocked results (an exception instance makes that
    step fail for good, raising StepError in the function). Steps without a mock
    run for real; a failing one is retried at once up to the function's retries.
    Sleeps return at once and are recorded. Nothing talks to a control plane.
    """
    trigger = list(events) if events is not None else [event or {"name": "test/event", "data": {}}]
    execution = _HarnessExecution(function, trigger, steps or {}, attempt)
    from tether._context import Context

    try:
        output = await function.handler(Context(execution))
    except Exception as error:
        return HarnessResult(None, error, execution.calls, execution.sent)
    return HarnessResult(output, None, execution.calls, execution.sent)
