"""Flow control with real processes: concurrency, throttle, rate limit, debounce,
priority, batching, singleton, pause and resume, fair claiming and worker
capacity, on SQLite and PostgreSQL.

The functions live in ``tests/integration/apps/flow.py`` and run in worker
processes; their steps write to the ledger, which is how overlap in real time is
measured. Everything else that depends on time runs on the control plane's
virtual clock, held (``Clock.held``) while a test sets up a situation and
released or advanced to let time pass.

Most tests share one control plane per database (``shared``, module scope):
each uses functions of its own and reads only its own runs from the ledger.
Those that need a cluster of their own (two control planes, a raw worker)
start one.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import database_params
from tests.integration.conftest import Cluster
from tests.support import ledger
from tests.support.admin import FINISHED, Admin
from tests.support.clock import Clock
from tests.support.databases import fresh_database
from tests.support.ledger import LEDGER_VARIABLE
from tests.support.processes import ROOT, ControlPlaneProcess, WorkerProcess
from tests.support.raw_worker import RawWorker, definition, hello, outcomes, payload
from tests.support.waiting import wait_until
from tether import PauseMode, SendResult, Tether
from tether.v1 import common_pb2
from tether.v1 import run_service_pb2 as rs
from tether.v1 import worker_service_pb2 as ws

T = TypeVar("T")

FLOW_APPS = "tests.integration.apps.flow"
QUEUED = common_pb2.RUN_STATUS_QUEUED
SLEEPING = common_pb2.RUN_STATUS_SLEEPING
WAITING = common_pb2.RUN_STATUS_WAITING
COMPLETED = common_pb2.RUN_STATUS_COMPLETED
CANCELLED = common_pb2.RUN_STATUS_CANCELLED


class Flow:
    """A cluster serving the flow apps: their workers, the clock, an SDK client."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.admin = cluster.admin
        self.clock = Clock(cluster.control_plane.address)
        self.client = Tether("flow", address=cluster.control_plane.address)

    def worker(
        self,
        app: str = "app",
        *,
        capacity: int = 100,
        name: str = "worker",
        address: str | None = None,
    ) -> WorkerProcess:
        """A worker process serving one of the flow apps (a whole app)."""
        process = WorkerProcess(
            f"{FLOW_APPS}:{app}",
            address or self.cluster.control_plane.address,
            self.cluster.workdir,
            name=name,
            capacity=capacity,
            env={LEDGER_VARIABLE: str(self.cluster.ledger), "TETHER_TEST_WORKER": name},
        ).start()
        self.cluster.workers.append(process)
        return process

    def connected(self, function_id: str, admin: Admin | None = None) -> None:
        admin = admin or self.admin
        wait_until(lambda: admin.connected(function_id), what=f"a worker serving {function_id}")

    def send(self, name: str, *data: dict[str, Any]) -> list[SendResult]:
        """Send one event per ``data``, in one call (one transaction)."""
        return self.client.send_sync([{"name": name, "data": d} for d in data])

    def run(self, name: str, data: dict[str, Any]) -> str:
        """Send one event that starts exactly one run; its id."""
        [result] = self.send(name, data)
        [run_id] = result.run_ids
        return run_id

    def finished(self, run_id: str, timeout: float = 20) -> rs.GetRunResponse:
        response = wait_until(
            lambda: self.admin.finished(run_id), timeout=timeout, what=f"run {run_id} to finish"
        )
        assert response is not None
        return response

    def completed(self, run_id: str, timeout: float = 20) -> rs.Run:
        run = self.finished(run_id, timeout).run
        assert run.status == COMPLETED, run
        return run

    def reaches(self, run_id: str, status: int, timeout: float = 20) -> None:
        name = common_pb2.RunStatus.Name(status)  # type: ignore[arg-type]
        wait_until(
            lambda: self.admin.status(run_id) == status,
            timeout=timeout,
            what=f"run {run_id} to be {name}",
        )

    def settle(self) -> None:
        """Return once the dispatcher has claimed and finished a run sent now:
        runs that could have started by then would have."""
        self.completed(self.run("flow/plain", {}))

    def event(self, event_id: str) -> rs.GetEventResponse:
        return self.admin.runs.GetEvent(rs.GetEventRequest(event_id=event_id))

    def sdk(self, call: Callable[[Tether], Awaitable[T]]) -> T:
        """Run an async SDK call on a client of the "flow" app."""

        async def go() -> T:
            client = Tether("flow", address=self.cluster.control_plane.address)
            try:
                return await call(client)
            finally:
                await client.close()

        return asyncio.run(go())

    def ledger_rows(self, label: str, run_ids: Sequence[str]) -> list[list[str]]:
        """The ledger's rows with this label written by these runs."""
        return [
            row for row in ledger.read(self.cluster.ledger) if row[1] == label and row[0] in run_ids
        ]

    def cancel_all(self, app_id: str, function_id: str) -> None:
        """Cancel what a test left unfinished, so that it does not load the next."""
        self.admin.runs.CancelRuns(rs.CancelRunsRequest(app_id=app_id, function_id=function_id))

    def close(self) -> None:
        self.clock.close()
        asyncio.run(self.client.close())


