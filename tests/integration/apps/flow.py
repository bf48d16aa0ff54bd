"""Functions under flow control that the flow control tests run in real worker
processes.

Steps append to the ledger (tests.support.ledger) as ``run id, label, wall
time in ns, key, worker``: the ``start``/``end`` pairs of ``work`` steps are
what the tests measure overlap with. Each app is served by its own worker (a
worker serves a whole app), so a test can choose the capacity that serves it:
``app`` (the main one), ``priority_app`` (connected late, capacity 1) and
``fair_app`` (capacity 1).
"""

from __future__ import annotations

import os
import time
from typing import Any

from tests.support import ledger
from tether import (
    Batching,
    Concurrency,
    Context,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Tether,
    Throttle,
)

app = Tether(app_id="flow")
priority_app = Tether(app_id="flow-priority")
fair_app = Tether(app_id="flow-fair")


def _record(run_id: str, label: str, key: str = "") -> None:
    worker = os.environ.get("TETHER_TEST_WORKER", "worker")
    ledger.record(run_id, label, time.time_ns(), key, worker)


def _work(run_id: str, key: str, seconds: float) -> str:
    """A step that takes ``seconds`` of real time, recorded as start and end."""
    _record(run_id, "start", key)
    time.sleep(seconds)
    _record(run_id, "end", key)
    return key


async def _timed(ctx: Context) -> str:
    key = str(ctx.event.data.get("customer", ""))
    seconds = float(ctx.event.data.get("seconds", 0.2))
    return await ctx.step.run("work", _work, ctx.run_id, key, seconds)


# -- concurrency -------------------------------------------------------------------------

app.function(id="limited", trigger="flow/limited", concurrency=2)(_timed)
app.function(
    id="keyed", trigger="flow/keyed", concurrency=Concurrency(1, key="event.data.customer")
)(_timed)


@app.function(id="sleepy", trigger="flow/sleepy", concurrency=1)
async def sleepy(ctx: Context) -> str:
    await ctx.step.run("before", _record, ctx.run_id, "before")
    await ctx.step.sleep("nap", "1h")
    await ctx.step.run("after", _record, ctx.run_id, "after")
    return "rested"


# -- throttle, rate limit, debounce, priority --------------------------------------------


async def _echo(ctx: Context) -> Any:
    return ctx.event.data


app.function(id="throttled", trigger="flow/throttled", throttle=Throttle(1, "10s"))(_echo)
app.function(id="bursty", trigger="flow/bursty", throttle=Throttle(1, "10s", burst=2))(_echo)
app.function(id="rate-limited", trigger="flow/rated", rate_limit=RateLimit(2, "1h"))(_echo)
app.function(
    id="rate-keyed",
    trigger="flow/rated-keyed",
    rate_limit=RateLimit(1, "1h", key="event.data.account"),
)(_echo)
app.function(
    id="debounced", trigger="flow/debounced", debounce=Debounce("5s", key="event.data.user")
)(_echo)
app.function(
    id="debounce-capped",
    trigger="flow/debounce-capped",
    debounce=Debounce("5s", key="event.data.user", timeout="10s"),
)(_echo)
app.function(id="deferred", trigger="flow/deferred", priority=Priority(run="event.data.priority"))(
    _echo
)


@priority_app.function(
    id="prioritized",
    trigger="flow/prioritized",
    priority=Priority(run="event.data.vip == true ? 600 : 0"),
)
async def prioritized(ctx: Context) -> Any:
    await ctx.step.run("work", _record, ctx.run_id, "start", str(ctx.event.data["n"]))
    return ctx.event.data


# -- batching -----------------------------------------------------------------------------


async def _batch(ctx: Context) -> list[Any]:
    return [e.data["n"] for e in ctx.events]


app.function(id="batched", trigger="flow/batched", batching=Batching(3, "10s"))(_batch)
app.function(
    id="batched-keyed",
    trigger="flow/batched-keyed",
    batching=Batching(2, "10s", key="event.data.tenant"),
)(_batch)


# -- singleton ----------------------------------------------------------------------------


async def _await_release(ctx: Context) -> Any:
    released = await ctx.step.wait_for_event(
        "release", event="flow/release", match="data.job", timeout="1h"
    )
    return released.data if released is not None else None


app.function(
    id="single-skip", trigger="flow/single-skip", singleton=Singleton(key="event.data.job")
)(_await_release)
app.function(
    id="single-cancel",
    trigger="flow/single-cancel",
    singleton=Singleton(key="event.data.job", mode="cancel"),
)(_await_release)


# -- pause ----------------------------------------------------------------------------------


async def _pausable(ctx: Context) -> Any:
    await ctx.step.run("work", _record, ctx.run_id, "work")
    return ctx.event.data


app.function(id="pausable", trigger="flow/pausable")(_pausable)
app.function(id="pausable-skip", trigger="flow/pausable-skip")(_pausable)


@app.function(id="plain", trigger="flow/plain")
async def plain(ctx: Context) -> str:
    return "done"


@app.function(id="pause-sleeper", trigger="flow/pause-sleeper")
async def pause_sleeper(ctx: Context) -> str:
    await ctx.step.run("before", _record, ctx.run_id, "before")
    await ctx.step.sleep("nap", "1h")
    await ctx.step.run("after", _record, ctx.run_id, "after")
    return "rested"


# -- fairness (a worker of capacity 1) ----------------------------------------------------------

fair_app.function(
    id="fair-keyed", trigger="fair/keyed", concurrency=Concurrency(100, key="event.data.customer")
)(_timed)
fair_app.function(id="flood", trigger="fair/flood")(_timed)
fair_app.function(id="trickle", trigger="fair/trickle")(_timed)
