"""Runs that coordinate through events: wait_for_event, cancel_on, invoke,
send_event, parallel steps, triggers, idempotency, on_failure and timeouts.

A real control plane (SQLite, then PostgreSQL) on a virtual clock, with the
worker in this process so that tests can hold steps at a gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import database_params
from tests.support.databases import fresh_database
from tests.support.waiting import wait_until_async
from tether import Context, Run, RunStatus, StepError, Tether, event
from tether.testing import TestEnvironment

app = Tether(app_id="coordination")
billing = Tether(app_id="billing")
late = Tether(app_id="late")

ran: list[tuple[str, str]] = []
gates: dict[str, asyncio.Event] = {}
heard: list[str] = []
failures: list[dict[str, Any]] = []
attempts: dict[str, int] = {}
keys = itertools.count()


# -- waiting for events ---------------------------------------------------------------


@app.function(
    id="await-approval",
    trigger="shop/order.placed",
    cancel_on=[{"event": "shop/order.withdrawn", "match": "data.order_id", "timeout": "2d"}],
)
async def await_approval(ctx: Context) -> Any:
    approval = await ctx.step.wait_for_event(
        "approval", event="shop/order.approved", match="data.order_id", timeout="24h"
    )
    await ctx.step.run("after-approval", lambda: ran.append((ctx.run_id, "after-approval")))
    return approval.data if approval else None


@app.function(id="await-refund", trigger="shop/refund.requested")
async def await_refund(ctx: Context) -> Any:
    signed = await ctx.step.wait_for_event(
        "manager",
        event="shop/refund.signed",
        if_="async.data.refund_id == event.data.refund_id && async.data.amount >= 100",
        timeout="1h",
    )
    return signed.data["amount"] if signed else None


@app.function(id="race", trigger="race/start")
async def race(ctx: Context) -> Any:
    async def slow() -> str:
        ran.append((ctx.run_id, "slow-start"))
        await gates[ctx.event.data["key"]].wait()
        return "slow"

    # The wait is reached first; the execution only suspends once "slow" ends.
    ping, _ = await asyncio.gather(
        ctx.step.wait_for_event("ping", event="race/ping", match="data.key", timeout="1h"),
        ctx.step.run("slow", slow),
    )
    return ping.data if ping else None


@app.function(id="bad-wait", trigger="bad/wait")
async def bad_wait(ctx: Context) -> str:
    try:
        await ctx.step.wait_for_event(
            "bad",
            event=ctx.event.data.get("event", "x/y"),
            if_=ctx.event.data["if"],
            match=ctx.event.data.get("match"),
            timeout="1h",
        )
    except StepError as error:
        return error.error_message
    return "no error"


# -- invoking -------------------------------------------------------------------------


@app.function(id="double", trigger=[])
async def double(ctx: Context) -> int:
    return int(ctx.event.data["n"]) * 2


@app.function(id="fragile-child", trigger=[], retries=1)
async def fragile_child(ctx: Context) -> None:
    attempts["fragile-child"] = attempts.get("fragile-child", 0) + 1
    raise ValueError("the child broke")


@app.function(id="slow-child", trigger=[])
async def slow_child(ctx: Context) -> str:
    await ctx.step.sleep("nap", "2h")
    return "late"


@app.function(id="middle-child", trigger=[])
async def middle_child(ctx: Context) -> Any:
    return await ctx.step.invoke("deep", function=slow_child)


@app.function(id="tree-root", trigger="tree/go")
async def tree_root(ctx: Context) -> list[Any]:
    return list(
        await asyncio.gather(
            ctx.step.invoke("kept", function=slow_child, parent_close="abandon"),
            ctx.step.invoke("tied", function=middle_child),
        )
    )


@billing.function(id="charge", trigger=[])
async def charge(ctx: Context) -> dict[str, Any]:
    return {"charged": ctx.event.data["amount"]}


@app.function(id="orchestrator", trigger="orch/go")
async def orchestrator(ctx: Context) -> dict[str, Any]:
    doubled = await ctx.step.invoke("double", function=double, data={"n": 21})
    outcomes: dict[str, Any] = {"doubled": doubled}
    for step_id, target, timeout in (
        ("break", "fragile-child", None),
        ("slow", "slow-child", "1h"),
        ("ghost", "no-such-function", None),
    ):
        try:
            await ctx.step.invoke(step_id, function=target, timeout=timeout)
        except StepError as error:
            outcomes[step_id] = f"{error.name}: {error.error_message}"
    outcomes["billed"] = await ctx.step.invoke(
        "bill", function="billing/charge", data={"amount": 5}
    )
    return outcomes


async def _gated(key: str, label: str, run_id: str) -> str:
    ran.append((run_id, f"{label}-start"))
    await gates[key].wait()
    return label


@app.function(id="gated-child", trigger=[])
async def gated_child(ctx: Context) -> str:
    key = ctx.event.data["key"]
    return await ctx.step.run("work", _gated, f"{key}-child", "child", ctx.run_id)


@app.function(id="overlapping-parent", trigger="overlap/go")
async def overlapping_parent(ctx: Context) -> list[Any]:
    key = ctx.event.data["key"]

    async def call() -> Any:
        result = await ctx.step.invoke("call", function=gated_child, data={"key": key})
        await ctx.step.run("after-call", lambda: ran.append((ctx.run_id, "after-call")))
        return result

    async def nap_then_work() -> Any:
        await ctx.step.sleep("nap", "1s")
        return await ctx.step.run("long", _gated, f"{key}-parent", "long", ctx.run_id)

    return list(await asyncio.gather(call(), nap_then_work(), ctx.step.sleep("day", "1d")))


# -- sending events ------------------------------------------------------------------------


@app.function(id="announcer", trigger="ann/go", retries=2)
async def announcer(ctx: Context) -> list[str]:
    ids = await ctx.step.send_event(
        "announce", [{"name": "ann/heard", "data": {"run": ctx.run_id}}]
    )
    if ctx.attempt == 0:
        raise RuntimeError("failed after sending, outside any step")
    return ids


@app.function(id="hearer", trigger="ann/heard")
async def hearer(ctx: Context) -> None:
    heard.append(ctx.event.data["run"])


# -- parallel steps --------------------------------------------------------------------------


@app.function(id="parallel-mix", trigger="par/go")
async def parallel_mix(ctx: Context) -> list[Any]:
    def steady() -> str:
        ran.append((ctx.run_id, "steady"))
        return "steady"

    def flaky() -> str:
        ran.append((ctx.run_id, "flaky"))
        if ran.count((ctx.run_id, "flaky")) < 3:
            raise ConnectionError("not yet")
        return "flaky"

    a, b, _, d = await asyncio.gather(
        ctx.step.run("steady", steady),
        ctx.step.run("flaky", flaky),
        ctx.step.sleep("nap", "30m"),
        ctx.step.wait_for_event("signal", event="par/signal", match="data.key", timeout="1h"),
    )
    return [a, b, d.data["value"] if d else None]


# -- triggers ------------------------------------------------------------------------------


def _record(label: str) -> Any:
    async def handler(ctx: Context) -> str:
        ran.append((ctx.event.id, label))
        return label

    return handler


app.function(id="fan-a", trigger="fan/out")(_record("fan-a"))
app.function(id="fan-b", trigger="fan/out")(_record("fan-b"))
app.function(id="pro-only", trigger=event("plan/changed", if_="event.data.plan == 'pro'"))(
    _record("pro-only")
)
app.function(id="user-events", trigger="user/*")(_record("user-events"))
app.function(id="two-ways", trigger=["multi/a", "multi/*"])(_record("two-ways"))


# -- idempotency, failures and timeouts ------------------------------------------------------


@app.function(id="charge-once", trigger="pay/requested", idempotency="event.data.order_id")
async def charge_once(ctx: Context) -> str:
    return str(ctx.event.data["order_id"])


async def record_failure(ctx: Context) -> None:
    failures.append({"handler": "on_failure", **ctx.event.data})


@app.function(id="doomed", trigger="doom/go", retries=0, on_failure=record_failure)
async def doomed(ctx: Context) -> None:
    raise ValueError(f"doomed {ctx.event.data['n']}")


@app.function(id="failure-audit", trigger="tether/function.failed")
async def failure_audit(ctx: Context) -> None:
    failures.append({"handler": "audit", **ctx.event.data})


@app.function(id="overslept", trigger="sleep/long", timeouts={"finish": "1h"})
async def overslept(ctx: Context) -> str:
    await ctx.step.sleep("long-nap", "2h")
    return "woke"


@late.function(id="never-started", trigger="late/go", timeouts={"start": "5m"})
async def never_started(ctx: Context) -> str:
    return "started"


# -- fixtures -----------------------------------------------------------------------------------


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=database_params())
async def env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestEnvironment]:
    with fresh_database(request.param, tmp_path_factory.mktemp("db")) as db_url:
        async with TestEnvironment(app, db_url=db_url) as environment:
            billing._set_address(environment.address)
            worker = billing.worker()
            running = asyncio.create_task(worker.run())
            await asyncio.wait_for(worker.connected.wait(), 10)
            try:
                yield environment
            finally:
                worker.stop()
                await running
                await billing.close()


async def _start(name: str, data: dict[str, Any] | None = None) -> str:
    [result] = await app.send({"name": name, "data": data or {}})
    [run_id] = result.run_ids
    return run_id


async def _status(run_id: str, *statuses: RunStatus) -> bool:
    return (await app.runs.get(run_id)).status in statuses


# -- 1. wait_for_event -----------------------------------------------------------------------------


async def test_a_wait_returns_the_matching_event(env: TestEnvironment) -> None:
    async with env.hold_clock():
        run_id = await _start("shop/order.placed", {"order_id": 1})
        await app.runs.wait(run_id, until=RunStatus.WAITING, timeout=20)
        [other] = await app.send(
            {"name": "shop/order.approved", "data": {"order_id": 2, "by": "bob"}}
        )
        [ours] = await app.send(
            {"name": "shop/order.approved", "data": {"order_id": 1, "by": "ann"}}
        )

    run = await app.runs.wait(run_id, timeout=10)
    assert other.resumed_run_ids == []
    assert ours.resumed_run_ids == [run_id]
    assert ours.run_ids == []

    assert run.status is RunStatus.COMPLETED
    assert run.output == {"order_id": 1, "by": "ann"}, "matched the wrong order's approval"
    [wait] = [s for s in run.steps if s.id == "approval"]
    assert wait.kind == "wait_for_event"
    assert wait.output["name"] == "shop/order.approved"


async def test_a_wait_returns_none_when_it_times_out(env: TestEnvironment) -> None:
    run = await app.runs.wait(await _start("shop/order.placed", {"order_id": 3}), timeout=10)

    assert run.status is RunStatus.COMPLETED
    assert run.output is None
    assert run.ended_at is not None
    assert (run.ended_at - run.created_at).total_seconds() >= 24 * 3600
    [ended] = [h for h in run.history if h.kind == "wait.ended"]
    assert ended.message == "timed out"


async def test_a_wait_with_an_expression(env: TestEnvironment) -> None:
    async with env.hold_clock():
        run_id = await _start("shop/refund.requested", {"refund_id": "r1"})
        await app.runs.wait(run_id, until=RunStatus.WAITING, timeout=20)
        await app.send({"name": "shop/refund.signed", "data": {"refund_id": "r1", "amount": 50}})
        await app.send({"name": "shop/refund.signed", "data": {"refund_id": "r2", "amount": 500}})
        await app.send({"name": "shop/refund.signed", "data": {"refund_id": "r1", "amount": 150}})

    assert (await app.runs.wait(run_id, timeout=10)).output == 150


@contextlib.asynccontextmanager
async def _reached_wait_not_suspended(env: TestEnvironment) -> AsyncIterator[tuple[str, str]]:
    """(key, run id) of a ``race`` run that has reached its wait and is held in
    its "slow" step: not suspended yet, its wait not stored. The clock is held
    in the block; leaving it lets "slow" finish."""
    key = f"race-{next(keys)}"
    gates[key] = asyncio.Event()
    async with env.hold_clock():
        run_id = await _start("race/start", {"key": key})
        await wait_until_async(lambda: _ran(run_id, "slow-start"), what="the slow step")
        try:
            assert await _status(run_id, RunStatus.RUNNING)
            yield key, run_id
        finally:
            gates[key].set()


async def test_an_event_that_arrives_before_the_suspension_is_stored_still_counts(
    env: TestEnvironment,
) -> None:
    async with _reached_wait_not_suspended(env) as (key, run_id):
        # Received in the same millisecond: the first one sent is the match.
        await app.send(
            [
                {"name": "race/ping", "data": {"key": key, "n": 1}},
                {"name": "race/ping", "data": {"key": key, "n": 2}},
            ]
        )

    assert (await app.runs.wait(run_id, timeout=10)).output == {"key": key, "n": 1}


async def test_the_look_back_finds_a_match_behind_many_other_events(
    env: TestEnvironment,
) -> None:
    async with _reached_wait_not_suspended(env) as (key, run_id):
        others = [
            {"name": "race/ping", "data": {"key": f"{key}-other", "n": i}} for i in range(250)
        ]
        await app.send([*others, {"name": "race/ping", "data": {"key": key, "n": 250}}])

    assert (await app.runs.wait(run_id, timeout=10)).output == {"key": key, "n": 250}


async def test_an_event_after_the_timeout_does_not_count_before_the_suspension_either(
    env: TestEnvironment,
) -> None:
    async with _reached_wait_not_suspended(env) as (key, run_id):
        await env.advance("2h")  # the wait's 1 h timeout passes while "slow" runs
        await app.send({"name": "race/ping", "data": {"key": key, "n": 2}})

    run = await app.runs.wait(run_id, timeout=10)
    assert run.status is RunStatus.COMPLETED
    assert run.output is None, "an event received after the wait's timeout was returned"


async def test_an_event_sent_before_the_wait_was_reached_does_not_count(
    env: TestEnvironment,
) -> None:
    await app.send({"name": "shop/order.approved", "data": {"order_id": 4, "by": "early"}})

    run = await app.runs.wait(await _start("shop/order.placed", {"order_id": 4}), timeout=10)

    assert run.output is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"if": "async.data.x =="}, "invalid CEL expression 'async.data.x =='"),
        ({"if": "asink.data.x == 1"}, "unknown variable 'asink'"),
        ({"if": "true", "match": "data..x"}, "invalid match path 'data..x'"),
        ({"if": "true", "match": "data.absent"}, "the run's event has no data.absent to match on"),
        ({"if": "true", "event": "x/*"}, "'x/*' has a wildcard; only triggers match names"),
        (
            {"if": "true", "event": "tether/function.invoked"},
            "tether/function.invoked goes only to the invoked run",
        ),
    ],
)
async def test_a_bad_wait_fails_its_step_clearly(
    env: TestEnvironment, data: dict[str, str], message: str
) -> None:
    run = await app.runs.wait(await _start("bad/wait", data), timeout=10)

    assert run.status is RunStatus.COMPLETED
    assert message in run.output


async def test_events_of_one_send_are_matched_in_order(env: TestEnvironment) -> None:
    async with env.hold_clock():
        first = await _start("shop/order.placed", {"order_id": 30})
        second = await _start("shop/order.placed", {"order_id": 31})
        for run_id in (first, second):
            await app.runs.wait(run_id, until=RunStatus.WAITING, timeout=20)
        results = await app.send(
            [
                {"name": "shop/order.approved", "data": {"order_id": 30, "by": "ann"}},
                {"name": "shop/order.approved", "data": {"order_id": 30, "by": "bob"}},
                {"name": "shop/order.approved", "data": {"order_id": 31, "by": "cy"}},
                # Started and withdrawn in the same call: its cancel_on sees the withdrawal.
                {"name": "shop/order.placed", "data": {"order_id": 32}},
                {"name": "shop/order.withdrawn", "data": {"order_id": 32}},
            ]
        )

    assert [r.resumed_run_ids for r in results[:3]] == [[first], [], [second]]
    assert (await app.runs.wait(first, timeout=10)).output["by"] == "ann", "not the first match"
    assert (await app.runs.wait(second, timeout=10)).output["by"] == "cy"
    [late_start] = results[3].run_ids
    assert results[4].cancelled_run_ids == [late_start]
    assert (await app.runs.wait(late_start, timeout=10)).status is RunStatus.CANCELLED


# -- 2. cancellation -------------------------------------------------------------------------------


async def test_cancel_on_cancels_only_the_matching_run(env: TestEnvironment) -> None:
    async with env.hold_clock():
        target = await _start("shop/order.placed", {"order_id": 10})
        bystander = await _start("shop/order.placed", {"order_id": 11})
        await app.runs.wait(target, until=RunStatus.WAITING, timeout=20)
        await app.runs.wait(bystander, until=RunStatus.WAITING, timeout=20)
        [withdrawal] = await app.send({"name": "shop/order.withdrawn", "data": {"order_id": 10}})
        cancelled = await app.runs.wait(target, timeout=10)
        assert await _status(bystander, RunStatus.WAITING)

    assert withdrawal.cancelled_run_ids == [target]
    assert withdrawal.resumed_run_ids == []

    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.error is not None
    assert "shop/order.withdrawn" in cancelled.error.message
    assert "cancel_on" in cancelled.error.message
    assert (await app.runs.wait(bystander, timeout=10)).status is RunStatus.COMPLETED
    assert not _ran_sync(target, "after-approval")


async def test_cancel_on_stops_watching_after_its_timeout(env: TestEnvironment) -> None:
    async with env.hold_clock():
        run_id = await _start("shop/order.placed", {"order_id": 12})
        await app.runs.wait(run_id, until=RunStatus.WAITING, timeout=20)
        await env.advance("47h")  # cancel_on watches for 2 days; the wait lasts 24 h
        assert (await app.runs.wait(run_id, timeout=20)).status is RunStatus.COMPLETED
    # A later withdrawal changes nothing for a finished run (and is just stored).
    await app.send({"name": "shop/order.withdrawn", "data": {"order_id": 12}})
    assert (await app.runs.get(run_id)).status is RunStatus.COMPLETED


async def test_bulk_cancel_by_function_and_time_range(env: TestEnvironment) -> None:
    async with env.hold_clock():
        before = await _start("shop/order.placed", {"order_id": 20})
        start = await env.now()
        inside = [await _start("shop/order.placed", {"order_id": 21 + i}) for i in range(3)]
        await env.advance("1m")
        after = await env.now()
        outside = await _start("shop/order.placed", {"order_id": 30})

        count = await app.runs.cancel_many(
            function_id="await-approval", created_after=start, created_before=after
        )

        assert count == 3
        for run_id in inside:
            assert await _status(run_id, RunStatus.CANCELLED)
        for run_id in (before, outside):
            assert not await _status(run_id, RunStatus.CANCELLED)
        for run_id in (before, outside):
            await app.runs.cancel(run_id)


# -- 3. invoke -------------------------------------------------------------------------------------


async def test_invoke_returns_the_childs_output_and_links_the_runs(env: TestEnvironment) -> None:
    attempts.clear()
    run = await app.runs.wait(await _start("orch/go"), timeout=20)

    assert run.status is RunStatus.COMPLETED, run.error
    output = run.output
    assert output["doubled"] == 42
    assert output["billed"] == {"charged": 5}, "another app's function"
    assert output["break"].startswith("InvokeError: ")
    assert "the child broke" in output["break"]
    assert output["slow"].startswith("InvokeTimeout: ")
    assert "not registered" in output["ghost"]
    steps = {s.id: s for s in run.steps}
    child = await app.runs.get(steps["double"].child_run_id)
    assert child.parent_run_id == run.id
    assert child.function_id == "double"
    assert child.events[0].name == "tether/function.invoked"
    assert steps["break"].attempts == 1, "the invoke step was retried"
    assert attempts["fragile-child"] == 2, "the child runs its own retries (retries=1), once"
    # The parent stopped waiting for the slow child: it goes too (parent_close cancel).
    slow = await app.runs.get(steps["slow"].child_run_id)
    assert slow.status is RunStatus.CANCELLED
    assert slow.error is not None
    assert slow.error.message == (
        f"its parent run {run.id} stopped waiting for it (invoke 'slow', parent_close: cancel)"
    )


async def test_cancelling_a_run_cancels_the_tree_it_invoked_but_not_what_it_abandoned(
    env: TestEnvironment,
) -> None:
    async with env.hold_clock():  # the children's 2-hour naps must not end by themselves
        root_id = await _start("tree/go")

        async def grown() -> bool:
            middles = await _children(root_id, "middle-child")
            return bool(middles) and bool(await _children(middles[0].id, "slow-child"))

        await wait_until_async(grown, what="the tree to grow three levels")
        [kept] = await _children(root_id, "slow-child")
        [middle] = await _children(root_id, "middle-child")
        [deep] = await _children(middle.id, "slow-child")
        await app.runs.wait(kept.id, until=RunStatus.SLEEPING, timeout=20)

        await app.runs.cancel(root_id, "the order was withdrawn")

        middle = await app.runs.wait(middle.id, timeout=20)
        deep = await app.runs.wait(deep.id, timeout=20)
        assert (middle.status, deep.status) == (RunStatus.CANCELLED, RunStatus.CANCELLED)
        assert middle.error is not None
        assert deep.error is not None
        assert middle.error.message == (
            f"its parent run {root_id} was cancelled (invoke 'tied', parent_close: cancel)"
        )
        assert deep.error.message == (
            f"its parent run {middle.id} was cancelled (invoke 'deep', parent_close: cancel)"
        )
        assert (await app.runs.get(kept.id)).status is RunStatus.SLEEPING, "abandoned: it runs on"


async def test_a_child_that_finishes_while_its_parent_runs_is_not_invoked_again(
    env: TestEnvironment,
) -> None:
    key = f"overlap-{next(keys)}"
    gates[f"{key}-child"], gates[f"{key}-parent"] = asyncio.Event(), asyncio.Event()
    async with env.hold_clock():
        run_id = await _start("overlap/go", {"key": key})
        await app.runs.wait(run_id, until=RunStatus.WAITING, timeout=20)
        await env.advance("2s")  # the nap ends: a second execution runs "long"...
        await wait_until_async(lambda: _ran(run_id, "long-start"), what="the long step")
        gates[f"{key}-child"].set()  # ...while the child finishes
        [child] = await _children(run_id, "gated-child")
        await app.runs.wait(child.id, timeout=20)
        gates[f"{key}-parent"].set()
        # The child's result wakes the parent at once, not when "day" ends.
        await wait_until_async(lambda: _ran(run_id, "after-call"), what="the parent to go on")

    run = await app.runs.wait(run_id, timeout=20)

    assert run.status is RunStatus.COMPLETED, run.error
    assert run.output == ["child", "long", None]
    children = await _children(run_id, "gated-child")
    assert [c.id for c in children] == [child.id], "the child was invoked twice"
    assert [h.kind for h in run.history].count("invoke.started") == 1


# -- 4. send_event ---------------------------------------------------------------------------------


async def test_send_event_sends_once_even_when_the_function_retries(env: TestEnvironment) -> None:
    run = await app.runs.wait(await _start("ann/go"), timeout=20)

    assert run.status is RunStatus.COMPLETED
    assert run.attempt == 1, "the function body did fail once"
    [event_id] = run.output
    assert event_id.startswith(run.id)
    await wait_until_async(lambda: _true(heard.count(run.id) >= 1), what="the hearer")
    assert heard.count(run.id) == 1
    [again] = await app.send({"name": "ann/heard", "data": {}, "id": event_id})
    assert again.duplicate, "the derived id does not deduplicate a resend"


# -- 5. parallel steps -----------------------------------------------------------------------------


async def test_parallel_steps_of_every_kind_each_memoized_and_retried(
    env: TestEnvironment,
) -> None:
    key = f"par-{next(keys)}"
    async with env.hold_clock():
        run_id = await _start("par/go", {"key": key})
        # Suspended: every branch is done or waiting (the wait is stored).
        await app.runs.wait(run_id, until=RunStatus.WAITING, timeout=20)
        await app.send({"name": "par/signal", "data": {"key": key, "value": 7}})
    # Time runs again: the nap ends and the flaky step's retries come due.
    run = await app.runs.wait(run_id, timeout=10)

    assert run.status is RunStatus.COMPLETED
    assert run.output == ["steady", "flaky", 7]
    assert ran.count((run_id, "steady")) == 1
    assert ran.count((run_id, "flaky")) == 3
    assert {s.id for s in run.steps} == {"steady", "flaky", "nap", "signal"}


# -- 6. triggers -----------------------------------------------------------------------------------


async def test_triggers_fan_out_filter_and_match_wildcards(env: TestEnvironment) -> None:
    async def started(name: str, data: dict[str, Any]) -> list[str]:
        [result] = await app.send({"name": name, "data": data})
        runs = [await app.runs.wait(r, timeout=10) for r in result.run_ids]
        return sorted(r.function_id for r in runs)

    assert await started("fan/out", {}) == ["fan-a", "fan-b"]
    assert await started("plan/changed", {"plan": "pro"}) == ["pro-only"]
    assert await started("plan/changed", {"plan": "free"}) == []
    assert await started("user/created", {}) == ["user-events"]
    assert await started("user/deleted", {}) == ["user-events"]
    assert await started("multi/a", {}) == ["two-ways"], "two matching triggers, one run"


# -- 7. idempotency --------------------------------------------------------------------------------


async def test_idempotency_allows_one_run_per_key_per_day(env: TestEnvironment) -> None:
    order = next(keys)
    async with env.hold_clock():
        [first] = await app.send({"name": "pay/requested", "data": {"order_id": order}})
        [second] = await app.send({"name": "pay/requested", "data": {"order_id": order}})
        [other] = await app.send({"name": "pay/requested", "data": {"order_id": order + 1000}})
        await env.advance("25h")
        [next_day] = await app.send({"name": "pay/requested", "data": {"order_id": order}})

    assert len(first.run_ids) == 1
    assert second.run_ids == []
    [skipped] = second.skipped
    assert skipped.function_id == "charge-once"
    assert skipped.existing_run_id == first.run_ids[0]
    assert f"idempotency key '{order}' already used by run {first.run_ids[0]}" in skipped.reason
    assert len(other.run_ids) == 1
    assert len(next_day.run_ids) == 1, "the key did not expire after 24 hours"


async def test_long_keys_and_values_are_indexed_by_their_digest(env: TestEnvironment) -> None:
    # Longer than any index entry may be: stored as digests, shown shortened.
    order = f"{next(keys)}-" + "k" * 3000
    [first] = await app.send({"name": "pay/requested", "data": {"order_id": order}})
    [second] = await app.send({"name": "pay/requested", "data": {"order_id": order}})
    [similar] = await app.send({"name": "pay/requested", "data": {"order_id": order + "!"}})

    assert len(first.run_ids) == 1
    [skipped] = second.skipped
    assert skipped.existing_run_id == first.run_ids[0]
    assert f"idempotency key '{order[:77]}...' already used" in skipped.reason
    assert len(similar.run_ids) == 1
    # PostgreSQL text cannot hold NUL: such a key is stored as its digest too.
    nul = f"{next(keys)}\x00nul"
    [with_nul] = await app.send({"name": "pay/requested", "data": {"order_id": nul}})
    [again] = await app.send({"name": "pay/requested", "data": {"order_id": nul}})
    assert len(with_nul.run_ids) == 1
    assert [s.existing_run_id for s in again.skipped] == with_nul.run_ids

    async with env.hold_clock():
        run_id = await _start("shop/order.placed", {"order_id": order})
        await app.runs.wait(run_id, until=RunStatus.WAITING, timeout=20)
        await app.send({"name": "shop/order.approved", "data": {"order_id": order + "!"}})
        [approval] = await app.send(
            {"name": "shop/order.approved", "data": {"order_id": order, "by": "ann"}}
        )
    assert approval.resumed_run_ids == [run_id]
    assert (await app.runs.wait(run_id, timeout=10)).output["by"] == "ann"


# -- 8. failures and timeouts ----------------------------------------------------------------------


async def test_a_failed_run_runs_on_failure_and_emits_function_failed(
    env: TestEnvironment,
) -> None:
    n = next(keys)
    run = await app.runs.wait(await _start("doom/go", {"n": n}), timeout=10)
    assert run.status is RunStatus.FAILED

    def seen(handler: str) -> list[dict[str, Any]]:
        return [f for f in failures if f["handler"] == handler and f["run_id"] == run.id]

    await wait_until_async(
        lambda: _true(bool(seen("on_failure")) and bool(seen("audit"))), what="both handlers"
    )
    [handled] = seen("on_failure")
    assert handled["function_id"] == "doomed"
    assert handled["error"]["message"] == f"doomed {n}"
    assert handled["event"]["data"] == {"n": n}
    assert len(seen("audit")) == 1


async def test_a_run_that_runs_too_long_is_cancelled(env: TestEnvironment) -> None:
    run = await app.runs.wait(await _start("sleep/long"), timeout=10)

    assert run.status is RunStatus.CANCELLED
    assert run.error is not None
    assert run.error.name == "Timeout"
    assert run.error.message == "timed out: did not finish within 1h of starting (timeouts.finish)"


async def test_a_run_that_waits_too_long_to_start_is_cancelled(env: TestEnvironment) -> None:
    late._set_address(env.address)
    worker = late.worker()
    running = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.connected.wait(), 10)
    worker.stop()  # registered, then gone: nothing will start the run
    await running
    try:
        [sent] = await late.send({"name": "late/go", "data": {}})
        run = await late.runs.wait(sent.run_ids[0], timeout=10)
    finally:
        await late.close()

    assert run.status is RunStatus.CANCELLED
    assert run.error is not None
    assert run.error.message == "timed out: did not start within 5m (timeouts.start)"
    assert run.started_at is None


async def _children(run_id: str, function_id: str) -> list[Run]:
    runs = (await app.runs.list(function_id=function_id, limit=1000)).runs
    return [r for r in runs if r.parent_run_id == run_id]


async def _ran(run_id: str, what: str) -> bool:
    return (run_id, what) in ran


def _ran_sync(run_id: str, what: str) -> bool:
    return (run_id, what) in ran


async def _true(value: bool) -> bool:
    return value