@pytest.fixture(scope="module", params=database_params())
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Flow]:
    """A control plane on a virtual clock with the main flow app's worker, for
    the tests of this module that run on this database."""
    workdir = tmp_path_factory.mktemp("flow")
    with fresh_database(request.param, workdir) as db_url:
        cluster = Cluster(db_url, workdir, clock="virtual")
        result = Flow(cluster)
        try:
            result.worker()
            result.connected("plain")
            yield result
        finally:
            result.close()
            cluster.close()


@pytest.fixture
def flow(request: pytest.FixtureRequest, shared: Flow) -> Iterator[Flow]:
    """The shared cluster; its logs' tails are printed when the test fails."""
    shared.clock.set_auto_skip(True)
    yield shared
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        print("\n".join(shared.cluster.logs().splitlines()[-300:]))


# -- overlap in real time, from the ledger ------------------------------------------------


def _intervals(flow: Flow, run_ids: list[str]) -> list[tuple[int, int, str]]:
    """(start ns, end ns, key) of each run's ``work`` step; each ran exactly once."""
    times: dict[str, dict[str, list[tuple[int, str]]]] = defaultdict(lambda: defaultdict(list))
    for run_id, label, at, key, _worker in ledger.read(flow.cluster.ledger):
        times[run_id][label].append((int(at), key))
    intervals = []
    for run_id in run_ids:
        starts, ends = times[run_id]["start"], times[run_id]["end"]
        assert len(starts) == len(ends) == 1, f"run {run_id} worked {starts} {ends}"
        intervals.append((starts[0][0], ends[0][0], starts[0][1]))
    return intervals


def _max_overlap(intervals: list[tuple[int, int, str]]) -> int:
    """The most intervals open at one time (an end before a start at a tie)."""
    edges = sorted(
        [(start, 1) for start, _, _ in intervals] + [(end, -1) for _, end, _ in intervals]
    )
    most = current = 0
    for _, change in edges:
        current += change
        most = max(most, current)
    return most


def _starts(flow: Flow, run_ids: list[str]) -> list[int]:
    """When each run started, in ms after the first of them was created, sorted."""
    runs = [flow.completed(r) for r in run_ids]
    created = min(r.created_at_ms for r in runs)
    return sorted(r.started_at_ms - created for r in runs)


# -- 1. concurrency ---------------------------------------------------------------------------


def test_concurrency_limits_the_runs_executing_at_once(flow: Flow) -> None:
    results = flow.send("flow/limited", *({"n": i} for i in range(12)))
    run_ids = [r for result in results for r in result.run_ids]
    for run_id in run_ids:
        flow.completed(run_id)

    assert len(run_ids) == 12
    assert _max_overlap(_intervals(flow, run_ids)) == 2


def test_a_keyed_concurrency_limit_holds_per_key(flow: Flow) -> None:
    customers = ["a", "b", "c"] * 4
    results = flow.send("flow/keyed", *({"customer": c} for c in customers))
    run_ids = [r for result in results for r in result.run_ids]
    for run_id in run_ids:
        flow.completed(run_id)

    intervals = _intervals(flow, run_ids)
    for customer in "abc":
        mine = [i for i in intervals if i[2] == customer]
        assert len(mine) == 4
        assert _max_overlap(mine) == 1, f"customer {customer} ran runs at once"
    assert _max_overlap(intervals) >= 2, "one customer's runs held back the others'"


