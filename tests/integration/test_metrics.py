"""Metrics of a real control plane (in this process, so that its Prometheus
rendering can be read directly) serving a real worker process: counters of runs
started, completed, failed and cancelled; step durations and scheduling lag;
queue depth, pending sleeps and waits, connected workers. On SQLite, then
PostgreSQL. Also: OTLP export to a real OTLP metrics receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, delete

from controlplane.app import ControlPlane
from controlplane.config import Config
from controlplane.model import ClaimRecord, RunSpanRecord, RunStatus
from controlplane.store import schema
from controlplane.telemetry import Metrics
from tests.support.otlp import OtlpReceiver, attributes
from tests.support.processes import WorkerProcess
from tests.support.waiting import wait_until_async
from tether import RunStatus as Status
from tether import Tether

APP = "observed"


@dataclass(frozen=True)
class Scrape:
    """Samples of one Prometheus scrape, by name and labels."""

    samples: list[tuple[str, dict[str, str], float]]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` whose labels include ``labels``."""
        return sum(
            value
            for sample, found, value in self.samples
            if sample == name and labels.items() <= found.items()
        )

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}


def parse(body: bytes) -> Scrape:
    return Scrape(
        [
            (sample.name, dict(sample.labels), sample.value)
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        ]
    )


@dataclass
class Observed:
    plane: ControlPlane
    metrics: Metrics
    worker: WorkerProcess
    client: Tether

    async def scrape(self) -> Scrape:
        body, content_type = await self.metrics.render_prometheus()
        assert content_type.startswith("text/plain; version=0.0.4")
        return parse(body)

    async def send(self, name: str, count: int = 1) -> list[str]:
        results = await self.client.send([{"name": name, "data": {}} for _ in range(count)])
        return [run_id for result in results for run_id in result.run_ids]

    async def reach(self, run_ids: list[str], *statuses: Status) -> None:
        async def there() -> bool:
            runs = [await self.client.runs.get(run_id) for run_id in run_ids]
            return all(run.status in statuses for run in runs)

        await wait_until_async(there, what=f"runs {run_ids} to be {statuses}")

    async def gauge(self, name: str, expected: float, **labels: str) -> Scrape:
        async def reached() -> Scrape | None:
            scrape = await self.scrape()
            return scrape if scrape.value(name, **labels) == expected else None

        found = await wait_until_async(reached, what=f"{name}{labels} == {expected}")
        assert found is not None
        return found


@pytest.fixture
async def observed(db_url: str, tmp_path: Path) -> AsyncIterator[Observed]:
    plane = ControlPlane(Config(db_url=db_url, port=0))
    await plane.start()
    address = f"127.0.0.1:{plane.port}"
    worker = WorkerProcess(f"tests.integration.apps.{APP}:app", address, tmp_path).start()
    client = Tether(app_id="metrics-test", address=address)
    try:
        assert plane.metrics is not None
        yield Observed(plane, plane.metrics, worker, client)
    finally:
        worker.kill()
        await client.close()
        await plane.stop()


async def test_metrics_say_what_happened(observed: Observed) -> None:
    await observed.gauge("tether_workers_connected", 1, tether_app_id=APP)

    quick = await observed.send("observed/quick", 3)
    doomed = await observed.send("observed/doomed", 2)
    sleepers = await observed.send("observed/sleep", 2)
    waiter = await observed.send("observed/wait")
    await observed.reach(quick, Status.COMPLETED)
    await observed.reach(doomed, Status.FAILED)
    await observed.reach(sleepers, Status.SLEEPING)
    await observed.reach(waiter, Status.WAITING)

    scrape = await observed.scrape()
    for function_id, started in (("quick", 3), ("doomed", 2), ("sleeper", 2), ("waiter", 1)):
        assert scrape.value("tether_runs_started_total", tether_function_id=function_id) == started
    assert scrape.value("tether_runs_completed_total", tether_function_id="quick") == 3
    assert scrape.value("tether_runs_completed_total") == 3
    assert scrape.value("tether_runs_failed_total", tether_function_id="doomed") == 2
    assert scrape.value("tether_runs_failed_total") == 2
    assert scrape.value("tether_runs_cancelled_total") == 0
    # A step sample per attempt, with its kind and outcome.
    duration = "tether_step_duration_seconds_count"
    assert scrape.value(duration, tether_function_id="quick", tether_step_outcome="completed") == 3
    assert scrape.value(duration, tether_function_id="doomed", tether_step_outcome="failed") == 2
    assert scrape.value(duration, tether_step_kind="run") == 5
    assert scrape.value("tether_scheduling_lag_seconds_count", tether_function_id="quick") == 3
    # Two runs asleep, one waiting for an event, none ready.
    assert scrape.value("tether_sleeps_pending") == 2
    assert scrape.value("tether_waits_pending", tether_step_kind="wait_for_event") == 1
    assert scrape.value("tether_waits_pending", tether_step_kind="invoke") == 0
    assert scrape.value("tether_queue_depth", tether_function_id="quick") == 0
    assert "tether_queue_depth" in scrape.names()

    for run_id in sleepers:
        await observed.client.runs.cancel(run_id)
    scrape = await observed.scrape()
    assert scrape.value("tether_runs_cancelled_total", tether_function_id="sleeper") == 2
    assert scrape.value("tether_sleeps_pending") == 0

    # Without a worker, new runs wait in the queue and none starts.
    # In a thread: the control plane runs on this event loop and must hear the worker go.
    assert await asyncio.to_thread(observed.worker.terminate) == 0
    await observed.gauge("tether_workers_connected", 0, tether_app_id=APP)
    await observed.send("observed/quick", 2)
    scrape = await observed.gauge("tether_queue_depth", 2, tether_function_id="quick")
    assert scrape.value("tether_runs_started_total", tether_function_id="quick") == 3


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


