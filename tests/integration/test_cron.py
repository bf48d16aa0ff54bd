"""Cron triggers with real control-plane and worker processes on a virtual
clock (SQLite, then PostgreSQL): one run per tick, catch-up after a jump of the
clock or downtime, schedules kept across registrations, the next tick in
ListFunctions, and two control planes sharing PostgreSQL firing each tick once.

The apps are in ``tests/integration/apps/cron.py``; each run returns what its
``ctx`` saw.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import grpc
import pytest
from sqlalchemy import create_engine, text

from tests.integration.conftest import Cluster
from tests.support.admin import Admin
from tests.support.databases import fresh_database, postgres_url
from tests.support.processes import WorkerProcess
from tests.support.waiting import wait_until, wait_until_async
from tether import Context, Tether, cron
from tether.testing import TestEnvironment
from tether.v1 import clock_service_pb2, clock_service_pb2_grpc, common_pb2

APPS = "tests.integration.apps.cron"
PARIS = ZoneInfo("Europe/Paris")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class Clock:
    """A control plane's virtual clock, through ClockService."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = clock_service_pb2_grpc.ClockServiceStub(self.channel)

    def now(self) -> int:
        return int(self.stub.GetTime(clock_service_pb2.GetTimeRequest()).now_ms)

    def advance(self, by_ms: int) -> int:
        return int(self.stub.Advance(clock_service_pb2.AdvanceRequest(by_ms=by_ms)).now_ms)

    def advance_to(self, at_ms: int) -> int:
        """Move the clock to ``at_ms`` (or just past it: the clock runs meanwhile)."""
        return self.advance(max(1, at_ms - self.now()))

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def clock(virtual_cluster: Cluster) -> Iterator[Clock]:
    clock = Clock(virtual_cluster.control_plane.address)
    yield clock
    clock.close()


def start_worker(cluster: Cluster, app: str, name: str, **env: str) -> WorkerProcess:
    worker = WorkerProcess(
        f"{APPS}:{app}", cluster.control_plane.address, cluster.workdir, name=name, env=env
    ).start()
    cluster.workers.append(worker)
    return worker


def function(admin: Admin, function_id: str) -> Any:
    return next(f for f in admin.functions() if f.definition.id == function_id)


def registered(admin: Admin, function_id: str) -> bool:
    return any(
        f.definition.id == function_id and f.connected_workers > 0 for f in admin.functions()
    )


def next_fire(admin: Admin, function_id: str) -> int:
    fires = list(function(admin, function_id).next_fire_ms)
    assert len(fires) == 1, fires
    return int(fires[0])


def outputs(admin: Admin, function_id: str) -> list[dict[str, Any]]:
    """What each completed run of the function saw, oldest tick first."""
    done = [
        json.loads(r.output)
        for r in admin.runs_of(function_id)
        if r.status == common_pb2.RUN_STATUS_COMPLETED
    ]
    return sorted(done, key=lambda o: (o["cron"] or {}).get("scheduled_at_ms", 0))


def ticks(admin: Admin, function_id: str, count: int) -> list[int]:
    """Wait for ``count`` completed runs of the function; return their ticks."""
    wait_until(
        lambda: len(outputs(admin, function_id)) >= count,
        what=f"{count} completed run(s) of {function_id}",
    )
    seen = outputs(admin, function_id)
    assert len(admin.runs_of(function_id)) == count
    return [o["cron"]["scheduled_at_ms"] for o in seen]


def runs_at_least(admin: Admin, function_id: str, count: int) -> bool:
    return len(admin.runs_of(function_id)) >= count


def next_nine_in_paris(after_ms: int) -> int:
    local = dt.datetime.fromtimestamp(after_ms / 1000, PARIS)
    nine = local.replace(hour=9, minute=0, second=0, microsecond=0)
    if nine <= local:
        nine = (nine + dt.timedelta(days=1)).replace(hour=9)
    return round(nine.timestamp() * 1000)


def move_schedules_back(db_url: str, by_ms: int) -> None:
    """What downtime leaves in the store: next ticks that have passed. (The
    virtual clock of a restarted control plane starts at the wall-clock time
    again, so the schedule is moved back instead of the clock forward.)"""
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE schedules SET next_fire_ms = next_fire_ms - :by"), {"by": by_ms}
            )
    finally:
        engine.dispose()


# -- one run per tick --------------------------------------------------------------------