def test_sleeping_runs_do_not_count_against_concurrency(flow: Flow) -> None:
    with flow.clock.held():
        first = flow.run("flow/sleepy", {})
        second = flow.run("flow/sleepy", {})
        # Limit 1: the second run executes while the first one sleeps.
        flow.reaches(first, SLEEPING)
        flow.reaches(second, SLEEPING)
        assert len(flow.ledger_rows("before", [first, second])) == 2
        assert flow.ledger_rows("after", [first, second]) == []
        flow.clock.advance("61m")
        for run_id in (first, second):
            flow.completed(run_id)


def test_limits_hold_across_two_control_planes(
    db_url: str, cluster_factory: Callable[..., Cluster], tmp_path: Path
) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("several control planes share PostgreSQL only")
    flow = Flow(cluster_factory())
    workdir = tmp_path / "second"
    workdir.mkdir()
    second = ControlPlaneProcess(db_url, workdir).start()
    second_admin = Admin(second.address)
    try:
        # Worker-1 takes one run at a time: the first node never holds both
        # slots, so the second node must take runs for two to execute at once,
        # and its worker (capacity 100) would take more if the limit did not
        # count the first node's runs.
        flow.worker(name="worker-1", capacity=1)
        flow.worker(name="worker-2", address=second.address)
        flow.connected("limited")
        wait_until(
            lambda: any(
                f.definition.id == "limited" and f.connected_workers == 1
                for f in second_admin.functions()
            ),
            what="worker-2 connected to the second control plane",
        )

        run_ids: list[str] = []
        for i in range(6):
            run_ids += second_admin.send("flow/limited", {"n": i, "seconds": 0.15})
            run_ids.append(flow.run("flow/limited", {"n": i, "seconds": 0.15}))
        for run_id in run_ids:
            flow.completed(run_id)

        assert len(run_ids) == 12
        assert _max_overlap(_intervals(flow, run_ids)) == 2
        workers = {row[4] for row in flow.ledger_rows("start", run_ids)}
        assert "worker-2" in workers, "the second control plane did no work"

        # The rate limit's state is shared too: 2 per hour, 5 events at once to each node.
        def send(admin: Admin) -> list[str]:
            return admin.send_many([("flow/rated", {"n": n}) for n in range(5)])

        with ThreadPoolExecutor(2) as pool:
            started = [r for ids in pool.map(send, [flow.admin, second_admin]) for r in ids]
        assert len(started) == 2, started
    except BaseException:
        print(f"--- second control plane ---\n{second.logs()}")
        raise
    finally:
        second_admin.close()
        second.stop()
        flow.close()


# -- 2. throttle --------------------------------------------------------------------------------


def test_throttle_spaces_starts_and_drops_nothing(flow: Flow) -> None:
    throttled = flow.send("flow/throttled", *({"n": i} for i in range(3)))
    bursty = flow.send("flow/bursty", *({"n": i} for i in range(3)))
    throttled_ids = [r for result in throttled for r in result.run_ids]
    bursty_ids = [r for result in bursty for r in result.run_ids]

    assert len(throttled_ids) == len(bursty_ids) == 3
    assert all(not result.skipped for result in throttled + bursty)
    # One start per 10 s: the scheduled starts are 10 s apart (the first run's
    # actual start lags its scheduled one by the dispatch latency).
    first, second, third = _starts(flow, throttled_ids)
    assert first < 5_000
    assert 10_000 <= second < 15_000
    assert 20_000 <= third < 25_000
    assert sorted(flow.admin.output(r)["n"] for r in throttled_ids) == [0, 1, 2]
    # Burst 2: two start at once, the third one period after.
    first, second, third = _starts(flow, bursty_ids)
    assert second < 5_000
    assert 10_000 <= third < 15_000


# -- 3. rate limit ------------------------------------------------------------------------------


RATE_REASON = "rate limited: at most 2 run(s) per 1h"


def test_rate_limit_skips_the_events_over_it(flow: Flow) -> None:
    with flow.clock.held():
        results = flow.send("flow/rated", *({"n": i} for i in range(5)))
        flow.clock.advance("31m")  # evenly spread: room for one more
        later = flow.send("flow/rated", {"n": 5}, {"n": 6})

    assert [len(r.run_ids) for r in results] == [1, 1, 0, 0, 0]
    for result in results[2:]:
        [skipped] = result.skipped
        assert (skipped.app_id, skipped.function_id) == ("flow", "rate-limited")
        assert skipped.reason == RATE_REASON
        assert skipped.existing_run_id == ""
    assert [len(r.run_ids) for r in later] == [1, 0]
    for run_id in [*results[0].run_ids, *results[1].run_ids, *later[0].run_ids]:
        flow.completed(run_id)

    shown = flow.event(results[2].event_id)
    assert shown.event.event.id == results[2].event_id, "a skipped event is still stored"
    assert list(shown.runs) == []
    assert [(s.function_id, s.reason) for s in shown.skipped] == [("rate-limited", RATE_REASON)]
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "controlplane",
            "events",
            "show",
            results[2].event_id,
            "--address",
            flow.cluster.control_plane.address,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert f"skipped flow/rate-limited: {RATE_REASON}" in cli.stdout


