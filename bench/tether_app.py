"""The Tether app whose worker process runs the benchmark workloads.

Run by ``tether worker bench.tether_app:app``. The functions:

- ``bench-flow``, triggered by ``bench/run.requested``, runs ``data["steps"]``
  trivial steps in a row (the durable-steps workload), with no flow control;
- the same body with flow control, for the flow scenario
  (``bench/flow_workload.py``): ``bench-concurrency-10`` and
  ``bench-concurrency-20`` (``concurrency=10`` and ``20``), ``bench-keyed``
  (``Concurrency(1, key="event.data.key")``, one run at a time per key) and
  ``bench-throttle`` (``Throttle(100, "1s")``: 100 starts a second, evenly
  spaced), each triggered by ``bench/<name>.requested``;
- ``waiter``, triggered by ``bench/wait.start``, waits (up to 7 days) for a
  ``bench/wait.done`` event whose ``data.key`` equals its own event's, then
  completes (the event-ingestion workload, ``bench/waits_workload.py``);
- ``bench-latency``, triggered by ``bench/latency.requested``, runs
  ``data["steps"]`` steps that return when they ran (the latency scenario,
  ``bench/latency_workload.py``);
- ``bench-sleeper``, triggered by ``bench/sleep.requested``, sleeps until
  ``data["wake_at_ms"]`` and then runs a stamped step (the timers scenario,
  ``bench/timers_workload.py``).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from tether import Concurrency, Context, Tether, Throttle

APP_ID = "tether-bench"
FUNCTION_ID = "bench-flow"
EVENT_NAME = "bench/run.requested"

#: The flow scenario's functions: (function id, the event that triggers it).
CONCURRENCY_10 = ("bench-concurrency-10", "bench/concurrency-10.requested")
CONCURRENCY_20 = ("bench-concurrency-20", "bench/concurrency-20.requested")
KEYED = ("bench-keyed", "bench/keyed.requested")
THROTTLED = ("bench-throttle", "bench/throttle.requested")
#: ``bench-keyed``: runs per key at once; the events' ``data.key`` take
#: FLOW_KEYS values, so at most KEYED_LIMIT x FLOW_KEYS of its runs execute at once.
KEYED_LIMIT = 1
FLOW_KEYS = 20
#: ``bench-throttle``: THROTTLE_LIMIT starts per THROTTLE_PERIOD_S seconds (burst 1).
THROTTLE_LIMIT = 100
THROTTLE_PERIOD_S = 1

WAITER_ID = "waiter"
WAIT_START_EVENT = "bench/wait.start"
WAIT_DONE_EVENT = "bench/wait.done"
WAIT_MATCH = "data.key"
WAIT_TIMEOUT = "7d"

app = Tether(app_id=APP_ID)


async def trivial_step(index: int) -> dict[str, int]:
    """What each step does: nothing but return a small JSON value."""
    return {"i": index}


async def run_steps(ctx: Context) -> dict[str, int]:
    """``data["steps"]`` trivial steps in a row."""
    steps = int(ctx.event.data["steps"])
    total = 0
    for index in range(steps):
        result = await ctx.step.run(f"step-{index}", trivial_step, index)
        total += result["i"]
    return {"steps": steps, "total": total}


@app.function(id=FUNCTION_ID, trigger=EVENT_NAME, retries=0)
async def bench_flow(ctx: Context) -> dict[str, int]:
    return await run_steps(ctx)


@app.function(id=CONCURRENCY_10[0], trigger=CONCURRENCY_10[1], retries=0, concurrency=10)
async def bench_concurrency_10(ctx: Context) -> dict[str, int]:
    return await run_steps(ctx)


@app.function(id=CONCURRENCY_20[0], trigger=CONCURRENCY_20[1], retries=0, concurrency=20)
async def bench_concurrency_20(ctx: Context) -> dict[str, int]:
    return await run_steps(ctx)


@app.function(
    id=KEYED[0],
    trigger=KEYED[1],
    retries=0,
    concurrency=Concurrency(KEYED_LIMIT, key="event.data.key"),
)
async def bench_keyed(ctx: Context) -> dict[str, int]:
    return await run_steps(ctx)


@app.function(
    id=THROTTLED[0],
    trigger=THROTTLED[1],
    retries=0,
    throttle=Throttle(THROTTLE_LIMIT, f"{THROTTLE_PERIOD_S}s"),
)
async def bench_throttle(ctx: Context) -> dict[str, int]:
    return await run_steps(ctx)


@app.function(id=WAITER_ID, trigger=WAIT_START_EVENT, retries=0)
async def waiter(ctx: Context) -> dict[str, Any]:
    done = await ctx.step.wait_for_event(
        "wait-done", event=WAIT_DONE_EVENT, match=WAIT_MATCH, timeout=WAIT_TIMEOUT
    )
    return {"key": ctx.event.data["key"], "matched": done is not None}


LATENCY_ID = "bench-latency"
LATENCY_EVENT = "bench/latency.requested"


async def stamped_step(index: int) -> dict[str, int]:
    """A step that returns when its body ran (wall clock, ns)."""
    return {"i": index, "ns": time.time_ns()}


@app.function(id=LATENCY_ID, trigger=LATENCY_EVENT, retries=0)
async def bench_latency(ctx: Context) -> list[int]:
    """``data["steps"]`` steps in a row, each stamped: the latency scenario
    (``bench/latency_workload.py``) reads when the first one ran."""
    stamps = []
    for index in range(int(ctx.event.data["steps"])):
        result = await ctx.step.run(f"step-{index}", stamped_step, index)
        stamps.append(result["ns"])
    return stamps


SLEEPER_ID = "bench-sleeper"
SLEEPER_EVENT = "bench/sleep.requested"


@app.function(id=SLEEPER_ID, trigger=SLEEPER_EVENT, retries=0)
async def bench_sleeper(ctx: Context) -> int:
    """Sleeps until ``data["wake_at_ms"]``, then runs a stamped step: the timers
    scenario (``bench/timers_workload.py``) reads how late it ran."""
    wake_at = dt.datetime.fromtimestamp(int(ctx.event.data["wake_at_ms"]) / 1000, dt.UTC)
    await ctx.step.sleep_until("nap", wake_at)
    woke = await ctx.step.run("woke", stamped_step, 0)
    return woke["ns"]
