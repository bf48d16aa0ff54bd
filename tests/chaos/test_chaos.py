"""The chaos suite: many five-step runs on real processes while something breaks.

Each test starts its own database (a PostgreSQL cluster of its own, made with
initdb and stopped and started by the test, or a SQLite file), control planes
and three workers, sends the runs, breaks one thing while they are half done,
repairs it and waits for every run. Then it checks what a user would: no run
lost, none duplicated, every output right, and what the ledger says really
ran: no step ran twice after a control-plane kill or a database stop (the
workers were alive), and only steps that were running on a killed worker ran
again. It prints how long recovery took.

``make test`` runs it with 200 runs; ``make chaos`` with 1,000
(``TETHER_CHAOS_RUNS``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.app import STEPS
from tests.support import ledger, private_postgres
from tests.support.admin import Admin
from tests.support.invariants import violations
from tests.support.private_postgres import PrivatePostgres
from tests.support.processes import ControlPlaneProcess, WorkerProcess
from tests.support.waiting import wait_until
from tether.v1 import common_pb2
from tether.v1 import run_service_pb2 as rs

RUNS = int(os.environ.get("TETHER_CHAOS_RUNS", "200"))
WORKERS = 3
CAPACITY = 100
# The product's defaults: a run that waited for a lease to time out would show.
HEARTBEAT_MS = 3000
LEASE_TIMEOUT_MS = 15_000
COMPLETED = common_pb2.RUN_STATUS_COMPLETED
SEND_BATCH = 500
# How long a database stays away: the fault itself, so the test waits it out.
OUTAGE_S = 5

needs_postgres = pytest.mark.skipif(
    not private_postgres.available(), reason="PostgreSQL's initdb and pg_ctl are not installed"
)


@dataclass(frozen=True)
class Entry:
    run_id: str
    step: int
    phase: str
    worker: str
    at_ms: int


def _entries(path: Path) -> list[Entry]:
    # The last line may be read while a worker is writing it: it counts once whole.
    rows = [r for r in ledger.read(path) if len(r) == 5 and r[4].isdigit()]
    return [Entry(r[0], int(r[1]), r[2], r[3], int(r[4])) for r in rows]


def _running(entries: list[Entry], worker: str | None = None) -> set[tuple[str, int]]:
    """The (run, step) pairs started and not ended (on ``worker``, if named)."""
    started = {
        (e.run_id, e.step)
        for e in entries
        if e.phase == "start" and (worker is None or e.worker == worker)
    }
    return started - {(e.run_id, e.step) for e in entries if e.phase == "end"}


class Chaos:
    """Control planes, workers and a ledger on one database."""

    def __init__(self, db_url: str, workdir: Path, control_planes: int = 1) -> None:
        self.db_url = db_url
        self.workdir = workdir
        self.ledger = workdir / "ledger.tsv"
        self.planes = []
        for n in range(control_planes):
            directory = workdir / f"control-plane-{n}"
            directory.mkdir()
            plane = ControlPlaneProcess(
                db_url, directory, heartbeat_ms=HEARTBEAT_MS, lease_timeout_ms=LEASE_TIMEOUT_MS
            )
            self.planes.append(plane.start())
        # With several control planes a worker takes the first that answers.
        addresses = ",".join(p.address for p in self.planes)
        self.worker_address = addresses if control_planes == 1 else f"ipv4:{addresses}"
        self.workers = [self.start_worker(f"worker-{n}") for n in range(WORKERS)]
        self.admin = Admin(self.planes[0].address)
        self.run_ids: list[str] = []

    def start_worker(self, name: str) -> WorkerProcess:
        return WorkerProcess(
            "tests.chaos.app:app",
            self.worker_address,
            self.workdir,
            name=name,
            capacity=CAPACITY,
            env={ledger.LEDGER_VARIABLE: str(self.ledger), "TETHER_TEST_WORKER": name},
        ).start()

    def reconnect_admin(self, plane: ControlPlaneProcess) -> None:
        self.admin.close()
        self.admin = Admin(plane.address)

    def entries(self) -> list[Entry]:
        return _entries(self.ledger)

    def send_runs(self) -> None:
        wait_until(
            lambda: self.admin.workers_of("chaos") == [WORKERS],
            timeout=30,
            what="every worker to connect",
        )
        for start in range(0, RUNS, SEND_BATCH):
            count = min(SEND_BATCH, RUNS - start)
            self.run_ids += self.admin.send_many([("chaos/go", {}) for _ in range(count)])

    def until_half_done(self) -> None:
        """Until, on average, more than two steps of each run have ended."""
        wait_until(
            lambda: sum(1 for e in self.entries() if e.phase == "end") >= RUNS * 2,
            timeout=120,
            what="the runs to be half done",
        )

    def durable(self, pairs: set[tuple[str, int]]) -> bool:
        """Whether each (run, step) has its result stored."""
        by_run: dict[str, set[int]] = {}
        for run_id, step in pairs:
            by_run.setdefault(run_id, set()).add(step)
        for run_id, steps in by_run.items():
            stored = {s.name for s in self.admin.get(run_id).steps}
            if not {f"step-{i}" for i in steps} <= stored:
                return False
        return True

    def seconds_until_durable(self, pairs: set[tuple[str, int]], since: float) -> float:
        """How long after ``since`` (monotonic) a sample of ``pairs`` became durable."""
        sample = set(sorted(pairs)[:30])
        wait_until(lambda: self.durable(sample), timeout=60, what="in-flight steps to be stored")
        return time.monotonic() - since

    def finish(self) -> float:
        """Wait for every run; check none was lost, duplicated or wrong; returns
        how long the wait took."""
        began = time.monotonic()

        def completed() -> int:
            listing = self.admin.runs.ListRuns(
                rs.ListRunsRequest(statuses=[COMPLETED], page_size=1000)
            )
            total = len(listing.runs)
            token = listing.next_page_token
            while token:
                listing = self.admin.runs.ListRuns(
                    rs.ListRunsRequest(statuses=[COMPLETED], page_size=1000, page_token=token)
                )
                total += len(listing.runs)
                token = listing.next_page_token
            return total

        wait_until(lambda: completed() >= RUNS, timeout=300, interval=0.2, what="every run")
        assert completed() == RUNS, "more runs completed than were started"
        assert len(set(self.run_ids)) == RUNS
        for run_id in self.run_ids:
            run = self.admin.get(run_id)
            assert run.run.status == COMPLETED, run_id
            assert [s.name for s in run.steps] == [f"step-{i}" for i in range(STEPS)]
            assert self.admin.output(run_id) == sum(range(STEPS))
        return time.monotonic() - began

    def reruns(self) -> Counter[tuple[str, int]]:
        """(run, step) -> how many times more than once its code started."""
        starts = Counter((e.run_id, e.step) for e in self.entries() if e.phase == "start")
        return Counter({pair: n - 1 for pair, n in starts.items() if n > 1})

    def recover(self, fault: str, in_flight: set[tuple[str, int]], since: float, what: str) -> None:
        """Wait for the steps running at the fault to be stored, then for every
        run; check that none of them ran again; print how long each took."""
        recovery = self.seconds_until_durable(in_flight, since)
        rest = self.finish()
        assert self.reruns() == Counter(), f"a step ran again after {fault}"
        _report(fault, **{what: recovery, "rest_of_the_runs": rest})

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        self.admin.close()
        for plane in self.planes:
            plane.stop()

    def logs(self) -> str:
        parts = [f"--- control plane {n} ---\n{p.logs()}" for n, p in enumerate(self.planes)]
        parts += [f"--- {w.name} ---\n{w.logs()}" for w in self.workers]
        return "\n".join(parts)


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres().start()
    yield cluster
    cluster.close()


@pytest.fixture
def chaos_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[type[Chaos]]:
    made: list[Chaos] = []

    class Tracked(Chaos):
        def __init__(self, db_url: str, workdir: Path, control_planes: int = 1) -> None:
            made.append(self)
            super().__init__(db_url, workdir, control_planes)

    yield Tracked
    failed = getattr(request.node, "report_call", None)
    for chaos in made:
        if failed is not None and failed.failed:
            print(chaos.logs()[-20_000:])
        chaos.close()
    for chaos in made:
        if not (failed is not None and failed.failed):
            assert violations(chaos.db_url) == [], "tether doctor finds the store broken"


def _report(fault: str, **figures: float) -> None:
    shown = ", ".join(f"{name.replace('_', ' ')} {value:.2f} s" for name, value in figures.items())
    print(f"\nchaos: {fault}, {RUNS} runs: {shown}")


def _kill_and_restart_the_control_plane(chaos: Chaos, fault: str) -> None:
    chaos.send_runs()
    chaos.until_half_done()
    [plane] = chaos.planes
    plane.kill()
    in_flight = _running(chaos.entries())
    plane.start()
    back = time.monotonic()
    chaos.reconnect_admin(plane)

    chaos.recover(fault, in_flight, back, "in_flight_steps_stored_after_the_restart")


@needs_postgres
def test_kill_9_of_the_control_plane_on_postgres(
    postgres: PrivatePostgres, chaos_factory: type[Chaos], tmp_path: Path
) -> None:
    _kill_and_restart_the_control_plane(
        chaos_factory(postgres.url, tmp_path), "kill -9 of the control plane (PostgreSQL)"
    )


def test_kill_9_of_the_control_plane_on_sqlite(chaos_factory: type[Chaos], tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'tether.db'}"
    _kill_and_restart_the_control_plane(
        chaos_factory(db_url, tmp_path), "kill -9 of the control plane (SQLite)"
    )


@needs_postgres
def test_kill_9_of_a_worker(
    postgres: PrivatePostgres, chaos_factory: type[Chaos], tmp_path: Path
) -> None:
    chaos = chaos_factory(postgres.url, tmp_path)
    chaos.send_runs()
    chaos.until_half_done()
    victim = chaos.workers[0]
    victim.kill()
    killed = time.monotonic()
    in_flight = _running(chaos.entries(), victim.name)

    recovery = chaos.seconds_until_durable(in_flight, killed)
    rest = chaos.finish()

    # A run executes one step at a time: what may run again is, in each run the
    # killed worker was executing, the one step whose result it had not stored.
    reruns = chaos.reruns()
    first_start: dict[tuple[str, int], str] = {}
    for entry in chaos.entries():
        if entry.phase == "start":
            first_start.setdefault((entry.run_id, entry.step), entry.worker)
    assert all(first_start[pair] == victim.name for pair in reruns), reruns
    assert all(n == 1 for n in reruns.values()), reruns
    per_run = Counter(run_id for run_id, _ in reruns)
    assert all(n == 1 for n in per_run.values()), per_run
    for run_id in per_run:
        history = chaos.admin.get(run_id).history
        assert any(h.kind == rs.HISTORY_KIND_EXECUTION_LOST for h in history), run_id
    print(
        f"\nchaos: {len(reruns)} step(s) ran again; {len(in_flight)} were running "
        "on the killed worker"
    )
    _report("kill -9 of a worker", its_steps_stored_elsewhere_after=recovery, rest_of_the_runs=rest)


@needs_postgres
def test_postgres_stopped_for_5_s(
    postgres: PrivatePostgres, chaos_factory: type[Chaos], tmp_path: Path
) -> None:
    chaos = chaos_factory(postgres.url, tmp_path)
    chaos.send_runs()
    chaos.until_half_done()
    postgres.stop("immediate")
    in_flight = _running(chaos.entries())
    time.sleep(OUTAGE_S)
    postgres.start()
    back = time.monotonic()

    chaos.recover(
        f"PostgreSQL stopped for {OUTAGE_S} s",
        in_flight,
        back,
        "in_flight_steps_stored_after_it_was_back",
    )


@needs_postgres
def test_two_control_planes_and_one_is_killed(
    postgres: PrivatePostgres, chaos_factory: type[Chaos], tmp_path: Path
) -> None:
    chaos = chaos_factory(postgres.url, tmp_path, control_planes=2)
    chaos.send_runs()
    chaos.until_half_done()
    chaos.planes[0].kill()  # every worker is connected to the first
    killed = time.monotonic()
    chaos.reconnect_admin(chaos.planes[1])
    in_flight = _running(chaos.entries())

    chaos.recover(
        "two control planes, the workers' one killed",
        in_flight,
        killed,
        "in_flight_steps_stored_through_the_other_after",
    )


def test_sqlite_locked_by_another_process_for_5_s(
    chaos_factory: type[Chaos], tmp_path: Path
) -> None:
    """SQLite's outage: another process (a backup, a script) holds the write
    lock. The control plane's writes wait; the workers' results wait with them."""
    path = tmp_path / "tether.db"
    chaos = chaos_factory(f"sqlite:///{path}", tmp_path)
    chaos.send_runs()
    chaos.until_half_done()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=30)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        in_flight = _running(chaos.entries())
        time.sleep(OUTAGE_S)
        holder.execute("COMMIT")
    back = time.monotonic()

    chaos.recover(
        f"SQLite write-locked by another process for {OUTAGE_S} s",
        in_flight,
        back,
        "in_flight_steps_stored_after_the_lock_ended",
    )