def test_a_keyed_rate_limit_holds_per_key(flow: Flow) -> None:
    with flow.clock.held():
        results = flow.send(
            "flow/rated-keyed", *({"account": a} for a in ["a", "a", "b", "b", "a"])
        )

    assert [len(r.run_ids) for r in results] == [1, 0, 1, 0, 0]
    reasons = [s.reason for r in results for s in r.skipped]
    assert reasons == [
        "rate limited: at most 1 run(s) per 1h for key 'a'",
        "rate limited: at most 1 run(s) per 1h for key 'b'",
        "rate limited: at most 1 run(s) per 1h for key 'a'",
    ]


# -- 4. debounce ---------------------------------------------------------------------------------


def test_debounce_runs_once_with_the_last_event(flow: Flow) -> None:
    with flow.clock.held():
        [first] = flow.send("flow/debounced", {"user": "u1", "n": 1})
        flow.clock.advance("2s")
        [second] = flow.send("flow/debounced", {"user": "u1", "n": 2})
        flow.clock.advance("2s")
        # The others in the same call: another user, and a user's two events.
        [last, other, early, late] = flow.send(
            "flow/debounced",
            {"user": "u1", "n": 3},
            {"user": "u2", "n": 1},
            {"user": "u3", "n": 1},
            {"user": "u3", "n": 2},
        )
        [run_id] = last.run_ids
        flow.clock.advance("3s")  # 7 s after the first event, 3 s after the last
        flow.settle()
        assert flow.admin.status(run_id) == QUEUED, "started before the debounce period"

    assert first.run_ids == second.run_ids == [run_id], "the events did not join one run"
    [other_id] = other.run_ids
    assert other_id != run_id
    run = flow.completed(run_id)
    assert flow.admin.output(run_id) == {"user": "u1", "n": 3}
    assert [e.id for e in flow.admin.get(run_id).events] == [last.event_id]
    received = flow.event(last.event_id).event.received_at_ms
    assert run.started_at_ms >= received + 5000
    flow.completed(other_id)
    assert flow.admin.output(other_id) == {"user": "u2", "n": 1}
    [u3_run] = late.run_ids
    assert early.run_ids == [u3_run]
    assert len({run_id, other_id, u3_run}) == 3
    flow.completed(u3_run)
    assert flow.admin.output(u3_run) == {"user": "u3", "n": 2}
    [skip] = flow.event(early.event_id).skipped
    assert skip.existing_run_id == u3_run
    for replaced, by in ((first, second), (second, last)):
        [skip] = flow.event(replaced.event_id).skipped
        assert skip.function_id == "debounced"
        assert skip.existing_run_id == run_id
        assert skip.reason == (
            f"debounced: event {by.event_id} arrived later and replaced it in run {run_id}"
        )
    assert [r.id for r in flow.event(last.event_id).runs] == [run_id]


def test_debounce_timeout_caps_the_delay(flow: Flow) -> None:
    with flow.clock.held():
        sent = [flow.send("flow/debounce-capped", {"user": "u", "n": 1})[0]]
        for n in (2, 3):
            flow.clock.advance("4s")  # each event pushes the start 5 s on...
            sent += flow.send("flow/debounce-capped", {"user": "u", "n": n})
    # ...but no later than 10 s after the first (not 13 s); the clock skips to it.
    run_ids = {r for result in sent for r in result.run_ids}
    [run_id] = run_ids
    run = flow.completed(run_id)
    first_received = flow.event(sent[0].event_id).event.received_at_ms
    assert 10_000 <= run.started_at_ms - first_received < 12_500
    assert flow.admin.output(run_id) == {"user": "u", "n": 3}


# -- 5. priority ----------------------------------------------------------------------------------


