"""``tether.testing.run_function``: one function in-process, mocked steps, no server."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.unit._match import exactly
from tether import Context, Function, NonRetriableError, RetryAfterError, StepError, Tether
from tether._execution import Execution
from tether.testing import run_function

Handler = Callable[[Context], Awaitable[Any]]

# 2023-11-14 22:13:20 UTC, in milliseconds.
NOW_MS = 1_700_000_000_000


def define(handler: Handler, *, retries: int = 4) -> Function:
    app = Tether(app_id="shop", address="localhost:1")
    return app.function(id="flow", trigger="app/test", retries=retries)(handler)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's clock stands still at NOW_MS."""
    monkeypatch.setattr(Execution, "now_ms", lambda self: NOW_MS)


# -- mocked steps -------------------------------------------------------------------


async def test_a_mocked_step_returns_the_mock_without_running_the_code() -> None:
    ran: list[str] = []

    async def fetch_user() -> dict[str, Any]:
        ran.append("fetch-user")
        return {"id": 1, "real": True}

    async def handler(ctx: Context) -> Any:
        user = await ctx.step.run("fetch-user", fetch_user)
        return {"greeting": f"hello {user['name']}"}

    result = await run_function(define(handler), steps={"fetch-user": {"name": "Ada"}})

    assert ran == []
    assert result.error is None
    assert result.output == {"greeting": "hello Ada"}
    call = result.step("fetch-user")
    assert (call.kind, call.mocked, call.output, call.attempts, call.error) == (
        "run",
        True,
        {"name": "Ada"},
        0,
        None,
    )


async def test_an_exception_as_a_mock_raises_step_error_in_the_function() -> None:
    ran: list[str] = []

    async def charge() -> str:
        ran.append("charge")
        return "charged"

    async def handler(ctx: Context) -> Any:
        try:
            await ctx.step.run("charge-card", charge)
        except StepError as error:
            return {"step": error.step_id, "name": error.name, "message": error.error_message}
        return "no error"

    result = await run_function(define(handler), steps={"charge-card": ValueError("declined")})

    assert ran == []
    assert result.error is None
    assert result.output == {"step": "charge-card", "name": "ValueError", "message": "declined"}
    call = result.step("charge-card")
    assert call.mocked
    assert call.error is not None
    assert str(call.error) == "step 'charge-card' failed: ValueError: declined"


async def test_an_uncaught_mocked_failure_fails_the_function() -> None:
    async def handler(ctx: Context) -> None:
        await ctx.step.run("charge-card", asyncio.sleep, 0)

    result = await run_function(
        define(handler), steps={"charge-card": NonRetriableError("card stolen")}
    )
    assert result.output is None
    assert isinstance(result.error, StepError)
    assert str(result.error) == "step 'charge-card' failed: NonRetriableError: card stolen"


async def test_a_mock_that_is_not_json_is_refused() -> None:
    message = (
        "the mock for step 'fetch' is not JSON: a value of type 'set' is not JSON-serializable"
    )
    with pytest.raises(ValueError, match=exactly(message)):
        await run_function(define(_noop), steps={"fetch": {1, 2}})


async def _noop(ctx: Context) -> None:
    return None


# -- steps that run -------------------------------------------------------------------


async def test_an_unmocked_step_runs_and_its_result_is_recorded() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    async def handler(ctx: Context) -> Any:
        return await ctx.step.run("add", add, 2, b=3)

    result = await run_function(define(handler))
    assert result.output == 5
    call = result.step("add")
    assert (call.kind, call.mocked, call.output, call.attempts, call.error) == (
        "run",
        False,
        5,
        1,
        None,
    )


async def test_a_step_result_is_its_json_round_trip() -> None:
    async def pair() -> tuple[int, str]:
        return (1, "a")

    async def handler(ctx: Context) -> Any:
        value = await ctx.step.run("pair", pair)
        return {"type": type(value).__name__, "value": value}

    result = await run_function(define(handler))
    assert result.output == {"type": "list", "value": [1, "a"]}


async def test_a_sync_step_runs_in_a_thread() -> None:
    def where() -> bool:
        return threading.current_thread() is threading.main_thread()

    async def handler(ctx: Context) -> Any:
        return await ctx.step.run("where", where)

    assert threading.current_thread() is threading.main_thread()
    result = await run_function(define(handler))
    assert result.error is None
    assert result.output is False


