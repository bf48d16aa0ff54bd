"""Real control-plane and worker processes for the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin import Admin
from tests.support.invariants import violations
from tests.support.ledger import LEDGER_VARIABLE
from tests.support.processes import ControlPlaneProcess, WorkerProcess
from tests.support.raw_worker import RawWorker

DURABLE_APP = "tests.integration.apps.durable:app"


@pytest.fixture
def admin(control_plane: ControlPlaneProcess) -> Iterator[Admin]:
    """RunService and EventService calls to the module's ``control_plane``."""
    client = Admin(control_plane.address)
    yield client
    client.close()


@pytest.fixture
async def worker(control_plane: ControlPlaneProcess) -> AsyncIterator[RawWorker]:
    """A raw worker stream to the module's ``control_plane`` (nothing sent yet)."""
    raw = RawWorker(control_plane.address)
    yield raw
    await raw.close()


class Cluster:
    """A control plane, the workers started against it, and a ledger."""

    def __init__(self, db_url: str, workdir: Path, **options: Any) -> None:
        self.workdir = workdir
        self.ledger = workdir / "ledger.tsv"
        self.control_plane = ControlPlaneProcess(db_url, workdir, **options).start()
        self.admin = Admin(self.control_plane.address)
        self.workers: list[WorkerProcess] = []

    def worker(self, name: str = "worker", *, capacity: int = 100, **env: str) -> WorkerProcess:
        process = WorkerProcess(
            DURABLE_APP,
            self.control_plane.address,
            self.workdir,
            name=name,
            capacity=capacity,
            env={LEDGER_VARIABLE: str(self.ledger), "TETHER_TEST_WORKER": name, **env},
        ).start()
        self.workers.append(process)
        return process

    def restart_control_plane(self) -> None:
        self.admin.close()
        self.control_plane.start()
        self.admin = Admin(self.control_plane.address)

    def logs(self) -> str:
        parts = [f"--- control plane ---\n{self.control_plane.logs()}"]
        parts += [f"--- {w.name} ---\n{w.logs()}" for w in self.workers]
        return "\n".join(parts)

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.admin.close()
        self.control_plane.stop()


@pytest.fixture
def cluster_factory(
    request: pytest.FixtureRequest, db_url: str, tmp_path: Path
) -> Iterator[Callable[..., Cluster]]:
    """Start a cluster on the test's database (SQLite, then PostgreSQL)."""
    clusters: list[Cluster] = []

    def start(**options: Any) -> Cluster:
        cluster = Cluster(db_url, tmp_path, **options)
        clusters.append(cluster)
        return cluster

    yield start
    failed = getattr(request.node, "report_call", None)
    for cluster in clusters:
        if failed is not None and failed.failed:
            print(cluster.logs())
        cluster.close()
    if clusters and not (failed is not None and failed.failed):
        # Whatever the test did, the control plane left no run stuck and
        # nothing held for a finished run.
        assert violations(db_url) == [], "tether doctor finds the store broken"


@pytest.fixture
def cluster(cluster_factory: Callable[..., Cluster]) -> Cluster:
    """A control plane on the system clock, no worker yet."""
    return cluster_factory()


@pytest.fixture
def virtual_cluster(cluster_factory: Callable[..., Cluster]) -> Cluster:
    """A control plane on a virtual clock that skips ahead whenever idle."""
    return cluster_factory(clock="virtual")