def test_a_higher_priority_run_starts_first(flow: Flow) -> None:
    first = flow.worker("priority_app", capacity=1, name="priority-1")
    flow.connected("prioritized")
    first.terminate()
    wait_until(lambda: not flow.admin.connected("prioritized"), what="the first worker to be gone")

    run_ids = [flow.run("flow/prioritized", {"n": n, "vip": False}) for n in range(4)]
    vip = flow.run("flow/prioritized", {"n": 4, "vip": True})
    for run_id in [*run_ids, vip]:
        assert flow.admin.status(run_id) == QUEUED
    second = flow.worker("priority_app", capacity=1, name="priority-2")

    runs = [flow.completed(r) for r in [*run_ids, vip]]
    by_start = [r.id for r in sorted(runs, key=lambda r: r.started_at_ms)]
    assert by_start == [vip, *run_ids]
    started = [row[3] for row in flow.ledger_rows("start", [*run_ids, vip])]
    assert started == ["4", "0", "1", "2", "3"]
    second.kill()


def test_a_negative_priority_delays_the_start(flow: Flow) -> None:
    cases = {-30: (30_000, 31_000), 0: (0, 5_000), -5000: (600_000, 601_000), "high": (0, 5_000)}
    run_ids = {flow.run("flow/deferred", {"priority": p}): p for p in cases}

    for run_id, priority in run_ids.items():
        run = flow.completed(run_id)
        low, high = cases[priority]
        assert low <= run.started_at_ms - run.created_at_ms < high, (priority, run)


# -- 6. batching ----------------------------------------------------------------------------------


def test_batching_groups_events_into_runs(flow: Flow) -> None:
    with flow.clock.held():
        sent = [flow.send("flow/batched", {"n": n})[0] for n in range(7)]
        run_ids = [result.run_ids for result in sent]
        full_one, full_two, partial = run_ids[0][0], run_ids[3][0], run_ids[6][0]
        assert run_ids == [[full_one]] * 3 + [[full_two]] * 3 + [[partial]]
        flow.completed(full_one)
        flow.completed(full_two)
        assert flow.admin.status(partial) == QUEUED

    assert flow.admin.output(full_one) == [0, 1, 2]
    assert flow.admin.output(full_two) == [3, 4, 5]
    run = flow.completed(partial)
    assert flow.admin.output(partial) == [6]
    received = flow.event(sent[6].event_id).event.received_at_ms
    assert run.started_at_ms >= received + 10_000
    for run_id, last in ((full_one, sent[2]), (full_two, sent[5])):
        started = flow.admin.get(run_id).run.started_at_ms
        assert started - flow.event(last.event_id).event.received_at_ms < 10_000


def test_batches_are_per_key(flow: Flow) -> None:
    tenants = ["a", "b", "a", "b", "a"]
    results = flow.send(
        "flow/batched-keyed", *({"tenant": t, "n": n} for n, t in enumerate(tenants))
    )
    a_full, b_full, a_rest = results[0].run_ids[0], results[1].run_ids[0], results[4].run_ids[0]

    assert [r.run_ids for r in results] == [[a_full], [b_full], [a_full], [b_full], [a_rest]]
    assert flow.admin.output(flow.completed(a_full).id) == [0, 2]
    assert flow.admin.output(flow.completed(b_full).id) == [1, 3]
    run = flow.completed(a_rest)
    assert flow.admin.output(a_rest) == [4]
    assert run.started_at_ms - run.created_at_ms >= 10_000


def test_a_batched_run_shows_all_its_events(flow: Flow) -> None:
    results = flow.send("flow/batched", *({"n": n} for n in range(3)))
    [run_id] = {r for result in results for r in result.run_ids}
    flow.completed(run_id)

    assert flow.admin.output(run_id) == [0, 1, 2]
    shown = [e.id for e in flow.admin.get(run_id).events]
    assert shown == [r.event_id for r in results], "GetRun lists only the first event"
    for result in results:
        runs = [r.id for r in flow.event(result.event_id).runs]
        assert runs == [run_id], f"GetEvent({result.event_id}) does not show the batch's run"


# -- 7. singleton ---------------------------------------------------------------------------------