async def test_a_failing_step_is_retried_up_to_retries_then_raises_step_error() -> None:
    attempts_seen: list[int] = []

    async def handler(ctx: Context) -> None:
        async def send_email() -> None:
            attempts_seen.append(ctx.attempt)
            raise ConnectionError("smtp down")

        await ctx.step.run("send-email", send_email)

    result = await run_function(define(handler, retries=2))

    assert attempts_seen == [0, 1, 2]
    assert isinstance(result.error, StepError)
    assert str(result.error) == "step 'send-email' failed: ConnectionError: smtp down"
    assert (result.error.step_id, result.error.name, result.error.error_message) == (
        "send-email",
        "ConnectionError",
        "smtp down",
    )
    call = result.step("send-email")
    assert call.attempts == 3
    assert call.error is result.error


async def test_with_zero_retries_a_step_runs_once() -> None:
    calls: list[int] = []

    async def fail() -> None:
        calls.append(1)
        raise RuntimeError("boom")

    async def handler(ctx: Context) -> None:
        await ctx.step.run("fail", fail)

    result = await run_function(define(handler, retries=0))
    assert calls == [1]
    assert isinstance(result.error, StepError)
    assert result.step("fail").attempts == 1


async def test_a_step_that_succeeds_on_a_retry_returns_its_result() -> None:
    async def handler(ctx: Context) -> Any:
        async def flaky() -> str:
            if ctx.attempt < 2:
                raise TimeoutError(f"attempt {ctx.attempt}")
            return f"ok on attempt {ctx.attempt}"

        return await ctx.step.run("flaky", flaky)

    result = await run_function(define(handler, retries=4))
    assert result.error is None
    assert result.output == "ok on attempt 2"
    call = result.step("flaky")
    assert (call.attempts, call.output, call.error) == (3, "ok on attempt 2", None)


async def test_a_caught_step_error_lets_the_function_carry_on() -> None:
    async def fail() -> None:
        raise KeyError("missing")

    async def handler(ctx: Context) -> Any:
        try:
            await ctx.step.run("lookup", fail)
        except StepError as error:
            return f"fallback after {error.name}"
        return "unreachable"

    result = await run_function(define(handler, retries=1))
    assert result.error is None
    assert result.output == "fallback after KeyError"
    assert result.step("lookup").attempts == 2


async def test_non_retriable_error_is_not_retried() -> None:
    calls: list[int] = []

    async def validate() -> None:
        calls.append(1)
        raise NonRetriableError("invalid address")

    async def handler(ctx: Context) -> None:
        await ctx.step.run("validate", validate)

    result = await run_function(define(handler, retries=5))
    assert calls == [1]
    assert isinstance(result.error, StepError)
    assert str(result.error) == "step 'validate' failed: NonRetriableError: invalid address"
    assert result.step("validate").attempts == 1


async def test_retry_after_error_is_retried_at_once() -> None:
    calls: list[int] = []

    async def rate_limited() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RetryAfterError("slow down", "1h")
        return "done"

    async def handler(ctx: Context) -> Any:
        return await ctx.step.run("call-api", rate_limited)

    result = await run_function(define(handler, retries=1))
    assert result.output == "done"
    assert calls == [1, 1]


async def test_a_non_json_step_result_fails_the_step_naming_step_and_type() -> None:
    calls: list[int] = []

    async def tags() -> set[str]:
        calls.append(1)
        return {"a"}

    async def handler(ctx: Context) -> None:
        await ctx.step.run("collect-tags", tags)

    result = await run_function(define(handler, retries=4))

    assert calls == [1]
    assert isinstance(result.error, StepError)
    assert result.error.step_id == "collect-tags"
    assert result.error.name == "NonRetriableError"
    assert result.error.error_message == (
        "step 'collect-tags' returned a value that is not JSON-serializable: a value of type "
        "'set' is not JSON-serializable (step results must be dict, list, str, int, float, "
        "bool or None)"
    )
    assert result.step("collect-tags").attempts == 1


# -- step ids -------------------------------------------------------------------------


async def test_repeated_step_ids_get_suffixes_and_can_be_mocked_one_by_one() -> None:
    async def charge(n: int) -> str:
        return f"real {n}"

    async def handler(ctx: Context) -> Any:
        return [await ctx.step.run("charge", charge, n) for n in range(3)]

    result = await run_function(define(handler), steps={"charge:1": "mocked"})
    assert result.output == ["real 0", "mocked", "real 2"]
    assert result.step_ids == ["charge", "charge:1", "charge:2"]
    assert [c.mocked for c in result.steps] == [False, True, False]


async def test_asking_for_a_step_that_was_never_reached() -> None:
    async def handler(ctx: Context) -> None:
        await ctx.step.run("a", asyncio.sleep, 0)

    result = await run_function(define(handler))
    with pytest.raises(KeyError) as caught:
        result.step("b")
    assert caught.value.args[0] == "the function never reached step 'b'; it reached ['a']"


# -- sleeps ---------------------------------------------------------------------------