def test_a_cron_function_runs_once_per_tick_as_the_clock_reaches_it(
    virtual_cluster: Cluster, clock: Clock
) -> None:
    admin = virtual_cluster.admin
    before = clock.now()
    start_worker(virtual_cluster, "daily", "worker")
    wait_until(lambda: registered(admin, "report"), what="the worker to register")
    first = next_fire(admin, "report")
    assert first == next_nine_in_paris(before)

    expected = []
    for count in range(1, 4):
        tick = next_fire(admin, "report")
        expected.append(tick)
        clock.advance_to(tick)
        assert ticks(admin, "report", count) == expected

    # Consecutive days at 09:00 in Paris, and ListFunctions shows the next one.
    assert [dt.datetime.fromtimestamp(t / 1000, PARIS).hour for t in expected] == [9, 9, 9]
    assert next_fire(admin, "report") == next_nine_in_paris(expected[-1])
    for seen, tick in zip(outputs(admin, "report"), expected, strict=True):
        assert seen == {
            "cron": {
                "schedule": "0 9 * * *",
                "timezone": "Europe/Paris",
                "scheduled_at": dt.datetime.fromtimestamp(tick / 1000, dt.UTC).isoformat(),
                "scheduled_at_ms": tick,
            },
            "event": {"name": "", "data": {}},
            "events": 0,
        }

    # The same function started by its event trigger has no cron tick.
    (run_id,) = admin.send("daily/report.requested", {"who": "ops"})
    wait_until(lambda: admin.finished(run_id), what="the event's run")
    assert admin.output(run_id) == {
        "cron": None,
        "event": {"name": "daily/report.requested", "data": {"who": "ops"}},
        "events": 1,
    }


# -- catch-up ----------------------------------------------------------------------------


def test_a_jump_over_three_ticks_runs_what_the_catch_up_says(
    virtual_cluster: Cluster, clock: Clock
) -> None:
    admin = virtual_cluster.admin
    start_worker(virtual_cluster, "catchup", "worker")
    names = ("hourly-one", "hourly-all", "hourly-none")
    wait_until(lambda: all(registered(admin, n) for n in names), what="registration")
    t1 = next_fire(admin, "hourly-one")
    assert all(next_fire(admin, n) == t1 for n in names)

    # Three ticks pass; the clock lands 30 minutes after the last: all missed.
    clock.advance_to(t1 + 2 * HOUR_MS + 30 * 60_000)
    assert ticks(admin, "hourly-one", 1) == [t1 + 2 * HOUR_MS]
    assert ticks(admin, "hourly-all", 3) == [t1, t1 + HOUR_MS, t1 + 2 * HOUR_MS]
    # One transaction fired all three schedules: "none" started nothing.
    assert admin.runs_of("hourly-none") == []
    assert all(next_fire(admin, n) == t1 + 3 * HOUR_MS for n in names)

    # The next tick, reached on time, runs everywhere.
    clock.advance_to(t1 + 3 * HOUR_MS)
    assert ticks(admin, "hourly-none", 1) == [t1 + 3 * HOUR_MS]
    assert ticks(admin, "hourly-one", 2)[-1] == t1 + 3 * HOUR_MS
    assert ticks(admin, "hourly-all", 4)[-1] == t1 + 3 * HOUR_MS


def test_a_control_plane_restarted_after_missed_ticks_runs_one_catch_up(
    virtual_cluster: Cluster,
) -> None:
    admin = virtual_cluster.admin
    start_worker(virtual_cluster, "daily", "worker")
    wait_until(lambda: registered(admin, "report"), what="the worker to register")
    t1 = next_fire(admin, "report")

    virtual_cluster.control_plane.stop()
    move_schedules_back(virtual_cluster.control_plane.db_url, 3 * DAY_MS)  # down three days
    virtual_cluster.restart_control_plane()

    # The ticks of the last three days were missed: catch_up "one" runs the latest.
    admin = virtual_cluster.admin
    assert ticks(admin, "report", 1) == [t1 - DAY_MS]
    wait_until(lambda: registered(admin, "report"), what="the worker to register again")
    assert next_fire(admin, "report") == t1
    assert len(admin.runs_of("report")) == 1