def test_singleton_skip_while_a_run_holds_the_key(flow: Flow) -> None:
    with flow.clock.held():
        holder = flow.run("flow/single-skip", {"job": "K"})
        flow.reaches(holder, WAITING)
        [skipped] = flow.send("flow/single-skip", {"job": "K"})
        other = flow.run("flow/single-skip", {"job": "L"})
        [released] = flow.send("flow/release", {"job": "K"})
        flow.completed(holder)
        again = flow.run("flow/single-skip", {"job": "K"})
        flow.reaches(again, WAITING)
        flow.send("flow/release", {"job": "K"}, {"job": "L"})

    assert skipped.run_ids == []
    [skip] = skipped.skipped
    assert skip.function_id == "single-skip"
    assert skip.existing_run_id == holder
    assert skip.reason == f"singleton: run {holder} is still unfinished for key 'K'"
    assert released.resumed_run_ids == [holder]
    assert len({holder, other, again}) == 3
    flow.completed(other)
    flow.completed(again)


def test_singleton_cancel_replaces_the_running_run(flow: Flow) -> None:
    with flow.clock.held():
        first = flow.run("flow/single-cancel", {"job": "K"})
        flow.reaches(first, WAITING)
        [second] = flow.send("flow/single-cancel", {"job": "K", "n": 2})
        [newest] = second.run_ids
        flow.reaches(newest, WAITING)
        [released] = flow.send("flow/release", {"job": "K"})

    assert second.cancelled_run_ids == [first]
    cancelled = flow.finished(first).run
    assert cancelled.status == CANCELLED
    assert "singleton" in cancelled.error.message, cancelled.error.message
    assert released.resumed_run_ids == [newest]
    flow.completed(newest)


@pytest.mark.parametrize("mode", ["skip", "cancel"])
def test_singleton_holds_between_events_of_one_send(flow: Flow, mode: str) -> None:
    with flow.clock.held():
        first, second = flow.send(f"flow/single-{mode}", {"job": "M", "n": 1}, {"job": "M", "n": 2})
        live = second.run_ids if mode == "cancel" else first.run_ids
        for run_id in live:
            flow.reaches(run_id, WAITING)
        flow.send("flow/release", {"job": "M"})

    [first_run] = first.run_ids
    if mode == "skip":
        assert second.run_ids == [], "two runs hold one singleton key"
        assert [s.existing_run_id for s in second.skipped] == [first_run]
    else:
        assert second.cancelled_run_ids == [first_run], "two runs hold one singleton key"
        assert flow.finished(first_run).run.status == CANCELLED
    for run_id in first.run_ids + second.run_ids:
        flow.finished(run_id)


# -- 8. pause and resume ---------------------------------------------------------------------------


def test_a_paused_function_holds_its_runs_until_resumed(flow: Flow) -> None:
    info = flow.sdk(lambda c: c.functions.pause("pausable"))
    assert info.paused is PauseMode.HOLD

    run_ids = [flow.run("flow/pausable", {"n": n}) for n in range(3)]
    flow.clock.advance("10m")
    flow.settle()
    assert [flow.admin.status(r) for r in run_ids] == [QUEUED] * 3
    assert flow.ledger_rows("work", run_ids) == []

    released = flow.sdk(lambda c: c.functions.resume("pausable"))

    assert released == 3
    for run_id in run_ids:
        flow.completed(run_id)
    assert sorted(row[0] for row in flow.ledger_rows("work", run_ids)) == sorted(run_ids)


def test_a_function_paused_with_skip_starts_nothing(flow: Flow) -> None:
    info = flow.sdk(lambda c: c.functions.pause("pausable-skip", PauseMode.SKIP))
    assert info.paused is PauseMode.SKIP

    results = flow.send("flow/pausable-skip", {"n": 1}, {"n": 2})

    for result in results:
        assert result.run_ids == []
        [skip] = result.skipped
        assert skip.function_id == "pausable-skip"
        assert skip.reason.startswith("the function is paused"), skip.reason
        shown = flow.event(result.event_id)
        assert shown.event.event.id == result.event_id
        assert [s.reason for s in shown.skipped] == [skip.reason]
    assert flow.sdk(lambda c: c.functions.resume("pausable-skip")) == 0
    flow.completed(flow.run("flow/pausable-skip", {"n": 3}))


