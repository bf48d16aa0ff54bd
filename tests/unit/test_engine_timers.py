"""A timer falling due within a second is leased ahead and held by the control
plane, so that its run goes to the worker the moment it is due, never before;
a run so held that is cancelled, or whose worker leaves, is not lost and does
not start early."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from controlplane.engine.dispatcher import LEASE_AHEAD_MS
from controlplane.model import HistoryKind, PlannedEventWait, PlannedSleep, RunStatus, Suspended
from tests.support.waiting import wait_until_async
from tests.unit.engine_harness import EngineHarness, spec
from tether._step_ids import hash_step_id

NAP_MS = LEASE_AHEAD_MS - 200
WAIT_S = 10.0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def _asleep_and_leased(h: EngineHarness) -> tuple[str, int]:
    """A run that reported a sleep of NAP_MS, once it is leased ahead: its id
    and when it falls due."""
    [run_id] = (await h.send("app/napper")).run_ids
    now = h.clock.now_ms()
    due = now + NAP_MS
    sleep = PlannedSleep(hash_step_id("nap"), "nap", due, now)
    await h.report(await h.next_execution(), Suspended(waits=[sleep]))

    async def leased() -> bool:
        return await h.status(run_id) is RunStatus.RUNNING

    await wait_until_async(leased, timeout=WAIT_S, interval=0.01, what="the run leased ahead")
    assert _wall_ms() < due, "the run was not leased ahead of its timer"
    assert h.sink.executions.empty(), "the run went to the worker before its timer"
    return run_id, due


async def test_a_sleep_falling_due_soon_is_dispatched_when_due_and_not_before(
    tmp_path: Path,
) -> None:
    async with EngineHarness.start(tmp_path, [spec("napper")], system_clock=True) as h:
        run_id, due = await _asleep_and_leased(h)

        resumed = await h.next_execution()
        assert _wall_ms() >= due
        assert resumed.run_id == run_id
        assert [m.step_id for m in resumed.steps] == [hash_step_id("nap")]
        kinds = [e.kind for e in (await h.run(run_id)).history]
        assert kinds.count(HistoryKind.SLEEP_ENDED) == 1
        assert kinds.count(HistoryKind.EXECUTION_STARTED) == 2


async def test_a_run_cancelled_while_held_never_reaches_the_worker(tmp_path: Path) -> None:
    async with EngineHarness.start(tmp_path, [spec("napper")], system_clock=True) as h:
        run_id, due = await _asleep_and_leased(h)

        await h.engine.cancel_run(run_id, "changed my mind")
        assert await h.status(run_id) is RunStatus.CANCELLED
        # Past its time: still nothing for it, and no Cancel for what the
        # worker never had.
        await asyncio.sleep(max(0, due - _wall_ms()) / 1000 + 0.05)
        assert await h.dispatched_with_probe() == []
        assert h.sink.cancels == []


async def test_a_run_held_for_a_worker_that_leaves_goes_to_the_next_one_when_due(
    tmp_path: Path,
) -> None:
    async with EngineHarness.start(tmp_path, [spec("napper")], system_clock=True) as h:
        run_id, due = await _asleep_and_leased(h)
        leaving = h.session
        assert leaving is not None

        await h.engine.disconnect_worker(leaving, "gone")
        await h.connect()
        resumed = await h.next_execution()
        assert _wall_ms() >= due, "the run started before its timer"
        assert resumed.run_id == run_id
        assert [m.step_id for m in resumed.steps] == [hash_step_id("nap")]


async def test_an_event_just_before_a_wait_times_out_still_resumes_it(tmp_path: Path) -> None:
    # A timeout is no timer to lease ahead: the event may come until it passes.
    async with EngineHarness.start(tmp_path, [spec("await-pay")], system_clock=True) as h:
        [run_id] = (await h.send("app/await-pay", {"order": 7})).run_ids
        now = h.clock.now_ms()
        timeout_at = now + NAP_MS
        wait = PlannedEventWait(
            hash_step_id("paid"), "paid", "shop/paid", "data.order", "", timeout_at, now
        )
        await h.report(await h.next_execution(), Suspended(waits=[wait]))
        # Inside the last second before the timeout, where timers are leased
        # ahead, with room for the Send on a slow machine.
        await asyncio.sleep(max(0, timeout_at - 400 - _wall_ms()) / 1000)
        assert await h.status(run_id) is RunStatus.WAITING

        hit = await h.send("shop/paid", {"order": 7})
        assert _wall_ms() < timeout_at
        assert hit.resumed_run_ids == [run_id]
        resumed = await h.next_execution()
        [memo] = resumed.steps
        assert json.loads(memo.output or b"")["data"] == {"order": 7}
