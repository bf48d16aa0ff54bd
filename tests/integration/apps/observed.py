"""Functions the tracing and metrics tests run in a real worker process."""

from __future__ import annotations

from typing import Any

from tether import Context, NonRetriableError, Tether

app = Tether(app_id="observed")

# Runs whose "flaky" step already failed once (one worker process per test).
_failed_once: set[str] = set()

SLEEP = "1h"
WAIT_TIMEOUT = "2h"


@app.function(id="traced-child", trigger="observed/child")
async def traced_child(ctx: Context) -> int:
    return int(await ctx.step.run("double", lambda: ctx.event.data["n"] * 2))


@app.function(id="traced-flow", trigger="observed/go", retries=2)
async def traced_flow(ctx: Context) -> dict[str, Any]:
    """A step, a step whose first attempt fails, a sleep, a wait that times out
    and an invoke."""

    def flaky() -> int:
        if ctx.run_id not in _failed_once:
            _failed_once.add(ctx.run_id)
            raise ConnectionError("first attempt fails")
        return 2

    first = await ctx.step.run("first", lambda: 1)
    second = await ctx.step.run("flaky", flaky)
    await ctx.step.sleep("nap", SLEEP)
    approval = await ctx.step.wait_for_event(
        "approval", event="observed/approved", timeout=WAIT_TIMEOUT
    )
    child = await ctx.step.invoke("child", function=traced_child, data={"n": 5})
    return {"sum": first + second + child, "approved": approval is not None}


@app.function(id="quick", trigger="observed/quick")
async def quick(ctx: Context) -> int:
    return int(await ctx.step.run("one", lambda: 1))


@app.function(id="doomed", trigger="observed/doomed")
async def doomed(ctx: Context) -> None:
    def reject() -> None:
        raise NonRetriableError("this run cannot succeed")

    await ctx.step.run("reject", reject)


@app.function(id="sleeper", trigger="observed/sleep")
async def sleeper(ctx: Context) -> None:
    await ctx.step.sleep("long-nap", "1d")


@app.function(id="waiter", trigger="observed/wait")
async def waiter(ctx: Context) -> None:
    await ctx.step.wait_for_event("never", event="observed/never", timeout="1d")
