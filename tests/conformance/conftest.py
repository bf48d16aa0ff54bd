"""A control plane (virtual clock) and one SDK's conformance worker, shared by
the scenarios of one (SDK, database) pair."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin import Admin
from tests.support.clock import Clock
from tests.support.databases import fresh_database, postgres_url
from tests.support.ledger import LEDGER_VARIABLE
from tests.support.processes import ControlPlaneProcess, WorkerProcess
from tests.support.waiting import wait_until

HERE = Path(__file__).parent
SDKS: dict[str, list[str]] = {
    name: command
    for name, command in json.loads((HERE / "sdks.json").read_text()).items()
    if name != "about"
}


class ConformanceCluster:
    def __init__(self, sdk: str, db: str, db_url: str, workdir: Path) -> None:
        self.sdk = sdk
        self.db = db
        self.workdir = workdir
        self.ledger = workdir / "ledger.tsv"
        self.gates = workdir / "gates"
        self.gates.mkdir()
        # A lease timeout well beyond a restart of the control plane: its
        # workers keep what they hold through one (control-plane-restart).
        self.control_plane = ControlPlaneProcess(
            db_url, workdir, clock="virtual", lease_timeout_ms=10_000
        ).start()
        self.admin = Admin(self.control_plane.address)
        self.clock = Clock(self.control_plane.address)
        self.worker = WorkerProcess(
            f"conformance ({sdk})",
            self.control_plane.address,
            workdir,
            name=f"worker-{sdk}",
            env={LEDGER_VARIABLE: str(self.ledger), "TETHER_TEST_GATE_DIR": str(self.gates)},
            command=[part.replace("{python}", sys.executable) for part in SDKS[sdk]],
        )
        self.start_worker()

    def start_worker(self) -> None:
        self.worker.start()
        wait_until(
            lambda: self.admin.connected("memoized-steps") or self._worker_died(),
            timeout=60,
            what=f"the {self.sdk} conformance worker to connect",
        )
        assert not self._worker_died(), f"the {self.sdk} worker exited:\n{self.worker.logs()}"

    def _worker_died(self) -> bool:
        return self.worker.process is not None and not self.worker.alive()

    def restart_control_plane(self) -> None:
        """SIGKILL the control plane, then start it again on its database and port."""
        self.admin.close()
        self.clock.close()
        self.control_plane.kill()
        self.control_plane.start()
        self.admin = Admin(self.control_plane.address)
        self.clock = Clock(self.control_plane.address)

    def ledger_rows(self, key: str) -> list[list[str]]:
        if not self.ledger.exists():
            return []
        rows = [line.split("\t") for line in self.ledger.read_text().splitlines() if line]
        return [row for row in rows if row[0] == key]

    def logs(self) -> str:
        return (
            f"--- control plane ---\n{self.control_plane.logs()[-20000:]}\n"
            f"--- {self.sdk} worker ---\n{self.worker.logs()[-20000:]}"
        )

    def close(self) -> None:
        self.worker.kill()
        self.admin.close()
        self.clock.close()
        self.control_plane.stop()


DATABASES = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=pytest.mark.skipif(
            postgres_url() is None, reason="TETHER_TEST_POSTGRES_URL is not set"
        ),
    ),
]


@pytest.fixture(scope="module", params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", params=sorted(SDKS))
def cluster(
    request: pytest.FixtureRequest, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConformanceCluster]:
    workdir = tmp_path_factory.mktemp(f"conformance-{request.param}-{database}")
    with fresh_database(database, workdir) as url:
        cluster = ConformanceCluster(request.param, database, url, workdir)
        try:
            yield cluster
        finally:
            cluster.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        cluster = getattr(item, "funcargs", {}).get("cluster")
        if isinstance(cluster, ConformanceCluster):
            report.sections.append(("processes", cluster.logs()))
    return report
