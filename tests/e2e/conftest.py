"""A control plane (``tether server`` on SQLite) and a worker serving the test app,
started once per module and shared by its tests."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import ledger
from tests.support.admin import Admin
from tests.support.processes import ControlPlaneProcess, WorkerProcess
from tests.support.waiting import wait_until
from tether.v1 import run_service_pb2 as rs

APP_TARGET = "tests.e2e.apps.worker:app"
APP_FUNCTIONS = (
    "three-steps",
    "sleeper",
    "gated-charge",
    "flaky-then-fine",
    "slow-step",
    "approval",
    "invoker",
    "pausable",
    "new-year",
    "sync-account",
)


@dataclass
class Plane:
    """What a test needs to talk to the shared control plane."""

    address: str
    admin: Admin
    ledger_path: Path
    control_plane: ControlPlaneProcess
    worker: WorkerProcess

    def ledger(self, run_id: str) -> list[list[str]]:
        """What the steps of ``run_id`` recorded, in order (without the run id)."""
        return [line[1:] for line in ledger.read(self.ledger_path) if line[0] == run_id]

    def events_named(self, name: str) -> list[str]:
        """The ids of the stored events called ``name``."""
        response = self.admin.runs.ListEvents(rs.ListEventsRequest(name=name, page_size=1000))
        return [e.event.id for e in response.events]

    def finished(self, run_id: str, timeout: float = 20.0) -> None:
        wait_until(
            lambda: self.admin.finished(run_id),
            timeout=timeout,
            what=f"run {run_id} to finish",
        )


def start_app(
    db_url: str, workdir: Path, *, clock: str = "system"
) -> tuple[ControlPlaneProcess, WorkerProcess, Admin, Path]:
    """``tether server`` on ``db_url`` and ``tether worker`` for the test app, with
    every function registered and served."""
    ledger_path = workdir / "ledger.tsv"
    control_plane = ControlPlaneProcess(db_url, workdir, clock=clock).start()
    worker = WorkerProcess(
        APP_TARGET,
        control_plane.address,
        workdir,
        env={ledger.LEDGER_VARIABLE: str(ledger_path)},
    ).start()
    admin = Admin(control_plane.address)

    def all_served() -> bool:
        if not worker.alive():
            raise AssertionError(f"the worker exited:\n{worker.logs()}")
        return all(admin.connected(f) for f in APP_FUNCTIONS)

    try:
        wait_until(all_served, timeout=30, what="the test app's worker to connect")
    except BaseException:
        stop_app(control_plane, worker, admin)
        raise
    return control_plane, worker, admin, ledger_path


def stop_app(control_plane: ControlPlaneProcess, worker: WorkerProcess, admin: Admin) -> None:
    admin.close()
    if worker.alive():
        try:
            worker.terminate(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
    control_plane.stop()


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    workdir = tmp_path_factory.mktemp("plane")
    db_url = f"sqlite:///{workdir / 'tether.db'}"
    control_plane, worker, admin, ledger_path = start_app(db_url, workdir)
    try:
        yield Plane(control_plane.address, admin, ledger_path, control_plane, worker)
    finally:
        stop_app(control_plane, worker, admin)