def test_registering_the_same_schedule_again_keeps_its_next_tick(
    virtual_cluster: Cluster, clock: Clock
) -> None:
    cluster = virtual_cluster
    admin = cluster.admin
    first = start_worker(cluster, "daily", "first")
    wait_until(lambda: registered(admin, "report"), what="the first worker to register")
    t1 = next_fire(admin, "report")
    first.kill()
    wait_until(lambda: not registered(admin, "report"), what="the first worker to leave")

    # Ticks missed (as if no control plane had run for three days), then the
    # same schedule registered again: the missed ticks are still there.
    move_schedules_back(cluster.control_plane.db_url, 3 * DAY_MS)
    start_worker(cluster, "daily", "second")
    wait_until(lambda: registered(admin, "report"), what="the second worker to register")
    assert ticks(admin, "report", 1) == [t1 - DAY_MS]
    (run,) = admin.runs_of("report")
    assert run.created_at_ms >= function(admin, "report").updated_at_ms
    assert next_fire(admin, "report") == t1
    cluster.workers[-1].kill()
    wait_until(lambda: not registered(admin, "report"), what="the second worker to leave")

    # A changed schedule starts afresh, with no catch-up.
    now = clock.now()
    start_worker(cluster, "daily", "third", TETHER_TEST_CRON="30 10 * * *")
    wait_until(lambda: next_fire(admin, "report") != t1, what="the schedule to change")
    tick = next_fire(admin, "report")
    assert tick > now
    assert dt.datetime.fromtimestamp(tick / 1000, PARIS).strftime("%H:%M") == "10:30"
    assert len(admin.runs_of("report")) == 1
    cluster.workers[-1].kill()
    wait_until(lambda: not registered(admin, "report"), what="the third worker to leave")

    # A function that lost its cron trigger has no schedule left.
    start_worker(cluster, "daily", "fourth", TETHER_TEST_CRON="")
    wait_until(
        lambda: not function(admin, "report").next_fire_ms, what="the schedule to be removed"
    )


# -- testing a cron function with TestEnvironment ----------------------------------------

in_process = Tether(app_id="in-process")


@in_process.function(id="nightly", trigger=cron("0 2 * * *", tz="Europe/Paris"))
async def nightly(ctx: Context) -> str:
    assert ctx.cron is not None
    assert not ctx.events
    return ctx.cron.scheduled_at.isoformat()


async def test_test_environment_fires_a_cron_function_when_asked(db_url: str) -> None:
    async with TestEnvironment(in_process, db_url=db_url) as env:
        tick = await env.advance_to_next_tick(nightly)
        assert tick.astimezone(PARIS).strftime("%H:%M") == "02:00"

        async def started() -> list[Any]:
            return (await in_process.runs.list(function_id="nightly")).runs

        (run,) = await wait_until_async(started, what="the cron run")
        assert (await in_process.runs.wait(run.id, timeout=20)).output == tick.isoformat()
        # The clock did not run on to later ticks by itself.
        assert await env.now() - tick < dt.timedelta(minutes=1)
        assert await env.next_tick("nightly") == tick + dt.timedelta(days=1)
        assert len(await started()) == 1


# -- several control planes --------------------------------------------------------------


@pytest.fixture
def postgres_db(tmp_path: Path) -> Iterator[str]:
    if postgres_url() is None:
        pytest.skip("TETHER_TEST_POSTGRES_URL is not set")
    with fresh_database("postgres", tmp_path) as url:
        yield url


def test_two_control_planes_start_one_run_per_tick(postgres_db: str, tmp_path: Path) -> None:
    workdirs = [tmp_path / "a", tmp_path / "b"]
    for workdir in workdirs:
        workdir.mkdir()
    with ThreadPoolExecutor(2) as pool:
        clusters = list(pool.map(lambda w: Cluster(postgres_db, w, clock="virtual"), workdirs))
    clocks = [Clock(c.control_plane.address) for c in clusters]
    try:
        # Virtual clocks start at the wall-clock time of each start: line them up.
        a, b = (c.now() for c in clocks)
        clocks[0 if a < b else 1].advance(max(1, abs(a - b)))
        for index, cluster in enumerate(clusters):
            start_worker(cluster, "shared", f"worker-{index}")
        for cluster in clusters:
            wait_until(partial(registered, cluster.admin, "hourly"), what="registration")
        admin = clusters[0].admin
        t1 = next_fire(admin, "hourly")
        assert next_fire(clusters[1].admin, "hourly") == t1

        count = 5
        expected = [t1 + k * HOUR_MS for k in range(count)]
        with ThreadPoolExecutor(2) as pool:
            for k, tick in enumerate(expected, start=1):
                list(pool.map(Clock.advance_to, clocks, [tick] * len(clocks)))
                wait_until(partial(runs_at_least, admin, "hourly", k), what=f"the run of tick {k}")
        assert ticks(admin, "hourly", count) == expected
        assert next_fire(admin, "hourly") == t1 + count * HOUR_MS
        # Each node logs the runs it started: together, one per tick.
        started = [_cron_runs_logged(c) for c in clusters]
        print(f"runs started by each control plane: {started}")
        assert sum(started) == count
    except BaseException:
        for cluster in clusters:
            print(cluster.logs())
        raise
    finally:
        for clock, cluster in zip(clocks, clusters, strict=True):
            clock.close()
            cluster.close()


def _cron_runs_logged(cluster: Cluster) -> int:
    total = 0
    for line in cluster.control_plane.logs().splitlines():
        if "cron: started" in line:
            total += int(line.split("cron: started ")[1].split()[0])
    return total
