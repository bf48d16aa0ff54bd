"""The Tether app whose worker process runs the benchmark workloads.

Run by ``tether worker bench.tether_app:app``. Two functions:

- ``bench-flow``, triggered by ``bench/run.requested``, runs ``data["steps"]``
  trivial steps in a row (the durable-steps workload);
- ``waiter``, triggered by ``bench/wait.start``, waits (up to 7 days) for a
  ``bench/wait.done`` event whose ``data.key`` equals its own event's, then
  completes (the event-ingestion workload, ``bench/waits_workload.py``).
"""

from __future__ import annotations

from typing import Any

from tether import Context, Tether

APP_ID = "tether-bench"
FUNCTION_ID = "bench-flow"
EVENT_NAME = "bench/run.requested"

WAITER_ID = "waiter"
WAIT_START_EVENT = "bench/wait.start"
WAIT_DONE_EVENT = "bench/wait.done"
WAIT_MATCH = "data.key"
WAIT_TIMEOUT = "7d"

app = Tether(app_id=APP_ID)


async def trivial_step(index: int) -> dict[str, int]:
    """What each step does: nothing but return a small JSON value."""
    return {"i": index}


@app.function(id=FUNCTION_ID, trigger=EVENT_NAME, retries=0)
async def bench_flow(ctx: Context) -> dict[str, int]:
    steps = int(ctx.event.data["steps"])
    total = 0
    for index in range(steps):
        result = await ctx.step.run(f"step-{index}", trivial_step, index)
        total += result["i"]
    return {"steps": steps, "total": total}


@app.function(id=WAITER_ID, trigger=WAIT_START_EVENT, retries=0)
async def waiter(ctx: Context) -> dict[str, Any]:
    done = await ctx.step.wait_for_event(
        "wait-done", event=WAIT_DONE_EVENT, match=WAIT_MATCH, timeout=WAIT_TIMEOUT
    )
    return {"key": ctx.event.data["key"], "matched": done is not None}
