"""Flow control and invoke through the engine's facade, in-process
(tests/unit/engine_harness.py): throttle, rate limit, debounce, batching,
singleton and priority as a user sees them (which runs start, when on the
virtual clock, with which events, which events were skipped and why), and
``step.invoke``: the child run, the parent resuming with its output, its
failure or its timeout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from controlplane.model import (
    Batching,
    Concurrency,
    Debounce,
    ErrorData,
    Execution,
    HistoryKind,
    PlannedInvoke,
    RateLimit,
    RunCompleted,
    RunFailed,
    RunStatus,
    Singleton,
    SingletonMode,
    StepKind,
    StepStatus,
    Suspended,
    Throttle,
)
from tests.unit.engine_harness import APP, EngineHarness, spec
from tether._step_ids import hash_step_id

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
INVOKED_EVENT = "tether/function.invoked"


def data_of(execution: Execution) -> list[Any]:
    """The data of each event the execution was given, in order."""
    return [json.loads(event.data) for event in execution.events]


async def due_now(h: EngineHarness) -> list[str]:
    """The runs of what is due now."""
    return [execution.run_id for execution in await h.dispatched_with_probe()]


async def executions(h: EngineHarness, count: int) -> dict[str, Execution]:
    """The next ``count`` executions dispatched, by run id."""
    found = [await h.next_execution() for _ in range(count)]
    return {execution.run_id: execution for execution in found}


# -- throttle: starts are delayed, never dropped -------------------------------------------


async def test_throttle_delays_the_runs_over_it_and_drops_none(tmp_path: Path) -> None:
    throttled = spec("throttled", throttle=Throttle(1, 10 * SECOND))
    async with EngineHarness.start(tmp_path, [throttled]) as h:
        results = [await h.send("app/throttled", {"n": n}) for n in range(3)]
        assert all(result.skipped == [] for result in results)
        first_id, second_id, third_id = (run_id for r in results for run_id in r.run_ids)

        first = await h.next_execution()
        assert first.run_id == first_id
        assert await due_now(h) == []
        assert await h.status(second_id) is RunStatus.QUEUED
        # One start per 10 s: the second is due 10 s after the first.
        await h.advance(9 * SECOND)
        assert await due_now(h) == []
        await h.advance(SECOND)
        [second] = await h.dispatched_with_probe()
        assert second.run_id == second_id
        assert data_of(second) == [{"n": 1}]
        assert await due_now(h) == []
        assert await h.status(third_id) is RunStatus.QUEUED
        await h.advance(9 * SECOND)
        assert await due_now(h) == []
        await h.advance(SECOND)
        [third] = await h.dispatched_with_probe()
        assert third.run_id == third_id

        created = (await h.run(first_id)).run.created_at_ms
        second_start = (await h.run(second_id)).run.started_at_ms - created
        third_start = (await h.run(third_id)).run.started_at_ms - created
        assert 10 * SECOND <= second_start < 11 * SECOND
        assert 20 * SECOND <= third_start < 21 * SECOND


async def test_a_throttle_burst_starts_that_many_at_once(tmp_path: Path) -> None:
    bursty = spec("bursty", throttle=Throttle(1, 10 * SECOND, burst=2))
    async with EngineHarness.start(tmp_path, [bursty]) as h:
        run_ids = [(await h.send("app/bursty", {"n": n})).run_ids[0] for n in range(3)]
        started = await executions(h, 2)
        assert set(started) == set(run_ids[:2])
        assert await due_now(h) == []
        await h.advance(9 * SECOND)
        assert await due_now(h) == []
        await h.advance(SECOND)
        assert await due_now(h) == [run_ids[2]]


async def test_a_keyed_throttle_delays_each_key_on_its_own(tmp_path: Path) -> None:
    keyed = spec("keyed-throttle", throttle=Throttle(1, 10 * SECOND, key="event.data.account"))
    async with EngineHarness.start(tmp_path, [keyed]) as h:
        [a1] = (await h.send("app/keyed-throttle", {"account": "a"})).run_ids
        [a2] = (await h.send("app/keyed-throttle", {"account": "a"})).run_ids
        [b1] = (await h.send("app/keyed-throttle", {"account": "b"})).run_ids
        assert set(await executions(h, 2)) == {a1, b1}
        assert await due_now(h) == []
        assert await h.status(a2) is RunStatus.QUEUED
        await h.advance(10 * SECOND)
        assert await due_now(h) == [a2]


# -- rate limit: events over it start nothing --------------------------------------------------

RATE_REASON = "rate limited: at most 2 run(s) per 1h"


async def test_rate_limit_skips_the_events_over_it_with_the_reason(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("rated", rate_limit=RateLimit(2, HOUR))]) as h:
        results = [await h.send("app/rated", {"n": n}) for n in range(5)]

        assert [len(r.run_ids) for r in results] == [1, 1, 0, 0, 0]
        for result in results[2:]:
            [skipped] = result.skipped
            assert (skipped.app_id, skipped.function_id) == (APP, "rated")
            assert skipped.reason == RATE_REASON
            assert skipped.existing_run_id == ""
        started = await executions(h, 2)
        assert set(started) == {results[0].run_ids[0], results[1].run_ids[0]}
        assert await due_now(h) == []
        # The skipped event is stored, with the skip and its reason.
        shown = await h.engine.get_event(results[2].event_id)
        assert shown.event.id == results[2].event_id
        assert shown.runs == []
        assert [(s.function_id, s.reason) for s in shown.skipped] == [("rated", RATE_REASON)]

        # Spread evenly over the hour: after 31 minutes there is room for one more.
        await h.advance(31 * MINUTE)
        later = [await h.send("app/rated", {"n": n}) for n in (5, 6)]
        assert [len(r.run_ids) for r in later] == [1, 0]
        assert [s.reason for s in later[1].skipped] == [RATE_REASON]
        assert (await h.next_execution()).run_id == later[0].run_ids[0]


async def test_a_keyed_rate_limit_counts_each_key_on_its_own(tmp_path: Path) -> None:
    rated = spec("rated-keyed", rate_limit=RateLimit(1, HOUR, key="event.data.account"))
    async with EngineHarness.start(tmp_path, [rated]) as h:
        results = [
            await h.send("app/rated-keyed", {"account": a}) for a in ["a", "a", "b", "b", "a"]
        ]
        assert [len(r.run_ids) for r in results] == [1, 0, 1, 0, 0]
        assert [s.reason for r in results for s in r.skipped] == [
            "rate limited: at most 1 run(s) per 1h for key 'a'",
            "rate limited: at most 1 run(s) per 1h for key 'b'",
            "rate limited: at most 1 run(s) per 1h for key 'a'",
        ]


# -- debounce: one run, with the last event, once the events stop ------------------------------


async def test_debounce_starts_one_run_with_the_last_event_after_the_period(
    tmp_path: Path,
) -> None:
    debounced = spec("debounced", debounce=Debounce(5 * SECOND, key="event.data.user"))
    async with EngineHarness.start(tmp_path, [debounced]) as h:
        first = await h.send("app/debounced", {"user": "u1", "n": 1})
        await h.advance(2 * SECOND)
        second = await h.send("app/debounced", {"user": "u1", "n": 2})
        await h.advance(2 * SECOND)
        last = await h.send("app/debounced", {"user": "u1", "n": 3})
        other = await h.send("app/debounced", {"user": "u2", "n": 1})
        [run_id] = last.run_ids
        assert first.run_ids == second.run_ids == [run_id], "the events did not join one run"
        [other_id] = other.run_ids
        assert other_id != run_id

        # 8 s after the first event, 4 s after the last: still quiet-period.
        await h.advance(4 * SECOND)
        assert await due_now(h) == []
        assert await h.status(run_id) is RunStatus.QUEUED
        await h.advance(SECOND)
        started = {e.run_id: e for e in await h.dispatched_with_probe()}
        assert set(started) == {run_id, other_id}
        assert data_of(started[run_id]) == [{"user": "u1", "n": 3}]
        assert data_of(started[other_id]) == [{"user": "u2", "n": 1}]
        assert [e.id for e in (await h.run(run_id)).events] == [last.event_id]

        # The replaced events say which later event replaced them, in which run.
        for replaced, by in ((first, second), (second, last)):
            [skip] = (await h.engine.get_event(replaced.event_id)).skipped
            assert skip.existing_run_id == run_id
            assert skip.reason == (
                f"debounced: event {by.event_id} arrived later and replaced it in run {run_id}"
            )


async def test_a_debounce_timeout_caps_the_delay(tmp_path: Path) -> None:
    capped = spec("capped", debounce=Debounce(5 * SECOND, timeout_ms=10 * SECOND))
    async with EngineHarness.start(tmp_path, [capped]) as h:
        [run_id] = (await h.send("app/capped", {"n": 1})).run_ids
        for n in (2, 3):
            await h.advance(4 * SECOND)  # each event pushes the start 5 s on...
            assert (await h.send("app/capped", {"n": n})).run_ids == [run_id]
        # ...but no later than 10 s after the first event (not 13 s).
        await h.advance(SECOND)
        assert await due_now(h) == []
        await h.advance(SECOND)
        [execution] = await h.dispatched_with_probe()
        assert execution.run_id == run_id
        assert data_of(execution) == [{"n": 3}]


# -- batching: one run for up to max_size events, or what came by the timeout ------------------


async def test_a_full_batch_starts_at_once_and_a_partial_one_at_its_timeout(
    tmp_path: Path,
) -> None:
    batched = spec("batched", batching=Batching(3, 10 * SECOND))
    async with EngineHarness.start(tmp_path, [batched]) as h:
        sent = [await h.send("app/batched", {"n": n}) for n in range(7)]
        full_one, full_two, partial = sent[0].run_ids[0], sent[3].run_ids[0], sent[6].run_ids[0]
        assert [r.run_ids for r in sent] == [[full_one]] * 3 + [[full_two]] * 3 + [[partial]]

        started = await executions(h, 2)
        assert set(started) == {full_one, full_two}
        assert data_of(started[full_one]) == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert data_of(started[full_two]) == [{"n": 3}, {"n": 4}, {"n": 5}]
        assert [e.id for e in (await h.run(full_one)).events] == [r.event_id for r in sent[:3]]
        assert await due_now(h) == []
        assert await h.status(partial) is RunStatus.QUEUED

        await h.advance(9 * SECOND)
        assert await due_now(h) == []
        await h.advance(SECOND)
        [rest] = await h.dispatched_with_probe()
        assert rest.run_id == partial
        assert data_of(rest) == [{"n": 6}]


async def test_batches_are_per_key(tmp_path: Path) -> None:
    keyed = spec("batched-keyed", batching=Batching(2, 10 * SECOND, key="event.data.tenant"))
    async with EngineHarness.start(tmp_path, [keyed]) as h:
        tenants = ["a", "b", "a", "b", "a"]
        sent = [
            await h.send("app/batched-keyed", {"tenant": t, "n": n}) for n, t in enumerate(tenants)
        ]
        a_full, b_full, a_rest = sent[0].run_ids[0], sent[1].run_ids[0], sent[4].run_ids[0]
        assert [r.run_ids for r in sent] == [[a_full], [b_full], [a_full], [b_full], [a_rest]]
        started = await executions(h, 2)
        assert [e["n"] for e in data_of(started[a_full])] == [0, 2]
        assert [e["n"] for e in data_of(started[b_full])] == [1, 3]
        assert await due_now(h) == []
        await h.advance(10 * SECOND)
        [rest] = await h.dispatched_with_probe()
        assert (rest.run_id, data_of(rest)) == (a_rest, [{"tenant": "a", "n": 4}])


# -- singleton ---------------------------------------------------------------------------------


async def test_singleton_skips_events_while_a_run_holds_the_key(tmp_path: Path) -> None:
    single = spec("single", singleton=Singleton(key="event.data.job"))
    async with EngineHarness.start(tmp_path, [single]) as h:
        [holder] = (await h.send("app/single", {"job": "K"})).run_ids
        execution = await h.next_execution()
        skipped = await h.send("app/single", {"job": "K"})
        [other] = (await h.send("app/single", {"job": "L"})).run_ids

        assert skipped.run_ids == []
        [skip] = skipped.skipped
        assert skip.existing_run_id == holder
        assert skip.reason == f"singleton: run {holder} is still unfinished for key 'K'"
        assert other != holder
        assert (await h.next_execution()).run_id == other

        # Once the holder finished, the key is free again.
        await h.report(execution, RunCompleted(b"1"))
        [again] = (await h.send("app/single", {"job": "K"})).run_ids
        assert again != holder
        assert (await h.next_execution()).run_id == again


async def test_singleton_cancel_replaces_the_unfinished_run(tmp_path: Path) -> None:
    single = spec(
        "single-cancel", singleton=Singleton(key="event.data.job", mode=SingletonMode.CANCEL)
    )
    async with EngineHarness.start(tmp_path, [single]) as h:
        [first] = (await h.send("app/single-cancel", {"job": "K", "n": 1})).run_ids
        assert (await h.next_execution()).run_id == first
        second = await h.send("app/single-cancel", {"job": "K", "n": 2})
        [newest] = second.run_ids

        assert second.cancelled_run_ids == [first]
        cancelled = (await h.run(first)).run
        assert cancelled.status is RunStatus.CANCELLED
        assert cancelled.error is not None
        assert "singleton for key 'K', the newest run wins" in cancelled.error.message
        execution = await h.next_execution()
        assert execution.run_id == newest
        assert data_of(execution) == [{"job": "K", "n": 2}]


# -- priority ----------------------------------------------------------------------------------


async def test_a_higher_priority_run_starts_first(tmp_path: Path) -> None:
    # Concurrency 1 holds the runs queued while the first one executes.
    ranked = spec(
        "ranked",
        concurrency=(Concurrency(1),),
        priority="event.data.vip == true ? 600 : 0",
    )
    async with EngineHarness.start(tmp_path, [ranked]) as h:
        [holder] = (await h.send("app/ranked", {"n": 0, "vip": False})).run_ids
        execution = await h.next_execution()
        assert execution.run_id == holder
        for n in (1, 2):
            await h.send("app/ranked", {"n": n, "vip": False})
        await h.send("app/ranked", {"n": 3, "vip": True})
        order = []
        for _ in range(3):
            await h.report(execution, RunCompleted(b"null"))
            execution = await h.next_execution()
            order.append(data_of(execution)[0]["n"])
        assert order == [3, 1, 2]


async def test_a_negative_priority_delays_the_start(tmp_path: Path) -> None:
    deferred = spec("deferred", priority="event.data.priority")
    async with EngineHarness.start(tmp_path, [deferred]) as h:
        [late] = (await h.send("app/deferred", {"priority": -30})).run_ids
        [now] = (await h.send("app/deferred", {"priority": 0})).run_ids
        assert (await h.next_execution()).run_id == now
        await h.advance(29 * SECOND)
        assert await due_now(h) == []
        assert await h.status(late) is RunStatus.QUEUED
        await h.advance(SECOND)
        assert await due_now(h) == [late]


# -- step.invoke -------------------------------------------------------------------------------


def invoke(
    h: EngineHarness, function_id: str, data: bytes = b"{}", timeout_ms: int = 0
) -> PlannedInvoke:
    """A planned ``step.invoke("call", ...)`` of a harness function, reached now."""
    now = h.clock.now_ms()
    until = now + timeout_ms if timeout_ms else 0
    return PlannedInvoke(hash_step_id("call"), "call", "", function_id, data, until, now)


async def invoked_child(h: EngineHarness, parent_id: str) -> str:
    """The run the parent's pending invoke step started."""
    [step] = (await h.run(parent_id)).steps
    assert (step.kind, step.status) == (StepKind.INVOKE, StepStatus.PENDING)
    assert step.child_run_id
    return step.child_run_id


