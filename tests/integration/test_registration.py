"""Registering functions with flow control through a real worker, and pausing
and resuming them from the SDK (``app.functions``)."""

from __future__ import annotations

import asyncio
import zoneinfo
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tether import (
    Concurrency,
    Context,
    NotFoundError,
    PauseMode,
    RunStatus,
    Tether,
    Throttle,
    WorkerRejectedError,
    cron,
)
from tether.testing import TestEnvironment

app = Tether(app_id="registration-tests")


@app.function(
    id="limited",
    trigger="reg/limited",
    concurrency=[3, Concurrency(1, key="event.data.account", scope="app")],
    throttle=Throttle(100, "1s"),
)
async def limited(ctx: Context) -> str:
    return await ctx.step.run("work", lambda: "done")


@app.function(id="unlimited", trigger="reg/other")
async def unlimited(ctx: Context) -> str:
    return "other"


@app.function(id="daily", trigger=cron("0 9 * * *", tz="Europe/Paris"))
async def daily(ctx: Context) -> None:
    return None


# Declared on its own client: it is registered only by the test that expects the rejection.
broken = Tether(app_id="registration-tests")


@broken.function(id="bad-key", trigger="reg/bad", concurrency=Concurrency(2, key="evnt.data.x"))
async def bad_key(ctx: Context) -> None:
    return None


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[TestEnvironment]:
    async with TestEnvironment(app) as environment:
        yield environment


async def test_an_invalid_cel_key_is_rejected_naming_the_option(env: TestEnvironment) -> None:
    broken._set_address(env.address)
    worker = broken.worker()
    try:
        with pytest.raises(WorkerRejectedError) as caught:
            await asyncio.wait_for(worker.run(), 30)
    finally:
        await broken.close()

    assert str(caught.value) == (
        "function 'bad-key': concurrency key: unknown variable 'evnt' in 'evnt.data.x' "
        "(use 'event')"
    )


async def test_flow_control_is_registered(env: TestEnvironment) -> None:
    functions = {f.id: f for f in await app.functions.list()}

    assert set(functions) == {"limited", "unlimited", "daily"}
    assert functions["limited"].connected_workers == 1
    assert functions["limited"].paused is None
    [next_fire] = functions["daily"].next_fires  # one per cron trigger
    assert next_fire is not None
    assert next_fire.astimezone(zoneinfo.ZoneInfo("Europe/Paris")).strftime("%H:%M") == "09:00"


async def test_pause_holds_runs_and_resume_releases_them(env: TestEnvironment) -> None:
    info = await app.functions.pause("limited")

    assert info.paused is PauseMode.HOLD
    [sent] = await app.send({"name": "reg/limited", "data": {"account": "a"}})
    [run_id] = sent.run_ids
    # A run of another function sent after it completes: the dispatcher has
    # had its chances, and passed the paused one over.
    [other] = await app.send({"name": "reg/other"})
    assert (await app.runs.wait(other.run_ids[0], timeout=10)).status is RunStatus.COMPLETED
    assert (await app.runs.get(run_id)).status is RunStatus.QUEUED
    assert [f.paused for f in await app.functions.list() if f.id == "limited"] == [PauseMode.HOLD]

    assert await app.functions.resume("limited") == 1

    run = await app.runs.wait(run_id, timeout=10)
    assert run.status is RunStatus.COMPLETED
    assert run.output == "done"
    assert [f.paused for f in await app.functions.list() if f.id == "limited"] == [None]


async def test_pause_mode_skip_is_recorded(env: TestEnvironment) -> None:
    info = await app.functions.pause("daily", mode="skip")

    assert info.paused is PauseMode.SKIP
    assert await app.functions.resume("daily") == 0


async def test_pausing_an_unknown_function_is_not_found(env: TestEnvironment) -> None:
    with pytest.raises(NotFoundError, match="function 'nope' of app 'registration-tests'"):
        await app.functions.pause("nope")
    with pytest.raises(NotFoundError):
        await app.functions.resume("nope")