async def test_metrics_are_exported_over_otlp(
    receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    plane = ControlPlane(Config(db_url=f"sqlite:///{tmp_path / 'tether.db'}", port=0))
    await plane.start()
    address = f"127.0.0.1:{plane.port}"
    worker = WorkerProcess(f"tests.integration.apps.{APP}:app", address, tmp_path).start()
    client = Tether(app_id="metrics-test", address=address)
    try:
        assert plane.metrics is not None
        observed = Observed(plane, plane.metrics, worker, client)
        await observed.gauge("tether_workers_connected", 1, tether_app_id=APP)
        await observed.reach(await observed.send("observed/quick"), Status.COMPLETED)

        async def exported() -> bool:
            completed = _exported(receiver, "tether.runs.completed")
            workers = _exported(receiver, "tether.workers.connected")
            steps = _exported(receiver, "tether.step.duration")
            return (
                (
                    {
                        "tether.environment": "default",
                        "tether.app_id": APP,
                        "tether.function_id": "quick",
                    },
                    1,
                )
                in completed
                and ({"tether.environment": "default", "tether.app_id": APP}, 1) in workers
                and any(count == 1 for _, count in steps)
            )

        await wait_until_async(exported, what="the metrics at the OTLP receiver")
        units = {m.metric.name: m.metric.unit for m in receiver.metrics()}
        assert units["tether.step.duration"] == units["tether.scheduling.lag"] == "s"
        assert {m.service for m in receiver.metrics()} == {"tether-control-plane"}
    finally:
        worker.kill()
        await client.close()
        await plane.stop()


def _exported(receiver: OtlpReceiver, name: str) -> list[tuple[dict[str, object], float]]:
    """The data points of the last export of metric ``name``: (attributes, value),
    the value of a histogram point being its count."""
    found = [m.metric for m in receiver.metrics() if m.name == name]
    if not found:
        return []
    metric = found[-1]
    if metric.HasField("histogram"):
        return [(attributes(p.attributes), p.count) for p in metric.histogram.data_points]
    points = metric.sum.data_points if metric.HasField("sum") else metric.gauge.data_points
    return [(attributes(p.attributes), p.as_double or p.as_int) for p in points]


async def test_each_metrics_object_has_its_own_registry() -> None:
    """Several control planes in one process do not share Prometheus series."""
    first, second = Metrics(), Metrics()
    try:
        first.runs_claimed([ClaimRecord(APP, "quick", 5, first=True)])
        first.runs_finished(
            [
                RunSpanRecord(
                    "0" * 31 + "1", "0" * 15 + "1", "r", APP, "quick", RunStatus.FAILED, 0, 1
                )
            ]
        )
        one, two = (
            parse((await first.render_prometheus())[0]),
            parse((await second.render_prometheus())[0]),
        )
        assert one.value("tether_runs_started_total") == 1
        assert one.value("tether_runs_failed_total", tether_function_id="quick") == 1
        assert one.value("tether_scheduling_lag_seconds_sum") == pytest.approx(0.005)
        assert two.value("tether_runs_started_total") == 0
    finally:
        await asyncio.gather(first.shutdown(), second.shutdown())


async def test_a_stuck_run_shows_in_the_oldest_age_and_the_invariant_gauge(
    observed: Observed, db_url: str
) -> None:
    """A run nobody serves ages in tether_queue_oldest_age_seconds; once its
    queue entry is lost, the background check counts it as a violation."""
    await observed.gauge("tether_workers_connected", 1, tether_app_id=APP)
    observed.worker.kill()
    await observed.gauge("tether_workers_connected", 0, tether_app_id=APP)
    [run_id] = await observed.send("observed/quick")

    async def aged() -> bool:
        scrape = await observed.scrape()
        return scrape.value("tether_queue_oldest_age_seconds", tether_function_id="quick") > 0.2

    await wait_until_async(aged, what="the queued run to age")
    scrape = await observed.scrape()
    assert (
        scrape.value("tether_invariant_violations", tether_invariant="run_without_queue_entry") == 0
    )

    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(delete(schema.queue).where(schema.queue.c.run_id == run_id))
    finally:
        engine.dispose()
    assert observed.plane.engine is not None
    [found] = await observed.plane.engine.invariants.check()
    assert (found.invariant, found.run_id) == ("run_without_queue_entry", run_id)
    scrape = await observed.scrape()
    assert (
        scrape.value("tether_invariant_violations", tether_invariant="run_without_queue_entry") == 1
    )
    assert scrape.value("tether_queue_oldest_age_seconds", tether_function_id="quick") == 0