async def test_invoke_starts_a_child_and_the_parent_resumes_with_its_output(
    tmp_path: Path,
) -> None:
    async with EngineHarness.start(tmp_path, [spec("parent"), spec("double")]) as h:
        [parent_id] = (await h.send("app/parent")).run_ids
        parent = await h.next_execution()
        await h.report(parent, Suspended(waits=[invoke(h, "double", b'{"n": 21}')]))
        assert await h.status(parent_id) is RunStatus.WAITING
        child_id = await invoked_child(h, parent_id)

        child = await h.next_execution()
        assert (child.run_id, child.function_id) == (child_id, "double")
        assert [e.name for e in child.events] == [INVOKED_EVENT]
        assert data_of(child) == [{"n": 21}]
        assert (await h.run(child_id)).run.parent_run_id == parent_id
        assert await due_now(h) == []  # the parent waits for its child

        await h.report(child, RunCompleted(b'{"doubled": 42}'))
        resumed = await h.next_execution()
        assert resumed.run_id == parent_id
        [memo] = resumed.steps
        assert memo.step_id == hash_step_id("call")
        assert json.loads(memo.output or b"") == {"doubled": 42}
        await h.report(resumed, RunCompleted(memo.output or b""))

        detail = await h.run(parent_id)
        assert detail.run.status is RunStatus.COMPLETED
        [step] = detail.steps
        assert (step.status, step.child_run_id) == (StepStatus.COMPLETED, child_id)
        assert [e.kind for e in detail.history] == [
            HistoryKind.EXECUTION_STARTED,
            HistoryKind.INVOKE_STARTED,
            HistoryKind.INVOKE_ENDED,
            HistoryKind.EXECUTION_STARTED,
            HistoryKind.RUN_COMPLETED,
        ]


