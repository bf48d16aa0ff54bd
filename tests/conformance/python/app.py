"""The Python side of the conformance scenarios (tests/conformance/scenarios.json):
one function per scenario, as the scenario's ``function`` text describes it.

Steps record what ran in the ledger (``TETHER_TEST_LEDGER``) under the run's
``data.key``; gates and switches are files in ``TETHER_TEST_GATE_DIR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from tests.support import ledger
from tether import (
    Batching,
    Context,
    NonRetriableError,
    RetryAfterError,
    StepError,
    Tether,
    Throttle,
    cron,
)

app = Tether(app_id="conformance")


def key_of(ctx: Context) -> str:
    return str(ctx.event.data.get("key", ""))


def record(ctx: Context, label: str) -> None:
    """One ledger line: the run's key, what happened, when (wall clock, ms)."""
    ledger.record(key_of(ctx), label, time.time_ns() // 1_000_000)


def gate_file(ctx: Context, suffix: str) -> Path:
    return Path(os.environ["TETHER_TEST_GATE_DIR"]) / f"{key_of(ctx)}.{suffix}"


async def gate_opened(ctx: Context) -> None:
    """Return once the run's gate is open (a file another process creates)."""
    while not gate_file(ctx, "open").exists():  # noqa: ASYNC110
        await asyncio.sleep(0.02)


@app.function(id="memoized-steps", trigger="conformance/memoized-steps")
async def memoized_steps(ctx: Context) -> Any:
    async def one() -> int:
        record(ctx, "one")
        return int(ctx.event.data["n"]) + 1

    first = await ctx.step.run("one", one)
    await ctx.step.sleep("nap", "1s")

    async def two() -> int:
        record(ctx, "two")
        return first * 10

    return {"one": first, "two": await ctx.step.run("two", two)}


@app.function(id="retries-backoff", trigger="conformance/retries-backoff", retries=4)
async def retries_backoff(ctx: Context) -> Any:
    async def flaky() -> str:
        record(ctx, "flaky")
        if ctx.attempt < 2:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return "ok"

    return {"result": await ctx.step.run("flaky", flaky)}


@app.function(id="non-retriable", trigger="conformance/non-retriable")
async def non_retriable(ctx: Context) -> Any:
    async def fatal() -> None:
        record(ctx, "fatal")
        raise NonRetriableError("no retry")

    async def after() -> None:
        record(ctx, "after")

    await ctx.step.run("fatal", fatal)
    await ctx.step.run("after", after)


@app.function(id="retry-after", trigger="conformance/retry-after")
async def retry_after(ctx: Context) -> Any:
    async def limited() -> str:
        record(ctx, "limited")
        if ctx.attempt == 0:
            raise RetryAfterError("rate limited", "30s")
        return "done"

    return {"result": await ctx.step.run("limited", limited)}


@app.function(id="caught-step-error", trigger="conformance/caught-step-error", retries=1)
async def caught_step_error(ctx: Context) -> Any:
    async def doomed() -> None:
        record(ctx, "doomed")
        raise RuntimeError("nope")

    async def fallback() -> str:
        record(ctx, "fallback")
        return "plan b"

    try:
        await ctx.step.run("doomed", doomed)
    except StepError as error:
        return {
            "caught": error.step_id,
            "message": error.error_message,
            "fallback": await ctx.step.run("fallback", fallback),
        }
    raise AssertionError("the doomed step returned")


@app.function(id="sleep", trigger="conformance/sleep")
async def sleep(ctx: Context) -> Any:
    async def before() -> None:
        record(ctx, "before")

    async def after() -> None:
        record(ctx, "after")

    await ctx.step.run("before", before)
    await ctx.step.sleep("three-days", "3d")
    await ctx.step.run("after", after)
    return "rested"


async def wait_for_approval(ctx: Context) -> Any:
    approval = await ctx.step.wait_for_event(
        "approval", event="conformance/approved", timeout="1d", match="data.key"
    )
    return None if approval is None else {"approved_by": approval.data["approver"]}


app.function(id="wait-for-event-hit", trigger="conformance/wait-for-event-hit")(wait_for_approval)
app.function(id="wait-for-event-timeout", trigger="conformance/wait-for-event-timeout")(
    wait_for_approval
)


@app.function(id="invoke-child", trigger=[])
async def invoke_child(ctx: Context) -> Any:
    record(ctx, "child")
    return {"doubled": int(ctx.event.data["n"]) * 2}


@app.function(id="invoke", trigger="conformance/invoke")
async def invoke(ctx: Context) -> Any:
    child = await ctx.step.invoke(
        "double", function=invoke_child, data={"n": 21, "key": key_of(ctx)}
    )
    return {"child": child}


@app.function(id="napping-child", trigger=[])
async def napping_child(ctx: Context) -> None:
    await ctx.step.sleep("nap", "1h")
    record(ctx, f"woke-{ctx.event.data['label']}")


@app.function(id="invoke-parent-close", trigger="conformance/invoke-parent-close")
async def invoke_parent_close(ctx: Context) -> str:
    def data(label: str) -> dict[str, str]:
        return {"label": label, "key": key_of(ctx)}

    with contextlib.suppress(StepError):  # the default parent_close: cancel
        await ctx.step.invoke("tied", function=napping_child, data=data("tied"), timeout="1m")
    with contextlib.suppress(StepError):
        await ctx.step.invoke(
            "kept",
            function=napping_child,
            data=data("kept"),
            timeout="1m",
            parent_close="abandon",
        )
    return "gave up"


@app.function(id="send-event-once", trigger="conformance/send-event-once")
async def send_event_once(ctx: Context) -> Any:
    await ctx.step.send_event(
        "notify", {"name": "conformance/notified", "data": {"key": key_of(ctx)}}
    )
    if ctx.attempt == 0:
        raise RuntimeError("the body fails once after sending")
    return "sent"


@app.function(id="notified-listener", trigger="conformance/notified")
async def notified_listener(ctx: Context) -> None:
    record(ctx, "notified")


@app.function(id="parallel-steps", trigger="conformance/parallel-steps")
async def parallel_steps(ctx: Context) -> Any:
    def step(label: str, value: int) -> Any:
        async def body() -> int:
            record(ctx, label)
            return value

        return ctx.step.run(label, body)

    return list(await asyncio.gather(step("p1", 1), step("p2", 2), step("p3", 3)))


@app.function(id="checkpointing", trigger="conformance/checkpointing")
async def checkpointing(ctx: Context) -> Any:
    async def one() -> int:
        record(ctx, "one")
        return 1

    first = await ctx.step.run("one", one)

    async def two() -> int:
        record(ctx, "two-start")
        await gate_opened(ctx)
        record(ctx, "two-end")
        return first + 1

    return await ctx.step.run("two", two)


@app.function(id="cancel", trigger="conformance/cancel")
async def cancel(ctx: Context) -> Any:
    async def first() -> None:
        record(ctx, "first")

    async def after() -> None:
        record(ctx, "after")

    await ctx.step.run("first", first)
    await ctx.step.wait_for_event("never", event="conformance/never-sent", timeout="7d")
    await ctx.step.run("after", after)


@app.function(
    id="cancel-on",
    trigger="conformance/cancel-on",
    cancel_on=[{"event": "conformance/cancel-on.stop", "match": "data.key"}],
)
async def cancel_on(ctx: Context) -> Any:
    async def first() -> None:
        record(ctx, "first")

    async def after() -> None:
        record(ctx, "after")

    await ctx.step.run("first", first)
    await ctx.step.sleep("long", "7d")
    await ctx.step.run("after", after)


@app.function(id="idempotency", trigger="conformance/idempotency", idempotency="event.data.key")
async def idempotency(ctx: Context) -> Any:
    async def work() -> None:
        record(ctx, "work")

    await ctx.step.run("work", work)
    return "once"


@app.function(id="concurrency", trigger="conformance/concurrency", concurrency=1)
async def concurrency(ctx: Context) -> Any:
    async def work() -> None:
        record(ctx, "work-start")
        await asyncio.sleep(0.15)
        record(ctx, "work-end")

    await ctx.step.run("work", work)
    return "worked"


@app.function(
    id="throttle", trigger="conformance/throttle", throttle=Throttle(limit=1, period="10s")
)
async def throttle(ctx: Context) -> Any:
    async def work() -> None:
        record(ctx, "work")

    await ctx.step.run("work", work)
    return "throttled"


@app.function(id="cron", trigger=cron("0 9 * * *", tz="Europe/Paris", catch_up="none"))
async def cron_tick(ctx: Context) -> Any:
    assert ctx.cron is not None
    ledger.record("cron", "tick", time.time_ns() // 1_000_000)
    return {
        "schedule": ctx.cron.schedule,
        "timezone": ctx.cron.timezone,
        "scheduled_at_ms": int(ctx.cron.scheduled_at.timestamp() * 1000),
        "event_name": ctx.event.name,
    }


@app.function(
    id="batching",
    trigger="conformance/batching",
    batching=Batching(max_size=3, timeout="1m", key="event.data.key"),
)
async def batching(ctx: Context) -> Any:
    return {"count": len(ctx.events), "seqs": [e.data["seq"] for e in ctx.events]}


@app.function(
    id="replay-from-failed-step", trigger="conformance/replay-from-failed-step", retries=0
)
async def replay_from_failed_step(ctx: Context) -> Any:
    async def prepare() -> str:
        record(ctx, "prepare")
        return "ready"

    async def deliver() -> str:
        record(ctx, "deliver")
        if gate_file(ctx, "broken").exists():
            raise RuntimeError("broken")
        return "delivered"

    ready = await ctx.step.run("prepare", prepare)
    return {"prepare": ready, "deliver": await ctx.step.run("deliver", deliver)}


async def survive(ctx: Context) -> Any:
    async def one() -> None:
        record(ctx, "one")

    async def blocker() -> None:
        record(ctx, "blocker-start")
        await gate_opened(ctx)
        record(ctx, "blocker-end")

    async def three() -> None:
        record(ctx, "three")

    await ctx.step.run("one", one)
    await ctx.step.run("blocker", blocker)
    await ctx.step.run("three", three)
    return "survived"


app.function(id="worker-killed-mid-step", trigger="conformance/worker-killed-mid-step")(survive)
app.function(id="control-plane-restart", trigger="conformance/control-plane-restart")(survive)
