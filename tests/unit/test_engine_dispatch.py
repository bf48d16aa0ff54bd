"""An event's run is leased to a connected worker in the transaction that stores
the event and dispatched as soon as it commits; the worker's capacity is never
promised twice, and a lease so given is watched like any other."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controlplane.engine.settings import EngineSettings
from controlplane.model import HistoryKind, RunCompleted, RunStatus
from tests.unit.engine_harness import EngineHarness, spec

SECOND = 1000


async def test_a_sent_event_has_its_run_dispatched_when_the_send_returns(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("quick")]) as h:
        [run_id] = (await h.send("app/quick")).run_ids

        # No later dispatcher round: the execution is with the worker already.
        assert h.sink.executions.qsize() == 1
        execution = h.sink.executions.get_nowait()
        assert execution.run_id == run_id
        assert await h.status(run_id) is RunStatus.RUNNING
        kinds = [entry.kind for entry in (await h.run(run_id)).history]
        assert kinds.count(HistoryKind.EXECUTION_STARTED) == 1


async def test_concurrent_sends_never_lease_more_than_the_worker_has_room_for(
    tmp_path: Path,
) -> None:
    async with EngineHarness.start(tmp_path, [spec("one-at-a-time")], capacity=1) as h:
        results = await asyncio.gather(*(h.send("app/one-at-a-time", {"n": n}) for n in range(5)))
        run_ids = [r.run_ids[0] for r in results]

        first = await h.next_execution()
        await asyncio.sleep(0)
        assert h.sink.executions.empty(), "a second execution went to a worker of capacity 1"
        statuses = [await h.status(r) for r in run_ids]
        assert statuses.count(RunStatus.RUNNING) == 1
        assert statuses.count(RunStatus.QUEUED) == 4

        # Each end frees the one slot for the next run, until all have run.
        done = [first.run_id]
        await h.report(first, RunCompleted(b"null"))
        for _ in range(4):
            execution = await h.next_execution()
            assert h.sink.executions.empty()
            done.append(execution.run_id)
            await h.report(execution, RunCompleted(b"null"))
        assert sorted(done) == sorted(run_ids)


async def test_a_run_leased_with_its_event_is_dispatched_again_when_its_lease_expires(
    tmp_path: Path,
) -> None:
    # A short lease, on the clock's real pace: the dispatcher, idle with no
    # lease to watch when the event came, must learn of this one.
    settings = EngineSettings(heartbeat_interval_ms=100, lease_timeout_ms=400)
    async with EngineHarness.start(tmp_path, [spec("stuck")], settings=settings) as h:
        session = h.session
        assert session is not None
        await asyncio.sleep(0.05)  # the dispatcher's first rounds are done: it sleeps
        [run_id] = (await h.send("app/stuck")).run_ids
        first = await h.next_execution()

        async def alive_but_stuck() -> None:
            # The worker keeps its stream alive, but not this execution's lease.
            while True:
                h.engine.heard_from(session)
                await asyncio.sleep(0.1)

        keepalive = asyncio.create_task(alive_but_stuck())
        try:
            again = await h.next_execution()
        finally:
            keepalive.cancel()
        assert again.run_id == run_id
        assert again.execution_id != first.execution_id
        kinds = [entry.kind for entry in (await h.run(run_id)).history]
        assert HistoryKind.EXECUTION_LOST in kinds