async def test_a_child_that_fails_fails_the_parents_invoke_step(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("parent"), spec("fragile", retries=0)]) as h:
        [parent_id] = (await h.send("app/parent")).run_ids
        await h.report(await h.next_execution(), Suspended(waits=[invoke(h, "fragile")]))
        child = await h.next_execution()
        assert child.function_id == "fragile"

        await h.report(child, RunFailed(ErrorData("ValueError", "the child broke"), False, 0))
        assert await h.status(child.run_id) is RunStatus.FAILED
        resumed = await h.next_execution()
        assert resumed.run_id == parent_id
        [memo] = resumed.steps
        assert memo.output is None
        assert memo.error is not None
        assert memo.error.name == "InvokeError"
        assert memo.error.message == (
            f"invoked function 'fragile' (run {child.run_id}) failed: the child broke"
        )
        assert await h.status(parent_id) is RunStatus.RUNNING


async def test_an_invoke_that_outlives_its_timeout_fails_the_step(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("parent"), spec("slow")]) as h:
        [parent_id] = (await h.send("app/parent")).run_ids
        call = invoke(h, "slow", timeout_ms=HOUR)
        await h.report(await h.next_execution(), Suspended(waits=[call]))
        child = await h.next_execution()  # it never reports

        await h.advance(HOUR - SECOND)
        assert await due_now(h) == []
        assert await h.status(parent_id) is RunStatus.WAITING
        await h.advance(SECOND)
        [resumed] = await h.dispatched_with_probe()
        assert resumed.run_id == parent_id
        [memo] = resumed.steps
        assert memo.error is not None
        assert memo.error.name == "InvokeTimeout"
        assert memo.error.message == f"the invoked run {child.run_id} did not finish in time"


async def test_invoking_a_function_that_is_not_registered_fails_the_step_at_once(
    tmp_path: Path,
) -> None:
    async with EngineHarness.start(tmp_path, [spec("parent")]) as h:
        [parent_id] = (await h.send("app/parent")).run_ids
        await h.report(await h.next_execution(), Suspended(waits=[invoke(h, "ghost")]))
        again = await h.next_execution()
        assert again.run_id == parent_id
        [memo] = again.steps
        assert memo.error is not None
        assert memo.error.name == "InvokeError"
        assert memo.error.message == "function 'ghost' of app 'harness' is not registered"
