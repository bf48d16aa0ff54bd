"""tether doctor against damage made directly in a real database (SQLite and
PostgreSQL): each broken invariant is found and named with its run, repaired
with --repair, and the repaired runs then complete on a real worker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, delete, insert, select, update

from controlplane.store import schema
from tests.e2e.cli import tether
from tests.support.admin import Admin
from tests.support.processes import ControlPlaneProcess, WorkerProcess
from tests.support.waiting import wait_until
from tether.v1 import common_pb2

APP = "tests.integration.apps.clinic:app"
HOUR_MS = 3_600_000


@pytest.fixture
def database(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def doctor(db_url: str, *args: str) -> tuple[int, list[dict[str, Any]]]:
    result = tether("doctor", "--json", *args, "--db", db_url)
    assert "Traceback" not in result.stderr, str(result)
    return result.code, [json.loads(line) for line in result.stdout.splitlines()]


def serve(control_plane: ControlPlaneProcess, tmp_path: Path, admin: Admin) -> WorkerProcess:
    worker = WorkerProcess(APP, control_plane.address, tmp_path, name="clinic").start()
    wait_until(
        lambda: admin.workers_of("clinic") == [1, 1, 1], what="the clinic worker to register"
    )
    return worker


def test_the_doctor_finds_each_broken_invariant_and_repairs_it(
    db_url: str, database: Engine, tmp_path: Path
) -> None:
    # Runs in each state the damage needs: one completed, two left queued.
    control_plane = ControlPlaneProcess(db_url, tmp_path).start()
    admin = Admin(control_plane.address)
    worker = serve(control_plane, tmp_path, admin)
    try:
        [done] = admin.send("clinic/go", {"n": 1})
        wait_until(lambda: admin.finished(done), what="the first run to complete")
        worker.kill()
        wait_until(lambda: not any(admin.workers_of("clinic")), what="the worker to be gone")
        [stranded] = admin.send("clinic/go", {"n": 2})
        [leased] = admin.send("clinic/go", {"n": 3})
    finally:
        admin.close()
        control_plane.stop()
    assert doctor(db_url) == (0, [])

    # The damage, as a crash, a bug or a hand in the database would leave it.
    with database.begin() as conn:
        queued = conn.execute(select(schema.queue).where(schema.queue.c.run_id == stranded)).one()
        conn.execute(delete(schema.queue).where(schema.queue.c.run_id == stranded))
        conn.execute(
            insert(schema.queue).values(
                run_id=done, app_id="clinic", function_id="quick", due_at_ms=2**62,
                lease_execution_id="ghost-execution", lease_deadline_ms=now_ms() + HOUR_MS,
                concurrency_key_1="fn:clinic/quick:1:", concurrency_limit_1=1,
            )
        )  # fmt: skip
        conn.execute(
            update(schema.queue)
            .where(schema.queue.c.run_id == leased)
            .values(lease_execution_id="stale-execution", lease_deadline_ms=now_ms() - 120_000)
        )
        conn.execute(
            insert(schema.waits).values(
                run_id=done, step_id="f" * 40, name="shipped", kind="wait_for_event",
                created_at_ms=0, until_ms=2**62, event_name="clinic/shipped",
            )
        )  # fmt: skip
        conn.execute(delete(schema.schedules).where(schema.schedules.c.function_id == "nightly"))
        conn.execute(
            insert(schema.schedules).values(
                app_id="clinic", function_id="gone", position=0, schedule="0 4 * * *",
                timezone="UTC", catch_up="one", next_fire_ms=now_ms() + HOUR_MS,
            )
        )  # fmt: skip
    assert queued.run_id == stranded

    code, found = doctor(db_url)
    assert code == 1
    assert sorted((f["invariant"], f["run_id"]) for f in found) == sorted(
        [
            ("run_without_queue_entry", stranded),
            ("queue_entry_of_finished_run", done),
            ("stale_lease", leased),
            ("wait_of_finished_run", done),
            ("schedule_missing", ""),
            ("schedule_orphaned", ""),
        ]
    )
    assert all(f["repaired"] is None for f in found)
    missing = next(f for f in found if f["invariant"] == "schedule_missing")
    assert missing["detail"] == ("cron trigger 0 of clinic/nightly has no schedule: it never fires")

    code, repaired = doctor(db_url, "--repair")
    assert code == 0
    assert {f["invariant"] for f in repaired} == {f["invariant"] for f in found}
    assert all(f["repaired"] for f in repaired)
    assert doctor(db_url) == (0, [])
    with database.connect() as conn:
        [tick] = conn.execute(
            select(schema.schedules.c.next_fire_ms).where(
                schema.schedules.c.function_id == "nightly"
            )
        ).scalars()
    assert tick > now_ms()

    # What was stranded now runs to the end.
    control_plane.start()
    admin = Admin(control_plane.address)
    worker = serve(control_plane, tmp_path, admin)
    try:
        for run_id, doubled in ((stranded, 4), (leased, 6)):

            def ended(run_id: str = run_id) -> object:
                return admin.finished(run_id)

            wait_until(ended, what=f"run {run_id} to end")
            assert admin.status(run_id) == common_pb2.RUN_STATUS_COMPLETED
            assert admin.output(run_id) == doubled
    finally:
        worker.kill()
        admin.close()
        control_plane.stop()


def test_the_doctor_names_an_unknown_environment(db_url: str) -> None:
    result = tether("doctor", "--env", "nope", "--db", db_url)
    assert result.code != 0
    assert "no environment 'nope' (tether env list)" in result.stderr
