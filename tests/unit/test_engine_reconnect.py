"""A worker that reconnects re-announces the executions it holds (Hello.held):
those whose leases are still theirs go on where they were, with no re-run;
one whose lease was given away meanwhile is cancelled, and its outcomes refused."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from controlplane.engine.outcomes import LEASE_LOST
from controlplane.engine.settings import EngineSettings
from controlplane.model import (
    ErrorData,
    Execution,
    HeldExecution,
    HistoryKind,
    RunCompleted,
    RunStatus,
    StepFailed,
    StepKind,
    StepStatus,
    Suspended,
    WorkerHello,
)
from tests.unit.engine_harness import EngineHarness, spec
from tether._step_ids import hash_step_id

SECOND = 1000
# As `tether dev` and a SQLite `tether server` run: leases of the previous
# process wait a lease timeout to be re-announced.
RESTARTING = EngineSettings(cap_leases_on_start=True)


def _held(*executions: Execution) -> tuple[HeldExecution, ...]:
    return tuple(HeldExecution(e.execution_id, e.run_id) for e in executions)


async def test_after_a_restart_a_reannounced_execution_goes_on_and_nothing_runs_again(
    tmp_path: Path,
) -> None:
    async with EngineHarness.start(tmp_path, [spec("chain")], settings=RESTARTING) as h:
        [run_id] = (await h.send("app/chain")).run_ids
        execution = await h.next_execution()
        await h.report(execution, h.step_completed("one", b"1"))

        await h.restart()
        await h.connect(held=_held(execution))

        assert h.sink.cancels == []
        # The step the worker finished while the control plane was away, then the end.
        assert await h.report(execution, h.step_completed("two", b"2")) == []
        assert await h.report(execution, RunCompleted(b"3")) == []
        run = await h.run(run_id)
        assert run.run.status is RunStatus.COMPLETED
        assert [s.name for s in run.steps] == ["one", "two"]
        kinds = [entry.kind for entry in run.history]
        assert kinds.count(HistoryKind.EXECUTION_STARTED) == 1
        assert HistoryKind.EXECUTION_LOST not in kinds
        assert await h.dispatched_with_probe() == []


async def test_a_lease_given_away_meanwhile_stays_refused(tmp_path: Path) -> None:
    settings = EngineSettings(cap_leases_on_start=True, lease_timeout_ms=10 * SECOND)
    async with EngineHarness.start(tmp_path, [spec("chain")], settings=settings) as h:
        [run_id] = (await h.send("app/chain")).run_ids
        first = await h.next_execution()

        await h.restart()
        # Nobody re-announces it within the lease timeout (time passes, as on
        # the wall clock: no jump that would carry leases along), and the run
        # goes to a worker again.
        h.clock.advance(11 * SECOND)
        await h.connect()
        second = await h.next_execution()
        assert second.run_id == run_id
        assert second.execution_id != first.execution_id

        # The first worker comes back, late.
        await h.connect(held=_held(first))
        assert h.sink.cancels == [(first.execution_id, run_id, LEASE_LOST, False)]
        refused = await h.report(first, RunCompleted(b'"late"'))
        assert [(r.execution_id, r.reason) for r in refused] == [(first.execution_id, LEASE_LOST)]
        assert await h.status(run_id) is RunStatus.RUNNING


async def test_an_outcome_sent_again_after_a_reconnect_is_applied_once(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("charge")], settings=RESTARTING) as h:
        [run_id] = (await h.send("app/charge")).run_ids
        execution = await h.next_execution()
        now = h.clock.now_ms()
        declined = StepFailed(
            hash_step_id("charge"),
            "charge",
            StepKind.RUN,
            ErrorData("CardDeclined", "the card was declined"),
            False,
            0,
            now,
            now,
        )
        await h.report(execution, declined)

        # Its acknowledgement never reached the worker, which sends it again.
        await h.restart()
        await h.connect(held=_held(execution))
        assert await h.report(execution, declined, RunCompleted(b'"handled"')) == []

        run = await h.run(run_id)
        assert run.run.status is RunStatus.COMPLETED
        failures = [e for e in run.history if e.kind is HistoryKind.STEP_FAILED]
        assert len(failures) == 1
        assert [(s.name, s.attempts) for s in run.steps] == [("charge", 1)]


async def test_a_reconnect_before_the_old_stream_ended_moves_the_execution(
    tmp_path: Path,
) -> None:
    """The network dropped the stream; the worker is back before the control
    plane noticed. The old stream's end must not take the execution away."""
    async with EngineHarness.start(tmp_path, [spec("chain")]) as h:
        [run_id] = (await h.send("app/chain")).run_ids
        execution = await h.next_execution()
        old = h.session
        assert old is not None

        reconnecting = asyncio.create_task(h.connect(held=_held(execution)))
        await asyncio.sleep(0)  # the Hello is being handled
        await h.engine.disconnect_worker(old, "stream ended")
        await reconnecting

        assert await h.report(execution, RunCompleted(b'"done"')) == []
        assert await h.status(run_id) is RunStatus.COMPLETED
        history = (await h.run(run_id)).history
        assert HistoryKind.EXECUTION_LOST not in [e.kind for e in history]


async def test_executions_of_another_app_are_not_regranted(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("chain")], settings=RESTARTING) as h:
        [run_id] = (await h.send("app/chain")).run_ids
        execution = await h.next_execution()
        await h.restart()

        # A worker of another app cannot take the lease by naming it.
        intruder = [replace(f, app_id="intruder") for f in h.functions]
        hello = WorkerHello(1, "intruder", "x", "python", "test", 1, intruder, _held(execution))
        await h.engine.connect_worker(hello, h.sink)

        assert h.sink.cancels == [(execution.execution_id, run_id, LEASE_LOST, False)]


async def test_a_failed_attempt_sent_again_after_a_reconnect_counts_once(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("charge", retries=1)], settings=RESTARTING) as h:
        [run_id] = (await h.send("app/charge")).run_ids
        execution = await h.next_execution()
        now = h.clock.now_ms()
        timed_out = StepFailed(
            hash_step_id("charge"),
            "charge",
            StepKind.RUN,
            ErrorData("TimeoutError", "the provider did not answer"),
            True,
            0,
            now,
            now,
        )
        await h.report(execution, timed_out)

        await h.restart()
        await h.connect(held=_held(execution))
        assert await h.report(execution, timed_out, Suspended(waits=[])) == []

        run = await h.run(run_id)
        [step] = run.steps
        assert (step.status, step.attempts) == (StepStatus.RETRYING, 1)
        failures = [e for e in run.history if e.kind is HistoryKind.STEP_FAILED]
        assert len(failures) == 1