def test_a_sleeping_run_of_a_paused_function_waits_for_the_resume(flow: Flow) -> None:
    with flow.clock.held():
        run_id = flow.run("flow/pause-sleeper", {})
        flow.reaches(run_id, SLEEPING)
        flow.sdk(lambda c: c.functions.pause("pause-sleeper"))
        flow.clock.advance("2h")  # the nap is over
        flow.settle()
        assert flow.admin.status(run_id) == SLEEPING
        assert flow.ledger_rows("after", [run_id]) == []

        assert flow.sdk(lambda c: c.functions.resume("pause-sleeper")) == 1
        flow.completed(run_id)
    assert [row[0] for row in flow.ledger_rows("after", [run_id])] == [run_id]


# -- 9. fairness ----------------------------------------------------------------------------------


def _unfinished(flow: Flow, function_id: str, run_ids: list[str]) -> int:
    statuses = {r.id: r.status for r in flow.admin.runs_of(function_id)}
    return sum(1 for r in run_ids if statuses[r] not in FINISHED)


@contextlib.contextmanager
def _fair_worker(flow: Flow, name: str) -> Iterator[None]:
    """The fair app's worker, capacity 1 (every claim picks one run among the
    groups); what is left unfinished is cancelled."""
    worker = flow.worker("fair_app", capacity=1, name=name)
    try:
        flow.connected("fair-keyed")
        yield
    finally:
        worker.kill()
        for function_id in ("fair-keyed", "flood", "trickle"):
            flow.cancel_all("flow-fair", function_id)


def test_a_flood_for_one_key_does_not_starve_another(flow: Flow) -> None:
    with _fair_worker(flow, "fair-1"):
        flood = flow.send("fair/keyed", *({"customer": "A", "seconds": 0.05} for _ in range(60)))
        a_runs = [r for result in flood for r in result.run_ids]
        b_run = flow.run("fair/keyed", {"customer": "B", "seconds": 0.05})
        flow.completed(b_run)

        assert len(a_runs) == 60
        assert _unfinished(flow, "fair-keyed", a_runs) >= 30


def test_a_flood_of_one_function_does_not_starve_another(flow: Flow) -> None:
    with _fair_worker(flow, "fair-2"):
        flood = flow.send("fair/flood", *({"seconds": 0.05} for _ in range(60)))
        flood_runs = [r for result in flood for r in result.run_ids]
        trickle = flow.run("fair/trickle", {"seconds": 0.05})
        flow.completed(trickle)

        assert len(flood_runs) == 60
        assert _unfinished(flow, "flood", flood_runs) >= 30


# -- 10. backpressure -----------------------------------------------------------------------------


async def test_a_worker_never_holds_more_executions_than_its_capacity(
    db_url: str, tmp_path: Path
) -> None:
    control_plane = ControlPlaneProcess(db_url, tmp_path).start()
    admin = Admin(control_plane.address)
    worker = RawWorker(control_plane.address)
    try:
        await worker.send(hello([definition("bp", "flow/bp")], app_id="flow-bp", capacity=3))
        welcome = await worker.receive()
        assert welcome is not None
        assert welcome.WhichOneof("frame") == "welcome", welcome
        total = 20
        run_ids = admin.send_many([("flow/bp", {"n": n}) for n in range(total)])
        assert len(run_ids) == total

        holding: dict[str, ws.Execute] = {}
        executed: list[str] = []
        most = seq = 0
        while len(executed) < total:
            frame = await worker.receive(timeout=10)
            assert frame is not None, "the stream ended"
            if frame.WhichOneof("frame") != "dispatch":
                continue
            for execute in frame.dispatch.executions:
                holding[execute.execution_id] = execute
            most = max(most, len(holding))
            assert len(holding) <= 3, f"holding {len(holding)} executions with capacity 3"
            running = [r for r in admin.runs_of("bp") if r.status == common_pb2.RUN_STATUS_RUNNING]
            assert len(running) <= 3
            # Full (or all that is left): finish the oldest, which frees one slot.
            while holding and len(holding) == min(3, total - len(executed)):
                oldest = next(iter(holding.values()))
                del holding[oldest.execution_id]
                seq += 1
                await worker.send(
                    outcomes(
                        ws.Outcome(
                            seq=seq,
                            execution_id=oldest.execution_id,
                            run_id=oldest.run_id,
                            run_completed=ws.RunCompleted(output=payload(None)),
                        )
                    )
                )
                executed.append(oldest.run_id)

        assert most == 3
        assert sorted(executed) == sorted(run_ids), "a run was dispatched twice or never"
        wait_until(lambda: all(admin.status(r) == COMPLETED for r in run_ids), what="completion")
    finally:
        await worker.close()
        admin.close()
        control_plane.stop()
