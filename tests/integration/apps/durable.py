"""Functions that the durability tests run in real worker processes.

Each step appends to the ledger (tests.support.ledger) so tests can count how
many times user code really ran. Environment variables steer a worker:
TETHER_TEST_BLOCK=1 makes ``gated`` block forever in its second step (a worker
to kill mid-step); TETHER_TEST_WORKER names the worker in step outputs.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from tests.support import ledger
from tether import Context, NonRetriableError, RetryAfterError, StepError, Tether

app = Tether(app_id="durable")


def _worker_name() -> str:
    return os.environ.get("TETHER_TEST_WORKER", "worker")


def _attempts(run_id: str, step: str) -> int:
    path = os.environ[ledger.LEDGER_VARIABLE]
    from pathlib import Path

    return sum(1 for row in ledger.read(Path(path)) if row[:2] == [run_id, step])


def _record(run_id: str, step: str, value: Any) -> Any:
    ledger.record(run_id, step, _worker_name())
    return value


@app.function(id="gated", trigger="test/gated")
async def gated(ctx: Context) -> dict[str, Any]:
    """Three steps; the second blocks forever in a worker started with
    TETHER_TEST_BLOCK=1."""

    def second() -> str:
        ledger.record(ctx.run_id, "two-start", _worker_name())
        if os.environ.get("TETHER_TEST_BLOCK") == "1":
            threading.Event().wait()
        ledger.record(ctx.run_id, "two", _worker_name())
        return _worker_name()

    one = await ctx.step.run("one", _record, ctx.run_id, "one", 1)
    two = await ctx.step.run("two", second)
    three = await ctx.step.run("three", _record, ctx.run_id, "three", 3)
    return {"sum": one + three, "second_ran_on": two}


@app.function(id="flaky", trigger="test/flaky", retries=4)
async def flaky(ctx: Context) -> dict[str, Any]:
    """The middle step fails ``fail_times`` times, then succeeds."""
    fail_times = int(ctx.event.data.get("fail_times", 2))

    def middle() -> str:
        ledger.record(ctx.run_id, "middle", _worker_name())
        if _attempts(ctx.run_id, "middle") <= fail_times:
            raise ConnectionError(f"attempt {ctx.attempt} of middle failed")
        return "ok"

    await ctx.step.run("first", _record, ctx.run_id, "first", 1)
    middle_result = await ctx.step.run("middle", middle)
    await ctx.step.run("last", _record, ctx.run_id, "last", 3)
    return {"middle": middle_result}


@app.function(id="retry-after", trigger="test/retry-after")
async def retry_after(ctx: Context) -> str:
    def rate_limited() -> str:
        ledger.record(ctx.run_id, "call-api", _worker_name())
        if _attempts(ctx.run_id, "call-api") == 1:
            raise RetryAfterError("rate limited by the API", "2h")
        return "done"

    return await ctx.step.run("call-api", rate_limited)


@app.function(id="non-retriable", trigger="test/non-retriable")
async def non_retriable(ctx: Context) -> str:
    def reject() -> str:
        ledger.record(ctx.run_id, "validate", _worker_name())
        raise NonRetriableError("card number is invalid")

    return await ctx.step.run("validate", reject)


@app.function(id="caught", trigger="test/caught", retries=1)
async def caught(ctx: Context) -> dict[str, Any]:
    def always_fails() -> str:
        ledger.record(ctx.run_id, "charge", _worker_name())
        raise ValueError("payment provider is down")

    try:
        await ctx.step.run("charge", always_fails)
    except StepError as error:
        await ctx.step.run("notify", _record, ctx.run_id, "notify", error.name)
        return {"fallback": True, "error": error.name}
    return {"fallback": False}


@app.function(id="body-fails", trigger="test/body-fails", retries=2)
async def body_fails(ctx: Context) -> dict[str, Any]:
    """Fails outside any step on its first attempt; the retry resumes from the
    memoized first step."""
    before = await ctx.step.run("before", _record, ctx.run_id, "before", 41)
    if ctx.attempt == 0:
        raise RuntimeError("the function body failed outside any step")
    after = await ctx.step.run("after", _record, ctx.run_id, "after", 1)
    return {"total": before + after, "attempt": ctx.attempt}


@app.function(id="napper", trigger="test/napper")
async def napper(ctx: Context) -> str:
    seconds = float(ctx.event.data.get("seconds", 1))
    await ctx.step.run("before", _record, ctx.run_id, "before", None)
    await ctx.step.sleep("nap", seconds)
    await ctx.step.run("after", _record, ctx.run_id, "after", None)
    return "rested"


@app.function(id="not-json", trigger="test/not-json")
async def not_json(ctx: Context) -> str:
    import datetime as dt

    await ctx.step.run("now", lambda: dt.datetime.now(dt.UTC))
    return "unreachable"


@app.function(id="load", trigger="test/load")
async def load(ctx: Context) -> int:
    """Five short steps, for load and crash tests."""
    total = 0
    for i in range(5):
        total += await ctx.step.run("add", _busy_add, i)
    return total


def _busy_add(i: int) -> int:
    time.sleep(0.002)
    return i


@app.function(id="slow-step", trigger="test/slow-step")
async def slow_step(ctx: Context) -> str:
    """One step that outlives several heartbeats."""
    seconds = float(ctx.event.data.get("seconds", 2))

    def slow() -> str:
        ledger.record(ctx.run_id, "slow-start", _worker_name())
        time.sleep(seconds)
        ledger.record(ctx.run_id, "slow", _worker_name())
        return _worker_name()

    return await ctx.step.run("slow", slow)


@app.function(id="paced", trigger="test/paced")
async def paced(ctx: Context) -> int:
    """Six steps of half a second each, recorded: what runs while the
    database goes away (test_database_outage)."""

    def step(i: int) -> int:
        ledger.record(ctx.run_id, f"step-{i}", _worker_name())
        time.sleep(0.5)
        return i

    total = 0
    for i in range(6):
        total += await ctx.step.run(f"step-{i}", step, i)
    return total
