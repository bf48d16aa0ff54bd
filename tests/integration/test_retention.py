"""Retention on a real control plane (SQLite and PostgreSQL), two days passing
on its virtual clock: finished runs and the events nothing needs are exported,
then purged (by hand and by the control plane itself); unfinished runs and
their events stay and still complete."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.e2e.cli import tether
from tests.support.admin import Admin
from tests.support.processes import ControlPlaneProcess, WorkerProcess
from tests.support.waiting import wait_until
from tether.v1 import clock_service_pb2, clock_service_pb2_grpc, common_pb2, run_service_pb2

APP = "tests.integration.apps.clinic:app"
DAY_MS = 24 * 3600 * 1000


@pytest.fixture
def control_plane(db_url: str, tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    process = ControlPlaneProcess(db_url, tmp_path, clock="virtual", http=True)
    process.extra_args = ["--retention", "1d"]
    process.start()
    yield process
    process.stop()


def serve(control_plane: ControlPlaneProcess, tmp_path: Path, admin: Admin) -> WorkerProcess:
    worker = WorkerProcess(APP, control_plane.address, tmp_path, name="clinic").start()
    wait_until(
        lambda: admin.workers_of("clinic") == [1, 1, 1], what="the clinic worker to register"
    )
    return worker


def advance_days(admin: Admin, days: int) -> None:
    clock = clock_service_pb2_grpc.ClockServiceStub(admin.channel)
    clock.SetAutoSkip(clock_service_pb2.SetAutoSkipRequest(enabled=False))
    clock.Advance(clock_service_pb2.AdvanceRequest(by_ms=days * DAY_MS))


def exists(admin: Admin, run_id: str) -> bool:
    try:
        admin.get(run_id)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise
    return True


def test_old_finished_runs_and_unneeded_events_go_and_unfinished_ones_stay(
    control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    db_url = control_plane.db_url
    admin = Admin(control_plane.address)
    worker = serve(control_plane, tmp_path, admin)
    try:
        [done] = admin.send("clinic/go", {"n": 1})
        wait_until(lambda: admin.finished(done), what="the first run to complete")
        worker.kill()
        wait_until(lambda: not any(admin.workers_of("clinic")), what="the worker to be gone")
        [waiting] = admin.send("clinic/go", {"n": 2})  # no worker: it stays queued
        assert admin.send("clinic/unheard") == []  # an event no function wants
        advance_days(admin, 2)
        [fresh] = admin.send("clinic/go", {"n": 3})  # today's: kept whatever happens

        exported = tmp_path / "runs.jsonl"
        dumped = tether(
            "runs", "export", "--status", "completed", "--output", str(exported),
            address=control_plane.address,
        ).ok()  # fmt: skip
        assert "exported 1 run(s)" in dumped.stderr
        [archived] = [json.loads(line) for line in exported.read_text().splitlines()]
        assert archived["id"] == done
        assert [s["id"] for s in archived["steps"]] == ["double"]
        assert archived["history"]

        dry = tether("purge", "--older-than", "1d", "--dry-run", "--db", db_url).ok()
        assert "would delete 1 finished run(s) and 2 event(s) older than 1d" in dry.stdout
        assert exists(admin, done), "a dry run deletes nothing"

        purged = tether("purge", "--older-than", "1d", "--db", db_url).ok()
        assert "deleted 1 finished run(s) and 2 event(s) older than 1d" in purged.stdout
        assert not exists(admin, done)
        assert exists(admin, waiting)
        assert exists(admin, fresh)
        listed = admin.runs.ListEvents(run_service_pb2.ListEventsRequest()).events
        events = [e.event.name for e in listed]
        assert sorted(events) == ["clinic/go", "clinic/go"], "the unfinished runs' events stay"
    finally:
        admin.close()

    admin = Admin(control_plane.address)
    worker = serve(control_plane, tmp_path, admin)
    try:
        for run_id in (waiting, fresh):
            wait_until(lambda run_id=run_id: admin.finished(run_id), what=f"run {run_id}")  # type: ignore[misc]
            assert admin.status(run_id) == common_pb2.RUN_STATUS_COMPLETED
    finally:
        worker.kill()
        admin.close()


def test_the_control_plane_purges_by_itself_and_counts_it(
    control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    """The environment keeps runs 1 day; the function 'keeper' its own for 3."""
    admin = Admin(control_plane.address)
    worker = serve(control_plane, tmp_path, admin)
    try:
        [done] = admin.send("clinic/go", {"n": 1})
        [kept] = admin.send("clinic/keep")
        for run_id in (done, kept):
            wait_until(lambda run_id=run_id: admin.finished(run_id), what=f"run {run_id}")  # type: ignore[misc]
    finally:
        worker.kill()
        admin.close()

    def two_days_later() -> Admin:
        admin = Admin(control_plane.address)
        advance_days(admin, 2)
        admin.send("clinic/unheard")  # records the new time, where the clock resumes
        admin.close()
        control_plane.stop()
        control_plane.start()  # the purge runs at start, then every 30 s
        return Admin(control_plane.address)

    admin = two_days_later()
    try:
        wait_until(lambda: not exists(admin, done), what="the control plane to purge the run")
        assert exists(admin, kept), "its function keeps it 3 days"
    finally:
        admin.close()
    with urllib.request.urlopen(f"{control_plane.http_url}/metrics", timeout=10) as reply:
        metrics = reply.read().decode()
    assert (
        'tether_purged_total{tether_environment="default",tether_purged_kind="runs"} 1.0' in metrics
    )
    [size] = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("tether_store_size_bytes{")
    ]
    assert size > 0

    admin = two_days_later()
    try:
        wait_until(lambda: not exists(admin, kept), what="the keeper's run to go after 3 days")
    finally:
        admin.close()
