"""A small app for the command-line tests: ``tether worker tests.e2e.apps.worker:app``.

Every step appends a line to the test ledger (``TETHER_TEST_LEDGER``), so tests can
tell which steps really ran, and how many times.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.support import ledger
from tether import (
    Concurrency,
    Context,
    NonRetriableError,
    RetryAfterError,
    Tether,
    Throttle,
    cron,
)

app = Tether(app_id="cli-tests")


@app.function(id="three-steps", trigger="e2e/steps.requested")
async def three_steps(ctx: Context) -> dict[str, Any]:
    """Three steps in a row; the output names what each returned."""
    n = int(ctx.event.data.get("n", 1))

    def fetch() -> int:
        ledger.record(ctx.run_id, "fetch")
        return n

    def double(value: int) -> int:
        ledger.record(ctx.run_id, "double")
        return value * 2

    def store(value: int) -> str:
        ledger.record(ctx.run_id, "store")
        return f"stored {value}"

    fetched = await ctx.step.run("fetch", fetch)
    doubled = await ctx.step.run("double", double, fetched)
    stored = await ctx.step.run("store", store, doubled)
    return {"n": n, "doubled": doubled, "stored": stored}


@app.function(id="sleeper", trigger="e2e/nap.requested")
async def sleeper(ctx: Context) -> dict[str, Any]:
    """A step, a sleep of ``data.seconds`` (an hour unless told), another step."""
    seconds = float(ctx.event.data.get("seconds", 3600))

    def before() -> str:
        ledger.record(ctx.run_id, "before-nap")
        return "awake"

    def after() -> str:
        ledger.record(ctx.run_id, "after-nap")
        return "rested"

    await ctx.step.run("before-nap", before)
    await ctx.step.sleep("nap", seconds)
    await ctx.step.run("after-nap", after)
    return {"slept": seconds}


@app.function(id="gated-charge", trigger="e2e/charge.requested", retries=0)
async def gated_charge(ctx: Context) -> dict[str, Any]:
    """Prepares, then charges: the charge fails for good (NonRetriableError) while
    the file named by ``data.gate`` does not exist."""
    gate = Path(str(ctx.event.data["gate"]))

    def prepare() -> str:
        ledger.record(ctx.run_id, "prepare")
        return "prepared"

    def charge() -> str:
        ledger.record(ctx.run_id, "charge")
        if not gate.exists():
            raise NonRetriableError("card declined: the gate is closed")
        return "charged"

    prepared = await ctx.step.run("prepare", prepare)
    charged = await ctx.step.run("charge", charge)
    return {"prepare": prepared, "charge": charged}


@app.function(id="flaky-then-fine", trigger="e2e/flaky.requested", retries=4)
async def flaky_then_fine(ctx: Context) -> dict[str, Any]:
    """A step that fails ``data.failures`` times, asking each time to be retried
    ``data.delay`` seconds later, then succeeds."""
    failures = int(ctx.event.data.get("failures", 2))
    delay = float(ctx.event.data.get("delay", 0.2))

    def call_flaky_service() -> str:
        attempt = ctx.attempt
        ledger.record(ctx.run_id, "call-flaky-service", attempt)
        if attempt < failures:
            raise RetryAfterError(f"service busy (attempt {attempt + 1})", delay)
        return f"ok after {attempt + 1} attempts"

    result = await ctx.step.run("call-flaky-service", call_flaky_service)
    return {"result": result}


@app.function(id="slow-step", trigger="e2e/slow.requested")
async def slow_step(ctx: Context) -> dict[str, Any]:
    """One step that takes ``data.seconds`` of wall-clock time."""
    seconds = float(ctx.event.data.get("seconds", 2))

    def work() -> str:
        ledger.record(ctx.run_id, "slow-started")
        time.sleep(seconds)
        ledger.record(ctx.run_id, "slow-finished")
        return "done"

    return {"work": await ctx.step.run("work", work)}


@app.function(id="approval", trigger="e2e/order.placed")
async def approval(ctx: Context) -> dict[str, Any]:
    """Waits an hour for ``e2e/order.approved`` with the same ``data.order_id``."""
    approved = await ctx.step.wait_for_event(
        "wait-for-approval", event="e2e/order.approved", match="data.order_id", timeout="1h"
    )
    return {"approved_by": approved.data.get("by") if approved else None}


@app.function(id="invoker", trigger="e2e/invoke.requested")
async def invoker(ctx: Context) -> Any:
    """Runs three-steps as a child run and returns its output."""
    return await ctx.step.invoke("call-three-steps", function=three_steps, data={"n": 3})


@app.function(id="pausable", trigger="e2e/pausable.requested")
async def pausable(ctx: Context) -> dict[str, Any]:
    """One step; the pause tests pause and resume this function."""

    def work() -> str:
        ledger.record(ctx.run_id, "work")
        return "worked"

    return {"work": await ctx.step.run("work", work)}


@app.function(id="new-year", trigger=cron("0 0 1 1 *", catch_up="none"))
async def new_year(ctx: Context) -> str:
    """A cron function that fires once a year, so tests can read its next tick."""
    return "happy new year"


@app.function(
    id="sync-account",
    trigger="e2e/sync.requested",
    concurrency=[2, Concurrency(1, key="event.data.account_id")],
    throttle=Throttle(10, "1m", burst=2),
    singleton={"key": "event.data.account_id", "mode": "skip"},
)
async def sync_account(ctx: Context) -> str:
    """Flow control options, for the listing; no test sends its event."""
    return "synced"
