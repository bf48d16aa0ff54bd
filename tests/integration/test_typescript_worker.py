"""The TypeScript worker as a process, the way users run it: it drains on
SIGTERM, heartbeats keep a long step on it, a frozen one loses its run and its
late result changes nothing, and a refused registration ends it with the
control plane's reason. (Steps, retries and recovery are the conformance
suite's; this is the worker process itself.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import ledger
from tests.support.admin import Admin
from tests.support.processes import ControlPlaneProcess, WorkerProcess, typescript_worker
from tests.support.waiting import wait_until
from tether.v1 import common_pb2
from tether.v1 import run_service_pb2 as rs

APP = "tests/integration/apps/typescript/durable.ts"


class Plane:
    def __init__(self, db_url: str, workdir: Path, heartbeat_ms: int, lease_timeout_ms: int):
        self.workdir = workdir
        self.ledger = workdir / "ledger.tsv"
        self.control_plane = ControlPlaneProcess(
            db_url, workdir, heartbeat_ms=heartbeat_ms, lease_timeout_ms=lease_timeout_ms
        ).start()
        self.admin = Admin(self.control_plane.address)
        self.workers: list[WorkerProcess] = []

    def worker(self, name: str, **env: str) -> WorkerProcess:
        worker = typescript_worker(
            APP,
            self.control_plane.address,
            self.workdir,
            name=name,
            env={ledger.LEDGER_VARIABLE: str(self.ledger), "TETHER_TEST_WORKER": name, **env},
        ).start()
        self.workers.append(worker)
        return worker

    def counts(self, run_id: str) -> Counter[str]:
        return Counter(row[1] for row in ledger.read(self.ledger) if row[0] == run_id)

    def finished(self, run_id: str, timeout: float = 30) -> rs.GetRunResponse:
        done = wait_until(lambda: self.admin.finished(run_id), timeout=timeout, what=run_id)
        assert done is not None
        return done

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.admin.close()
        self.control_plane.stop()


@pytest.fixture
def plane_factory(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Plane]]:
    planes: list[Plane] = []

    def start(heartbeat_ms: int = 500, lease_timeout_ms: int = 3000) -> Plane:
        plane = Plane(db_url, tmp_path, heartbeat_ms, lease_timeout_ms)
        planes.append(plane)
        return plane

    yield start
    for plane in planes:
        plane.close()


def test_sigterm_drains_in_flight_work(plane_factory: Callable[..., Plane]) -> None:
    plane = plane_factory()
    worker = plane.worker("drained")
    wait_until(lambda: plane.admin.connected("slow-step"), timeout=60, what="the worker")
    [run_id] = plane.admin.send("test-ts/slow-step", {"seconds": 1})
    wait_until(lambda: plane.counts(run_id)["slow-start"] == 1, what="the step to start")

    code = worker.terminate(timeout=30)

    assert code == 0, worker.logs()
    run = plane.admin.get(run_id)
    assert run.run.status == common_pb2.RUN_STATUS_COMPLETED, "it exited before finishing its run"
    assert plane.counts(run_id)["slow"] == 1
    assert "drained; disconnecting" in worker.logs()


def test_heartbeats_keep_a_long_step_on_its_worker(plane_factory: Callable[..., Plane]) -> None:
    plane = plane_factory(heartbeat_ms=200, lease_timeout_ms=1000)
    plane.worker("steady")
    wait_until(lambda: plane.admin.connected("slow-step"), timeout=60, what="the worker")
    [run_id] = plane.admin.send("test-ts/slow-step", {"seconds": 2.5})

    run = plane.finished(run_id)

    assert run.run.status == common_pb2.RUN_STATUS_COMPLETED
    assert plane.counts(run_id)["slow-start"] == 1
    assert not [h for h in run.history if h.kind == rs.HISTORY_KIND_EXECUTION_LOST]


def test_a_frozen_worker_loses_its_run_and_its_late_result(
    plane_factory: Callable[..., Plane],
) -> None:
    plane = plane_factory(heartbeat_ms=200, lease_timeout_ms=1000)
    frozen = plane.worker("frozen")
    wait_until(lambda: plane.admin.connected("slow-step"), timeout=60, what="the worker")
    [run_id] = plane.admin.send("test-ts/slow-step", {"seconds": 1.5})
    wait_until(lambda: plane.counts(run_id)["slow-start"] == 1, what="the step to start")
    assert frozen.process is not None
    frozen.process.send_signal(19)  # SIGSTOP: alive, silent, holding its lease
    plane.worker("rescuer")

    run = plane.finished(run_id)
    frozen.process.send_signal(18)  # SIGCONT: its step finishes and reports late

    assert plane.admin.output(run_id) == "rescuer"
    assert any(
        "lease expired" in h.message
        for h in run.history
        if h.kind == rs.HISTORY_KIND_EXECUTION_LOST
    )
    wait_until(lambda: plane.counts(run_id)["slow"] == 2, what="the frozen worker's late step")
    # Its stream was closed while it was frozen: it connects again.
    wait_until(
        lambda: frozen.logs().count("connected to") >= 2,
        timeout=30,
        what="the frozen worker to reconnect",
    )
    assert plane.admin.output(run_id) == "rescuer"
    [slow] = [s for s in plane.admin.get(run_id).steps if s.name == "slow"]
    assert slow.attempts == 1


def test_a_refused_registration_ends_the_worker_with_the_reason(
    plane_factory: Callable[..., Plane],
) -> None:
    plane = plane_factory()
    worker = plane.worker("refused", TETHER_TEST_BAD_IF="event.data.plan ==")
    assert worker.process is not None
    code = worker.process.wait(60)

    assert code != 0
    logs = worker.logs()
    assert "the control plane refused this worker: function 'badly-declared'" in logs
    assert "invalid CEL expression" in logs
    # A configuration error is not retried.
    assert "reconnecting" not in logs
