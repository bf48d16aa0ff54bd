"""The Tether app whose worker process runs the benchmark workload.

Run by ``tether worker bench.tether_app:app``: one function, triggered by
``bench/run.requested``, that runs ``data["steps"]`` trivial steps in a row.
"""

from __future__ import annotations

from tether import Context, Tether

APP_ID = "tether-bench"
FUNCTION_ID = "bench-flow"
EVENT_NAME = "bench/run.requested"

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
