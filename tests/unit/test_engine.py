"""The engine through its facade, in-process (tests/unit/engine_harness.py): a
real Engine and SQLite store, a virtual clock moved by hand, a worker session
in memory. Outcomes, ingestion and matching, wait planning, timeouts,
cancellation, flow-control admission and the run state machine."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from controlplane.engine import run_states
from controlplane.engine.run_states import InvalidTransition
from controlplane.engine.settings import EngineSettings
from controlplane.model import (
    Concurrency,
    ErrorData,
    HistoryKind,
    Outcome,
    PlannedEventWait,
    PlannedSleep,
    RunCompleted,
    RunFailed,
    RunStatus,
    StepFailed,
    StepKind,
    Suspended,
    Timeouts,
)
from controlplane.model.errors import FailedPrecondition, InvalidArgument
from tests.unit.engine_harness import EngineHarness, spec
from tether._step_ids import hash_step_id

SECOND = 1000
HOUR = 3600 * SECOND


# -- outcomes ------------------------------------------------------------------------


async def test_a_run_completes_with_its_steps_memoized(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("greet")]) as h:
        result = await h.send("app/greet", {"who": "ada"})
        [run_id] = result.run_ids
        execution = await h.next_execution()
        assert execution.run_id == run_id
        assert json.loads(execution.events[0].data) == {"who": "ada"}
        assert await h.status(run_id) is RunStatus.RUNNING

        refused = await h.report(
            execution, h.step_completed("hello", b'"hi ada"'), RunCompleted(b'{"ok": true}')
        )

        assert refused == []
        detail = await h.run(run_id)
        assert detail.run.status is RunStatus.COMPLETED
        assert json.loads(detail.run.output or b"") == {"ok": True}
        assert [(s.name, s.output) for s in detail.steps] == [("hello", b'"hi ada"')]
        assert [e.kind for e in detail.history] == [
            HistoryKind.EXECUTION_STARTED,
            HistoryKind.RUN_COMPLETED,
        ]


async def test_a_failed_step_is_retried_with_the_memo_of_what_succeeded(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("flaky", retries=2)]) as h:
        [run_id] = (await h.send("app/flaky")).run_ids
        first = await h.next_execution()
        now = h.clock.now_ms()
        failure = StepFailed(
            hash_step_id("charge"),
            "charge",
            StepKind.RUN,
            ErrorData("Boom", "card declined"),
            retriable=True,
            retry_delay_ms=30 * SECOND,
            started_at_ms=now,
            ended_at_ms=now,
        )
        await h.report(first, h.step_completed("load", b"1"), failure, Suspended(waits=[]))
        # The retry is not due yet: the run waits, status running (a step retry).
        assert await h.status(run_id) is RunStatus.RUNNING
        assert await h.dispatched_with_probe() == []

        await h.advance(30 * SECOND)
        second = await h.next_execution()
        assert [m.step_id for m in second.steps] == [hash_step_id("load")]
        assert second.step_attempts == {hash_step_id("charge"): 1}


async def test_an_output_that_is_not_json_fails_its_step_for_good(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("bad-output")]) as h:
        [run_id] = (await h.send("app/bad-output")).run_ids
        execution = await h.next_execution()
        await h.report(execution, h.step_completed("rate-limit", b"{not json"))
        detail = await h.run(run_id)
        [step] = detail.steps
        assert step.error is not None
        assert step.error.name == "InvalidOutput"
        assert "step 'rate-limit' output is not valid UTF-8 JSON" in step.error.message


async def test_a_run_that_fails_retriably_is_retried_then_fails(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("doomed", retries=1)]) as h:
        [run_id] = (await h.send("app/doomed")).run_ids
        boom = RunFailed(ErrorData("Boom", "no"), retriable=True, retry_delay_ms=SECOND)
        await h.report(await h.next_execution(), boom)
        assert await h.status(run_id) is RunStatus.RUNNING
        await h.advance(SECOND)
        await h.report(await h.next_execution(), boom)
        detail = await h.run(run_id)
        assert detail.run.status is RunStatus.FAILED
        assert detail.run.attempt == 2
        assert HistoryKind.RUN_RETRY_SCHEDULED in [e.kind for e in detail.history]


async def test_a_result_for_a_lease_the_worker_lost_is_refused(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("slow")]) as h:
        await h.send("app/slow")
        execution = await h.next_execution()
        await h.engine.cancel_run(execution.run_id, "stop")
        refused = await h.report(execution, RunCompleted(b"1"))
        assert [r.execution_id for r in refused] == [execution.execution_id]
        assert await h.status(execution.run_id) is RunStatus.CANCELLED


# -- ingestion, matching and waits ---------------------------------------------------


async def test_an_event_resumes_the_wait_it_matches_and_no_other(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("await-pay")]) as h:
        [run_id] = (await h.send("app/await-pay", {"order": 7})).run_ids
        execution = await h.next_execution()
        now = h.clock.now_ms()
        wait = PlannedEventWait(
            hash_step_id("paid"), "paid", "shop/paid", "data.order", "", now + HOUR, now
        )
        await h.report(execution, Suspended(waits=[wait]))
        assert await h.status(run_id) is RunStatus.WAITING

        other = await h.send("shop/paid", {"order": 8})
        assert other.resumed_run_ids == []
        hit = await h.send("shop/paid", {"order": 7})
        assert hit.resumed_run_ids == [run_id]
        resumed = await h.next_execution()
        [memo] = resumed.steps
        assert memo.step_id == hash_step_id("paid")
        assert json.loads(memo.output or b"")["data"] == {"order": 7}


async def test_a_wait_finds_an_event_sent_before_it_was_stored(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("late-wait")]) as h:
        [run_id] = (await h.send("app/late-wait")).run_ids
        execution = await h.next_execution()
        reached = h.clock.now_ms()
        await h.send("shop/shipped", {"n": 1})  # between reaching the wait and suspending
        wait = PlannedEventWait(
            hash_step_id("w"), "w", "shop/shipped", "", "", reached + HOUR, reached
        )
        await h.report(execution, Suspended(waits=[wait]))
        resumed = await h.next_execution()
        assert resumed.run_id == run_id
        assert [m.step_id for m in resumed.steps] == [hash_step_id("w")]


async def test_a_wait_times_out_as_null(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("timeout")]) as h:
        [run_id] = (await h.send("app/timeout")).run_ids
        now = h.clock.now_ms()
        wait = PlannedEventWait(hash_step_id("w"), "w", "shop/never", "", "", now + HOUR, now)
        await h.report(await h.next_execution(), Suspended(waits=[wait]))
        await h.advance(HOUR)
        resumed = await h.next_execution()
        [memo] = resumed.steps
        assert memo.output == b"null"
        assert await h.status(run_id) is RunStatus.RUNNING


async def test_a_sleep_ends_on_time_and_not_before(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("nap")]) as h:
        [run_id] = (await h.send("app/nap")).run_ids
        now = h.clock.now_ms()
        sleep = PlannedSleep(hash_step_id("nap"), "nap", now + HOUR, now)
        await h.report(await h.next_execution(), Suspended(waits=[sleep]))
        assert await h.status(run_id) is RunStatus.SLEEPING
        await h.advance(HOUR - SECOND)
        assert await h.dispatched_with_probe() == []
        await h.advance(SECOND)
        resumed = await h.next_execution()
        assert [m.step_id for m in resumed.steps] == [hash_step_id("nap")]


async def test_a_wait_on_an_invalid_event_name_fails_its_step_for_good(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("bad-wait")]) as h:
        [run_id] = (await h.send("app/bad-wait")).run_ids
        now = h.clock.now_ms()
        wait = PlannedEventWait(hash_step_id("w"), "w", "shop/*", "", "", now + HOUR, now)
        await h.report(await h.next_execution(), Suspended(waits=[wait]))
        # The run executes again at once and meets the failure as a StepError.
        again = await h.next_execution()
        [memo] = again.steps
        assert memo.step_id == hash_step_id("w")
        assert memo.error is not None
        assert "wait 'w'" in memo.error.message
        assert "exact name" in memo.error.message
        assert await h.status(run_id) is RunStatus.RUNNING


async def test_an_invalid_event_is_refused_naming_the_problem(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("x")]) as h:
        with pytest.raises(InvalidArgument, match="name"):
            await h.send("")


# -- timeouts, cancellation, flow control ----------------------------------------------


async def test_a_run_not_started_in_time_is_cancelled(tmp_path: Path) -> None:
    # Concurrency 1 keeps the second run queued while the first executes.
    quick = spec("quick", concurrency=(Concurrency(1),), timeouts=Timeouts(start_ms=10 * SECOND))
    async with EngineHarness.start(tmp_path, [quick]) as h:
        await h.send("app/quick")
        await h.next_execution()
        [run_id] = (await h.send("app/quick")).run_ids
        # The virtual clock also moves at wall pace: leave it a second of margin.
        await h.advance(9 * SECOND)
        assert await h.dispatched_with_probe() == []  # a dispatcher round ran since
        assert await h.status(run_id) is RunStatus.QUEUED
        await h.advance(SECOND)
        await until_status(h, run_id, RunStatus.CANCELLED)
        detail = await h.run(run_id)
        assert detail.run.error is not None
        assert detail.run.error.name == "Timeout"
        assert "did not start within 10s (timeouts.start)" in detail.run.error.message


async def test_invoke_data_that_is_not_an_object_is_refused_naming_it(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("target")]) as h:
        with pytest.raises(
            InvalidArgument, match="invoke data must be a JSON object, not an array"
        ):
            await h.engine.invoke_function("harness", "target", b"[1]")
        with pytest.raises(InvalidArgument, match="invoke data is not valid UTF-8 JSON"):
            await h.engine.invoke_function("harness", "target", b"{")
        run_id, _ = await h.engine.invoke_function("harness", "target", b'{"n": 1}')
        execution = await h.next_execution()
        assert execution.run_id == run_id
        assert json.loads(execution.events[0].data) == {"n": 1}


async def test_cancelling_a_waiting_run_ends_it_and_the_wait(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("cancel-me")]) as h:
        [run_id] = (await h.send("app/cancel-me", {"k": 1})).run_ids
        now = h.clock.now_ms()
        wait = PlannedEventWait(hash_step_id("w"), "w", "shop/x", "", "", now + HOUR, now)
        await h.report(await h.next_execution(), Suspended(waits=[wait]))
        summary = await h.engine.cancel_run(run_id, "no longer needed")
        assert summary.status is RunStatus.CANCELLED
        assert (await h.send("shop/x")).resumed_run_ids == []
        with pytest.raises(FailedPrecondition, match=r"already finished \(cancelled\)"):
            await h.engine.cancel_run(run_id, "again")


async def test_a_concurrency_limit_holds_the_second_run_until_the_first_ends(
    tmp_path: Path,
) -> None:
    async with EngineHarness.start(
        tmp_path, [spec("one-at-a-time", concurrency=(Concurrency(1),))]
    ) as h:
        [first_id] = (await h.send("app/one-at-a-time")).run_ids
        [second_id] = (await h.send("app/one-at-a-time")).run_ids
        first = await h.next_execution()
        assert first.run_id == first_id
        assert await h.dispatched_with_probe() == []
        assert await h.status(second_id) is RunStatus.QUEUED
        await h.report(first, RunCompleted(b"1"))
        second = await h.next_execution()
        assert second.run_id == second_id


async def test_an_idempotency_key_starts_one_run_and_skips_the_rest(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("once", idempotency="event.data.order")]) as h:
        first = await h.send("app/once", {"order": 1})
        again = await h.send("app/once", {"order": 1})
        other = await h.send("app/once", {"order": 2})
        assert len(first.run_ids) == 1
        assert again.run_ids == []
        assert [s.existing_run_id for s in again.skipped] == first.run_ids
        assert len(other.run_ids) == 1


# -- the run state machine ----------------------------------------------------------


async def test_every_status_a_run_takes_is_one_the_machine_allows(tmp_path: Path) -> None:
    seen: list[tuple[RunStatus, RunStatus]] = []
    real_change = run_states.change

    def recording(run_id: str, current: RunStatus | str, new: RunStatus) -> RunStatus:
        seen.append((RunStatus(current), new))
        return real_change(run_id, current, new)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_states, "change", recording)
        async with EngineHarness.start(tmp_path, [spec("tour")]) as h:
            [run_id] = (await h.send("app/tour")).run_ids
            now = h.clock.now_ms()
            sleep = PlannedSleep(hash_step_id("nap"), "nap", now + SECOND, now)
            await h.report(await h.next_execution(), Suspended(waits=[sleep]))
            await h.advance(SECOND)
            await h.report(await h.next_execution(), RunCompleted(b"1"))
            assert await h.status(run_id) is RunStatus.COMPLETED
    assert seen == [
        (RunStatus.QUEUED, RunStatus.RUNNING),
        (RunStatus.RUNNING, RunStatus.SLEEPING),
        (RunStatus.SLEEPING, RunStatus.RUNNING),
        (RunStatus.RUNNING, RunStatus.COMPLETED),
    ]


async def test_an_outcome_for_a_finished_run_changes_nothing_and_is_refused(
    tmp_path: Path,
) -> None:
    # A second terminal outcome of one execution, in a later frame: the run
    # finished, the machine allows nothing from there, and the worker is told.
    async with EngineHarness.start(tmp_path, [spec("twice")]) as h:
        [run_id] = (await h.send("app/twice")).run_ids
        execution = await h.next_execution()
        await h.report(execution, RunCompleted(b"1"))
        refused = await h.report(execution, RunFailed(ErrorData("Late", "x"), False, 0))
        assert [r.execution_id for r in refused] == [execution.execution_id]
        detail = await h.run(run_id)
        assert detail.run.status is RunStatus.COMPLETED
        assert json.loads(detail.run.output or b"") == 1


async def test_a_worker_is_not_read_past_a_streams_worth_of_unacknowledged_outcomes(
    tmp_path: Path,
) -> None:
    settings = EngineSettings(max_unacknowledged_outcomes=2)
    async with EngineHarness.start(tmp_path, [spec("greet")], settings=settings) as h:
        await h.send("app/greet")
        execution = await h.next_execution()
        session = h.session
        assert session is not None
        await h.engine.room_for_outcomes(session)  # nothing waits: it returns at once
        first, second = (
            Outcome(seq, execution.execution_id, execution.run_id, h.step_completed(name))
            for seq, name in ((1, "a"), (2, "b"))
        )
        h.engine.receive_outcomes(session, [first])
        h.engine.receive_outcomes(session, [second])
        assert session.unacknowledged == 2

        # The next frame is read only once an earlier one is acknowledged.
        await asyncio.wait_for(h.engine.room_for_outcomes(session), 5)
        assert h.sink.acks, "room came before any acknowledgement"
        await h.sink.acked_through(2)
        assert session.unacknowledged == 0


def test_an_impossible_change_names_the_run_and_both_statuses() -> None:
    with pytest.raises(InvalidTransition, match="run r-9 cannot go from cancelled to running"):
        run_states.change("r-9", RunStatus.CANCELLED, RunStatus.RUNNING)


async def until_status(h: EngineHarness, run_id: str, wanted: RunStatus) -> None:
    """Wait (5 s at most) for a change the engine makes in the background."""
    async with asyncio.timeout(5):
        # The engine tells no one of this change: poll the store.
        while await h.status(run_id) is not wanted:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
