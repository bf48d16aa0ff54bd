"""The Python half of the cross-language tests (test_cross_language.py); the
TypeScript half is typescript/cross.ts (app ``ts-app``)."""

from __future__ import annotations

from typing import Any

from tether import (
    Concurrency,
    Context,
    Debounce,
    Priority,
    RateLimit,
    Singleton,
    Tether,
    Throttle,
    cron,
    event,
)

app = Tether(app_id="py-app")


@app.function(id="py-double", trigger=[])
async def py_double(ctx: Context) -> Any:
    return {"doubled": ctx.event.data["n"] * 2, "sdk": "python"}


@app.function(id="py-invokes-ts", trigger="cross/py-invokes-ts")
async def py_invokes_ts(ctx: Context) -> Any:
    child = await ctx.step.invoke(
        "ask-typescript", function="ts-app/ts-double", data={"n": ctx.event.data["n"]}
    )
    return {"from_typescript": child}


@app.function(id="py-waits", trigger="cross/py-waits")
async def py_waits(ctx: Context) -> Any:
    said = await ctx.step.wait_for_event(
        "hear-typescript", event="cross/ts-said", timeout="1d", match="data.key"
    )
    return None if said is None else {"heard": said.data["words"]}


# The same options as "every-option" in typescript/cross.ts, in Python's idiom.
@app.function(
    id="every-option",
    trigger=[
        event("cross/every-option", if_="event.data.go == true"),
        cron("30 8 * * 1-5", tz="America/New_York", catch_up="all"),
    ],
    retries=7,
    concurrency=[Concurrency(2, key="event.data.account"), Concurrency(10)],
    throttle=Throttle(limit=5, period="1m", burst=2, key="event.data.account"),
    rate_limit=RateLimit(limit=100, period="1h"),
    debounce=Debounce(period="5s", key="event.data.account", timeout="1m"),
    priority=Priority(run="event.data.vip ? 60 : 0"),
    singleton=Singleton(key="event.data.account", mode="cancel"),
    idempotency="event.data.request_id",
    cancel_on=[{"event": "cross/every-option.stop", "match": "data.account", "timeout": "2h"}],
    timeouts={"start": "10m", "finish": "1d"},
)
async def every_option(ctx: Context) -> None:
    return None


@app.function(
    id="batched",
    trigger="cross/batched",
    batching={"max_size": 50, "timeout": "30s", "key": "event.data.account"},
    concurrency=Concurrency(3, key="event.data.account", scope="app"),
)
async def batched(ctx: Context) -> None:
    return None