@pytest.mark.usefixtures("frozen_clock")
async def test_sleeps_return_at_once_and_are_recorded_with_their_duration() -> None:
    async def after() -> str:
        return "after"

    async def handler(ctx: Context) -> Any:
        await ctx.step.sleep("wait-1d", "1d")
        await ctx.step.sleep("cool-off", dt.timedelta(minutes=5))
        await ctx.step.sleep("short", 1.5)
        return await ctx.step.run("after", after)

    result = await run_function(define(handler))

    assert result.error is None
    assert result.output == "after"
    assert [(c.id, c.kind, c.slept) for c in result.steps] == [
        ("wait-1d", "sleep", dt.timedelta(days=1)),
        ("cool-off", "sleep", dt.timedelta(minutes=5)),
        ("short", "sleep", dt.timedelta(seconds=1.5)),
        ("after", "run", None),
    ]


@pytest.mark.usefixtures("frozen_clock")
async def test_sleep_until_is_recorded_with_the_time_left() -> None:
    until = dt.datetime.fromtimestamp(NOW_MS / 1000, dt.UTC) + dt.timedelta(hours=2)

    async def handler(ctx: Context) -> str:
        await ctx.step.sleep_until("until-nine", until)
        return "woke"

    result = await run_function(define(handler))
    assert result.output == "woke"
    assert result.step("until-nine").slept == dt.timedelta(hours=2)


@pytest.mark.usefixtures("frozen_clock")
async def test_repeated_sleeps_get_suffixes() -> None:
    async def handler(ctx: Context) -> None:
        for _ in range(3):
            await ctx.step.sleep("tick", "1m")

    result = await run_function(define(handler))
    assert result.step_ids == ["tick", "tick:1", "tick:2"]


async def test_a_bad_sleep_duration_fails_the_function() -> None:
    async def handler(ctx: Context) -> None:
        await ctx.step.sleep("wait", "soon")

    result = await run_function(define(handler))
    assert isinstance(result.error, ValueError)
    assert str(result.error).startswith("invalid duration 'soon'")
    assert result.steps == []


async def test_a_sleep_is_recorded_with_its_duration_while_the_clock_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A real clock moves between two readings; each reading here is 1 ms later.
    readings = iter(range(NOW_MS, NOW_MS + 1_000))
    monkeypatch.setattr(Execution, "now_ms", lambda self: next(readings))

    async def handler(ctx: Context) -> None:
        await ctx.step.sleep("wait-1h", "1h")

    result = await run_function(define(handler))
    assert result.step("wait-1h").slept == dt.timedelta(hours=1)


# -- the function itself ----------------------------------------------------------------


async def test_the_trigger_event_reaches_the_function() -> None:
    async def handler(ctx: Context) -> Any:
        return {"name": ctx.event.name, "data": ctx.event.data, "count": len(ctx.events)}

    result = await run_function(
        define(handler), event={"name": "app/user.signup", "data": {"user_id": 7}}
    )
    assert result.output == {"name": "app/user.signup", "data": {"user_id": 7}, "count": 1}


async def test_a_batch_of_events_reaches_the_function() -> None:
    async def handler(ctx: Context) -> Any:
        return [e.data["n"] for e in ctx.events]

    result = await run_function(
        define(handler), events=[{"name": "app/x", "data": {"n": n}} for n in range(3)]
    )
    assert result.output == [0, 1, 2]


async def test_default_event() -> None:
    async def handler(ctx: Context) -> Any:
        return [ctx.event.name, ctx.event.data]

    result = await run_function(define(handler))
    assert result.output == ["test/event", {}]


async def test_attempt_outside_steps_is_the_run_attempt() -> None:
    async def handler(ctx: Context) -> int:
        return ctx.attempt

    assert (await run_function(define(handler))).output == 0
    assert (await run_function(define(handler), attempt=3)).output == 3


async def test_an_error_outside_any_step_is_returned_not_raised() -> None:
    async def handler(ctx: Context) -> None:
        await ctx.step.run("first", asyncio.sleep, 0)
        raise LookupError("no such plan")

    result = await run_function(define(handler))
    assert result.output is None
    assert isinstance(result.error, LookupError)
    assert str(result.error) == "no such plan"
    assert result.step_ids == ["first"]


async def test_the_logger_speaks_in_a_run_with_mocked_steps(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def flow(ctx: Context) -> None:
        ctx.logger.info("before the mock")
        await ctx.step.run("mocked", lambda: 1)
        ctx.logger.info("after the mock")

    with caplog.at_level("INFO", logger="tether.functions.flow"):
        result = await run_function(define(flow), steps={"mocked": 1})

    assert result.error is None
    assert [r.getMessage() for r in caplog.records if r.name == "tether.functions.flow"] == [
        "before the mock",
        "after the mock",
    ]
